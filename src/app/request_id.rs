//! Request ids: every request gets one, every log line of the request
//! carries it (the log formatter adds it), every response echoes it in
//! `x-request-id`, and every JSON error body names it as `request_id`, so a
//! user's error report leads straight to the log lines.
//!
//! A client's own `x-request-id` is kept when it is short and plain; any
//! other is replaced, since it is echoed and logged.

use axum::http::{HeaderMap, HeaderValue};

/// The header that carries the id, both ways.
pub const HEADER: &str = "x-request-id";

/// Longest client-chosen id kept.
const MAX_LEN: usize = 64;

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// The id of a request with `headers`: the client's own, when it sent one
/// and it is [`acceptable`] (several ids are as unusable as a bad one), or
/// a new random UUID.
pub fn keep_or_make(headers: &HeaderMap) -> HeaderValue {
    let mut ids = headers.get_all(HEADER).iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) if acceptable(id) => id.clone(),
        _ => random_uuid(),
    }
}

/// Runs `request` with `id` as the [`current`] id.
pub async fn scope<F: Future>(id: HeaderValue, request: F) -> F::Output {
    CURRENT.scope(id, request).await
}

/// A random (version 4) UUID from the thread's own generator. tower-http's
/// `MakeRequestUuid` asks the kernel for each one, a system call on every
/// request of the login path; the thread's generator is seeded from the
/// kernel and just as unpredictable.
fn random_uuid() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).expect("hex digits and dashes")
}

/// The id of the request being handled, if any.
pub fn current() -> Option<HeaderValue> {
    CURRENT.try_with(HeaderValue::clone).ok()
}

/// Whether a client's id may be kept: at most 64 of `[A-Za-z0-9._-]`.
pub fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = keep_or_make(&HeaderMap::new())
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(acceptable(&HeaderValue::from_str(&id).unwrap()), "{id}");
                let parsed = uuid::Uuid::parse_str(&id).unwrap();
                assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{id}");
                assert_eq!(parsed.hyphenated().to_string(), id);
                id
            })
            .collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn only_short_plain_ids_are_kept() {
        let ok = |s: &str| acceptable(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123_x.y"));
        assert!(ok(&"a".repeat(64)));
        assert!(!ok(&"a".repeat(65)));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok("a\"b"));
        assert!(!ok("id;rm"));
        assert!(!acceptable(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()
        ));
    }
}
