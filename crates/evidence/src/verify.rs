//! Verification: the chain's integrity (the store's checker), every stored
//! checkpoint's signature and its agreement with the chain, and, against
//! what the auditor trusts (a public key, a kept checkpoint), authenticity.
//! The result is a [`Report`]: a one-line verdict and each problem.

use warden_store::chain::Checkpoint;
use warden_store::chain::check::{Checker, Counts};

use crate::checkpoint::{CheckpointFile, signature_holds};
use crate::key::PublicKey;

/// What the auditor trusts.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Checkpoints must be signed by this key.
    pub key: Option<PublicKey>,
    /// The chain must extend this checkpoint (kept elsewhere).
    pub checkpoint: Option<CheckpointFile>,
}

/// How far the signatures vouch for the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticity {
    /// A checkpoint signed by a trusted key (or the trusted checkpoint)
    /// covers the chain through this record id.
    Established {
        /// The key id.
        key_id: String,
        /// The last record id a trusted signature covers.
        through: i64,
    },
    /// Nothing the auditor trusts was given, or nothing trusted matched.
    NotEstablished,
}

/// The outcome of a verification.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every problem, one line each (record problems name the record).
    pub problems: Vec<String>,
    /// What the chain check went through.
    pub counts: Counts,
    /// Checkpoints whose signature and head hold.
    pub good_checkpoints: usize,
    /// Session verdicts checked (their problems are in `problems`).
    pub verdicts: usize,
    /// Key ids that signed good checkpoints.
    pub keys: Vec<String>,
    /// The last record id a good checkpoint covers.
    pub signed_through: Option<i64>,
    /// The last record id the chain covers.
    pub chain_through: i64,
    /// Against the trust given.
    pub authenticity: Authenticity,
    /// Whether any trust was given.
    pub trust_given: bool,
    /// Admin events checked (`None`: not part of this verification).
    pub admin_events: Option<usize>,
    /// A bundle made before bundles carried session verdicts and admin
    /// events: neither was checked, and the verdict says so.
    pub without_verdicts_and_admin_events: bool,
}

