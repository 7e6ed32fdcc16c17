//! Who is signed in to the web page: roles, signed session cookies, and
//! the CSRF tokens of the page's forms.
//!
//! A session is a cookie the server signs (HMAC-SHA256) with a key kept in
//! the store ([`Store::init_web_session_key`](warden_store::Store::init_web_session_key)),
//! so every replica on one database accepts every other's cookies and a
//! restart keeps people signed in. Nothing else about a session is stored.
//! The cookie names the token the person signed in with ([`Who`]); the
//! signature also covers that token's hash, looked up again on every
//! request: replacing the admin token (a new `WARDEN_ADMIN_TOKEN`) or
//! revoking a named token ends its sessions at once.
//! Signing out clears the cookie in the browser; a copy taken before stays
//! valid until it expires ([`SESSION_TTL`]), as with any stateless session.
//!
//! The cookie is a credential like a token: it never reaches a log, it is
//! `HttpOnly` (scripts cannot read it), `SameSite=Strict` (other sites'
//! requests do not carry it) and `Secure` when the server speaks TLS.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use jiff::Timestamp;
use rand::RngCore;
use ring::hmac;
use subtle::ConstantTimeEq;
use warden_store::TokenHash;

use crate::access::{self, Principal};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "warden_session";
/// The cookie that carries the sign-in form's CSRF token.
pub const LOGIN_CSRF_COOKIE: &str = "warden_login_csrf";
/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long the sign-in form stays usable.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

/// What a signed-in person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything (an admin token).
    Admin,
    /// Read-only: records, sessions, summaries, the web page.
    Auditor,
}

/// The roles that may sign in to the web page: the one place to change.
/// Agent tokens may not.
pub const WEB_ROLES: &[Role] = &[Role::Admin, Role::Auditor];

impl Role {
    /// Whether this role may sign in to the web page.
    pub fn may_use_web(self) -> bool {
        WEB_ROLES.contains(&self)
    }

    /// The page's role for an access role (`None`: agents).
    pub fn of(role: access::Role) -> Option<Role> {
        match role {
            access::Role::Admin => Some(Role::Admin),
            access::Role::Auditor => Some(Role::Auditor),
            access::Role::Agent => None,
        }
    }
}

/// Which token a session was signed in with: the bootstrap admin token, or
/// a named token (by id). Written into the cookie; the role and the hash
/// the session is bound to are looked up again on every request, so
/// revoking the token ends its sessions at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The bootstrap admin token.
    Bootstrap,
    /// A named token.
    Token(uuid::Uuid),
}

impl Who {
    fn encode(self) -> String {
        match self {
            // The form of the cookies issued before named tokens existed, so
            // those stay valid.
            Who::Bootstrap => "admin".into(),
            Who::Token(id) => id.simple().to_string(),
        }
    }

    fn parse(s: &str) -> Option<Who> {
        if s == "admin" {
            return Some(Who::Bootstrap);
        }
        (s.len() == 32)
            .then(|| uuid::Uuid::try_parse(s).ok())
            .flatten()
            .map(Who::Token)
    }
}

/// What a session is bound to, as the server knows it now.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The token.
    pub who: Who,
    /// Who it is.
    pub principal: Principal,
    /// The token's hash (the session's signature covers it).
    pub hash: TokenHash,
}

/// A verified session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who signed in.
    pub role: Role,
    /// The token's owner, as access checks see it.
    pub principal: Principal,
    /// When the session ends.
    pub expires: Timestamp,
    /// The session's random id (hex), which its CSRF token derives from.
    nonce: String,
}

/// Signs and checks session cookies and CSRF tokens.
#[derive(Clone, Debug)]
pub struct Sessions {
    key: hmac::Key,
    /// Cookies get `Secure` (the server speaks TLS).
    secure: bool,
}

impl Sessions {
    /// Sessions signed with `key` (from the store); `secure` when the
    /// server speaks TLS.
    pub fn new(key: [u8; 32], secure: bool) -> Sessions {
        Sessions {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            secure,
        }
    }

