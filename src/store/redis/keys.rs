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
    /// Key names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// SET of every campaign id. Small (one member per campaign), admin-rate.
    pub fn campaign_index(&self) -> String {
        format!("{}:campaigns", self.prefix)
    }

    /// STRING counter bumped right after every committed change. A hint, not
    /// the source of truth: a writer that dies between its commit and this
    /// bump leaves it unchanged, which the periodic reconciliation covers.
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
    /// Named by the attempt, so no two writers can ever share one.
    pub fn staging(&self, campaign: &str, attempt: Stamp) -> String {
        format!("{}:{{{campaign}}}:staging:{attempt}", self.prefix)
    }

    /// STRING bitmap of the live audience, `bitmap` design: bit N is set
    /// when user N is a member. Also a public name: `GETBIT` on it answers.
    pub fn bitmap(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:bitmap", self.prefix)
    }

    /// STRING bitmap being filled by a replace, `bitmap` design.
    pub fn bitmap_staging(&self, campaign: &str, attempt: Stamp) -> String {
        format!("{}:{{{campaign}}}:bitmap-staging:{attempt}", self.prefix)
    }

    /// Name the old live SET (or bitmap) takes for the instant between the swap and its UNLINK.
    /// Renaming onto a name that does not exist is O(1), unlike renaming onto the
    /// big live key, which would free it synchronously.
    pub fn trash(&self, campaign: &str, attempt: Stamp) -> String {
        format!("{}:{{{campaign}}}:trash:{attempt}", self.prefix)
    }

    /// STRING holding one audience version in roaring's portable format,
    /// named by the campaign's incarnation and the attempt that wrote it.
    /// Written before the version is published, so a reader that knows the
    /// name can always fetch exactly that audience; unique per attempt, so
    /// a failed writer's clean-up can never remove another writer's snapshot.
    pub fn snapshot(&self, campaign: &str, incarnation: Stamp, attempt: Stamp) -> String {
        format!(
            "{}:{{{campaign}}}:snapshot:{incarnation}:{attempt}",
            self.prefix
        )
    }

    /// HASH of the campaign's kept audience versions: field = the version,
    /// value = its record as JSON with the stamp of its snapshot (see
    /// `history.rs`). Written only inside fenced commits.
    pub fn versions(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:versions", self.prefix)
    }

    /// STRING holding the IDs a `per-user` in-place change is writing, while
    /// the change is pending (see `FIELD_PENDING`): what the next writer
    /// needs to undo it if this one dies.
    pub fn pending(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:pending", self.prefix)
    }

    /// STRING lease held by the one writer changing a campaign's audience.
    pub fn lock(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:lock", self.prefix)
    }

    /// HASH per user, `per-user` design: one field per campaign generation that
    /// holds the user (see [`per_user_field`]); value: its version ranges.
    /// `user` is the canonical text of the user's ID (decimal, lowercase
    /// UUID, or the exact string), so the integer 42 and the string "42"
    /// share a key and are told apart by their campaigns' fields.
    pub fn user(&self, user: &str) -> String {
        format!("{}:user:{{{user}}}:campaigns", self.prefix)
    }

    /// STRING written just before a `WAIT` for replicas on the campaign's
    /// primary (`--min-replicas-ack`), so the wait covers every earlier
    /// write to that node. A random value, 60 s TTL.
    pub fn ack(&self, campaign: &str) -> String {
        format!("{}:{{{campaign}}}:ack", self.prefix)
    }

    /// The same for one cluster master, tagged by a number chosen so the
    /// key lands in a slot that master owns (`per-user` publishes wait on
    /// every master).
    pub fn node_ack(&self, tag: u64) -> String {
        format!("{}:ack:{{{tag}}}", self.prefix)
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
}

/// Audit stream length kept by `XADD … MAXLEN ~`.
pub const AUDIT_CAP: u64 = 100_000;

/// A random 64-bit name: a campaign's incarnation, or one write attempt
/// (which names its staging keys, its snapshot and, for a rebuild, the new
/// generation). Random rather than counted, so naming one needs no shared
/// counter in another hash slot, and written as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stamp(pub u64);

impl Stamp {
    /// A fresh random stamp.
    pub fn random() -> Stamp {
        Stamp(rand::random())
    }

    /// A stamp from its 16 hex digits.
    pub fn parse(s: &str) -> Option<Stamp> {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .map(Stamp)
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Field of [`Keys::user`]: `<campaign-id>:<incarnation>:<generation>`. Only
/// the campaign's current incarnation and generation count, so replacing an
/// audience needs no deletes, and nothing written for a deleted campaign can
/// ever answer for a re-created one of the same id.
pub fn per_user_field(campaign: &str, incarnation: Stamp, generation: Stamp) -> String {
    format!("{campaign}:{incarnation}:{generation}")
}

/// Splits a [`per_user_field`] back into campaign id, incarnation and generation.
pub fn parse_per_user_field(field: &str) -> Option<(&str, Stamp, Stamp)> {
    let mut parts = field.rsplitn(3, ':');
    let generation = Stamp::parse(parts.next()?)?;
    let incarnation = Stamp::parse(parts.next()?)?;
    Some((parts.next()?, incarnation, generation))
}

// Fields of the `meta` hash.
pub const FIELD_NAME: &str = "name";
pub const FIELD_STARTS_AT: &str = "starts_at";
pub const FIELD_ENDS_AT: &str = "ends_at";
pub const FIELD_DESIGN: &str = "design";
/// `integer`, `string` or `uuid`; absent (integer) on campaigns created
/// before the field existed.
pub const FIELD_ID_TYPE: &str = "user_id_type";
pub const FIELD_SIZE: &str = "audience_size";
pub const FIELD_VERSION: &str = "version";
/// Random name of the campaign's life: set at create, never changed, so a
/// deleted and re-created campaign is never mistaken for its predecessor.
pub const FIELD_INCARNATION: &str = "incarnation";
/// Bumped by every committed change (audience or window): the fence a
/// writer's commit checks, and what the catalog compares to find changes.
pub const FIELD_REVISION: &str = "revision";
/// Stamp of the live audience's generation: changes only on a rebuild.
pub const FIELD_GENERATION: &str = "generation";
/// Stamp of the live audience's snapshot: changes with every version.
pub const FIELD_SNAPSHOT: &str = "snapshot";
/// Present while a `per-user` in-place change to version N is half-written:
/// holds N. The next writer undoes it before doing anything else.
pub const FIELD_PENDING: &str = "pending";
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
        let (i, g) = (Stamp(0xabc), Stamp(u64::MAX));
        let f = per_user_field("a_b-1", i, g);
        assert_eq!(f, "a_b-1:0000000000000abc:ffffffffffffffff");
        assert_eq!(parse_per_user_field(&f), Some(("a_b-1", i, g)));
        assert_eq!(parse_per_user_field("nogeneration"), None);
        assert_eq!(parse_per_user_field("c:1:2"), None);
    }
}