impl Report {
    /// Whether everything holds.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds the admin event check's findings.
    pub fn add_admin_events(&mut self, check: crate::admin_events::AdminCheck) {
        self.problems.extend(check.problems);
        self.admin_events = Some(check.events);
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> String {
        let c = &self.counts;
        let admin = self.admin_events.map_or_else(String::new, |n| {
            format!(", {n} admin event{}", if n == 1 { "" } else { "s" })
        });
        let verdicts = if self.without_verdicts_and_admin_events {
            String::new()
        } else {
            format!(
                ", {} session verdict{}",
                self.verdicts,
                if self.verdicts == 1 { "" } else { "s" }
            )
        };
        let mut out = if self.ok() {
            format!(
                "OK: {} records in {} chain links verified ({} purged by retention, {} checkpoints{verdicts}{admin})",
                c.records + c.leaves,
                c.links,
                c.purged,
                self.good_checkpoints,
            )
        } else {
            format!(
                "FAILED: {} problem{} in {} records and {} chain links",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" },
                c.records + c.leaves,
                c.links
            )
        };
        match &self.authenticity {
            Authenticity::Established { key_id, through } => out.push_str(&format!(
                "; checkpoints signed by the trusted key {key_id} cover records through {through}"
            )),
            Authenticity::NotEstablished if self.trust_given => out.push_str(
                "; authenticity NOT established: no checkpoint signed by the trusted key matches the chain",
            ),
            Authenticity::NotEstablished => out.push_str(
                "; integrity only: authenticity NOT established (give --trusted-key or --trusted-checkpoint)",
            ),
        }
        if self.without_verdicts_and_admin_events {
            out.push_str(
                "; session verdicts and admin events not included (a bundle made before bundles carried them)",
            );
        }
        if let Some(through) = self.signed_through
            && self.chain_through > through
        {
            out.push_str(&format!(
                "; records after {through} are not covered by a checkpoint yet"
            ));
        }
        out
    }
}

/// Checks `checkpoints` against the chain `checker` holds, then finishes
/// the chain check.
pub fn verify(checker: Checker, checkpoints: &[Checkpoint], trust: &Trust) -> Report {
    let keys: Vec<PublicKey> = trust.key.into_iter().collect();
    verify_keys(checker, checkpoints, trust, &keys)
}

/// [`verify`] with the keys checkpoints must be signed by when a key is
/// trusted: the trusted key and the keys it introduced (key rotation).
fn verify_keys(
    checker: Checker,
    checkpoints: &[Checkpoint],
    trust: &Trust,
    trusted_keys: &[PublicKey],
) -> Report {
    let end = checker.end();
    let last_seq = end.next_seq - 1;
    let mut problems = Vec::new();
    let mut good = 0;
    let mut keys: Vec<String> = Vec::new();
    let mut signed_through = None;
    let mut authentic: Option<(String, i64)> = None;
    let trusted_key = trust.key.is_some();

    let check = |c: &Checkpoint, what: &str, problems: &mut Vec<String>| -> bool {
        if !signature_holds(c) {
            problems.push(format!(
                "{what} (link {}): its signature does not verify: replaced or forged",
                c.link_seq
            ));
            return false;
        }
        if trusted_key && !trusted_keys.iter().any(|k| k.0.as_slice() == c.public_key) {
            problems.push(format!(
                "{what} (link {}): signed by key {}, not the trusted key (foreign key)",
                c.link_seq, c.key_id
            ));
            return false;
        }
        match checker.head_of(c.link_seq) {
            Some(head) if head == c.head => true,
            Some(_) => {
                problems.push(format!(
                    "{what}: the chain's link {} is not the one signed: the chain was rewritten before record {}",
                    c.link_seq,
                    c.last_id + 1
                ));
                false
            }
            None if c.link_seq > last_seq => {
                problems.push(format!(
                    "truncated after {what}: it signed link {} (records through {}), the chain ends at link {last_seq} (record {})",
                    c.link_seq, c.last_id, end.last_id
                ));
                false
            }
            // Before a partial chain's first link (an export): nothing to
            // compare it with.
            None => false,
        }
    };

    for c in checkpoints {
        if check(c, &format!("checkpoint {}", c.id), &mut problems) {
            good += 1;
            if !keys.contains(&c.key_id) {
                keys.push(c.key_id.clone());
            }
            signed_through = signed_through.max(Some(c.last_id));
            if trusted_key && authentic.as_ref().is_none_or(|(_, t)| c.last_id > *t) {
                authentic = Some((c.key_id.clone(), c.last_id));
            }
        }
    }
    if let Some(file) = &trust.checkpoint {
        match file.to_checkpoint() {
            Err(e) => problems.push(format!("the trusted checkpoint: {e}")),
            Ok(c) => {
                if check(&c, "the trusted checkpoint", &mut problems)
                    && authentic.as_ref().is_none_or(|(_, t)| c.last_id > *t)
                {
                    authentic = Some((c.key_id.clone(), c.last_id));
                }
            }
        }
    }
    let (chain_problems, counts) = checker.finish();
    problems.extend(chain_problems.iter().map(ToString::to_string));
    Report {
        problems,
        counts,
        good_checkpoints: good,
        verdicts: 0,
        keys,
        signed_through,
        chain_through: end.last_id,
        authenticity: match authentic {
            Some((key_id, through)) => Authenticity::Established { key_id, through },
            None => Authenticity::NotEstablished,
        },
        trust_given: trust.key.is_some() || trust.checkpoint.is_some(),
        admin_events: None,
        without_verdicts_and_admin_events: false,
    }
}

/// Verifies an export bundle as a store is verified: its chain, its
/// checkpoints, its session verdicts and its admin event log (which
/// introduces rotated keys). A bundle made before bundles carried verdicts
/// and admin events is checked without them, and the verdict says so.
pub fn verify_bundle(bundle: crate::bundle::Bundle, trust: &Trust) -> Report {
    match bundle.evidence {
        Some((verdicts, events)) => verify_with_admin_events(
            bundle.checker,
            &bundle.checkpoints,
            &events,
            &verdicts,
            trust,
        ),
        None => {
            let mut report = verify(bundle.checker, &bundle.checkpoints, trust);
            report.without_verdicts_and_admin_events = true;
            report
        }
    }
}

/// Verifies a store (offline: a data dir's database).
pub async fn verify_store(
    store: &dyn warden_store::Store,
    trust: &Trust,
) -> Result<Report, crate::EvidenceError> {
    // Checkpoints first: one signed while the chain is read is then not
    // taken for a checkpoint of a truncated chain.
    let checkpoints = all_checkpoints(store).await?;
    let verdicts = all_verdicts(store).await?;
    let checker = warden_store::chain::check::check_store(store).await?;
    let events = crate::admin_events::all(store).await?;
    Ok(verify_with_admin_events(
        checker,
        &checkpoints,
        &events,
        &verdicts,
        trust,
    ))
}

/// Every stored session verdict, in id order.
pub async fn all_verdicts(
    store: &dyn warden_store::Store,
) -> Result<Vec<warden_store::verdict::SessionVerdict>, crate::EvidenceError> {
    let mut out: Vec<warden_store::verdict::SessionVerdict> = Vec::new();
    loop {
        let after = out.last().map_or(0, |v| v.id);
        let page = store.verdicts_after(after, 10_000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// [`verify`], and the admin event log and the session verdicts checked
/// against the same trust (a store's or a server's whole evidence).
pub fn verify_with_admin_events(
    checker: Checker,
    checkpoints: &[Checkpoint],
    events: &[warden_store::AdminEvent],
    verdicts: &[warden_store::verdict::SessionVerdict],
    trust: &Trust,
) -> Report {
    let trusted = trusted_keys(trust);
    let found =
        crate::admin_events::check(events, (!trusted.is_empty()).then_some(trusted.as_slice()));
    // The trusted key, and every key introduced by a key trusted before it.
    let mut keys: Vec<PublicKey> = trust.key.into_iter().collect();
    for k in &found.introduced {
        if trust.key.is_some() && !keys.contains(k) {
            keys.push(*k);
        }
    }
    let verdict_problems =
        crate::verdict::check_all(verdicts, &checker, trust.key.is_some().then_some(&keys[..]));
    let mut report = verify_keys(checker, checkpoints, trust, &keys);
    report.add_admin_events(found);
    report.verdicts = verdicts.len();
    report.problems.extend(verdict_problems);
    report
}

/// The keys the trust given vouches for: the trusted key, and the key of
/// the trusted checkpoint.
fn trusted_keys(trust: &Trust) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = trust.key.into_iter().collect();
    if let Some(file) = &trust.checkpoint
        && let Ok(c) = file.to_checkpoint()
        && let Ok(k) = PublicKey::from_bytes(&c.public_key)
        && !keys.contains(&k)
    {
        keys.push(k);
    }
    keys
}

/// Every stored checkpoint.
pub async fn all_checkpoints(
    store: &dyn warden_store::Store,
) -> Result<Vec<Checkpoint>, crate::EvidenceError> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |c: &Checkpoint| c.id);
        let page = store.checkpoints(after, 10_000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}
