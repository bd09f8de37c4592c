//! User IDs of each type a campaign can take, and audiences of them.
//!
//! A campaign fixes its [`IdType`] at create:
//!
//! - `integer`: today's 64-bit IDs, held in a `RoaringTreemap`;
//! - `uuid`: any standard textual form in, the canonical lowercase
//!   hyphenated form out, held as 128 bits;
//! - `string`: 1–256 bytes of UTF-8 without control characters, compared
//!   exactly (case-sensitive), held in one sorted byte arena.
//!
//! Everything here is pure: parsing, the canonical spellings, and
//! [`Audience`], the one collection every store write, export and history
//! entry carries.

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;

use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use crate::domain::{self, BadUserId};

/// The longest string ID accepted, in bytes.
pub const MAX_STRING_ID: usize = 256;

/// What a campaign's user IDs are; fixed at create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    /// Unsigned 64-bit integers in decimal (the default).
    #[default]
    Integer,
    /// Opaque strings: 1–256 bytes of UTF-8, no control characters.
    String,
    /// UUIDs, returned in canonical lowercase hyphenated form.
    Uuid,
}

impl IdType {
    /// Every type, for anything that must cover them all.
    pub const ALL: [IdType; 3] = [IdType::Integer, IdType::String, IdType::Uuid];

    /// The name the API, the CLI and the bench use.
    pub fn as_str(self) -> &'static str {
        match self {
            IdType::Integer => "integer",
            IdType::String => "string",
            IdType::Uuid => "uuid",
        }
    }

    /// The type named `s`, if any.
    pub fn parse(s: &str) -> Option<IdType> {
        IdType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Reads one ID of this type from `text` (already trimmed of
    /// surrounding white space).
    pub fn read(self, text: &[u8]) -> Result<UserKey, BadId> {
        match self {
            IdType::Integer => domain::parse_user_id(text)
                .map(UserKey::Int)
                .map_err(BadId::Integer),
            IdType::Uuid => parse_uuid(text).map(UserKey::Uuid).ok_or(BadId::NotAUuid),
            IdType::String => check_string(text).map(|s| UserKey::Str(s.to_string())),
        }
    }
}

impl fmt::Display for IdType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user ID of a known type, in the form audiences hold it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKey {
    /// An `integer` ID.
    Int(u64),
    /// A `uuid` ID as its 128 bits.
    Uuid(u128),
    /// A `string` ID, exactly as given (trimmed).
    Str(String),
}

impl UserKey {
    /// The canonical spelling: decimal, lowercase hyphenated UUID, or the
    /// string itself. What exports write and Redis stores.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            UserKey::Int(id) => Cow::Owned(id.to_string()),
            UserKey::Uuid(u) => Cow::Owned(fmt_uuid(*u)),
            UserKey::Str(s) => Cow::Borrowed(s),
        }
    }

    /// The type this ID belongs to.
    pub fn id_type(&self) -> IdType {
        match self {
            UserKey::Int(_) => IdType::Integer,
            UserKey::Uuid(_) => IdType::Uuid,
            UserKey::Str(_) => IdType::String,
        }
    }
}

/// A user as a request names it, before a campaign's type says how to read
/// it: `42` is the integer 42 to integer campaigns and the string "42" to
/// string ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `None` for a user made from an integer: the login path's library
    /// calls allocate nothing until a text is needed.
    text: Option<String>,
    int: Option<u64>,
    uuid: Option<u128>,
    string_ok: bool,
}

impl From<u64> for User {
    fn from(id: u64) -> User {
        User::from_int(id)
    }
}

impl User {
    /// Users named by integer IDs, for batch checks.
    pub fn ints(ids: &[u64]) -> Vec<User> {
        ids.iter().map(|&id| User::from_int(id)).collect()
    }

