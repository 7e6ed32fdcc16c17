//! Agent API conventions: the version both sides speak and the metadata
//! every call carries.

use std::fmt;
use std::str::FromStr;

/// Metadata key carrying the agent API version of the caller.
pub const API_VERSION_HEADER: &str = "x-warden-agent-api-version";
/// Metadata key carrying `Bearer <agent token>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Most records (valid or not, over all batches) one ReportBoundaryLogs call
/// may carry; the control plane refuses more with INVALID_ARGUMENT.
pub const MAX_RECORDS_PER_CALL: usize = 1000;
/// Largest encoded gRPC message the control plane accepts (16 MiB); more is
/// refused with OUT_OF_RANGE before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A `major.minor` agent API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
}

impl ApiVersion {
    /// What this build speaks; 2.7 is the first version with boundary logs.
    pub const CURRENT: ApiVersion = ApiVersion { major: 2, minor: 7 };
    /// The oldest version a control plane accepts.
    pub const MINIMUM: ApiVersion = ApiVersion { major: 2, minor: 7 };

    /// Whether a control plane of this build serves an agent speaking `self`:
    /// exactly 2.7. Like the reference (Coder's `apiversion`) it refuses a
    /// newer minor than its own, and older minors lack `ReportBoundaryLogs`
    /// (see `docs/boundary-wire.md`, "Agent API version negotiation").
    pub fn is_supported(self) -> bool {
        self == Self::CURRENT
    }

    /// Why a control plane of this build refuses an agent speaking `self`
    /// (`None` when it serves it), naming both versions; the reference's
    /// words for a newer version.
    pub fn refusal(self) -> Option<String> {
        let ours = Self::CURRENT;
        if self.major > ours.major {
            Some(format!(
                "server is at version {ours}, behind requested major version {self}"
            ))
        } else if self.major < ours.major {
            Some(format!(
                "requested major version {} ({self}) is no longer supported by this server, which is at version {ours}",
                self.major
            ))
        } else if self.minor > ours.minor {
            Some(format!(
                "server is at version {ours}, behind requested minor version {self}"
            ))
        } else if self.minor < ours.minor {
            Some(format!(
                "requested version {self} is older than {ours}, the first with ReportBoundaryLogs; server is at version {ours}"
            ))
        } else {
            None
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An API version string that is not `MAJOR.MINOR`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("agent api version {0:?} is not MAJOR.MINOR")]
pub struct BadApiVersion(pub String);

impl FromStr for ApiVersion {
    type Err = BadApiVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadApiVersion(s.to_owned());
        let (major, minor) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(ApiVersion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// The token of an `authorization: Bearer <token>` value, if it is one.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_two_seven_is_supported() {
        for (text, ok) in [
            ("2.7", true),
            ("2.8", false),
            ("2.10", false),
            ("2.6", false),
            ("3.0", false),
            ("1.9", false),
        ] {
            let version: ApiVersion = text.parse().unwrap();
            assert_eq!(version.is_supported(), ok, "{text}");
            assert_eq!(version.to_string(), text);
        }
        assert!("2".parse::<ApiVersion>().is_err());
        assert!("two.seven".parse::<ApiVersion>().is_err());
    }

    #[test]
    fn bearer_tokens_are_extracted() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
