//! The policy: deny rules then allow rules, in evaluation order, its
//! normalised text and digest, and the decision for a request.
//!
//! Decision (docs/boundary-rules.md): a matching deny rule denies; else the
//! first matching allow rule allows; else deny. On top of the rules, a
//! request whose host is a link-local or metadata address (see [`address`])
//! is denied unless an allow rule names that host exactly; the proxy applies
//! the same test to every address a name resolves to.
//!
//! [`address`]: crate::address

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::address;
use crate::config_file::{ConfigFile, ConfigFileError};
use crate::rules::{Rule, RuleError};
use crate::target::{Host, Target, TargetError};

/// Where a policy's rules come from, before parsing.
#[derive(Clone, Debug, Default)]
pub struct PolicySources {
    /// `--config FILE`.
    pub config: Option<std::path::PathBuf>,
    /// `--allow`, in order.
    pub allow: Vec<String>,
    /// `--deny`, in order.
    pub deny: Vec<String>,
}

/// Why a policy cannot be built: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A rule that does not parse.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A rule from the config file that does not parse.
    #[error("{path}: {error}", path = path.display())]
    FileRule {
        /// The config file.
        path: std::path::PathBuf,
        /// The rule and its problem.
        #[source]
        error: RuleError,
    },
    /// The config file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

/// A parsed policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    deny: Vec<Arc<Rule>>,
    allow: Vec<Arc<Rule>>,
    /// Keys of the config file that were ignored (for a warning).
    ignored_keys: Vec<String>,
}

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule.
    Allow(Arc<Rule>),
    /// Denied, and why.
    Deny(Denial),
}

impl Verdict {
    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No allow rule matched (the default).
    NoRule,
    /// A deny rule matched.
    Rule(Arc<Rule>),
    /// The host is, or resolved only to, a link-local or metadata address
    /// that no allow rule names.
    Address(IpAddr),
    /// The CONNECT target, the TLS server name and the Host header disagree.
    Spoofed(String),
    /// The URL cannot be decided on.
    BadUrl(String),
}

impl Denial {
    /// What a denied record carries as its rule: the deny rule's text, a
    /// `reason: ...` text for a denial that is not a rule's, nothing for the
    /// default deny (as the reference implementation sends it). A rule has
    /// `key=value` words only, so a reason can never pass for a rule.
    pub fn recorded_rule(&self) -> Option<String> {
        match self {
            Denial::NoRule => None,
            Denial::Rule(rule) => Some(rule.text().to_owned()),
            other => Some(format!("reason: {other}")),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NoRule => f.write_str("no allow rule matches"),
            Denial::Rule(rule) => write!(f, "deny rule {:?} matches", rule.text()),
            Denial::Address(address) => write!(
                f,
                "{address} is a link-local or metadata address and no allow rule names this host"
            ),
            Denial::Spoofed(why) => f.write_str(why),
            Denial::BadUrl(why) => f.write_str(why),
        }
    }
}

impl Policy {
    /// Builds a policy from rule texts, in evaluation order within each list.
    pub fn from_rules<S: AsRef<str>>(deny: &[S], allow: &[S]) -> Result<Policy, RuleError> {
        let parse = |texts: &[S]| {
            texts
                .iter()
                .map(|t| Rule::parse(t.as_ref()).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Policy {
            deny: parse(deny)?,
            allow: parse(allow)?,
            ignored_keys: Vec::new(),
        })
    }

    /// Reads the config file (if any) and the flags: the file's lists first,
    /// then the flags in the order given.
    pub fn load(sources: &PolicySources) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        if let Some(path) = &sources.config {
            let file = ConfigFile::read(path)?;
            let from_file = |texts: &[String]| -> Result<Vec<Arc<Rule>>, PolicyError> {
                texts
                    .iter()
                    .map(|t| {
                        Rule::parse(t)
                            .map(Arc::new)
                            .map_err(|error| PolicyError::FileRule {
                                path: path.clone(),
                                error,
                            })
                    })
                    .collect()
            };
            policy.deny = from_file(&file.denylist)?;
            policy.allow = from_file(&file.allowlist)?;
            policy.ignored_keys = file.ignored_keys;
        }
        let flags = Policy::from_rules(&sources.deny, &sources.allow)?;
        policy.deny.extend(flags.deny);
        policy.allow.extend(flags.allow);
        Ok(policy)
    }