    /// Reads `text` (trimmed here) as every type at once. Refused only
    /// when no type can hold it; the error is the one the integer type
    /// gives when the text looks numeric, else the string type's.
    pub fn parse(text: &str) -> Result<User, BadId> {
        // The same trim as uploads: ASCII white space. Any other white
        // space at an edge is refused as a string ID (see `check_string`).
        let text = text.trim_ascii();
        let int = domain::parse_user_id(text.as_bytes());
        let string = check_string(text.as_bytes());
        let uuid = parse_uuid(text.as_bytes());
        if int.is_err() && string.is_err() && uuid.is_none() {
            // A plain over-long string is refused as a string; a signed or
            // zero-padded number keeps the integer rule's reason.
            return Err(match (int, string) {
                (Err(BadUserId::NotANumber), Err(e)) => e,
                (Err(e), _) => BadId::Integer(e),
                (Ok(_), _) => unreachable!("checked above"),
            });
        }
        Ok(User {
            int: int.ok(),
            uuid,
            string_ok: string.is_ok(),
            text: Some(text.to_string()),
        })
    }

    /// A user named by an integer ID.
    pub fn from_int(id: u64) -> User {
        User {
            text: None,
            int: Some(id),
            uuid: None,
            string_ok: true,
        }
    }

    /// The text as given (trimmed).
    pub fn text(&self) -> Cow<'_, str> {
        match (&self.text, self.int) {
            (Some(text), _) => Cow::Borrowed(text),
            (None, Some(id)) => Cow::Owned(id.to_string()),
            (None, None) => Cow::Borrowed(""),
        }
    }

    /// The integer, when the text is one.
    pub fn as_int(&self) -> Option<u64> {
        self.int
    }

    /// The UUID, when the text is one in any standard form.
    pub fn as_uuid(&self) -> Option<u128> {
        self.uuid
    }

    /// The text as a string ID, when it can be one.
    pub fn as_string(&self) -> Option<Cow<'_, str>> {
        self.string_ok.then(|| self.text())
    }

    /// This user as an ID of `id_type`, or `None` when the text cannot be one.
    pub fn key(&self, id_type: IdType) -> Option<UserKey> {
        match id_type {
            IdType::Integer => self.int.map(UserKey::Int),
            IdType::Uuid => self.uuid.map(UserKey::Uuid),
            IdType::String => self
                .string_ok
                .then(|| UserKey::Str(self.text().into_owned())),
        }
    }

    /// The same, as a refusal naming why when the text cannot be one: for
    /// checks against one campaign, where a misspelt ID is a caller's bug.
    pub fn key_for(&self, id_type: IdType) -> Result<UserKey, BadId> {
        match self.key(id_type) {
            Some(key) => Ok(key),
            None => Err(id_type
                .read(self.text().as_bytes())
                .err()
                .unwrap_or(BadId::NotAUuid)),
        }
    }
}

/// A user ID as answers show it: a JSON number for integer IDs (as before
/// other types existed), a string otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum UserIdValue {
    /// An integer ID.
    Int(u64),
    /// A string or UUID ID, in its canonical spelling.
    Text(String),
}

impl From<&UserKey> for UserIdValue {
    fn from(key: &UserKey) -> UserIdValue {
        match key {
            UserKey::Int(i) => UserIdValue::Int(*i),
            other => UserIdValue::Text(other.text().into_owned()),
        }
    }
}

impl PartialEq<u64> for UserIdValue {
    fn eq(&self, other: &u64) -> bool {
        *self == UserIdValue::Int(*other)
    }
}

impl fmt::Display for UserIdValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserIdValue::Int(i) => write!(f, "{i}"),
            UserIdValue::Text(t) => f.write_str(t),
        }
    }
}

impl User {
    /// How answers about this user, across campaigns of every type, show
    /// it: the integer when the text is one, else the text.
    pub fn value(&self) -> UserIdValue {
        match self.int {
            Some(i) => UserIdValue::Int(i),
            None => UserIdValue::Text(self.text().into_owned()),
        }
    }
}

/// Why a text is not a user ID of the type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadId {
    /// Not an integer ID; the inner value says why.
    Integer(BadUserId),
    /// Not a UUID in any standard form.
    NotAUuid,
    /// Empty after trimming.
    Empty,
    /// Longer than [`MAX_STRING_ID`] bytes.
    TooLong(usize),
    /// Holds a control character.
    Control,
    /// Not UTF-8.
    NotUtf8,
    /// Starts or ends with white space that trimming left (such as a
    /// no-break space), which would make two spellings of one user.
    Padded,
}

