//! The URL a request is decided on, parsed once into its canonical form.
//!
//! Parsing follows the WHATWG URL standard (the `url` crate), which is also
//! what the proxy forwards: host names lower-cased and IDNA-encoded, IPv4
//! numbers in every legal spelling (`0x7f.1`, `2130706433`) turned into
//! dotted form, dot segments of the path resolved. Deciding on one form and
//! forwarding another would let a request be allowed as one thing and
//! reach something else; here the two are the same by construction.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use url::Url;

/// The host of a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, lower-case ASCII.
    Name(String),
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal.
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    /// The host as it appears in a URL (`[...]` around IPv6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(address) => write!(f, "{address}"),
            Host::Ipv6(address) => write!(f, "[{address}]"),
        }
    }
}

impl Host {
    /// Parses a host as it appears in a URL or a CONNECT target (with
    /// brackets around IPv6), canonically.
    pub fn parse(text: &str) -> Result<Host, TargetError> {
        match url::Host::parse(text) {
            Ok(url::Host::Domain(name)) => Ok(Host::Name(name)),
            Ok(url::Host::Ipv4(address)) => Ok(Host::Ipv4(address)),
            Ok(url::Host::Ipv6(address)) => Ok(Host::Ipv6(address)),
            Err(error) => Err(TargetError::Host {
                host: text.to_owned(),
                reason: error.to_string(),
            }),
        }
    }
}

/// Why a URL cannot be decided on (such a request matches no rule).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a URL.
    #[error("{url:?} is not a URL: {reason}")]
    Url {
        /// The text given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A scheme other than http and https.
    #[error("{url:?}: only http and https URLs are proxied")]
    Scheme {
        /// The text given.
        url: String,
    },
    /// A URL without a host.
    #[error("{url:?} has no host")]
    NoHost {
        /// The text given.
        url: String,
    },
    /// A host that does not parse.
    #[error("{host:?} is not a host: {reason}")]
    Host {
        /// The text given.
        host: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// A request's URL, canonical, without user info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    url: Url,
    host: Host,
    port: u16,
}

impl Target {
    /// Parses a URL; one without `://` gets `https://` in front.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let parsed = if text.contains("://") {
            Url::parse(text)
        } else {
            Url::parse(&format!("https://{text}"))
        };
        let url = parsed.map_err(|error| TargetError::Url {
            url: text.to_owned(),
            reason: error.to_string(),
        })?;
        Target::from_url(url, text)
    }

    /// `https://` + `authority` + `target` (a request inside an intercepted
    /// tunnel: the tunnel's host and port, the request's path and query).
    pub fn https(authority: &str, request_target: &str) -> Result<Target, TargetError> {
        let text = format!("https://{authority}{request_target}");
        let url = Url::parse(&text).map_err(|error| TargetError::Url {
            url: text.clone(),
            reason: error.to_string(),
        })?;
        Target::from_url(url, &text)
    }

    fn from_url(mut url: Url, text: &str) -> Result<Target, TargetError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Scheme {
                url: text.to_owned(),
            });
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => Host::Name(name.to_owned()),
            Some(url::Host::Ipv4(address)) => Host::Ipv4(address),
            Some(url::Host::Ipv6(address)) => Host::Ipv6(address),
            None => {
                return Err(TargetError::NoHost {
                    url: text.to_owned(),
                });
            }
        };
        // Credentials in a URL are secrets: they never reach a record or a
        // log line. (Setting them on an http(s) URL with a host cannot fail.)
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(Target { url, host, port })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path as sent (percent escapes kept), starting with `/`.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// Path and query: the request target to send to the origin.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(query) => format!("{}?{query}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// `host:port` to connect to (brackets around IPv6).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The whole URL, canonical (what records carry).
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}
