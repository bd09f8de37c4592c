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
    HeaderValue::from_bytes(&uuid_v4(rand::random())).expect("hex digits and dashes")
}

/// `bits` as a version 4 UUID in its 36-character hyphenated form.
fn uuid_v4(bits: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The version nibble is 4 and the variant bits are 10, as RFC 9562 says.
    let bits = bits & 0xFFFF_FFFF_FFFF_0FFF_3FFF_FFFF_FFFF_FFFF | 0x4000_8000_0000_0000_0000;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for nibble in (0..32).rev() {
        if matches!(at, 8 | 13 | 18 | 23) {
            at += 1;
        }
        text[at] = HEX[(bits >> (nibble * 4)) as usize & 0xF];
        at += 1;
    }
    text
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
        assert_eq!(
            &uuid_v4(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            b"01234567-89ab-4def-8123-456789abcdef"
        );
        assert_eq!(&uuid_v4(u128::MAX), b"ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(&uuid_v4(0), b"00000000-0000-4000-8000-000000000000");
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = keep_or_make(&HeaderMap::new())
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(acceptable(&HeaderValue::from_str(&id).unwrap()), "{id}");
                assert_eq!(&id[14..15], "4", "{id}");
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
