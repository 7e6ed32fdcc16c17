//! The rule language as docs/boundary-rules.md states it: a table of
//! rule x request cases (every example of the spec and the edge cases),
//! the rules that must not parse, evaluation order, and the policy digest.

use warden_boundary::policy::{Denial, Policy, PolicySources, Verdict};
use warden_boundary::rules::Rule;

/// (rule, method, URL, matches)
const CASES: &[(&str, &str, &str, bool)] = &[
    // domain=github.com: that host only, any method, path and port.
    (
        "domain=github.com",
        "GET",
        "https://github.com/coder/coder",
        true,
    ),
    (
        "domain=github.com",
        "POST",
        "http://github.com:8080/x?y=1",
        true,
    ),
    ("domain=github.com", "GET", "https://api.github.com/", false),
    (
        "domain=github.com",
        "GET",
        "https://github.com.evil.io/",
        false,
    ),
    ("domain=github.com", "GET", "https://evilgithub.com/", false),
    ("domain=github.com", "GET", "https://github.com./", false),
    // Host names compare case-insensitively (the one difference from the
    // reference), in the rule and in the URL.
    ("domain=github.com", "GET", "https://GitHub.COM/", true),
    ("domain=GitHub.com", "GET", "https://github.com/", true),
    // A leading * is one or more labels, never zero.
    (
        "domain=*.github.com",
        "GET",
        "https://api.github.com/",
        true,
    ),
    (
        "domain=*.github.com",
        "GET",
        "https://a.b.github.com/",
        true,
    ),
    ("domain=*.github.com", "GET", "https://github.com/", false),
    ("domain=*.github.com", "GET", "https://xgithub.com/", false),
    // Any other * is exactly one label.
    (
        "domain=api.*.example.com",
        "GET",
        "https://api.eu.example.com/",
        true,
    ),
    (
        "domain=api.*.example.com",
        "GET",
        "https://api.example.com/",
        false,
    ),
    (
        "domain=api.*.example.com",
        "GET",
        "https://api.a.b.example.com/",
        false,
    ),
    (
        "domain=*.*.example.com",
        "GET",
        "https://a.b.example.com/",
        true,
    ),
    (
        "domain=*.*.example.com",
        "GET",
        "https://x.a.b.example.com/",
        true,
    ),
    (
        "domain=*.*.example.com",
        "GET",
        "https://b.example.com/",
        false,
    ),
    // A standalone * is any host.
    (
        "domain=* method=GET",
        "GET",
        "https://anything.example/",
        true,
    ),
    ("domain=* method=GET", "GET", "http://10.1.2.3:9/", true),
    ("domain=* method=GET", "GET", "http://[2001:db8::1]/", true),
    (
        "domain=* method=GET",
        "POST",
        "https://anything.example/",
        false,
    ),
    // Methods: exact and case-sensitive; * is any.
    (
        "domain=*.npmjs.org method=GET,HEAD",
        "GET",
        "https://registry.npmjs.org/x",
        true,
    ),
    (
        "domain=*.npmjs.org method=GET,HEAD",
        "HEAD",
        "https://a.b.npmjs.org/",
        true,
    ),
    (
        "domain=*.npmjs.org method=GET,HEAD",
        "POST",
        "https://registry.npmjs.org/x",
        false,
    ),
    (
        "domain=*.npmjs.org method=GET,HEAD",
        "GET",
        "https://npmjs.org/",
        false,
    ),
    ("method=GET", "get", "https://a.io/", false),
    ("method=get", "GET", "https://a.io/", false),
    ("method=*", "PROPFIND", "https://a.io/", true),
    ("method=GET,*", "DELETE", "https://a.io/", true),
    // Paths: segments compare exactly; * is one segment; a trailing * also
    // takes any number of further segments; without it, the count must match.
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/api/v1/users",
        true,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/api/v1/users/7",
        true,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/api/v1",
        false,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/health",
        true,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/health/x",
        false,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "GET",
        "https://h.io/healthz",
        false,
    ),
    (
        "method=GET path=/api/v1/*,/health",
        "POST",
        "https://h.io/health",
        false,
    ),
    ("path=/api/*", "GET", "https://h.io/api/x", true),
    ("path=/api/*", "GET", "https://h.io/api/x/y", true),
    ("path=/api/*", "GET", "https://h.io/api", false),
    ("path=/api/*", "GET", "https://h.io/api/", true),
    ("path=/api/*", "GET", "https://h.io/apis/x", false),
    ("path=/a/*/c", "GET", "https://h.io/a/b/c", true),
    ("path=/a/*/c", "GET", "https://h.io/a/b/x/c", false),
    ("path=/a/*/c", "GET", "https://h.io/a/b/c/d", false),
    ("path=/api", "GET", "https://h.io/api", true),
    ("path=/api", "GET", "https://h.io/api/", false),
    ("path=/api/", "GET", "https://h.io/api/", true),
    ("path=/api", "GET", "https://h.io/api?x=/other", true),
    ("path=api/v1", "GET", "https://h.io/api/v1", true),
    // path=/ is the empty pattern: every path.
    ("path=/", "GET", "https://h.io/", true),
    ("path=/", "GET", "https://h.io/a/b/c", true),
    ("path=/", "GET", "https://h.io", true),
    ("path=/x,/", "GET", "https://h.io/y", true),
    // The root itself against other patterns.
    ("path=/*", "GET", "https://h.io/", true),
    ("path=/x", "GET", "https://h.io", false),
    // Percent escapes are compared as written, never decoded.
    ("path=/a%2Fb", "GET", "https://h.io/a%2Fb", true),
    ("path=/a%2Fb", "GET", "https://h.io/a/b", false),
    ("path=/a%2Fb", "GET", "https://h.io/a%2fb", false),
    ("path=/a/b", "GET", "https://h.io/a%2Fb", false),
    ("path=/caf%C3%A9", "GET", "https://h.io/café", true),
    // Dot segments are resolved before deciding (and before forwarding).
    (
        "path=/public/*",
        "GET",
        "https://h.io/public/../secret",
        false,
    ),
    (
        "path=/public/*",
        "GET",
        "https://h.io/public/%2e%2e/secret",
        false,
    ),
    ("path=/secret", "GET", "https://h.io/public/../secret", true),
    // Ports: any without port=; port= is a list (extension).
    (
        "domain=h.io port=8443,9443",
        "GET",
        "https://h.io:8443/",
        true,
    ),
    (
        "domain=h.io port=8443,9443",
        "GET",
        "https://h.io:9443/",
        true,
    ),
    ("domain=h.io port=8443,9443", "GET", "https://h.io/", false),
    ("port=443", "GET", "https://h.io/", true),
    ("port=443", "GET", "http://h.io/", false),
    ("port=80", "GET", "http://h.io:80/", true),
    // IPv4 literals are hosts like any other, in every spelling.
    ("domain=127.0.0.1", "GET", "http://127.0.0.1:8080/", true),
    ("domain=127.0.0.1", "GET", "http://0x7f.1:8080/", true),
    ("domain=127.0.0.1", "GET", "http://2130706433/", true),
    ("domain=127.0.0.1", "GET", "http://127.0.0.2/", false),
    ("domain=*.0.0.1", "GET", "http://127.0.0.1/", true),
    // IPv6 literals in brackets match that address only (extension).
    (
        "domain=[fd00:ec2::254]",
        "GET",
        "http://[fd00:ec2::254]/latest",
        true,
    ),
    (
        "domain=[fd00:ec2::254]",
        "GET",
        "http://[fd00:ec2:0:0:0:0:0:254]/",
        true,
    ),
    (
        "domain=[fd00:ec2::254]",
        "GET",
        "http://[fd00:ec2::253]/",
        false,
    ),
    ("domain=[::1]", "GET", "http://localhost/", false),
    ("domain=localhost", "GET", "http://[::1]/", false),
    // URLs without a scheme are https.
    (
        "domain=github.com port=443",
        "GET",
        "github.com/coder",
        true,
    ),
    (
        "domain=github.com port=80",
        "GET",
        "github.com/coder",
        false,
    ),
    // Internationalised names compare in their ASCII form.
    (
        "domain=xn--bcher-kva.example",
        "GET",
        "https://bücher.example/",
        true,
    ),
    // User info never decides anything.
    ("domain=h.io", "GET", "https://github.com@h.io/", true),
    (
        "domain=github.com",
        "GET",
        "https://github.com@h.io/",
        false,
    ),
    // A URL that does not parse matches nothing.
    ("domain=*", "GET", "http://", false),
    ("domain=*", "GET", "https://exa mple.com/", false),
    ("domain=*", "GET", "ftp://h.io/", false),
    ("method=*", "GET", "", false),
];

