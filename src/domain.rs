//! Campaigns and their rules, independent of where they are stored.
//!
//! Everything here is pure: validation, the status derived from a clock, and
//! the results of audience changes. Stores persist these values; handlers
//! translate them to JSON.

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use crate::ids::IdType;

/// The longest campaign id accepted; keeps Redis key names short and bounded.
pub const MAX_ID_LEN: usize = 64;
/// Names are for humans; anything longer is almost certainly a mistake.
pub const MAX_NAME_LEN: usize = 200;

/// A user ID as the login path sees it.
pub type UserId = u64;

/// How a campaign's audience is laid out in Redis. The embedded store keeps
/// every design as an in-memory bitmap and records the choice only so that a
/// later move to Redis keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Design {
    /// One SET per campaign, checked with SISMEMBER.
    #[default]
    Set,
    /// One small hash per user naming the campaigns (and generations) that hold it.
    PerUser,
    /// One bitmap per campaign, bit N set when user N is in the audience.
    /// Compact for dense integer ID spaces; IDs must be below 2^32.
    Bitmap,
}

impl Design {
    /// Every design, for anything that must cover them all (the store's
    /// grouping of checks, the bench, the tests).
    pub const ALL: [Design; 3] = [Design::Set, Design::PerUser, Design::Bitmap];

    /// The name the API, the CLI and Redis use: `set`, `per-user` or `bitmap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Design::Set => "set",
            Design::PerUser => "per-user",
            Design::Bitmap => "bitmap",
        }
    }

    /// The largest user ID the design can hold, if it has a limit.
    pub fn max_user_id(self) -> Option<UserId> {
        match self {
            // Redis strings stop at 512 MiB = 2^32 bits.
            Design::Bitmap => Some(u32::MAX as UserId),
            Design::Set | Design::PerUser => None,
        }
    }

    /// Rejects an audience holding an ID the design cannot store.
    pub fn check_ids(self, ids: &roaring::RoaringTreemap) -> Result<(), Invalid> {
        match (self.max_user_id(), ids.max()) {
            (Some(limit), Some(max)) if max > limit => Err(invalid(
                "user_id",
                format!(
                    "user id {max} is above {limit} (2^32 - 1), the largest the {} design can hold; use the set or per-user design for larger ids",
                    self.as_str()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The design named `s`, if any.
    pub fn parse(s: &str) -> Option<Design> {
        match s {
            "set" => Some(Design::Set),
            "per-user" => Some(Design::PerUser),
            "bitmap" => Some(Design::Bitmap),
            _ => None,
        }
    }
}

/// Where a campaign's window stands relative to a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Before `starts_at`.
    Scheduled,
    /// From `starts_at` (included) to `ends_at` (excluded).
    Active,
    /// From `ends_at` on.
    Ended,
}

/// A campaign as stored. `status` is not stored: it is derived from the clock
/// whenever a campaign is shown (see [`CampaignView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Campaign {
    /// The id: `^[a-z0-9][a-z0-9_-]{0,63}$`, fixed at create.
    pub id: String,
    /// The display name.
    pub name: String,
    /// Start of the window, RFC 3339 in UTC; included.
    #[serde(with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    /// End of the window, RFC 3339 in UTC; excluded.
    #[serde(with = "rfc3339")]
    pub ends_at: DateTime<Utc>,
    /// How Redis lays out the audience.
    pub design: Design,
    /// What the audience's user IDs are; fixed at create. Campaigns stored
    /// before the type existed read as `integer`.
    #[serde(default)]
    pub user_id_type: IdType,
    /// IDs in the live audience.
    pub audience_size: u64,
    /// Increases on every audience change, so callers can tell lists apart.
    pub version: u64,
    /// When it was created, RFC 3339 in UTC.
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When it last changed, audience or not, RFC 3339 in UTC.
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl Campaign {
    /// Where `now` falls in the window.
    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        if now < self.starts_at {
            Status::Scheduled
        } else if now < self.ends_at {
            Status::Active
        } else {
            Status::Ended
        }
    }

    /// Whether `now` is inside the window.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.status_at(now) == Status::Active
    }

    /// The campaign as the API shows it at `now`, with its status.
    pub fn view(&self, now: DateTime<Utc>) -> CampaignView<'_> {
        CampaignView {
            campaign: self,
            status: self.status_at(now),
        }
    }
}

