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
//! - `proxy` (coming with the proxy itself): the explicit HTTP proxy.
#![warn(missing_docs, unreachable_pub)]

pub mod address;
pub mod config_file;
pub mod policy;
pub mod rules;
pub mod target;

pub use policy::{Denial, Policy, PolicyError, PolicySources, Verdict};
pub use rules::{Rule, RuleError};
pub use target::{Host, Target, TargetError};
