//! One rule of the policy language (docs/boundary-rules.md): whitespace-
//! separated `key=value` pairs with the keys `domain`, `method`, `path` and
//! (extension) `port`; a key left out matches everything.
//!
//! Parsing keeps the rule's original text (what travels as `matched_rule`)
//! and each pair's value as written (what the policy digest is computed
//! over), beside the compiled patterns the matcher uses.

mod domain;
mod path;

use std::fmt;

pub use domain::DomainPattern;
pub use path::PathPattern;

use crate::target::Target;

/// The keys a rule may use, in the order the policy text sorts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `domain=`: the request's host.
    Domain,
    /// `method=`: the HTTP method.
    Method,
    /// `path=`: the URL path.
    Path,
    /// `port=` (extension): the port the request goes to.
    Port,
}

impl Key {
    fn parse(text: &str) -> Option<Key> {
        match text {
            "domain" => Some(Key::Domain),
            "method" => Some(Key::Method),
            "path" => Some(Key::Path),
            "port" => Some(Key::Port),
            _ => None,
        }
    }

    /// The key as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::Domain => "domain",
            Key::Method => "method",
            Key::Path => "path",
            Key::Port => "port",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a rule's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Nothing but whitespace.
    #[error("a rule needs at least one key=value pair")]
    Empty,
    /// A word without `=`.
    #[error("{0:?} is not a key=value pair")]
    NotAPair(String),
    /// A key other than domain, method, path, port.
    #[error("unknown key {0:?} (keys: domain, method, path, port)")]
    UnknownKey(String),
    /// The same key twice in one rule.
    #[error("key {0} given twice")]
    DuplicateKey(Key),
    /// `key=` with nothing after it.
    #[error("{0}= needs a value")]
    EmptyValue(Key),
    /// A bad `domain=` value.
    #[error("domain {value:?}: {problem}")]
    Domain {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A bad `method=` value.
    #[error("method {0:?} is not an HTTP method token")]
    Method(String),
    /// A bad `path=` value.
    #[error("path {value:?}: {problem}")]
    Path {
        /// The pattern as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A bad `port=` value.
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
}

/// A rule that does not parse: the rule's text and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad rule {rule:?}: {problem}")]
pub struct RuleError {
    /// The rule as given.
    pub rule: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// A parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    text: String,
    /// Every pair as written, sorted by key (the normalised form).
    pairs: Vec<(Key, String)>,
    domain: Option<DomainPattern>,
    /// `None`: any method (no key, or a `*` in the list).
    methods: Option<Vec<String>>,
    paths: Option<Vec<PathPattern>>,
    ports: Option<Vec<u16>>,
}

impl Rule {
    /// Parses a rule's text.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        Rule::parse_inner(text).map_err(|problem| RuleError {
            rule: text.to_owned(),
            problem,
        })
    }

    fn parse_inner(text: &str) -> Result<Rule, Problem> {
        let mut rule = Rule {
            text: text.to_owned(),
            pairs: Vec::new(),
            domain: None,
            methods: None,
            paths: None,
            ports: None,
        };
        for word in text.split_ascii_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| Problem::NotAPair(word.to_owned()))?;
            let key = Key::parse(key).ok_or_else(|| Problem::UnknownKey(key.to_owned()))?;
            if rule.pairs.iter().any(|(k, _)| *k == key) {
                return Err(Problem::DuplicateKey(key));
            }
            if value.is_empty() {
                return Err(Problem::EmptyValue(key));
            }
            match key {
                Key::Domain => {
                    rule.domain =
                        Some(
                            DomainPattern::parse(value).map_err(|problem| Problem::Domain {
                                value: value.to_owned(),
                                problem,
                            })?,
                        )
                }
                Key::Method => rule.methods = parse_methods(value)?,
                Key::Path => rule.paths = Some(parse_paths(value)?),
                Key::Port => rule.ports = Some(parse_ports(value)?),
            }
            rule.pairs.push((key, value.to_owned()));
        }
        if rule.pairs.is_empty() {
            return Err(Problem::Empty);
        }
        rule.pairs.sort_by_key(|(key, _)| *key);
        Ok(rule)
    }

    /// The rule exactly as given (what a record's `matched_rule` carries).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The normalised form: the pairs sorted by key, values as written,
    /// separated by one space.
    pub fn normalised(&self) -> String {
        let pairs: Vec<String> = self
            .pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        pairs.join(" ")
    }

    /// The domain pattern, if the rule has one.
    pub fn domain(&self) -> Option<&DomainPattern> {
        self.domain.as_ref()
    }

    /// Whether the rule matches a request for `target` with `method`.
    pub fn matches(&self, method: &str, target: &Target) -> bool {
        self.matches_method(method) && self.matches_connection(target) && self.matches_path(target)
    }

    /// Whether the rule can match some request to `target`'s host and port
    /// whatever the method and path: what a CONNECT tunnel that is not
    /// intercepted is decided on (the requests inside are not seen).
    pub fn matches_connection(&self, target: &Target) -> bool {
        let domain = self
            .domain
            .as_ref()
            .is_none_or(|pattern| pattern.matches(target.host()));
        let port = self
            .ports
            .as_ref()
            .is_none_or(|ports| ports.contains(&target.port()));
        domain && port
    }

    /// Whether the rule restricts methods or paths: what a tunnel that is
    /// not intercepted cannot check.
    pub fn restricts_requests(&self) -> bool {
        self.methods.is_some() || self.paths.is_some()
    }

    fn matches_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    }

    fn matches_path(&self, target: &Target) -> bool {
        self.paths
            .as_ref()
            .is_none_or(|paths| paths.iter().any(|p| p.matches(target.path())))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `method=`: a comma list of RFC 7230 tokens; `*` anywhere in it means any.
fn parse_methods(value: &str) -> Result<Option<Vec<String>>, Problem> {
    let mut methods = Vec::new();
    let mut any = false;
    for method in value.split(',') {
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return Err(Problem::Method(method.to_owned()));
        }
        any |= method == "*";
        methods.push(method.to_owned());
    }
    Ok(if any { None } else { Some(methods) })
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn parse_paths(value: &str) -> Result<Vec<PathPattern>, Problem> {
    value
        .split(',')
        .map(|pattern| {
            PathPattern::parse(pattern).map_err(|problem| Problem::Path {
                value: pattern.to_owned(),
                problem,
            })
        })
        .collect()
}

fn parse_ports(value: &str) -> Result<Vec<u16>, Problem> {
    value
        .split(',')
        .map(|port| {
            // Digits only: `+80` and ` 80` parse as numbers but are typos.
            port.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| port.parse::<u16>().ok())
                .flatten()
                .filter(|&p| p != 0)
                .ok_or_else(|| Problem::Port(port.to_owned()))
        })
        .collect()
}