/// A campaign as the API shows it: the stored fields plus its status now.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CampaignView<'a> {
    /// The campaign itself.
    #[serde(flatten)]
    #[cfg_attr(feature = "server", schema(inline, value_type = Campaign))]
    pub campaign: &'a Campaign,
    /// Where the window stands now.
    pub status: Status,
}

/// The body of `POST /v1/campaigns`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Fixed for the campaign's life; used in paths and Redis keys.
    #[cfg_attr(feature = "server", schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// For people.
    #[cfg_attr(feature = "server", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// RFC 3339 with an offset; the window includes it.
    pub starts_at: String,
    /// RFC 3339 with an offset, after `starts_at`; the window excludes it.
    pub ends_at: String,
    /// How the audience is laid out in Redis; `set` when omitted.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(value_type = Option<Design>))]
    pub design: Option<String>,
    /// What the user IDs are; `integer` when omitted. Fixed for the
    /// campaign's life. The `bitmap` design takes integers only.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(value_type = Option<IdType>))]
    pub user_id_type: Option<String>,
}

/// The body of `PATCH /v1/campaigns/{id}`: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    /// A new display name.
    #[cfg_attr(feature = "server", schema(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// RFC 3339 with an offset.
    pub starts_at: Option<String>,
    /// RFC 3339 with an offset, after the start.
    pub ends_at: Option<String>,
}

/// A rule a campaign field broke. `field` names the JSON field so a form can
/// show the message next to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The API's error code: `invalid_campaign` but for a rule that has
    /// its own.
    pub code: &'static str,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it and how to fix it.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code: "invalid_campaign",
        field,
        message: message.into(),
    }
}

/// `^[a-z0-9][a-z0-9_-]{0,63}$`, checked by hand: it is short and saves a regex engine.
pub fn validate_id(id: &str) -> Result<(), Invalid> {
    let bytes = id.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "id",
            format!(
                "campaign id {id:?} must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
            ),
        ))
    }
}

fn validate_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("name must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(name.to_string())
}

fn parse_time(field: &'static str, value: &str) -> Result<DateTime<Utc>, Invalid> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                field,
                format!(
                    "{field} {value:?} is not an RFC 3339 timestamp (e.g. 2026-12-01T09:00:00Z)"
                ),
            )
        })
}