impl BadId {
    /// The refusal as the API words it, quoting (the start of) the text.
    pub fn message(self, text: &[u8]) -> String {
        let quoted = domain::quoted(text);
        match self {
            BadId::Integer(why) => why.message(text),
            BadId::NotAUuid => {
                format!("{quoted} is not a UUID (e.g. 3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f)")
            }
            BadId::Empty => "the user id is empty".to_string(),
            BadId::TooLong(len) => {
                format!("{quoted} is {len} bytes long; a user id is at most {MAX_STRING_ID}")
            }
            BadId::Control => format!("{quoted} holds a control character"),
            BadId::NotUtf8 => format!("{quoted} is not UTF-8"),
            BadId::Padded => format!("{quoted} starts or ends with white space"),
        }
    }
}

/// Checks a string ID: 1–256 bytes of UTF-8, no control characters.
fn check_string(text: &[u8]) -> Result<&str, BadId> {
    if text.is_empty() {
        return Err(BadId::Empty);
    }
    if text.len() > MAX_STRING_ID {
        return Err(BadId::TooLong(text.len()));
    }
    let s = std::str::from_utf8(text).map_err(|_| BadId::NotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(BadId::Control);
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(BadId::Padded);
    }
    Ok(s)
}

/// A UUID in any standard textual form: hyphenated, 32 hex digits, braced
/// or `urn:uuid:`, in either case.
pub fn parse_uuid(text: &[u8]) -> Option<u128> {
    uuid::Uuid::try_parse_ascii(text).ok().map(|u| u.as_u128())
}

/// The canonical form: lowercase, hyphenated.
pub fn fmt_uuid(value: u128) -> String {
    uuid::Uuid::from_u128(value).hyphenated().to_string()
}

/// Strings sorted and distinct, in one byte arena: 8 bytes of offset per
/// string beyond its bytes, instead of a heap allocation each.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Strings {
    bytes: Vec<u8>,
    /// `ends[i]` is where string `i` ends in `bytes`.
    ends: Vec<u64>,
}

impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().take(20)).finish()
    }
}

impl Strings {
    /// From strings in any order, duplicates dropped.
    pub fn from_unsorted<S: AsRef<str>>(mut items: Vec<S>) -> Strings {
        items.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        items.dedup_by(|a, b| a.as_ref() == b.as_ref());
        Strings::from_sorted_iter(items.iter().map(AsRef::as_ref))
    }

    /// From strings already ascending and distinct, held in exactly the
    /// memory they need (a growing arena would keep up to twice that).
    pub fn from_sorted_iter<'a>(items: impl Iterator<Item = &'a str>) -> Strings {
        let mut out = Strings::default();
        for s in items {
            debug_assert!(out.last().is_none_or(|last| last < s));
            out.push_sorted(s);
        }
        out.shrunk()
    }

    /// The same strings in exactly the memory they need.
    fn shrunk(mut self) -> Strings {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        self
    }

    fn push_sorted(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.ends.push(self.bytes.len() as u64);
    }

    /// How many strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends[i] as usize;
        // Only whole `&str`s are ever pushed, so each range is UTF-8.
        std::str::from_utf8(&self.bytes[start..end]).expect("whole strings only")
    }

    fn last(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// Whether `s` is held: a binary search.
    pub fn contains(&self, s: &str) -> bool {
        self.position(s).is_ok()
    }

    fn position(&self, s: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The strings, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> u64 {
        (self.bytes.capacity() + self.ends.capacity() * 8) as u64
    }
}

/// A whole audience (or a batch of IDs to add or remove) of one ID type.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// Integer IDs.
    Integers(RoaringTreemap),
    /// UUIDs, ascending and distinct.
    Uuids(Vec<u128>),
    /// String IDs, ascending and distinct.
    Strings(Strings),
}

impl From<RoaringTreemap> for Audience {
    fn from(ids: RoaringTreemap) -> Audience {
        Audience::Integers(ids)
    }
}

