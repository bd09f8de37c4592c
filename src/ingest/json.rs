//! The JSON format: an array of user ids, collected element by element.
//!
//! serde_json already holds numbers to the one user id syntax (JSON has no
//! leading zeros or `+`); what is left here is refusing everything that is
//! not a plain unsigned integer, with a message naming the value, and
//! stopping at the audience limit without reading the rest.

use std::cell::Cell;
use std::io::{self, Read};

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{Collector, IngestError, Parsed};
use crate::domain::MAX_ECHO;
use crate::ids::{IdType, UserKey};

/// Marks our element visitor's refusals apart from serde_json's own errors.
const NOT_A_USER_ID: &str = " is not a user id";

pub fn parse(
    reader: &mut impl Read,
    max_audience: u64,
    id_type: IdType,
) -> Result<Parsed, IngestError> {
    let mut de =
        serde_json::Deserializer::from_reader(io::BufReader::with_capacity(64 * 1024, reader));
    let over_limit = Cell::new(false);
    let parsed = de
        .deserialize_seq(AudienceVisitor {
            max_audience,
            id_type,
            over_limit: &over_limit,
        })
        .and_then(|p| de.end().map(|()| p));
    parsed.map_err(|e| {
        if over_limit.get() {
            return IngestError::TooManyIds {
                limit: max_audience,
            };
        }
        if e.is_io() {
            return IngestError::Body(e.to_string());
        }
        if e.is_eof() && e.line() <= 1 && e.column() == 0 {
            return IngestError::Empty;
        }
        // serde_json appends " at line L column C"; the line goes first in ours.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        let line = e.line() as u64;
        // Our element visitor's rejections name the value; anything else is
        // the document's shape or syntax.
        if e.classify() == serde_json::error::Category::Data && message.contains(NOT_A_USER_ID) {
            IngestError::Invalid { line, message }
        } else {
            IngestError::Malformed { line, message }
        }
    })
}

/// Collects a JSON array of IDs straight into the bitmap, element by element.
struct AudienceVisitor<'a> {
    max_audience: u64,
    id_type: IdType,
    /// Set when the array outgrew the limit, so the error can say so rather
    /// than pass through serde's string-only errors.
    over_limit: &'a Cell<bool>,
}

impl<'de> Visitor<'de> for AudienceVisitor<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of user ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut parsed = Collector::new(self.id_type, self.max_audience);
        while let Some(id) = seq.next_element_seed(IdSeed(self.id_type))? {
            let pushed = match id {
                Element::Int(id) => parsed.push_int(id),
                Element::Key(key) => parsed.push(key),
            };
            if pushed.is_err() {
                self.over_limit.set(true);
                return Err(de::Error::custom("too many user ids"));
            }
        }
        // Only the limit can fail here, checked when the list is compacted.
        parsed.finish().map_err(|_| {
            self.over_limit.set(true);
            de::Error::custom("too many user ids")
        })
    }
}

/// One element: an integer ID, or an ID of another type.
enum Element {
    Int(u64),
    Key(UserKey),
}

/// Reads one element as an ID of the campaign's type.
struct IdSeed(IdType);

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Element;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Element, D::Error> {
        match self.0 {
            IdType::Integer => d.deserialize_any(IdVisitor).map(Element::Int),
            other => d.deserialize_any(KeyVisitor(other)).map(Element::Key),
        }
    }
}

/// String and UUID campaigns take JSON strings; a string campaign also
/// takes a plain unsigned integer as its decimal text.
struct KeyVisitor(IdType);

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = UserKey;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a {} user id as a JSON string", self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<UserKey, E> {
        let text = v.trim_ascii().as_bytes();
        self.0.read(text).map_err(|why| {
            // The marker reports it as a bad id, not a malformed document.
            let message = why.message(text);
            if message.contains(NOT_A_USER_ID) {
                E::custom(message)
            } else {
                E::custom(format!("{message}, so it{NOT_A_USER_ID} of this campaign"))
            }
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UserKey, E> {
        match self.0 {
            IdType::String => Ok(UserKey::Str(v.to_string())),
            _ => Err(IdVisitor::reject(v, " (send UUIDs as JSON strings)")),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UserKey, E> {
        Err(IdVisitor::reject(v, " (send ids as JSON strings)"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<UserKey, E> {
        Err(IdVisitor::reject(v, " (send ids as JSON strings)"))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<UserKey, E> {
        Err(IdVisitor::reject(v, ""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<UserKey, E> {
        Err(IdVisitor::reject("null", ""))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<UserKey, A::Error> {
        Err(IdVisitor::reject("a nested array", ""))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<UserKey, A::Error> {
        Err(IdVisitor::reject("an object", ""))
    }
}

struct IdVisitor;

impl IdVisitor {
    fn reject<E: de::Error>(shown: impl std::fmt::Display, why: &str) -> E {
        E::custom(format!("{shown}{NOT_A_USER_ID}{why}"))
    }
}

impl<'de> Visitor<'de> for IdVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an unsigned 64-bit user id")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| Self::reject(v, " (user ids are unsigned)"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // serde_json reads integers beyond u64 as floats; echoing the rounded
        // float would show a number the client never sent.
        if v.fract() == 0.0 && v >= u64::MAX as f64 {
            Err(Self::reject(
                "a number",
                " (larger than 18446744073709551615)",
            ))
        } else if v.is_sign_negative() {
            // `-0` arrives here too: serde_json has no negative integer zero.
            Err(Self::reject(
                "a negative number",
                " (user ids are unsigned)",
            ))
        } else {
            Err(Self::reject(
                v,
                " (write user ids as plain digits, without a fraction or exponent)",
            ))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let shown: String = v.chars().take(MAX_ECHO).collect();
        Err(Self::reject(
            format!("{shown:?}"),
            " (send numbers, not strings)",
        ))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Err(Self::reject(v, ""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Err(Self::reject("null", ""))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(Self::reject("a nested array", ""))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(Self::reject("an object", ""))
    }
}
