//! Who is signed in to the portal: sessions, their CSRF tokens, and the
//! limiter on failed sign-ins.
//!
//! Sessions live in this process's memory only. A restart signs everyone out,
//! which is the safe failure, and no token or session id is ever written to
//! the store or to a log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie. `Path=/` because the upload form streams to the
/// `/v1` audience endpoints with it.
pub const SESSION_COOKIE: &str = "guestlist_session";
/// Set by the sign-in page and echoed by its form: sign-in has no session yet,
/// so its CSRF token is a double-submitted cookie.
pub const SIGNIN_COOKIE: &str = "guestlist_signin";
/// How long a session lasts, signed in or not.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once. Past it the one closest to expiry is dropped, so a
/// flood of sign-ins cannot grow memory.
const MAX_SESSIONS: usize = 10_000;

/// Failed sign-ins allowed per client address per window.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked by the limiter at once.
const MAX_TRACKED: usize = 10_000;

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

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn create(&self, actor: &str) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_token(),
            actor: actor.to_string(),
            csrf: random_token(),
            expires: now + SESSION_TTL,
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

    /// The live session named by the request's cookie.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut map = self.by_id.lock().expect("lock poisoned");
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.by_id.lock().expect("lock poisoned").remove(id);
    }
}

/// Counts failed sign-ins per client address in fixed windows.
#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    /// `Err(wait)` while `client` has used up its failures for this window.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let map = self.failures.lock().expect("lock poisoned");
        match map.get(&client) {
            Some((start, count)) if *count >= MAX_FAILURES => {
                let wait = FAILURE_WINDOW.saturating_sub(start.elapsed());
                if wait.is_zero() { Ok(()) } else { Err(wait) }
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("lock poisoned");
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&client) {
            // Still full of live windows: an attack from many addresses.
            // Forgetting the oldest window is the lesser harm than growing.
            if let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(ip, _)| *ip) {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(client).or_insert((now, 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, client: IpAddr) {
        self.failures.lock().expect("lock poisoned").remove(&client);
    }
}

/// 256 random bits, hex-encoded, from the thread's CSPRNG.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value. `secure` adds `Secure`, for requests that reached a
/// TLS-terminating proxy (`X-Forwarded-Proto: https`).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_are_limited_per_address() {
        let limiter = SignInLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(limiter.check(b).is_ok(), "another address is not limited");
        limiter.succeeded(a);
        assert!(limiter.check(a).is_ok());
    }

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
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.create("bob");
        }
        assert_eq!(sessions.by_id.lock().unwrap().len(), MAX_SESSIONS);
    }
}
