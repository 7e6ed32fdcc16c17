//! The host of a URL, for "most denied hosts". The databases only cut a URL
//! down to its authority-ish prefix (what follows `://`, up to the first
//! `/`); the rest of the work (query or fragment right after the host, user
//! info, port, case) is done here, the same for every backend, and the
//! counts of prefixes naming the same host are added up.

use std::collections::HashMap;

use crate::model::HostCount;

/// The host in `prefix`: the text after a URL's `://` up to the first `/`
/// (or the whole text before the first `/` for a URL without a scheme).
pub(crate) fn host_of(prefix: &str) -> String {
    let authority = prefix.split(['?', '#']).next().unwrap_or_default();
    // User info ends at the last '@' (a password may hold another '@').
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        // [IPv6]:port keeps its brackets.
        match rest.find(']') {
            Some(end) => &host_port[..end + 2],
            None => host_port,
        }
    } else {
        match host_port.rfind(':') {
            Some(colon) if host_port[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                &host_port[..colon]
            }
            _ => host_port,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of a whole URL: what follows `://` (or the whole text without
/// a scheme) up to the first `/`, then [`host_of`].
pub(crate) fn host_of_url(url: &str) -> String {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    host_of(rest.split('/').next().unwrap_or_default())
}

/// Adds up the counts of prefixes by host; the `n` most counted, ties by
/// host name.
pub(crate) fn top_hosts(
    prefixes: impl IntoIterator<Item = (String, u64)>,
    n: u32,
) -> Vec<HostCount> {
    let mut by_host: HashMap<String, u64> = HashMap::new();
    for (prefix, records) in prefixes {
        let count = by_host.entry(host_of(&prefix)).or_default();
        *count = count.saturating_add(records);
    }
    let mut hosts: Vec<HostCount> = by_host
        .into_iter()
        .map(|(host, records)| HostCount { host, records })
        .collect();
    hosts.sort_by(|a, b| b.records.cmp(&a.records).then_with(|| a.host.cmp(&b.host)));
    hosts.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_user_info_port_query_and_case() {
        for (prefix, host) in [
            ("example.com", "example.com"),
            ("Example.COM:443", "example.com"),
            ("user:p@ss@evil.example:8080", "evil.example"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("host?x=1", "host"),
            ("host#frag", "host"),
            ("example.com.", "example.com"),
            ("", ""),
            ("host:notaport", "host:notaport"),
        ] {
            assert_eq!(host_of(prefix), host, "{prefix:?}");
        }
    }

    #[test]
    fn whole_urls_give_their_host() {
        assert_eq!(host_of_url("https://EVIL.example:443/b?x"), "evil.example");
        assert_eq!(host_of_url("tracker.example:443"), "tracker.example");
        assert_eq!(
            host_of_url("http://user@tracker.example/p"),
            "tracker.example"
        );
        assert_eq!(host_of_url("https://other.example?q=1"), "other.example");
    }

    #[test]
    fn counts_of_one_host_add_up_and_the_most_counted_come_first() {
        let top = top_hosts(
            [
                ("a.example".to_owned(), 2),
                ("b.example:443".to_owned(), 3),
                ("B.example".to_owned(), 1),
                ("c.example".to_owned(), 2),
                ("d.example".to_owned(), 1),
            ],
            3,
        );
        assert_eq!(
            top,
            [
                HostCount {
                    host: "b.example".into(),
                    records: 4
                },
                HostCount {
                    host: "a.example".into(),
                    records: 2
                },
                HostCount {
                    host: "c.example".into(),
                    records: 2
                },
            ]
        );
    }
}