    /// A new session bound to `binding`: the cookie value and the session;
    /// `None` when its role may not use the page.
    pub fn issue(&self, binding: &Binding, now: Timestamp) -> Option<(String, Session)> {
        let role = Role::of(binding.principal.role).filter(|r| r.may_use_web())?;
        let expires = now
            .checked_add(SESSION_TTL)
            .unwrap_or(Timestamp::MAX)
            .as_second();
        let nonce = random_hex();
        let who = binding.who.encode();
        let mac = self.session_mac(&who, expires, &nonce, &binding.hash);
        let value = format!("v1.{who}.{expires}.{nonce}.{mac}");
        let session = Session {
            role,
            principal: binding.principal.clone(),
            expires: Timestamp::from_second(expires).unwrap_or(Timestamp::MAX),
            nonce,
        };
        Some((value, session))
    }

    /// The token a cookie value claims to be signed in with (unchecked:
    /// look its binding up, then [`verify`](Sessions::verify)).
    pub fn claimed(value: &str) -> Option<Who> {
        let mut parts = value.split('.');
        match (parts.next(), parts.next()) {
            (Some("v1"), Some(who)) => Who::parse(who),
            _ => None,
        }
    }

    /// The session a cookie value proves, if it is genuine, unexpired, for
    /// a role that may use the page, and bound to `binding` (the token it
    /// claims, still in force).
    pub fn verify(&self, value: &str, binding: &Binding, now: Timestamp) -> Option<Session> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(who), Some(expires), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if Who::parse(who)? != binding.who {
            return None;
        }
        let role = Role::of(binding.principal.role)?;
        let expires_secs: i64 = expires.parse().ok()?;
        let mac = hex::decode(mac).ok()?;
        hmac::verify(
            &self.key,
            session_message(who, expires_secs, nonce, &binding.hash).as_bytes(),
            &mac,
        )
        .ok()?;
        let expires = Timestamp::from_second(expires_secs).ok()?;
        (now < expires && role.may_use_web()).then(|| Session {
            role,
            principal: binding.principal.clone(),
            expires,
            nonce: nonce.to_owned(),
        })
    }

    /// The CSRF token of a session's forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        let tag = hmac::sign(&self.key, format!("csrf\0{}", session.nonce).as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }

    /// Whether `token` is the CSRF token of `session`, in constant time.
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        self.csrf_token(session)
            .as_bytes()
            .ct_eq(token.as_bytes())
            .into()
    }

    fn session_mac(&self, who: &str, expires: i64, nonce: &str, bound_to: &TokenHash) -> String {
        let message = session_message(who, expires, nonce, bound_to);
        hex::encode(hmac::sign(&self.key, message.as_bytes()).as_ref())
    }

    /// `Set-Cookie` for a new session.
    pub fn session_cookie(&self, value: &str) -> HeaderValue {
        self.cookie(SESSION_COOKIE, value, "/", SESSION_TTL.as_secs())
    }

    /// `Set-Cookie` that ends the session in the browser.
    pub fn clear_session_cookie(&self) -> HeaderValue {
        self.cookie(SESSION_COOKIE, "", "/", 0)
    }

    /// A fresh CSRF token for the sign-in form, and its `Set-Cookie`.
    pub fn login_csrf(&self) -> (String, HeaderValue) {
        let token = random_hex();
        let cookie = self.cookie(
            LOGIN_CSRF_COOKIE,
            &token,
            "/login",
            LOGIN_FORM_TTL.as_secs(),
        );
        (token, cookie)
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        );
        // Names, paths and values are ASCII without controls (hex, digits,
        // dots), so this cannot fail.
        HeaderValue::from_str(&text).expect("cookie text is a valid header value")
    }
}

