//! Who is signed in to the portal: sessions, their CSRF tokens and cookies.
//!
//! Sessions live in this process's memory only. A restart signs everyone out,
//! which is the safe failure, and no token or session id is ever written to
//! the store or to a log. A session ends at the first of two deadlines: its
//! absolute lifetime, and a stretch of idleness.
//!
//! Cookies carry the `__Host-` prefix and `Secure`: browsers then refuse them
//! from another subdomain, over another path, and over plain HTTP, except
//! to a loopback host (`127.0.0.1`, `localhost`), which browsers count as
//! secure. The portal therefore works over plain HTTP only on a loopback
//! listener; anywhere else it needs HTTPS, at a proxy in front or here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie. `Path=/` (which `__Host-` requires anyway) because
/// the upload form streams to the `/v1` audience endpoints with it.
pub const SESSION_COOKIE: &str = "__Host-guestlist_session";
/// Set by the sign-in page and echoed by its form: sign-in has no session yet,
/// so its CSRF token is a double-submitted cookie.
pub const SIGNIN_COOKIE: &str = "__Host-guestlist_signin";
/// How long a session lasts at most, however busy.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long a session lasts without a request, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Sessions held at once. Past it the one closest to expiry is dropped, so a
/// flood of sign-ins cannot grow memory.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser. `Debug` is hand-written: the id and the CSRF
/// token are credentials and must never reach a log.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    /// The name of the admin token used to sign in; the audit log's actor.
    pub actor: String,
    /// Must accompany every state-changing request of this session.
    pub csrf: String,
    expires: Instant,
    last_seen: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("actor", &self.actor)
            .field("id", &"***")
            .field("csrf", &"***")
            .finish()
    }
}

impl Session {
    /// Compares in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

pub struct Sessions {
    /// A std `Mutex`: held for one map operation, never across an await.
    by_id: Mutex<HashMap<String, Session>>,
    idle_timeout: Duration,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(DEFAULT_IDLE_TIMEOUT)
    }
}

impl Sessions {
    pub fn new(idle_timeout: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::default(),
            idle_timeout,
        }
    }

    pub fn create(&self, actor: &str) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_token(),
            actor: actor.to_string(),
            csrf: random_token(),
            expires: now + SESSION_TTL,
            last_seen: now,
        };
        let mut map = self.by_id.lock().expect("lock poisoned");
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.values().min_by_key(|s| s.expires).map(|s| s.id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(session.id.clone(), session.clone());
        session
    }

    /// The live session named by the request's cookie; a request counts as
    /// activity. A request with two session cookies has none: one of them
    /// was planted, and which one the browser meant cannot be told.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut map = self.by_id.lock().expect("lock poisoned");
        let session = map.get_mut(id)?;
        if session.expires <= now || now.duration_since(session.last_seen) > self.idle_timeout {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn remove(&self, id: &str) {
        self.by_id.lock().expect("lock poisoned").remove(id);
    }
}

/// 256 random bits, hex-encoded, from the thread's CSPRNG.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request, if sent exactly once. A name
/// sent twice is refused rather than guessed at: the second copy comes from
/// somewhere the first did not (another path, a planted cookie).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    // Raw bytes, not `to_str`: another cookie on the host with a non-ASCII
    // value would otherwise drop the whole header and sign the user out.
    // Every copy of `name` counts towards "sent twice", readable or not.
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((&pair[..eq], &pair[eq + 1..]))
        })
        .filter(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v);
    let first = values.next()?;
    if values.next().is_some() {
        tracing::warn!(cookie = name, "request refused: the cookie was sent twice");
        return None;
    }
    std::str::from_utf8(first).ok()
}

/// A `Set-Cookie` value: `__Host-` cookies must be `Secure`, with `Path=/`
/// and no `Domain`.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// The default of `--portal-confirm-removal-share`: the story's mistaken
/// paste replaced a whole audience with a fragment.
pub const DEFAULT_CONFIRM_REMOVAL_SHARE: f64 = 0.10;

/// The portal's own state, shared through [`super::AppState`]. Failed
/// sign-ins count in the API's limiter ([`super::Services::limiter`]), since
/// both guess the same tokens.
pub struct Portal {
    pub sessions: Sessions,
    /// A replace or remove taking away more than this share of an audience
    /// is previewed and published only once confirmed.
    pub confirm_removal_share: f64,
}

impl Default for Portal {
    fn default() -> Portal {
        Portal {
            sessions: Sessions::default(),
            confirm_removal_share: DEFAULT_CONFIRM_REMOVAL_SHARE,
        }
    }
}