impl FromIterator<u64> for Audience {
    fn from_iter<I: IntoIterator<Item = u64>>(ids: I) -> Audience {
        Audience::Integers(ids.into_iter().collect())
    }
}

impl PartialEq<RoaringTreemap> for Audience {
    fn eq(&self, other: &RoaringTreemap) -> bool {
        self.as_integers() == Some(other)
    }
}

impl Audience {
    /// An empty audience of `id_type`.
    pub fn empty(id_type: IdType) -> Audience {
        match id_type {
            IdType::Integer => Audience::Integers(RoaringTreemap::new()),
            IdType::Uuid => Audience::Uuids(Vec::new()),
            IdType::String => Audience::Strings(Strings::default()),
        }
    }

    /// From IDs of one type in any order, duplicates dropped; `None` when
    /// they mix types. Empty input gives an empty `id_type` audience.
    pub fn from_keys(id_type: IdType, keys: impl IntoIterator<Item = UserKey>) -> Option<Audience> {
        let mut ints = RoaringTreemap::new();
        let mut uuids = Vec::new();
        let mut strings = Vec::new();
        for key in keys {
            if key.id_type() != id_type {
                return None;
            }
            match key {
                UserKey::Int(i) => {
                    ints.insert(i);
                }
                UserKey::Uuid(u) => uuids.push(u),
                UserKey::Str(s) => strings.push(s),
            }
        }
        Some(match id_type {
            IdType::Integer => Audience::Integers(ints),
            IdType::Uuid => {
                uuids.sort_unstable();
                uuids.dedup();
                Audience::Uuids(uuids)
            }
            IdType::String => Audience::Strings(Strings::from_unsorted(strings)),
        })
    }

    /// The type of the IDs held.
    pub fn id_type(&self) -> IdType {
        match self {
            Audience::Integers(_) => IdType::Integer,
            Audience::Uuids(_) => IdType::Uuid,
            Audience::Strings(_) => IdType::String,
        }
    }