fn check_window(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<(), Invalid> {
    if ends_at <= starts_at {
        return Err(invalid(
            "ends_at",
            format!(
                "ends_at ({}) must be after starts_at ({})",
                fmt_time(ends_at),
                fmt_time(starts_at)
            ),
        ));
    }
    Ok(())
}

/// The ID type asked for, checked against the design.
fn id_type(design: Design, asked: Option<&str>) -> Result<IdType, Invalid> {
    let id_type = match asked {
        None => IdType::default(),
        Some(t) => IdType::parse(t).ok_or_else(|| {
            invalid(
                "user_id_type",
                format!("user_id_type {t:?} is not one of \"integer\", \"string\", \"uuid\""),
            )
        })?,
    };
    if design == Design::Bitmap && id_type != IdType::Integer {
        return Err(Invalid {
            code: "design_needs_integer_ids",
            field: "user_id_type",
            message: format!(
                "the bitmap design holds integer user ids only, not {id_type}; use the set or per-user design for {id_type} ids"
            ),
        });
    }
    Ok(id_type)
}

impl NewCampaign {
    /// Every rule the fields break, not just the first, for forms that show
    /// each error next to its field. Empty when [`NewCampaign::validate`]
    /// would succeed.
    pub fn problems(&self) -> Vec<Invalid> {
        let mut found = Vec::new();
        found.extend(validate_id(&self.id).err());
        found.extend(validate_name(&self.name).err());
        let starts_at = parse_time("starts_at", &self.starts_at).map_err(|e| found.push(e));
        let ends_at = parse_time("ends_at", &self.ends_at).map_err(|e| found.push(e));
        if let (Ok(s), Ok(e)) = (starts_at, ends_at) {
            found.extend(check_window(s, e).err());
        }
        if let Some(d) = self
            .design
            .as_deref()
            .filter(|d| Design::parse(d).is_none())
        {
            found.push(invalid(
                "design",
                format!("design {d:?} is not one of \"set\", \"per-user\", \"bitmap\""),
            ));
        }
        let design = self.design.as_deref().and_then(Design::parse);
        found.extend(id_type(design.unwrap_or_default(), self.user_id_type.as_deref()).err());
        found
    }

    /// Checks every field and builds the campaign as it will be stored.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Campaign, Invalid> {
        validate_id(&self.id)?;
        let name = validate_name(&self.name)?;
        let starts_at = parse_time("starts_at", &self.starts_at)?;
        let ends_at = parse_time("ends_at", &self.ends_at)?;
        check_window(starts_at, ends_at)?;
        let design = match self.design.as_deref() {
            None => Design::default(),
            Some(d) => Design::parse(d).ok_or_else(|| {
                invalid(
                    "design",
                    format!("design {d:?} is not one of \"set\", \"per-user\", \"bitmap\""),
                )
            })?,
        };
        let user_id_type = id_type(design, self.user_id_type.as_deref())?;
        Ok(Campaign {
            id: self.id,
            name,
            starts_at,
            ends_at,
            design,
            user_id_type,
            audience_size: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

impl CampaignPatch {
    /// Every rule the patch breaks against `current`, for forms (see
    /// [`NewCampaign::problems`]).
    pub fn problems(&self, current: &Campaign) -> Vec<Invalid> {
        let mut found = Vec::new();
        if let Some(name) = &self.name {
            found.extend(validate_name(name).err());
        }
        let time = |field, value: &Option<String>, current| match value {
            Some(v) => parse_time(field, v),
            None => Ok(current),
        };
        let starts_at = time("starts_at", &self.starts_at, current.starts_at);
        let ends_at = time("ends_at", &self.ends_at, current.ends_at);
        match (starts_at, ends_at) {
            (Ok(s), Ok(e)) => found.extend(check_window(s, e).err()),
            (s, e) => found.extend(s.err().into_iter().chain(e.err())),
        }
        found
    }

    /// Applies the patch to a copy of `current`, validating the result as a whole
    /// (a new `ends_at` is checked against the existing `starts_at`).
    pub fn apply(&self, current: &Campaign, now: DateTime<Utc>) -> Result<Campaign, Invalid> {
        let mut next = current.clone();
        if let Some(name) = &self.name {
            next.name = validate_name(name)?;
        }
        if let Some(s) = &self.starts_at {
            next.starts_at = parse_time("starts_at", s)?;
        }
        if let Some(e) = &self.ends_at {
            next.ends_at = parse_time("ends_at", e)?;
        }
        check_window(next.starts_at, next.ends_at)?;
        next.updated_at = now;
        Ok(next)
    }
}

/// What an audience change did, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AudienceChange {
    /// The audience's size before the change.
    pub previous_size: u64,
    /// The audience's size after the change.
    pub audience_size: u64,
    /// The audience's version after the change.
    pub version: u64,
    /// IDs that were not in the audience before (add) or were and are gone (remove).
    pub changed: u64,
}

/// Formats a timestamp the way the API and Redis store it: RFC 3339, UTC, `Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Longest spelling echoed back in an error; a pasted megabyte should not be.
pub const MAX_ECHO: usize = 40;

/// Why a text is not a user id; see [`parse_user_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUserId {
    /// Not digits.
    NotANumber,
    /// A minus sign.
    Negative,
    /// A plus sign.
    Signed,
    /// A zero before other digits (`007`).
    LeadingZero,
    /// Above 2^64-1.
    TooLarge,
}

impl BadUserId {
    /// The refusal as the API words it, quoting (the start of) the text.
    pub fn message(self, text: &[u8]) -> String {
        let why = match self {
            BadUserId::NotANumber => "",
            BadUserId::Negative => " (user ids are unsigned)",
            BadUserId::Signed => " (write it without a sign)",
            BadUserId::LeadingZero => " (leading zeros are not allowed)",
            BadUserId::TooLarge => " (larger than 18446744073709551615)",
        };
        format!("{} is not a user id{why}", quoted(text))
    }
}

/// `text` as a quoted string, cut at [`MAX_ECHO`] bytes.
pub fn quoted(text: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&text[..text.len().min(MAX_ECHO)]);
    if text.len() > MAX_ECHO {
        format!("{:?}", format!("{shown}…"))
    } else {
        format!("{shown:?}")
    }
}

/// The one spelling of a user id, in paths and bodies alike: its canonical
/// decimal form, the one the export writes. ASCII digits only, no sign, no
/// leading zero (except `0` itself), at most `u64::MAX`. Zero-padded ids are
/// refused rather than read as numbers because a system that pads them may
/// treat `007` and `7` as two users; merging them silently would be wrong.
pub fn parse_user_id(text: &[u8]) -> Result<u64, BadUserId> {
    let digits = |t: &[u8]| !t.is_empty() && t.iter().all(u8::is_ascii_digit);
    match text {
        [b'-', rest @ ..] if digits(rest) => Err(BadUserId::Negative),
        [b'+', rest @ ..] if digits(rest) => Err(BadUserId::Signed),
        [b'0', _, ..] if digits(text) => Err(BadUserId::LeadingZero),
        _ if digits(text) => {
            // All ASCII digits, so the only possible failure is overflow.
            let s = std::str::from_utf8(text).map_err(|_| BadUserId::NotANumber)?;
            s.parse().map_err(|_| BadUserId::TooLarge)
        }
        _ => Err(BadUserId::NotANumber),
    }
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::fmt_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn new(id: &str, start: &str, end: &str) -> NewCampaign {
        NewCampaign {
            id: id.into(),
            name: "Spring".into(),
            starts_at: start.into(),
            ends_at: end.into(),
            design: None,
            user_id_type: None,
        }
    }

    #[test]
    fn ids_follow_the_slug_rule() {
        for ok in ["a", "0", "spring-sale_2026", &"a".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a:b",
            "a{b}",
            &"a".repeat(65),
            "é",
        ] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_is_half_open_on_the_window() {
        let c = new("c", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
            .validate(Utc::now())
            .unwrap();
        assert_eq!(c.status_at(at("2025-12-31T23:59:59Z")), Status::Scheduled);
        assert_eq!(c.status_at(at("2026-01-01T00:00:00Z")), Status::Active);
        assert_eq!(c.status_at(at("2026-01-01T23:59:59Z")), Status::Active);
        assert_eq!(c.status_at(at("2026-01-02T00:00:00Z")), Status::Ended);
    }

    #[test]
    fn times_are_stored_in_utc() {
        let c = new("c", "2026-01-01T02:00:00+02:00", "2026-01-02T00:00:00Z")
            .validate(Utc::now())
            .unwrap();
        assert_eq!(fmt_time(c.starts_at), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_window_must_end_after_it_starts() {
        let e = new("c", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z")
            .validate(Utc::now())
            .unwrap_err();
        assert_eq!(e.field, "ends_at");
        let c = new("c", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
            .validate(Utc::now())
            .unwrap();
        let patch = CampaignPatch {
            ends_at: Some("2025-12-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(patch.apply(&c, Utc::now()).unwrap_err().field, "ends_at");
    }

    #[test]
    fn the_bitmap_design_names_its_id_limit() {
        let mut ids = roaring::RoaringTreemap::new();
        ids.insert(u32::MAX as u64);
        assert!(Design::Bitmap.check_ids(&ids).is_ok());
        ids.insert(1 << 32);
        let e = Design::Bitmap.check_ids(&ids).unwrap_err();
        assert!(e.message.contains("4294967296 is above 4294967295"), "{e}");
        assert!(Design::Set.check_ids(&ids).is_ok());
    }

    #[test]
    fn unknown_designs_are_rejected_by_name() {
        let mut n = new("c", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
        n.design = Some("list".into());
        let e = n.validate(Utc::now()).unwrap_err();
        assert_eq!(e.field, "design");
        assert!(e.message.contains("\"list\""));
    }

    #[test]
    fn a_user_id_has_one_spelling() {
        use BadUserId::*;
        let cases: &[(&str, Result<u64, BadUserId>)] = &[
            ("0", Ok(0)),
            ("42", Ok(42)),
            ("18446744073709551615", Ok(u64::MAX)),
            ("18446744073709551616", Err(TooLarge)),
            ("99999999999999999999999", Err(TooLarge)),
            ("007", Err(LeadingZero)),
            ("00", Err(LeadingZero)),
            ("+7", Err(Signed)),
            ("-7", Err(Negative)),
            ("-0", Err(Negative)),
            ("", Err(NotANumber)),
            ("+", Err(NotANumber)),
            ("-", Err(NotANumber)),
            (" 7", Err(NotANumber)),
            ("7 ", Err(NotANumber)),
            ("1e3", Err(NotANumber)),
            ("\u{663}", Err(NotANumber)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_user_id(text.as_bytes()), *expected, "{text:?}");
        }
        let long = "9".repeat(100);
        assert_eq!(
            TooLarge.message(long.as_bytes()),
            format!(
                "\"{}…\" is not a user id (larger than 18446744073709551615)",
                &long[..MAX_ECHO]
            )
        );
    }
}
