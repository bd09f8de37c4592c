//! One contract, every ID type: a [`Typed`] harness spells test user `n` as
//! an ID of its campaign's type, so a case written once over numbers runs
//! for integer, string and UUID campaigns alike.
//!
//! The spellings keep the service's order: an export sorted bytewise (strings,
//! UUIDs) reads back as the same numbers in the same order as an integer
//! export, so a case compares exports as numbers whatever the type.

use std::ops::Deref;

use axum::http::StatusCode;
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};

use super::{Backend, Harness};

/// The `user_id_type` a harness's campaigns are created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    Integer,
    String,
    Uuid,
}

/// The fixed top 64 bits of every test UUID; `n` is the low 64.
const UUID_HIGH: &str = "6ba7b810-9dad-41d1";

impl Ids {
    pub fn name(self) -> &'static str {
        match self {
            Ids::Integer => "integer",
            Ids::String => "string",
            Ids::Uuid => "uuid",
        }
    }

    /// User `n` as the service answers it (the canonical form).
    pub fn text(self, n: u64) -> String {
        match self {
            Ids::Integer => n.to_string(),
            // A letter for the digit count makes bytewise order numeric
            // order; `+` and `@` must survive paths and bodies.
            Ids::String => {
                let digits = n.to_string();
                let width = (b'a' + digits.len() as u8 - 1) as char;
                format!("{width}{digits}+guest@example.com")
            }
            Ids::Uuid => format!("{UUID_HIGH}-{:04x}-{:012x}", n >> 48, n & 0xffff_ffff_ffff),
        }
    }

    /// User `n` as an upload spells it: UUIDs in upper case, which the
    /// service must store and answer in lower case.
    pub fn uploaded(self, n: u64) -> String {
        match self {
            Ids::Uuid => self.text(n).to_uppercase(),
            _ => self.text(n),
        }
    }

    /// The number a canonical text spells; panics on anything else, so an
    /// export holding a foreign or non-canonical ID fails the case.
    pub fn number(self, text: &str) -> u64 {
        let parsed = match self {
            Ids::Integer => text.parse().ok().filter(|&n| self.text(n) == text),
            Ids::String => text
                .get(1..)
                .and_then(|rest| rest.strip_suffix("+guest@example.com"))
                .and_then(|digits| digits.parse().ok())
                .filter(|&n| self.text(n) == text),
            Ids::Uuid => text
                .strip_prefix(UUID_HIGH)
                .map(|low| low.replace('-', ""))
                .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
                .filter(|&n| self.text(n) == text),
        };
        parsed.unwrap_or_else(|| panic!("{text:?} is no {} test ID", self.name()))
    }

    /// User `n` as a JSON answer or batch request holds it.
    pub fn value(self, n: u64) -> Value {
        match self {
            Ids::Integer => json!(n),
            _ => json!(self.text(n)),
        }
    }

    /// Users as a JSON array, spelled as an upload would.
    pub fn values(self, ns: impl IntoIterator<Item = u64>) -> Value {
        ns.into_iter()
            .map(|n| match self {
                Ids::Integer => json!(n),
                _ => json!(self.uploaded(n)),
            })
            .collect()
    }

    /// Users as canonical JSON values, as previews and answers list them.
    pub fn canonical(self, ns: impl IntoIterator<Item = u64>) -> Value {
        ns.into_iter().map(|n| self.value(n)).collect()
    }

    /// One uploaded ID per line.
    pub fn lines(self, ns: &[u64]) -> String {
        let mut s = String::with_capacity(ns.len() * 40);
        for &n in ns {
            s.push_str(&self.uploaded(n));
            s.push('\n');
        }
        s
    }

    /// User `n` as a path segment.
    pub fn path(self, n: u64) -> String {
        percent_encode(&self.text(n))
    }
}

/// Every byte but the unreserved ones percent-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A harness whose campaigns hold one ID type. Its helpers take test users
/// as numbers and spell them by the type; everything else is the
/// [`Harness`]'s.
pub struct Typed {
    pub h: Harness,
    pub ids: Ids,
}

impl Deref for Typed {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl Typed {
    pub async fn new(backend: Backend, ids: Ids) -> Typed {
        // A UUID line is 37 bytes: the export case's 50,000-ID upload needs
        // more than the usual 1 MiB.
        let limit = if ids == Ids::Integer {
            1 << 20
        } else {
            4 << 20
        };
        Self::with_limit(backend, ids, limit).await
    }

    pub async fn with_limit(backend: Backend, ids: Ids, max_upload_bytes: u64) -> Typed {
        Typed {
            h: Harness::with_limit(backend, max_upload_bytes).await,
            ids,
        }
    }

    /// Creates a campaign of the harness's type whose window is offset from
    /// now by the given hours. Integer campaigns leave the type out, so the
    /// default stays tested.
    pub async fn create(&self, id: &str, start_h: i64, end_h: i64) -> Value {
        let now = Utc::now();
        let mut body = json!({
            "id": id,
            "name": format!("Campaign {id}"),
            "starts_at": (now + Span::hours(start_h)).to_rfc3339(),
            "ends_at": (now + Span::hours(end_h)).to_rfc3339(),
            "design": self.design(),
        });
        if self.ids != Ids::Integer {
            body["user_id_type"] = json!(self.ids.name());
        }
        let (status, body) = self.post_json("/v1/campaigns", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["user_id_type"], self.ids.name(), "{body}");
        body
    }

    pub async fn active(&self, id: &str) -> Value {
        self.create(id, -1, 1).await
    }

    /// Replaces with a plain list of users; asserts success.
    pub async fn replace(&self, id: &str, ns: &[u64]) -> Value {
        let (status, body) = self
            .upload(id, "replace", "text/plain", self.ids.lines(ns))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The exported audience, read back as numbers in the export's order.
    pub async fn export(&self, id: &str) -> Vec<u64> {
        let text = self.h.export_text(id).await;
        text.lines().map(|l| self.ids.number(l)).collect()
    }

    pub async fn is_member(&self, id: &str, n: u64) -> bool {
        let path = format!("/v1/campaigns/{id}/members/{}", self.ids.path(n));
        let (status, body) = self.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user_id"], self.ids.value(n), "{body}");
        body["member"].as_bool().unwrap()
    }

    pub async fn campaigns_of(&self, n: u64) -> Vec<String> {
        let path = format!("/v1/users/{}/campaigns", self.ids.path(n));
        let (status, body) = self.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body["campaigns"].clone()).unwrap()
    }
}