    /// How many IDs.
    pub fn len(&self) -> u64 {
        match self {
            Audience::Integers(ids) => ids.len(),
            Audience::Uuids(ids) => ids.len() as u64,
            Audience::Strings(ids) => ids.len() as u64,
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The integer IDs, when that is the type.
    pub fn as_integers(&self) -> Option<&RoaringTreemap> {
        match self {
            Audience::Integers(ids) => Some(ids),
            _ => None,
        }
    }

    /// Whether `key` is held (false for a key of another type).
    pub fn contains(&self, key: &UserKey) -> bool {
        match (self, key) {
            (Audience::Integers(ids), UserKey::Int(i)) => ids.contains(*i),
            (Audience::Uuids(ids), UserKey::Uuid(u)) => ids.binary_search(u).is_ok(),
            (Audience::Strings(ids), UserKey::Str(s)) => ids.contains(s),
            _ => false,
        }
    }

    /// Every ID, ascending, as a key.
    pub fn keys(&self) -> Box<dyn Iterator<Item = UserKey> + Send + '_> {
        match self {
            Audience::Integers(ids) => Box::new(ids.iter().map(UserKey::Int)),
            Audience::Uuids(ids) => Box::new(ids.iter().map(|&u| UserKey::Uuid(u))),
            Audience::Strings(ids) => Box::new(ids.iter().map(|s| UserKey::Str(s.to_string()))),
        }
    }

    /// Every ID, ascending, in its canonical spelling (what exports write
    /// and Redis stores).
    pub fn texts(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + Send + '_> {
        match self {
            Audience::Integers(ids) => Box::new(ids.iter().map(|i| Cow::Owned(i.to_string()))),
            Audience::Uuids(ids) => Box::new(ids.iter().map(|&u| Cow::Owned(fmt_uuid(u)))),
            Audience::Strings(ids) => Box::new(ids.iter().map(Cow::Borrowed)),
        }
    }

    /// The IDs from the `start`-th on, ascending, in canonical spelling;
    /// for resuming a walk (integers seek by value instead, see export).
    pub fn texts_from(&self, start: usize) -> Box<dyn Iterator<Item = Cow<'_, str>> + Send + '_> {
        match self {
            Audience::Integers(_) => Box::new(self.texts().skip(start)),
            Audience::Uuids(ids) => Box::new(
                ids.get(start..)
                    .unwrap_or_default()
                    .iter()
                    .map(|&u| Cow::Owned(fmt_uuid(u))),
            ),
            Audience::Strings(ids) => {
                Box::new((start.min(ids.len())..ids.len()).map(|i| Cow::Borrowed(ids.get(i))))
            }
        }
    }

    /// `self ∪ other`; both of one type (else `self` unchanged).
    pub fn union(&self, other: &Audience) -> Audience {
        match (self, other) {
            (Audience::Integers(a), Audience::Integers(b)) => Audience::Integers(a | b),
            (Audience::Uuids(a), Audience::Uuids(b)) => Audience::Uuids(merge(a, b)),
            (Audience::Strings(a), Audience::Strings(b)) => {
                Audience::Strings(merge_strings(a, b, true))
            }
            _ => self.clone(),
        }
    }

    /// `self \ other`; both of one type (else `self` unchanged).
    pub fn difference(&self, other: &Audience) -> Audience {
        match (self, other) {
            (Audience::Integers(a), Audience::Integers(b)) => Audience::Integers(a - b),
            (Audience::Uuids(a), Audience::Uuids(b)) => Audience::Uuids(
                a.iter()
                    .copied()
                    .filter(|u| b.binary_search(u).is_err())
                    .collect(),
            ),
            (Audience::Strings(a), Audience::Strings(b)) => {
                Audience::Strings(merge_strings(a, b, false))
            }
            _ => self.clone(),
        }
    }

    /// How many of `other`'s IDs `self` holds.
    pub fn intersection_len(&self, other: &Audience) -> u64 {
        match (self, other) {
            (Audience::Integers(a), Audience::Integers(b)) => a.intersection_len(b),
            _ => other.keys().filter(|k| self.contains(k)).count() as u64,
        }
    }

    /// Heap bytes held, roughly: what memory gauges report.
    pub fn heap_bytes(&self) -> u64 {
        match self {
            Audience::Integers(ids) => ids.serialized_size() as u64,
            Audience::Uuids(ids) => (ids.capacity() * 16) as u64,
            Audience::Strings(ids) => ids.heap_bytes(),
        }
    }

    /// The compact byte form stores persist: roaring's portable format for
    /// integers, 16 big-endian bytes per UUID, strings one per line (a
    /// string ID holds no control character, so no newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Audience::Integers(ids) => {
                let mut out = Vec::with_capacity(ids.serialized_size());
                ids.serialize_into(&mut out)
                    .expect("writing to a Vec cannot fail");
                out
            }
            Audience::Uuids(ids) => ids.iter().flat_map(|u| u.to_be_bytes()).collect(),
            Audience::Strings(ids) => {
                let mut out = Vec::with_capacity(ids.bytes.len() + ids.len());
                for s in ids.iter() {
                    out.extend_from_slice(s.as_bytes());
                    out.push(b'\n');
                }
                out
            }
        }
    }

    /// Reads [`Audience::to_bytes`]'s form back; the error says what is wrong.
    pub fn from_bytes(id_type: IdType, bytes: &[u8]) -> Result<Audience, String> {
        match id_type {
            IdType::Integer => RoaringTreemap::deserialize_from(bytes)
                .map(Audience::Integers)
                .map_err(|e| format!("not a roaring bitmap: {e}")),
            IdType::Uuid => {
                if !bytes.len().is_multiple_of(16) {
                    return Err(format!(
                        "{} bytes is not a whole number of UUIDs",
                        bytes.len()
                    ));
                }
                let ids: Vec<u128> = bytes
                    .chunks_exact(16)
                    .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
                    .collect();
                if !ids.windows(2).all(|w| w[0] < w[1]) {
                    return Err("UUIDs out of order".into());
                }
                Ok(Audience::Uuids(ids))
            }
            IdType::String => {
                let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
                let body = match text.strip_suffix('\n') {
                    Some(body) => body,
                    None if text.is_empty() => "",
                    None => return Err("strings not newline-terminated".into()),
                };
                let mut out = Strings::default();
                if !text.is_empty() {
                    for s in body.split('\n') {
                        if check_string(s.as_bytes()).is_err() {
                            return Err(format!(
                                "{} is not a string id",
                                domain::quoted(s.as_bytes())
                            ));
                        }
                        if out.last().is_some_and(|last| last >= s) {
                            return Err("strings out of order".into());
                        }
                        out.push_sorted(s);
                    }
                }
                Ok(Audience::Strings(out.shrunk()))
            }
        }
    }

    /// Up to `n` IDs, the smallest first, in canonical spelling.
    pub fn sample(&self, n: usize) -> Vec<String> {
        self.texts().take(n).map(Cow::into_owned).collect()
    }
}

