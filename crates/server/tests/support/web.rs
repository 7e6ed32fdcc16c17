//! What the web page's tests share: a small HTTP/1.1 client that shows
//! headers and carries cookies, signing in, and records with hostile text.

use std::net::SocketAddr;

use http::header::{COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method};
use warden_proto::wire::agentapi;
use warden_proto::wire::{self, boundary_log};

use super::{ADMIN_TOKEN, Agent, batch};

/// A response: status, headers, body.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }

    /// The `Set-Cookie` line for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of hidden input `name` in the body.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

/// The `name=value` part of a `Set-Cookie` line.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// One HTTP/1.1 request.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Page {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(cookie) = cookie {
        builder = builder.header(COOKIE, cookie);
    }
    let body = match form {
        Some(form) => {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
            serde_urlencoded::to_string(form).unwrap()
        }
        None => String::new(),
    };
    let response = sender
        .send_request(builder.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Page {
    request(addr, Method::GET, path, cookie, None).await
}

/// Signs in with `token` through the form; the session cookie's
/// `name=value` on success, with the final response.
pub async fn sign_in_with(addr: SocketAddr, token: &str) -> (Option<String>, Page) {
    let form = get(addr, "/login", None).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf_cookie = cookie_pair(&form.set_cookie("warden_login_csrf").expect("csrf cookie"));
    let csrf = form.hidden("csrf").expect("csrf field");
    let page = request(
        addr,
        Method::POST,
        "/login",
        Some(&csrf_cookie),
        Some(&[("token", token), ("csrf", &csrf), ("next", "/")]),
    )
    .await;
    (
        page.set_cookie("warden_session").map(|c| cookie_pair(&c)),
        page,
    )
}

/// Signs in with the admin token; the session cookie's `name=value`.
pub async fn sign_in(addr: SocketAddr) -> String {
    let (cookie, page) = sign_in_with(addr, ADMIN_TOKEN).await;
    assert_eq!(page.status, 303, "{}", page.body);
    cookie.expect("a session cookie")
}

/// Text an attacker controls, in every form the page must show as text.
pub const HOSTILE: &[&str] = &[
    "https://evil.example/<script>alert('xss-script')</script>",
    "https://evil.example/\"><img src=x onerror=alert('xss-img')>",
    "javascript:alert('xss-link')",
    "https://bank.example/\u{202e}gpj.exe",
    "https://ansi.example/\u{1b}[31mred\u{1b}[0m\u{9b}2J",
    "https://evil.example/'><svg onload=alert('xss-svg')>",
];

/// A record with hostile text in its URL, rule, method and process.
pub fn hostile_log(seq: i32, url: &str, now: wire::Timestamp) -> wire::BoundaryLog {
    wire::BoundaryLog {
        allowed: seq % 2 == 1,
        time: Some(now),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: "GET<b>".into(),
                url: url.into(),
                matched_rule: if seq % 2 == 1 {
                    "domain=<i>rule</i>\u{202e}".into()
                } else {
                    String::new()
                },
            },
        )),
        sequence_number: seq,
    }
}

/// The current time on the wire.
pub fn wire_now() -> wire::Timestamp {
    let now = jiff::Timestamp::now();
    wire::Timestamp {
        seconds: now.as_second(),
        nanos: now.subsec_nanosecond(),
    }
}

/// A batch of hostile records for `session`, with a hostile process name
/// and peer.
pub fn hostile_batch(session: &str, first_seq: i32) -> agentapi::Batch {
    let now = wire_now();
    let logs = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, url)| hostile_log(first_seq + i as i32, url, now))
        .collect();
    let mut b = batch(Some(session), logs);
    if let Some(logs) = b.logs.as_mut() {
        logs.confined_process_name = "<script>alert('xss-process')</script>\u{2066}".into();
    }
    if let Some(peer) = b.peer.as_mut() {
        peer.comm = "\u{1b}]0;pwned\u{7}".into();
        peer.exe = "/usr/bin/<img src=x onerror=alert('xss-exe')>".into();
    }
    b
}

/// Sends batches and checks they were taken.
pub async fn send(agent: &mut Agent, batches: Vec<agentapi::Batch>) {
    let response = agent.report(batches).await.unwrap();
    assert!(!response.results.is_empty(), "{response:?}");
}
