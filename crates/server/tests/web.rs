//! The web page over HTTP (the browser test, `web_browser.rs`, drives it in
//! Chromium): sign-in and its CSRF check, the session cookie's flags and
//! what it may reach, the security headers on every page, hostile text
//! rendered as text, filters, the overview's counts, a session's gaps,
//! sign-out, and sessions that survive a restart.

mod support;

use http::Method;
use support::web::*;
use support::*;
use warden_proto::wire::{self, agentapi};
use warden_server::web::CONTENT_SECURITY_POLICY;

#[tokio::test]
async fn pages_without_a_session_send_the_browser_to_sign_in() {
    let (server, _dir) = Server::start().await;
    let root = get(server.addr, "/", None).await;
    assert_eq!(root.status, 303);
    assert_eq!(root.location(), Some("/login"));
    let overview = get(server.addr, "/overview?x=1", None).await;
    assert_eq!(overview.status, 303);
    assert_eq!(overview.location(), Some("/login?next=%2Foverview%3Fx%3D1"));
    // A forged or stale cookie is no session either.
    let forged = get(
        server.addr,
        "/",
        Some("warden_session=v1.admin.99999999999.00.00"),
    )
    .await;
    assert_eq!(forged.status, 303);
    let api = get(server.addr, "/api/v1/records", None).await;
    assert_eq!(api.status, 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sign_in_needs_the_form_csrf_token_and_a_valid_token() {
    let (server, _dir) = Server::start().await;
    let form = get(server.addr, "/login", None).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"name="token""#), "{}", form.body);
    let csrf_cookie = cookie_pair(&form.set_cookie("warden_login_csrf").unwrap());
    let csrf = form.hidden("csrf").unwrap();

    // No CSRF cookie (a post from another site), or a field that differs.
    for (cookie, field) in [(None, csrf.as_str()), (Some(csrf_cookie.as_str()), "0000")] {
        let refused = request(
            server.addr,
            Method::POST,
            "/login",
            cookie,
            Some(&[("token", ADMIN_TOKEN), ("csrf", field)]),
        )
        .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.set_cookie("warden_session"), None);
    }

    // A wrong token: 401, no session, and the token is not echoed back.
    let (cookie, wrong) = sign_in_with(server.addr, "not-the-admin-token-0123456789").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(cookie, None);
    assert!(
        !wrong.body.contains("not-the-admin-token"),
        "{}",
        wrong.body
    );

    // The admin token: a strict, HttpOnly session cookie (no Secure on
    // plain HTTP) and back to where the person wanted to go.
    let form = get(server.addr, "/login?next=/overview", None).await;
    let page = request(
        server.addr,
        Method::POST,
        "/login",
        Some(&cookie_pair(&form.set_cookie("warden_login_csrf").unwrap())),
        Some(&[
            ("token", ADMIN_TOKEN),
            ("csrf", &form.hidden("csrf").unwrap()),
            ("next", &form.hidden("next").unwrap()),
        ]),
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), Some("/overview"));
    let set = page.set_cookie("warden_session").unwrap();
    assert!(set.contains("; HttpOnly"), "{set}");
    assert!(set.contains("; SameSite=Strict"), "{set}");
    assert!(set.contains("; Path=/"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(ADMIN_TOKEN), "{set}");
    // Another site as `next` is not followed.
    let form = get(server.addr, "/login", None).await;
    let page = request(
        server.addr,
        Method::POST,
        "/login",
        Some(&cookie_pair(&form.set_cookie("warden_login_csrf").unwrap())),
        Some(&[
            ("token", ADMIN_TOKEN),
            ("csrf", &form.hidden("csrf").unwrap()),
            ("next", "//evil.example/"),
        ]),
    )
    .await;
    assert_eq!(page.location(), Some("/"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_page_and_asset_has_the_security_headers() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    send(&mut agent, vec![batch(Some(SESSION), logs(0..2))]).await;
    let cookie = sign_in(server.addr).await;
    let login = get(server.addr, "/login", None).await;
    assert_eq!(login.status, 200);
    assert_eq!(
        login.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY)
    );
    for (path, status) in [
        // Signed in already: on to the feed.
        ("/login", 303),
        ("/", 200),
        ("/?since=bogus", 400),
        ("/overview", 200),
        ("/workspaces/dev", 200),
        ("/workspaces/nope", 404),
        (&format!("/workspaces/dev/sessions/{SESSION}") as &str, 200),
        ("/assets/app.js", 200),
        ("/assets/app.css", 200),
    ] {
        let page = get(server.addr, path, Some(&cookie)).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert_eq!(
            page.header("content-security-policy"),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(
            page.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            page.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
    let csp = CONTENT_SECURITY_POLICY;
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    // No inline script or style on any page: scripts come from files.
    let page = get(server.addr, "/", Some(&cookie)).await;
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(!page.body.contains("style="), "{}", page.body);
    assert!(!page.body.contains(" on"), "no inline handlers");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_session_cookie_reads_the_api_but_changes_nothing() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    send(&mut agent, vec![batch(Some(SESSION), logs(0..3))]).await;
    let cookie = sign_in(server.addr).await;
    let records = get(server.addr, "/api/v1/records", Some(&cookie)).await;
    assert_eq!(records.status, 200, "{}", records.body);
    let v: serde_json::Value = serde_json::from_str(&records.body).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    for path in [
        "/api/v1/summaries",
        "/api/v1/workspaces",
        "/api/v1/workspaces/dev/sessions",
    ] {
        assert_eq!(
            get(server.addr, path, Some(&cookie)).await.status,
            200,
            "{path}"
        );
    }
    // Changes take the bearer token only, never the cookie (a valid
    // credential that may not do this: 403).
    let create = request(
        server.addr,
        Method::POST,
        "/api/v1/workspaces",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(create.status, 403);
    let rotate = request(
        server.addr,
        Method::POST,
        "/api/v1/workspaces/dev/rotate-token",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(rotate.status, 403);
    let delete = request(
        server.addr,
        Method::DELETE,
        "/api/v1/workspaces/dev",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(delete.status, 403);
    assert_eq!(server.admin().list_workspaces().await.unwrap().len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_text_is_rendered_as_text() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    send(&mut agent, vec![hostile_batch(SESSION, 0)]).await;
    let cookie = sign_in(server.addr).await;
    for path in [
        "/".to_owned(),
        format!("/workspaces/dev/sessions/{SESSION}"),
        "/overview".to_owned(),
    ] {
        let page = get(server.addr, &path, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{path}");
        let body = &page.body;
        for needle in [
            "<script>alert",
            "<img",
            "<svg onload",
            "<b>",
            "<i>",
            "href=\"javascript:",
        ] {
            assert!(!body.contains(needle), "{path}: {needle} in {body}");
        }
        for c in ['\u{202e}', '\u{2066}', '\u{1b}', '\u{9b}', '\u{7}'] {
            assert!(!body.contains(c), "{path}: {c:?} unescaped");
        }
        if path != "/overview" {
            assert!(
                body.contains("&lt;script&gt;alert('xss-script')&lt;/script&gt;"),
                "{path}"
            );
            assert!(
                body.contains("&quot;&gt;&lt;img src=x onerror=alert('xss-img')&gt;"),
                "{path}"
            );
            assert!(
                body.contains(r#"<span class="esc">\u{202e}</span>gpj.exe"#),
                "{path}"
            );
            assert!(
                body.contains(r#"<span class="esc">\u{1b}</span>[31mred"#),
                "{path}"
            );
            assert!(body.contains("javascript:alert('xss-link')"), "{path}");
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_feed_filters_are_its_query_and_reach_the_stream() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    let now = wire_now();
    let mk = |seq: i32, allowed: bool, url: &str| wire::BoundaryLog {
        time: Some(now),
        ..log(
            seq,
            allowed,
            "GET",
            url,
            if allowed { "domain=ok.example" } else { "" },
        )
    };
    send(
        &mut agent,
        vec![batch(
            Some(SESSION),
            vec![
                mk(0, true, "https://ok.example/a"),
                mk(1, false, "https://blocked.example/b"),
                mk(2, false, "https://blocked.example/c"),
            ],
        )],
    )
    .await;
    let cookie = sign_in(server.addr).await;
    let all = get(server.addr, "/", Some(&cookie)).await;
    assert_eq!(all.body.matches("<li class=\"rec").count(), 3);
    let denied = get(
        server.addr,
        "/?decision=deny&workspace=dev&owner=&since=1h",
        Some(&cookie),
    )
    .await;
    assert_eq!(denied.status, 200, "{}", denied.body);
    assert_eq!(denied.body.matches("<li class=\"rec deny\"").count(), 2);
    assert!(!denied.body.contains("ok.example/a"));
    // The stream follows with the same filters, from the page's head.
    let stream = denied.body.split("data-stream=\"").nth(1).unwrap();
    let stream = stream[..stream.find('"').unwrap()].replace("&amp;", "&");
    assert!(
        stream.starts_with("/api/v1/records/stream?workspace=dev&decision=deny&since=1h&after=r"),
        "{stream}"
    );
    // The form shows the filters in force.
    assert!(
        denied.body.contains(r#"<option value="deny" selected>"#),
        "{}",
        denied.body
    );
    let url = get(
        server.addr,
        "/?url_contains=blocked.example%2Fc",
        Some(&cookie),
    )
    .await;
    assert_eq!(url.body.matches("<li class=\"rec").count(), 1);
    // A bad filter says what is wrong.
    let bad = get(server.addr, "/?decision=maybe", Some(&cookie)).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("decision must be allow or deny"),
        "{}",
        bad.body
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_overview_counts_the_last_hour_and_shows_loss() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let ops = server.workspace("ops").await;
    let now = wire_now();
    let mk = |seq: i32, allowed: bool, url: &str| wire::BoundaryLog {
        time: Some(now),
        ..log(seq, allowed, "GET", url, "")
    };
    let mut agent = server.agent(&dev.agent_token).await;
    // Session 0..=4 with 2 missing, and the client reports 1 dropped.
    let mut b = batch(
        Some(SESSION),
        vec![
            mk(0, false, "https://evil.example/0"),
            mk(1, false, "https://evil.example/1"),
            mk(3, true, "https://ok.example/3"),
            mk(4, false, "https://tracker.example/4"),
        ],
    );
    b.client_status.push(agentapi::ClientStatus {
        session_id: SESSION.into(),
        status: Some(wire::BoundaryStatus {
            dropped_channel_full: 1,
            ..Default::default()
        }),
    });
    send(&mut agent, vec![b]).await;
    let mut agent = server.agent(&ops.agent_token).await;
    send(
        &mut agent,
        vec![batch(
            Some("ops-session"),
            vec![mk(0, true, "https://ok.example/")],
        )],
    )
    .await;
    let cookie = sign_in(server.addr).await;
    let page = get(server.addr, "/overview", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains(r#"<strong id="total-records">5</strong>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<strong id="total-denied">3</strong>"#),
        "{body}"
    );
    // Most denied host first; the workspace with denials.
    let hosts = &body[body.find("id=\"top-hosts\"").unwrap()..];
    assert!(hosts.find("evil.example").unwrap() < hosts.find("tracker.example").unwrap());
    let top_ws = &body[body.find("id=\"top-workspaces\"").unwrap()..];
    assert!(top_ws[..top_ws.find("</table>").unwrap()].contains(">dev<"));
    assert!(!top_ws[..top_ws.find("</table>").unwrap()].contains(">ops<"));
    // Loss: dev's session misses 1 number, 1 was reported: nothing
    // unexplained, and the session is listed.
    let losses = &body[body.find("id=\"losses\"").unwrap()..];
    assert!(losses.contains(&format!(
        "/workspaces/{}/sessions/{SESSION}",
        dev.workspace_id
    )));
    assert!(
        losses.contains("(1 missing, 1 reported, 0 unexplained)"),
        "{losses}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_page_draws_its_gaps_and_final_number() {
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    let mut b = batch(
        Some(SESSION),
        logs(0..8)
            .into_iter()
            .filter(|l| !(3..6).contains(&l.sequence_number))
            .collect(),
    );
    b.client_status.push(agentapi::ClientStatus {
        session_id: SESSION.into(),
        status: Some(wire::BoundaryStatus {
            final_sequence_number: Some(9),
            ..Default::default()
        }),
    });
    send(&mut agent, vec![b]).await;
    let cookie = sign_in(server.addr).await;
    let page = get(
        server.addr,
        &format!("/workspaces/dev/sessions/{SESSION}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    let order: Vec<usize> = [
        "https://example.com/2<",
        r#"data-first="3" data-last="5""#,
        "https://example.com/6<",
        "https://example.com/7<",
        r#"data-first="8" data-last="9""#,
    ]
    .iter()
    .map(|needle| {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {body}"))
    })
    .collect();
    assert!(order.is_sorted(), "{order:?}");
    assert!(
        body.contains("sequence numbers 3–5 are missing (3)"),
        "{body}"
    );
    assert!(body.contains(r#"<dd id="final-seq">9</dd>"#), "{body}");
    assert!(body.contains(r#"<dd id="missing">5</dd>"#), "{body}");
    assert!(body.contains(r#"id="completeness""#), "{body}");
    // The workspace page lists it, by id as well as by name.
    let ws = get(
        server.addr,
        &format!("/workspaces/{}", dev.workspace_id),
        Some(&cookie),
    )
    .await;
    assert_eq!(ws.status, 200);
    assert!(ws.body.contains(SESSION));
    let missing = get(server.addr, "/workspaces/dev/sessions/nope", Some(&cookie)).await;
    assert_eq!(missing.status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sign_out_needs_its_csrf_token_and_ends_the_session_in_the_browser() {
    let (server, _dir) = Server::start().await;
    let cookie = sign_in(server.addr).await;
    let page = get(server.addr, "/", Some(&cookie)).await;
    let csrf = page.hidden("csrf").expect("the sign-out form's token");
    let forged = request(
        server.addr,
        Method::POST,
        "/logout",
        Some(&cookie),
        Some(&[("csrf", "0123")]),
    )
    .await;
    assert_eq!(forged.status, 403);
    assert_eq!(forged.set_cookie("warden_session"), None);
    let out = request(
        server.addr,
        Method::POST,
        "/logout",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), Some("/login"));
    let cleared = out.set_cookie("warden_session").unwrap();
    assert!(cleared.starts_with("warden_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_survives_a_restart_and_dies_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), warden_server::LineFormat::Text).await;
    let cookie = sign_in(server.addr).await;
    server.stop().await.unwrap();
    // The signing key is in the store: the same cookie works after a
    // restart (and on any replica of the same database).
    let server = Server::start_in(dir.path(), warden_server::LineFormat::Text).await;
    assert_eq!(get(server.addr, "/", Some(&cookie)).await.status, 200);
    server.stop().await.unwrap();
    // A new admin token ends the sessions of the old one.
    let mut config = support::config(dir.path(), warden_server::LineFormat::Text);
    config.admin_token =
        warden_server::AdminTokenSource::Given("a-replacement-admin-token-0123456789".into());
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    assert_eq!(get(server.addr, "/", Some(&cookie)).await.status, 303);
    server.stop().await.unwrap();
}