/// Whether the sign-in form's CSRF field matches its cookie, in constant
/// time.
pub fn login_csrf_matches(headers: &HeaderMap, field: &str) -> bool {
    match cookie(headers, LOGIN_CSRF_COOKIE) {
        Some(expected) if !expected.is_empty() => {
            expected.as_bytes().ct_eq(field.as_bytes()).into()
        }
        _ => false,
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn session_message(who: &str, expires: i64, nonce: &str, bound_to: &TokenHash) -> String {
    format!(
        "warden-web-session\0v1\0{who}\0{expires}\0{nonce}\0{}",
        hex::encode(bound_to.0)
    )
}

/// 128 random bits, hex-encoded.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A fresh signing key (the store keeps the first one any replica made).
pub fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_token;

    const TOKEN: &str = "an-admin-token-of-some-length-0123";

    fn admin() -> Binding {
        Binding {
            who: Who::Bootstrap,
            principal: Principal::bootstrap(),
            hash: hash_token(TOKEN),
        }
    }

    fn auditor(id: uuid::Uuid, token: &str) -> Binding {
        Binding {
            who: Who::Token(id),
            principal: Principal {
                role: access::Role::Auditor,
                id: Some(id),
                name: "carol".into(),
            },
            hash: hash_token(token),
        }
    }

    fn now() -> Timestamp {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    #[test]
    fn a_session_verifies_until_it_expires() {
        let sessions = Sessions::new([7; 32], false);
        let (value, session) = sessions.issue(&admin(), now()).unwrap();
        assert_eq!(session.role, Role::Admin);
        assert!(!value.contains(TOKEN));
        assert_eq!(Sessions::claimed(&value), Some(Who::Bootstrap));
        assert_eq!(
            sessions.verify(&value, &admin(), now()),
            Some(session.clone())
        );
        let just_before = session.expires - jiff::SignedDuration::from_secs(1);
        assert!(sessions.verify(&value, &admin(), just_before).is_some());
        assert_eq!(sessions.verify(&value, &admin(), session.expires), None);
    }

    #[test]
    fn an_auditor_session_is_bound_to_its_token_and_an_agent_gets_none() {
        let sessions = Sessions::new([7; 32], false);
        let id = uuid::Uuid::new_v4();
        let carol = auditor(id, "carol-token");
        let (value, session) = sessions.issue(&carol, now()).unwrap();
        assert_eq!(session.role, Role::Auditor);
        assert_eq!(Sessions::claimed(&value), Some(Who::Token(id)));
        assert!(sessions.verify(&value, &carol, now()).is_some());
        // Another token with the same id (it was replaced), another token.
        assert_eq!(
            sessions.verify(&value, &auditor(id, "other-token"), now()),
            None
        );
        assert_eq!(sessions.verify(&value, &admin(), now()), None);
        let agent = Binding {
            who: Who::Token(id),
            principal: Principal {
                role: access::Role::Agent,
                id: Some(id),
                name: "dev".into(),
            },
            hash: hash_token("agent"),
        };
        assert!(sessions.issue(&agent, now()).is_none());
    }

    #[test]
    fn forged_or_foreign_cookies_do_not_verify() {
        let sessions = Sessions::new([7; 32], false);
        let (value, _) = sessions.issue(&admin(), now()).unwrap();
        // Another key (another deployment).
        assert_eq!(
            Sessions::new([8; 32], false).verify(&value, &admin(), now()),
            None
        );
        // The admin token was replaced.
        let mut replaced = admin();
        replaced.hash = hash_token("another-admin-token-0123456789");
        assert_eq!(sessions.verify(&value, &replaced, now()), None);
        // A longer expiry, another token, a changed nonce or mac, garbage.
        let parts: Vec<&str> = value.split('.').collect();
        let edit = |i: usize, to: &str| {
            let mut p = parts.clone();
            p[i] = to;
            p.join(".")
        };
        for bad in [
            edit(2, "99999999999"),
            edit(1, "auditor"),
            edit(3, "00000000000000000000000000000000"),
            edit(4, &"0".repeat(64)),
            edit(0, "v2"),
            format!("{value}.x"),
            String::new(),
            "v1.admin".into(),
        ] {
            assert_eq!(sessions.verify(&bad, &admin(), now()), None, "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions::new([7; 32], false);
        let (_, a) = sessions.issue(&admin(), now()).unwrap();
        let (_, b) = sessions.issue(&admin(), now()).unwrap();
        let token = sessions.csrf_token(&a);
        assert!(sessions.csrf_matches(&a, &token));
        assert!(!sessions.csrf_matches(&b, &token));
        assert!(!sessions.csrf_matches(&a, ""));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_with_tls() {
        let plain = Sessions::new([7; 32], false).session_cookie("v");
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = Sessions::new([7; 32], true).session_cookie("v");
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
        let cleared = Sessions::new([7; 32], false).clear_session_cookie();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden_session=xyz"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("warden_login_csrf=abc"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert!(login_csrf_matches(&headers, "abc"));
        assert!(!login_csrf_matches(&headers, "abd"));
        assert!(!login_csrf_matches(&HeaderMap::new(), ""));
    }
}