/// The union of two ascending, distinct runs, ascending and distinct.
fn merge(a: &[u128], b: &[u128]) -> Vec<u128> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(&x), Some(&y)) if x > y => {
                j += 1;
                y
            }
            (Some(&x), Some(_)) => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        out.push(next);
    }
    out.shrink_to_fit();
    out
}

/// `a ∪ b` when `union`, else `a \ b`, both ascending.
fn merge_strings(a: &Strings, b: &Strings, union: bool) -> Strings {
    let mut out = Strings::default();
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let x = a.get(i);
        match b.get_opt(j) {
            Some(y) if y < x => {
                if union {
                    out.push_sorted(y);
                }
                j += 1;
            }
            Some(y) if y == x => {
                if union {
                    out.push_sorted(x);
                }
                i += 1;
                j += 1;
            }
            _ => {
                out.push_sorted(x);
                i += 1;
            }
        }
    }
    if union {
        while let Some(y) = b.get_opt(j) {
            out.push_sorted(y);
            j += 1;
        }
    }
    out.shrunk()
}

impl Strings {
    fn get_opt(&self, i: usize) -> Option<&str> {
        (i < self.len()).then(|| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuids_in_any_standard_form_read_as_one() {
        let canonical = "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f";
        for form in [
            canonical,
            "3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F",
            "3f2a6c1e8b7d4c2a9e1f0a1b2c3d4e5f",
            "{3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f}",
            "urn:uuid:3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f",
        ] {
            let key = IdType::Uuid.read(form.as_bytes()).unwrap();
            assert_eq!(key.text(), canonical, "{form}");
        }
        for bad in [
            "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5",
            "42",
            "",
            "3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5g",
        ] {
            assert_eq!(
                IdType::Uuid.read(bad.as_bytes()),
                Err(BadId::NotAUuid),
                "{bad}"
            );
        }
    }

    #[test]
    fn strings_are_bounded_printable_utf8_compared_exactly() {
        let ok = |s: &str| IdType::String.read(s.as_bytes());
        assert_eq!(
            ok("a+b@example.com"),
            Ok(UserKey::Str("a+b@example.com".into()))
        );
        assert_eq!(ok(&"x".repeat(256)).map(|k| k.text().len()), Ok(256));
        assert_eq!(ok(&"x".repeat(257)), Err(BadId::TooLong(257)));
        assert_eq!(ok("a\tb"), Err(BadId::Control));
        assert_eq!(ok("alice\u{a0}"), Err(BadId::Padded));
        assert_eq!(User::parse("\u{a0}bob"), Err(BadId::Padded));
        assert_eq!(User::parse(" bob\t").unwrap().text(), "bob");
        assert_eq!(ok(""), Err(BadId::Empty));
        assert_eq!(IdType::String.read(b"\xff"), Err(BadId::NotUtf8));
        assert_ne!(ok("Ab"), ok("ab"));
        assert!(
            BadId::TooLong(257)
                .message(&[b'x'; 257])
                .contains("at most 256")
        );
    }

    #[test]
    fn a_user_reads_as_each_type_it_can_be() {
        let u = User::parse("42").unwrap();
        assert_eq!(u.key(IdType::Integer), Some(UserKey::Int(42)));
        assert_eq!(u.key(IdType::String), Some(UserKey::Str("42".into())));
        assert_eq!(u.key(IdType::Uuid), None);
        let e = User::parse("alice@example.com").unwrap();
        assert_eq!(e.key(IdType::Integer), None);
        assert_eq!(
            e.key_for(IdType::Integer),
            Err(BadId::Integer(BadUserId::NotANumber))
        );
        assert_eq!(User::parse(&"x".repeat(300)), Err(BadId::TooLong(300)));
        assert_eq!(User::parse(""), Err(BadId::Empty));
    }

    fn strings(items: &[&str]) -> Audience {
        Audience::Strings(Strings::from_unsorted(items.to_vec()))
    }

    #[test]
    fn string_audiences_merge_and_subtract() {
        let a = strings(&["b", "a", "c", "a"]);
        let b = strings(&["c", "d"]);
        assert_eq!(a.len(), 3);
        assert_eq!(a.union(&b), strings(&["a", "b", "c", "d"]));
        assert_eq!(a.difference(&b), strings(&["a", "b"]));
        assert_eq!(a.intersection_len(&b), 1);
        assert!(a.contains(&UserKey::Str("b".into())));
        assert!(!a.contains(&UserKey::Str("B".into())));
        assert!(!a.contains(&UserKey::Int(1)));
    }

    #[test]
    fn byte_forms_refuse_what_they_did_not_write() {
        assert!(Audience::from_bytes(IdType::String, b"b\na\n").is_err());
        assert!(Audience::from_bytes(IdType::String, b"a").is_err());
        assert!(Audience::from_bytes(IdType::String, b"a\n\tb\n").is_err());
        assert!(Audience::from_bytes(IdType::Uuid, &[0; 15]).is_err());
        assert_eq!(
            Audience::from_bytes(IdType::String, b"").unwrap(),
            Audience::empty(IdType::String)
        );
    }

    fn string_id() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9@+._ é-]{1,12}"
            .prop_map(|s| s.trim().to_string())
            .prop_filter("empty", |s| !s.is_empty())
    }

