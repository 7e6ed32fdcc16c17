//! Checking the admin event log (see `warden_store::access`): every event's
//! signature, its place in the chain (sequence numbers from 1 without a
//! gap, each event's `prev` the hash of the one before, its `hash`
//! recomputed), and, when a key is trusted, that the trusted key signed it.
//! Problems name the event (its number, action and target), as record
//! problems name the record.
//!
//! Key rotation: a `key.rotate` event names a new key in its detail
//! (`new_public_key`) and is signed by the key before it. When keys are
//! trusted, such an event signed by a trusted key makes the new key trusted
//! from then on ([`AdminCheck::introduced`]); a key nobody trusted
//! introduced stays foreign.

use warden_store::AdminEvent;
use warden_store::access::{ADMIN_CHAIN_START, admin_chain_hash};

use crate::key::PublicKey;

/// What the admin event check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminCheck {
    /// One line per problem.
    pub problems: Vec<String>,
    /// Events checked.
    pub events: usize,
    /// Keys introduced by `key.rotate` events, in order: with trust given,
    /// only those a trusted key introduced; without, every one.
    pub introduced: Vec<PublicKey>,
}

/// The action of a key introduction.
pub const KEY_ROTATE: &str = "key.rotate";

/// The key a `key.rotate` event introduces.
pub fn introduced_key(e: &AdminEvent) -> Option<PublicKey> {
    if e.event.action != KEY_ROTATE {
        return None;
    }
    let detail: serde_json::Value = serde_json::from_str(&e.event.detail).ok()?;
    PublicKey::parse(detail.get("new_public_key")?.as_str()?).ok()
}

/// Checks `events` (as stored, by seq) against the chain rules and, when
/// `trusted` is given, against those keys.
pub fn check(events: &[AdminEvent], trusted: Option<&[PublicKey]>) -> AdminCheck {
    let mut problems = Vec::new();
    let mut introduced = Vec::new();
    let mut keys: Option<Vec<PublicKey>> = trusted.map(<[PublicKey]>::to_vec);
    let mut expected_seq = 1;
    let mut prev_hash = ADMIN_CHAIN_START;
    for e in events {
        let name = format!(
            "admin event {} ({} {:?})",
            e.seq, e.event.action, e.event.target
        );
        let mut gap = false;
        if e.seq > expected_seq {
            let missing = if e.seq - expected_seq == 1 {
                format!("admin event {expected_seq}")
            } else {
                format!("admin events {expected_seq}-{}", e.seq - 1)
            };
            problems.push(format!(
                "{missing}: missing: deleted from the admin event chain"
            ));
            gap = true;
        } else if e.seq < expected_seq {
            problems.push(format!(
                "{name}: out of order: its number repeats or goes back"
            ));
        }
        let signed = PublicKey::from_bytes(&e.event.public_key)
            .is_ok_and(|k| k.verifies(&e.event.signed_form(), &e.event.signature));
        if !signed {
            problems.push(format!(
                "{name}: its signature does not verify: modified or forged"
            ));
        } else if let Some(keys) = &keys
            && !keys.iter().any(|k| k.0.as_slice() == e.event.public_key)
        {
            problems.push(format!(
                "{name}: signed by key {}, not a trusted key (foreign key)",
                e.event.key_id
            ));
        } else if let Some(new) = introduced_key(e) {
            // Signed, and by a trusted key when keys are trusted.
            if let Some(keys) = &mut keys
                && !keys.contains(&new)
            {
                keys.push(new);
            }
            introduced.push(new);
        }
        if admin_chain_hash(&e.prev, e.seq, &e.event) != e.hash {
            problems.push(format!(
                "{name}: modified: its content is not what the admin event chain committed"
            ));
        } else if e.prev != prev_hash && !gap {
            problems.push(format!(
                "{name}: reordered: it does not follow the event before it in the chain"
            ));
        }
        expected_seq = expected_seq.max(e.seq + 1);
        prev_hash = e.hash;
    }
    AdminCheck {
        problems,
        events: events.len(),
        introduced,
    }
}

