//! `warden boundary`: the egress proxy that fences in a sandboxed process.
//!
//! It decides every HTTP request the process makes against a policy of
//! allow and deny rules (the rule language of the reference sandbox, see
//! `docs/boundary-rules.md`), lets through only what is allowed, and turns
//! every decision into an audit record that `warden-client` hands to the
//! workspace agent (one session per run, sequence numbers from 0, the
//! policy digest on every frame).
//!
//! - [`rules`], [`policy`], [`target`], [`address`], [`config_file`]: the
//!   policy language, the decision and the policy digest (pure, no I/O
//!   beyond reading the config file).
//! - [`proxy`]: the explicit HTTP proxy (plain HTTP, CONNECT tunnels, TLS
//!   interception), [`jail`]: the network namespace COMMAND runs in,
//!   [`run`]: one run of the command, [`upstream`]: connections to origins under the policy,
//!   [`tls`]: the interception CA, [`audit`]: records and log lines.
#![warn(missing_docs, unreachable_pub)]

pub mod address;
pub mod audit;
pub mod config_file;
pub mod jail;
pub mod policy;
pub mod proxy;
pub mod rules;
pub mod run;
pub mod target;
pub mod tls;
pub mod upstream;

pub use policy::{Denial, Policy, PolicyError, PolicySources, Verdict};
pub use rules::{Rule, RuleError};
pub use target::{Host, Target, TargetError};