    /// Keys of the config file this policy ignored (the reference's other
    /// settings, or typos), for a warning.
    pub fn ignored_config_keys(&self) -> &[String] {
        &self.ignored_keys
    }

    /// Deny rules, in evaluation order.
    pub fn deny_rules(&self) -> &[Arc<Rule>] {
        &self.deny
    }

    /// Allow rules, in evaluation order.
    pub fn allow_rules(&self) -> &[Arc<Rule>] {
        &self.allow
    }

    /// The normalised text: one line per rule, `deny ` or `allow ` and the
    /// rule's pairs sorted by key, in evaluation order, joined by `\n`.
    pub fn text(&self) -> String {
        let deny = self.deny.iter().map(|r| format!("deny {}", r.normalised()));
        let allow = self
            .allow
            .iter()
            .map(|r| format!("allow {}", r.normalised()));
        deny.chain(allow).collect::<Vec<_>>().join("\n")
    }

    /// SHA-256 of [`Policy::text`], lower-case hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.text().as_bytes()))
    }

    /// Decides a request by method and URL text (what `warden boundary
    /// check` does); a URL that does not parse is denied.
    pub fn decide_url(&self, method: &str, url: &str) -> Verdict {
        match Target::parse(url) {
            Ok(target) => self.decide(method, &target),
            Err(error) => Verdict::Deny(Denial::BadUrl(error.to_string())),
        }
    }

    /// Decides a request.
    pub fn decide(&self, method: &str, target: &Target) -> Verdict {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(method, target)) {
            return Verdict::Deny(Denial::Rule(rule.clone()));
        }
        match self.allow.iter().find(|r| r.matches(method, target)) {
            Some(rule) => self.check_literal_address(target, rule),
            None => Verdict::Deny(Denial::NoRule),
        }
    }

    /// Decides a CONNECT tunnel on its host and port. Without interception
    /// the requests inside are never seen, so a deny rule that matches the
    /// host denies the whole tunnel even if it names methods or paths, and
    /// an allow rule admits it whatever methods or paths it names. With
    /// interception each request is decided later; the tunnel is refused
    /// only when no request inside could be allowed.
    pub fn decide_tunnel(&self, target: &Target, intercepting: bool) -> Verdict {
        let denies = |r: &&Arc<Rule>| {
            r.matches_connection(target) && (!intercepting || !r.restricts_requests())
        };
        if let Some(rule) = self.deny.iter().find(denies) {
            return Verdict::Deny(Denial::Rule(rule.clone()));
        }
        match self.allow.iter().find(|r| r.matches_connection(target)) {
            Some(rule) => self.check_literal_address(target, rule),
            None => Verdict::Deny(Denial::NoRule),
        }
    }

    /// Whether some rule restricts methods or paths (which tunnels without
    /// interception cannot enforce).
    pub fn restricts_requests(&self) -> bool {
        self.deny
            .iter()
            .chain(&self.allow)
            .any(|r| r.restricts_requests())
    }

    /// Whether connecting to `address` for `host` is admitted: always,
    /// unless the address is link-local or metadata, which needs an allow
    /// rule naming `host` exactly (no `*`).
    pub fn admits_address(&self, host: &Host, address: IpAddr) -> bool {
        !address::is_link_local_or_metadata(address) || self.names_exactly(host)
    }

    fn names_exactly(&self, host: &Host) -> bool {
        self.allow
            .iter()
            .filter_map(|r| r.domain())
            .any(|d| d.is_exact() && d.matches(host))
    }

    fn check_literal_address(&self, target: &Target, rule: &Arc<Rule>) -> Verdict {
        let literal = match target.host() {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Name(_) => None,
        };
        match literal {
            Some(address) if !self.admits_address(target.host(), address) => {
                Verdict::Deny(Denial::Address(address))
            }
            _ => Verdict::Allow(rule.clone()),
        }
    }
}

impl From<TargetError> for Denial {
    fn from(error: TargetError) -> Denial {
        Denial::BadUrl(error.to_string())
    }
}