    proptest! {
        #[test]
        fn set_operations_match_a_btree_set(
            a in proptest::collection::vec(string_id(), 0..40),
            b in proptest::collection::vec(string_id(), 0..40),
        ) {
            use std::collections::BTreeSet;
            let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().cloned().collect(), b.iter().cloned().collect());
            let (aa, ab) = (Audience::Strings(Strings::from_unsorted(a)), Audience::Strings(Strings::from_unsorted(b)));
            let texts = |x: &Audience| x.texts().map(|t| t.into_owned()).collect::<Vec<_>>();
            prop_assert_eq!(texts(&aa.union(&ab)), sa.union(&sb).cloned().collect::<Vec<_>>());
            prop_assert_eq!(texts(&aa.difference(&ab)), sa.difference(&sb).cloned().collect::<Vec<_>>());
            prop_assert_eq!(aa.intersection_len(&ab), sa.intersection(&sb).count() as u64);
            prop_assert_eq!(Audience::from_bytes(IdType::String, &aa.to_bytes()).unwrap(), aa);
        }

        #[test]
        fn uuid_operations_match_a_btree_set(
            a in proptest::collection::vec(0u128..64, 0..40),
            b in proptest::collection::vec(0u128..64, 0..40),
        ) {
            use std::collections::BTreeSet;
            let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().copied().collect(), b.iter().copied().collect());
            let keys = |v: Vec<u128>| Audience::from_keys(IdType::Uuid, v.into_iter().map(UserKey::Uuid)).unwrap();
            let (aa, ab) = (keys(a), keys(b));
            let ids = |x: &Audience| match x { Audience::Uuids(v) => v.clone(), _ => unreachable!() };
            prop_assert_eq!(ids(&aa.union(&ab)), sa.union(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(ids(&aa.difference(&ab)), sa.difference(&sb).copied().collect::<Vec<_>>());
            prop_assert_eq!(Audience::from_bytes(IdType::Uuid, &aa.to_bytes()).unwrap(), aa);
        }
    }
}