impl Portal {
    /// A portal whose sessions end after `idle_timeout` without a request.
    pub fn new(idle_timeout: std::time::Duration) -> Portal {
        Portal {
            sessions: Sessions::new(idle_timeout),
            ..Portal::default()
        }
    }

    /// Sets the share of an audience a change may remove without asking.
    pub fn confirming_removals_over(mut self, share: f64) -> Portal {
        self.confirm_removal_share = share;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::default();
        let s = sessions.create("alice");
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {SESSION_COOKIE}={}", s.id);
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        assert_eq!(sessions.from_headers(&headers).unwrap().actor, "alice");
        assert!(s.csrf_matches(&s.csrf) && !s.csrf_matches("nope") && s.csrf != s.id);
        sessions
            .by_id
            .lock()
            .unwrap()
            .get_mut(&s.id)
            .unwrap()
            .expires = Instant::now();
        assert!(sessions.from_headers(&headers).is_none(), "expired");
        assert!(sessions.by_id.lock().unwrap().is_empty(), "and forgotten");
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.create("bob");
        }
        assert_eq!(sessions.by_id.lock().unwrap().len(), MAX_SESSIONS);
    }

    fn headers_for(session: &Session) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let cookie = format!("{SESSION_COOKIE}={}", session.id);
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        headers
    }

    #[test]
    fn an_idle_session_ends_and_activity_keeps_one_alive() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (busy, idle) = (sessions.create("alice"), sessions.create("bob"));
        let age = |id: &str, by: Duration| {
            let mut map = sessions.by_id.lock().unwrap();
            let s = map.get_mut(id).unwrap();
            s.last_seen -= by;
        };
        age(&busy.id, Duration::from_secs(50));
        age(&idle.id, Duration::from_secs(61));
        assert!(sessions.from_headers(&headers_for(&busy)).is_some());
        assert!(sessions.from_headers(&headers_for(&idle)).is_none());
        // The request above counted as activity: 50 s more is still within 60.
        age(&busy.id, Duration::from_secs(50));
        assert!(sessions.from_headers(&headers_for(&busy)).is_some());
        assert!(sessions.from_headers(&headers_for(&idle)).is_none(), "gone");
    }

    #[test]
    fn two_session_cookies_name_no_session() {
        let sessions = Sessions::default();
        let (a, b) = (sessions.create("alice"), sessions.create("bob"));
        for value in [
            format!("{SESSION_COOKIE}={}; {SESSION_COOKIE}={}", a.id, b.id),
            format!("{SESSION_COOKIE}={}; {SESSION_COOKIE}={}", a.id, a.id),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, value.parse().unwrap());
            assert!(sessions.from_headers(&headers).is_none(), "{value}");
        }
        // The same across two Cookie headers.
        let mut headers = headers_for(&a);
        headers.append(
            header::COOKIE,
            format!("{SESSION_COOKIE}={}", b.id).parse().unwrap(),
        );
        assert!(sessions.from_headers(&headers).is_none());
    }

    #[test]
    fn a_cookie_that_is_not_ascii_does_not_hide_the_session() {
        let sessions = Sessions::default();
        let s = sessions.create("alice");
        for other in [&b"theme=caf\xc3\xa9"[..], b"tracker=\xff\xfe", b"\xe9=1"] {
            let mut value = other.to_vec();
            value.extend_from_slice(format!("; {SESSION_COOKIE}={}", s.id).as_bytes());
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_bytes(&value).unwrap());
            let found = sessions.from_headers(&headers);
            let shown = String::from_utf8_lossy(&value);
            assert_eq!(found.map(|f| f.id), Some(s.id.clone()), "{shown}");
            // In a Cookie header line of its own, too.
            let mut headers = headers_for(&s);
            headers.append(header::COOKIE, HeaderValue::from_bytes(other).unwrap());
            assert!(sessions.from_headers(&headers).is_some(), "{shown}");
        }
    }

    #[test]
    fn a_second_session_cookie_that_is_not_ascii_still_counts() {
        let sessions = Sessions::default();
        let s = sessions.create("alice");
        let planted = [SESSION_COOKIE.as_bytes(), b"=\xff"].concat();
        let mut one_line = format!("{SESSION_COOKIE}={}; ", s.id).into_bytes();
        one_line.extend_from_slice(&planted);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&one_line).unwrap());
        assert!(sessions.from_headers(&headers).is_none(), "one line");
        let mut headers = headers_for(&s);
        headers.append(header::COOKIE, HeaderValue::from_bytes(&planted).unwrap());
        assert!(sessions.from_headers(&headers).is_none(), "two lines");
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }
}
