//! Every Redis key guestlist reads or writes, in one place.
//!
//! `docs/data-model.md` documents each key's type, writer and expiry; keep the
//! two in step. All keys of one campaign share the hash tag `{<campaign-id>}`
//! so they can share one Redis Cluster slot and the swap that publishes a
//! new audience can be one transaction over them. Per-user keys are tagged by
//! user instead, which spreads login reads over the whole cluster.
//!
//! Campaign ids match `^[a-z0-9][a-z0-9_-]{0,63}$`, so they never contain
//! `{`, `}` or `:` and cannot escape their tag or collide across fields.
//!
//! Every name starts with a prefix, `guestlist` unless configured otherwise;
//! the benchmark uses a private prefix so it can remove exactly what it wrote
//! from a shared server.

use crate::domain::UserId;

/// The default key prefix. `guestlist:{<id>}:members` is a public contract.
pub const PREFIX: &str = "guestlist";

/// Builds key names under one prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// SET of every campaign id. Small (one member per campaign), admin-rate.
    pub fn campaign_index(&self) -> String {
        format!("{}:campaigns", self.prefix)
    }

    /// STRING counter bumped on every metadata change, so instances can poll one
    /// cheap key to know whether their copy of the catalog is current.
    pub fn catalog_version(&self) -> String {
        format!("{}:catalog-version", self.prefix)
    }

    /// HASH of a campaign's metadata (see `FIELD_*`).
    pub fn meta(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:meta", self.prefix)
    }

    /// SET of the live audience, `set` design. **Public contract**: other
    /// applications may run `SISMEMBER` on this exact name.
    pub fn members(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:members", self.prefix)
    }

    /// SET being filled by a replace, `set` design, before it is swapped live.
    pub fn staging(&self, campaign: &str, generation: u64) -> String {
        format!("{}:{{{campaign}}}:staging:{generation}", self.prefix)
    }

    /// STRING bitmap of the live audience, `bitmap` design: bit N is set
    /// when user N is a member. Also a public name: `GETBIT` on it answers.
    pub fn bitmap(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:bitmap", self.prefix)
    }

    /// STRING bitmap being filled by a replace, `bitmap` design.
    pub fn bitmap_staging(&self, campaign: &str, generation: u64) -> String {
        format!("{}:{{{campaign}}}:bitmap-staging:{generation}", self.prefix)
    }

    /// Name the old live SET (or bitmap) takes for the instant between the swap and its UNLINK.
    /// Renaming onto a name that does not exist is O(1), unlike renaming onto the
    /// big live key, which would free it synchronously.
    pub fn trash(&self, campaign: &str, generation: u64) -> String {
        format!("{}:{{{campaign}}}:trash:{generation}", self.prefix)
    }

    /// STRING holding the audience at `version` in roaring's portable format.
    /// Written before the version is published, so a reader that knows a version
    /// can always fetch exactly that audience.
    pub fn snapshot(&self, campaign: &str, version: u64) -> String {
        format!("{}:{{{campaign}}}:snapshot:{version}", self.prefix)
    }

    /// STRING lease held by the one writer changing a campaign's audience.
    pub fn lock(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:lock", self.prefix)
    }

    /// HASH per user, `per-user` design: one field per campaign generation that
    /// holds the user (see [`per_user_field`]); value `1`.
    pub fn user(&self, user: UserId) -> String {
        format!("{}:user:{{{user}}}:campaigns", self.prefix)
    }

    /// Pub/sub channel announcing every change, so instances (and their
    /// near-caches) reload at once instead of at their next poll.
    pub fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// STREAM of audit events, capped at about [`AUDIT_CAP`] entries.
    pub fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// STRING counter handing out audience generations. Global, so a
    /// deleted and re-created campaign never reuses a generation and stale
    /// per-user entries can never come back to life.
    pub fn generations(&self) -> String {
        format!("{}:generations", self.prefix)
    }
}

/// Audit stream length kept by `XADD … MAXLEN ~`.
pub const AUDIT_CAP: u64 = 100_000;

/// Field of [`Keys::user`]: `<campaign-id>:<generation>`. Only the campaign's
/// current generation counts, so replacing an audience needs no deletes.
pub fn per_user_field(campaign: &str, generation: u64) -> String {
    format!("{campaign}:{generation}")
}

/// Splits a [`per_user_field`] back into campaign id and generation.
pub fn parse_per_user_field(field: &str) -> Option<(&str, u64)> {
    let (campaign, generation) = field.rsplit_once(':')?;
    Some((campaign, generation.parse().ok()?))
}

// Fields of the `meta` hash.
pub const FIELD_NAME: &str = "name";
pub const FIELD_STARTS_AT: &str = "starts_at";
pub const FIELD_ENDS_AT: &str = "ends_at";
pub const FIELD_DESIGN: &str = "design";
pub const FIELD_SIZE: &str = "audience_size";
pub const FIELD_VERSION: &str = "version";
/// Generation of the live audience (see `Campaign::generation`).
pub const FIELD_GENERATION: &str = "generation";
pub const FIELD_CREATED_AT: &str = "created_at";
pub const FIELD_UPDATED_AT: &str = "updated_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_set_key_has_the_documented_name() {
        let keys = Keys::default();
        assert_eq!(
            keys.members("spring-sale"),
            "guestlist:{spring-sale}:members"
        );
        assert_eq!(Keys::new("x").meta("c"), "x:{c}:meta");
    }

    #[test]
    fn per_user_fields_round_trip() {
        let f = per_user_field("a_b-1", 42);
        assert_eq!(parse_per_user_field(&f), Some(("a_b-1", 42)));
        assert_eq!(parse_per_user_field("nogeneration"), None);
    }
}