/// Every admin event of a store, by seq.
pub async fn all(store: &dyn warden_store::Store) -> Result<Vec<AdminEvent>, crate::EvidenceError> {
    let mut out: Vec<AdminEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = store.admin_events(after, 10_000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use uuid::Uuid;
    use warden_store::NewAdminEvent;

    use super::*;
    use crate::key::SigningKey;

    fn chain(key: &SigningKey, n: usize) -> Vec<AdminEvent> {
        let mut prev = ADMIN_CHAIN_START;
        (1..=n as i64)
            .map(|seq| {
                let public = key.public_key();
                let mut event = NewAdminEvent {
                    id: Uuid::now_v7(),
                    at: Timestamp::from_second(1_700_000_000 + seq).unwrap(),
                    actor_id: None,
                    actor_name: "admin".into(),
                    actor_role: "admin".into(),
                    action: "workspace.create".into(),
                    target: format!("w{seq}"),
                    detail: "{}".into(),
                    key_id: public.key_id(),
                    public_key: public.0.to_vec(),
                    signature: Vec::new(),
                };
                event.signature = key.sign(&event.signed_form());
                let hash = admin_chain_hash(&prev, seq, &event);
                let e = AdminEvent {
                    seq,
                    event,
                    prev,
                    hash,
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn key() -> SigningKey {
        SigningKey::generate().unwrap().0
    }

    #[test]
    fn an_intact_chain_holds_and_names_no_problem() {
        let key = key();
        let events = chain(&key, 4);
        assert_eq!(
            check(&events, Some(&[key.public_key()])),
            AdminCheck {
                problems: vec![],
                events: 4,
                introduced: vec![],
            }
        );
        assert!(check(&[], None).problems.is_empty());
    }

    #[test]
    fn a_changed_event_is_named() {
        let mut events = chain(&key(), 3);
        events[1].event.target = "prod".into();
        let found = check(&events, None).problems;
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with(
            "admin event 2 (workspace.create \"prod\"): its signature does not verify"
        ));
        assert!(found[1].contains("admin event 2") && found[1].contains("modified"));
    }

    #[test]
    fn a_deleted_event_is_named_missing() {
        let mut events = chain(&key(), 4);
        events.remove(1);
        assert_eq!(
            check(&events, None).problems,
            ["admin event 2: missing: deleted from the admin event chain"]
        );
        let mut events = chain(&key(), 5);
        events.drain(1..3);
        assert_eq!(
            check(&events, None).problems,
            ["admin events 2-3: missing: deleted from the admin event chain"]
        );
        // The first one too.
        let mut events = chain(&key(), 2);
        events.remove(0);
        assert_eq!(
            check(&events, None).problems,
            ["admin event 1: missing: deleted from the admin event chain"]
        );
    }

    #[test]
    fn swapped_events_are_reordered() {
        let mut events = chain(&key(), 3);
        // Swap the content of 2 and 3, numbers kept (what editing two rows
        // does).
        let (a, b) = (events[1].clone(), events[2].clone());
        events[1] = AdminEvent { seq: 2, ..b };
        events[2] = AdminEvent { seq: 3, ..a };
        let found = check(&events, None).problems;
        assert!(!found.is_empty());
        assert!(
            found.iter().any(|p| p.starts_with("admin event 2")),
            "{found:?}"
        );
    }

    #[test]
    fn an_event_forged_with_another_key_is_foreign_to_the_trusted_key() {
        let trusted = key();
        let other = key();
        let mut events = chain(&trusted, 2);
        let forged = chain(&other, 2);
        // A consistent chain, re-signed and re-hashed by someone else.
        events[1] = forged[1].clone();
        events[1].prev = events[0].hash;
        events[1].hash = admin_chain_hash(&events[1].prev, 2, &events[1].event);
        assert!(check(&events, None).problems.is_empty());
        assert_eq!(
            check(&events, Some(&[trusted.public_key()])).problems,
            [format!(
                "admin event 2 (workspace.create \"w2\"): signed by key {}, not a trusted key (foreign key)",
                other.public_key().key_id()
            )]
        );
    }
}
