//! `domain=` patterns: dot-separated labels compared from the right, a
//! leading `*` for one or more labels, any other `*` for exactly one; host
//! names compare case-insensitively (the one deliberate difference from the
//! reference implementation); an IPv6 literal in brackets (extension)
//! matches that address only.

use std::net::Ipv6Addr;

use crate::target::Host;

/// One label of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    Any,
    /// Lower-cased.
    Exact(String),
}

/// A compiled `domain=` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainPattern(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A standalone `*`: any host.
    AnyHost,
    /// Labels, left to right as written.
    Labels(Vec<Label>),
    /// `[v6 address]`.
    Ipv6(Ipv6Addr),
}

impl DomainPattern {
    pub(crate) fn parse(value: &str) -> Result<DomainPattern, String> {
        if let Some(inner) = value.strip_prefix('[') {
            let address = inner
                .strip_suffix(']')
                .ok_or("an IPv6 literal must end with ]")?;
            return address
                .parse()
                .map(|a| DomainPattern(Kind::Ipv6(a)))
                .map_err(|_| format!("{address:?} is not an IPv6 address"));
        }
        if value == "*" {
            return Ok(DomainPattern(Kind::AnyHost));
        }
        let labels = value
            .split('.')
            .map(parse_label)
            .collect::<Result<Vec<_>, _>>()?;
        if labels.last() == Some(&Label::Any) {
            return Err("a domain pattern may not end with *".into());
        }
        Ok(DomainPattern(Kind::Labels(labels)))
    }

    /// Whether the pattern names one host (no `*`): the only kind of rule
    /// that admits a link-local or metadata address.
    pub fn is_exact(&self) -> bool {
        match &self.0 {
            Kind::AnyHost => false,
            Kind::Labels(labels) => labels.iter().all(|l| *l != Label::Any),
            Kind::Ipv6(_) => true,
        }
    }

    /// Whether `host` matches.
    pub fn matches(&self, host: &Host) -> bool {
        match (&self.0, host) {
            (Kind::AnyHost, _) => true,
            (Kind::Ipv6(pattern), Host::Ipv6(address)) => pattern == address,
            (Kind::Ipv6(_), _) | (Kind::Labels(_), Host::Ipv6(_)) => false,
            (Kind::Labels(labels), Host::Ipv4(address)) => {
                match_labels(labels, &address.to_string())
            }
            (Kind::Labels(labels), Host::Name(name)) => match_labels(labels, name),
        }
    }
}

fn parse_label(label: &str) -> Result<Label, String> {
    if label == "*" {
        return Ok(Label::Any);
    }
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.contains('*') {
        return Err(format!("label {label:?}: a * must be a whole label"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "label {label:?}: {c:?} is not a letter, digit or -"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with -"));
    }
    Ok(Label::Exact(label.to_ascii_lowercase()))
}

/// `host` is already lower-case (URL parsing lower-cases host names).
fn match_labels(pattern: &[Label], host: &str) -> bool {
    let host: Vec<&str> = host.split('.').collect();
    let label_matches = |p: &Label, h: &str| match p {
        Label::Any => !h.is_empty(),
        Label::Exact(e) => e.eq_ignore_ascii_case(h),
    };
    match pattern.split_first() {
        // A leading `*` stands for one or more labels: the rest of the
        // pattern must match the rightmost labels, and at least one label
        // must be left over for the `*`.
        Some((Label::Any, rest)) if !rest.is_empty() => {
            host.len() > rest.len()
                && host[..host.len() - rest.len()]
                    .iter()
                    .all(|h| !h.is_empty())
                && rest
                    .iter()
                    .zip(&host[host.len() - rest.len()..])
                    .all(|(p, h)| label_matches(p, h))
        }
        _ => {
            host.len() == pattern.len()
                && pattern.iter().zip(&host).all(|(p, h)| label_matches(p, h))
        }
    }
}