#[test]
fn every_rule_and_url_case_decides_as_the_spec_says() {
    let mut failures = Vec::new();
    for &(rule, method, url, expected) in CASES {
        let policy = Policy::from_rules::<&str>(&[], &[rule])
            .unwrap_or_else(|e| panic!("{rule:?} should parse: {e}"));
        let verdict = policy.decide_url(method, url);
        if verdict.is_allowed() != expected {
            failures.push(format!(
                "{rule:?} {method} {url:?}: expected {}, got {verdict:?}",
                if expected { "match" } else { "no match" }
            ));
        }
        if let Verdict::Allow(matched) = verdict {
            assert_eq!(matched.text(), rule, "the rule travels as written");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_rules_are_refused_naming_the_rule_and_the_problem() {
    let cases = [
        ("", "at least one key=value"),
        ("   ", "at least one key=value"),
        ("domain", "not a key=value pair"),
        ("host=github.com", "unknown key \"host\""),
        ("Domain=github.com", "unknown key \"Domain\""),
        ("domain=", "domain= needs a value"),
        ("domain=a.io domain=b.io", "key domain given twice"),
        ("domain=gith*b.com", "a * must be a whole label"),
        ("domain=github.*", "may not end with *"),
        ("domain=*.*", "may not end with *"),
        ("domain=-github.com", "starts or ends with -"),
        ("domain=github-.com", "starts or ends with -"),
        ("domain=a..com", "empty label"),
        ("domain=.com", "empty label"),
        ("domain=git_hub.com", "not a letter, digit or -"),
        ("domain=github.com:443", "not a letter, digit or -"),
        ("domain=[::1", "must end with ]"),
        ("domain=[github.com]", "not an IPv6 address"),
        ("method=GET,", "not an HTTP method token"),
        ("method=G(ET", "not an HTTP method token"),
        ("path=/a*b", "a * must be a whole segment"),
        ("path=/a/**", "a * must be a whole segment"),
        ("path=/a,,/b", "empty pattern"),
        ("path=/a%2", "% must start an escape"),
        ("path=/a%zz", "% must start an escape"),
        ("path=/a?b", "not allowed in a URL path"),
        ("path=/a#b", "not allowed in a URL path"),
        ("port=0", "not a number from 1 to 65535"),
        ("port=65536", "not a number from 1 to 65535"),
        ("port=https", "not a number from 1 to 65535"),
        ("port=+443", "not a number from 1 to 65535"),
    ];
    for (rule, problem) in cases {
        let error = Rule::parse(rule).expect_err(rule);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("bad rule {rule:?}: ")) && message.contains(problem),
            "{rule:?}: {message:?} should name the rule and say {problem:?}"
        );
    }
}

#[test]
fn deny_rules_win_and_the_first_matching_allow_rule_is_recorded() {
    let policy = Policy::from_rules(
        &["domain=gist.github.com", "domain=github.com method=POST"],
        &[
            "domain=*.github.com method=GET",
            "domain=gist.github.com",
            "domain=github.com",
            "domain=*",
        ],
    )
    .unwrap();
    let rule = |v: Verdict| match v {
        Verdict::Allow(rule) => format!("allow {}", rule.text()),
        Verdict::Deny(Denial::Rule(rule)) => format!("deny {}", rule.text()),
        Verdict::Deny(other) => format!("deny ({other})"),
    };
    let decide = |method, url| rule(policy.decide_url(method, url));
    assert_eq!(
        decide("GET", "https://gist.github.com/"),
        "deny domain=gist.github.com"
    );
    assert_eq!(
        decide("POST", "https://github.com/x"),
        "deny domain=github.com method=POST"
    );
    assert_eq!(
        decide("GET", "https://github.com/x"),
        "allow domain=github.com"
    );
    assert_eq!(
        decide("GET", "https://api.github.com/"),
        "allow domain=*.github.com method=GET"
    );
    assert_eq!(decide("PUT", "https://api.github.com/"), "allow domain=*");
    // A deny rule's text is what the record carries; the default deny
    // carries none; other denials a reason that no rule can look like.
    let none = Policy::from_rules::<&str>(&[], &[]).unwrap();
    let Verdict::Deny(denial) = none.decide_url("GET", "https://a.io/") else {
        panic!("an empty policy denies")
    };
    assert_eq!(denial, Denial::NoRule);
    assert_eq!(denial.recorded_rule(), None);
    let Verdict::Deny(denial) = policy.decide_url("GET", "https://gist.github.com/") else {
        panic!()
    };
    assert_eq!(
        denial.recorded_rule().as_deref(),
        Some("domain=gist.github.com")
    );
    let Verdict::Deny(denial) = none.decide_url("GET", "http://") else {
        panic!()
    };
    let recorded = denial.recorded_rule().unwrap();
    assert!(recorded.starts_with("reason: "), "{recorded}");
    assert!(Rule::parse(&recorded).is_err());
}

#[test]
fn link_local_and_metadata_hosts_need_a_rule_that_names_them() {
    let any = Policy::from_rules::<&str>(&[], &["domain=*"]).unwrap();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1:8080/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://0xa9fea9fe/",
    ] {
        match any.decide_url("GET", url) {
            Verdict::Deny(Denial::Address(address)) => {
                let recorded = Denial::Address(address).recorded_rule().unwrap();
                assert!(recorded.contains("link-local or metadata"), "{recorded}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    // Wildcards do not name a host; an exact domain or literal does.
    let wildcard = Policy::from_rules::<&str>(&[], &["domain=*.254.169.254"]).unwrap();
    assert!(matches!(
        wildcard.decide_url("GET", "http://169.254.169.254/"),
        Verdict::Deny(Denial::Address(_))
    ));
    let named = Policy::from_rules::<&str>(
        &[],
        &[
            "domain=169.254.169.254 method=GET",
            "domain=[fd00:ec2::254]",
            "domain=*",
        ],
    )
    .unwrap();
    assert!(
        named
            .decide_url("GET", "http://169.254.169.254/latest")
            .is_allowed()
    );
    assert!(
        named
            .decide_url("GET", "http://[fd00:ec2::254]/")
            .is_allowed()
    );
    // The host is named, so even a request matched by `domain=*` may go.
    assert!(
        named
            .decide_url("PUT", "http://169.254.169.254/latest")
            .is_allowed()
    );
    assert!(
        !named
            .decide_url("GET", "http://169.254.169.253/")
            .is_allowed()
    );
}

#[test]
fn tunnels_are_decided_on_host_and_port() {
    let policy = Policy::from_rules(
        &["domain=gist.github.com method=POST"],
        &[
            "domain=*.npmjs.org method=GET,HEAD",
            "domain=github.com port=443",
        ],
    )
    .unwrap();
    let target = |url| warden_boundary::Target::parse(url).unwrap();
    // Without interception a method-restricted allow rule admits the tunnel
    // and a method-restricted deny rule refuses it (nothing inside is seen).
    assert!(
        policy
            .decide_tunnel(&target("https://registry.npmjs.org:443"), false)
            .is_allowed()
    );
    assert!(
        !policy
            .decide_tunnel(&target("https://github.com:8443"), false)
            .is_allowed()
    );
    assert!(
        !policy
            .decide_tunnel(&target("https://gist.github.com:443"), false)
            .is_allowed()
    );
    // With interception the deny rule is applied per request instead, but
    // a host no allow rule matches is refused at once.
    let intercepting = policy.decide_tunnel(&target("https://gist.github.com:443"), true);
    assert_eq!(intercepting, Verdict::Deny(Denial::NoRule));
    assert!(policy.restricts_requests());
}

#[test]
fn the_digest_is_the_sha256_of_the_normalised_rules_in_evaluation_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.yaml");
    std::fs::write(
        &config,
        "allowlist:\n  - domain=github.com\n  - method=GET,HEAD   domain=*.github.com\n\
         denylist:\n  - domain=gist.github.com\n",
    )
    .unwrap();
    let policy = Policy::load(&PolicySources {
        config: Some(config),
        allow: vec!["path=/a/* domain=*.npmjs.org method=GET,HEAD".into()],
        deny: vec!["method=POST domain=github.com".into()],
    })
    .unwrap();
    assert_eq!(
        policy.text(),
        "deny domain=gist.github.com\n\
         deny domain=github.com method=POST\n\
         allow domain=github.com\n\
         allow domain=*.github.com method=GET,HEAD\n\
         allow domain=*.npmjs.org method=GET,HEAD path=/a/*"
    );
    // printf '<the text above>' | sha256sum
    assert_eq!(
        policy.digest(),
        "9e55af940825b6122d92e4cffccd6895b54d2cd2c5b75799c30b0cdc5aa1b77f"
    );
    // Rules keep their text as written for the records.
    assert_eq!(
        policy.allow_rules()[1].text(),
        "method=GET,HEAD   domain=*.github.com"
    );
    // No rules at all: the digest of the empty text.
    assert_eq!(
        Policy::default().digest(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn a_bad_rule_in_the_config_file_names_the_file_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.yaml");
    std::fs::write(
        &config,
        "allowlist:\n  - domain=github.*\nproxy_port: 8080\n",
    )
    .unwrap();
    let sources = PolicySources {
        config: Some(config.clone()),
        ..Default::default()
    };
    let error = Policy::load(&sources).unwrap_err().to_string();
    assert!(
        error.contains("policy.yaml") && error.contains("\"domain=github.*\""),
        "{error}"
    );
    std::fs::write(
        &config,
        "allowlist:\n  - domain=github.com\nproxy_port: 8080\n",
    )
    .unwrap();
    let policy = Policy::load(&sources).unwrap();
    assert_eq!(policy.ignored_config_keys(), ["proxy_port"]);
    let missing = PolicySources {
        config: Some(dir.path().join("nope.yaml")),
        ..Default::default()
    };
    let error = Policy::load(&missing).unwrap_err().to_string();
    assert!(error.contains("nope.yaml"), "{error}");
}
