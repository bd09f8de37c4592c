//! The storage boundary: one object-safe trait, one implementation per backend.
//!
//! Handlers hold an `Arc<dyn Store>` chosen once at start-up ([`open`]) and never
//! ask which backend or design sits behind it. Backends:
//!
//! - [`embedded`]: the no-setup default. Audiences live in memory as roaring
//!   bitmaps and persist in a redb file.
//! - [`redis`]: the production store. Campaign metadata and audiences live in
//!   Redis so any number of instances share them; each campaign's audience uses
//!   the Redis data model named by its `design` (one file per design under
//!   `store/redis/`).

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

#[cfg(feature = "server")]
pub mod embedded;
pub mod history;
pub mod redis;

pub use history::{AudienceVersion, VersionAction};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AudienceChange, Campaign, CampaignPatch, Design};
use crate::ids::{Audience, User};

/// Errors a store reports. Handlers map each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No campaign has this id.
    #[error("campaign {0:?} does not exist")]
    NotFound(String),
    /// A campaign already has this id.
    #[error("campaign {0:?} already exists")]
    AlreadyExists(String),
    /// Another audience change for this campaign is in progress.
    #[error("campaign {0:?} has another audience change in progress; retry when it finishes")]
    Busy(String),
    /// A field breaks a rule.
    #[error(transparent)]
    Invalid(#[from] crate::domain::Invalid),
    /// The backend did not answer within the deadline.
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// The backend is unreachable or failed; the source says how.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A writer's commit was refused because it no longer held the
    /// campaign's lease or the campaign changed under it: nothing applied.
    #[error("the write was refused: {0}")]
    Fenced(String),
    /// The campaign's design cannot hold this audience well (`code` says
    /// why); nothing was changed.
    #[error("{message}")]
    Unsuitable {
        /// The API's error code for it.
        code: &'static str,
        /// The campaign field that makes it unsuitable.
        field: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// Data in the store could not be read back (a bug or outside tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A rollback named a version the history no longer (or never) held.
    #[error("campaign {campaign:?} keeps no version {version}; {}", kept_versions(.kept))]
    VersionNotKept {
        /// The campaign's id.
        campaign: String,
        /// The version asked for.
        version: u64,
        /// The versions it does keep, newest first.
        kept: Vec<u64>,
    },
    /// A change made against a live version that is no longer live.
    #[error("campaign {campaign:?} is at version {live}, not {expected} as expected")]
    Moved {
        /// The campaign's id.
        campaign: String,
        /// The version live now.
        live: u64,
        /// The version the caller saw live.
        expected: u64,
    },
    /// Fewer replicas than required confirmed a write in time. The message
    /// says whether the change was published on the primary; a retry of
    /// the same request is safe either way.
    #[error("{0}")]
    Unreplicated(String),
}

/// What every store call returns.
pub type StoreResult<T> = Result<T, StoreError>;

fn kept_versions(kept: &[u64]) -> String {
    match kept {
        [] => "it keeps none yet".to_string(),
        _ => {
            let list: Vec<String> = kept.iter().map(u64::to_string).collect();
            format!("the kept versions are {}", list.join(", "))
        }
    }
}

/// Refuses an audience whose IDs are not of `campaign`'s type: a caller
/// parsed the upload against another campaign (or an older one of that id).
pub(crate) fn check_id_type(campaign: &Campaign, members: &Audience) -> StoreResult<()> {
    if members.id_type() == campaign.user_id_type {
        return Ok(());
    }
    Err(StoreError::Invalid(crate::domain::Invalid {
        code: "invalid_user_id",
        field: "user_id_type",
        message: format!(
            "campaign {:?} takes {} user ids, not {}",
            campaign.id,
            campaign.user_id_type,
            members.id_type()
        ),
    }))
}

/// Which store the service runs on, parsed from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// A directory for the embedded store.
    Embedded(std::path::PathBuf),
    /// A `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://`
    /// URL, its scheme in lower case.
    Redis(String),
}

/// What `--store` accepts, for error messages.
const ACCEPTED_STORES: &str = "--store takes a directory for the embedded store (e.g. ./guestlist-data), \
    redis://[user@]host[:port][/db] for Redis, rediss://[user@]host[:port][/db] for Redis over TLS, \
    or redis+cluster://host:port[,host:port…] (rediss+cluster:// for TLS) for Redis Cluster";

/// Why a `--store` value was refused. Messages show the value redacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreSpecError {
    /// No value at all.
    #[error("--store is empty; {ACCEPTED_STORES}")]
    Empty,
    #[error(
        "--store {0:?} starts or ends with white space (a stray space in an env file?); {ACCEPTED_STORES}"
    )]
    /// White space around the value.
    Padded(String),
    #[error("--store {shown}: {why}; {ACCEPTED_STORES}")]
    /// A cluster URL whose nodes cannot be read.
    Cluster {
        /// The value, its password masked.
        shown: String,
        /// What is wrong with it.
        why: String,
    },
    #[error("--store {shown}: the scheme {scheme}:// is not supported; {ACCEPTED_STORES}")]
    /// A URL of a scheme no store speaks.
    Scheme {
        /// The value, its password masked.
        shown: String,
        /// Its scheme, in lower case.
        scheme: String,
    },
    /// A value starting like a Redis URL but not one.
    #[error("--store {0}: a Redis URL starts with redis:// or rediss://; {ACCEPTED_STORES}")]
    Malformed(String),
}

impl StoreSpec {
    /// Reads `--store`. A value that looks like a URL (`scheme://`) must
    /// name a scheme guestlist supports; only other values are directories,
    /// so a mistyped URL fails here instead of becoming a data directory.
    /// Schemes are case-insensitive (RFC 3986) and normalised to lower case.
    pub fn parse(s: &str) -> Result<StoreSpec, StoreSpecError> {
        if s.is_empty() {
            return Err(StoreSpecError::Empty);
        }
        // Neither a URL nor a directory name plausibly begins or ends with
        // white space; taken as given, " redis://…" would become a directory.
        if s.trim() != s {
            return Err(StoreSpecError::Padded(redact_url(s)));
        }
        let Some((scheme, rest)) = url_scheme(s) else {
            // `redis:host` or `redis:/host`: a URL missing a slash, not a directory.
            let lower = s.to_ascii_lowercase();
            if lower.starts_with("redis:") || lower.starts_with("rediss:") {
                return Err(StoreSpecError::Malformed(redact_url(s)));
            }
            return Ok(StoreSpec::Embedded(s.into()));
        };
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "redis" | "rediss" => Ok(StoreSpec::Redis(format!("{scheme}://{rest}"))),
            "redis+cluster" | "rediss+cluster" => {
                let url = format!("{scheme}://{rest}");
                // The nodes are checked now, so a typo stops start-up.
                match redis::connect::target(&url, &redis::ConnectOptions::default()) {
                    Ok(_) => Ok(StoreSpec::Redis(url)),
                    Err(e) => Err(StoreSpecError::Cluster {
                        shown: redact_url(s),
                        why: format!("{e:#}"),
                    }),
                }
            }
            _ => Err(StoreSpecError::Scheme {
                shown: redact_url(s),
                scheme,
            }),
        }
    }

    /// A form safe to log: a password in a Redis URL is masked.
    pub fn redacted(&self) -> String {
        match self {
            StoreSpec::Embedded(p) => p.display().to_string(),
            StoreSpec::Redis(url) => redact_url(url),
        }
    }

    /// Whether this is a Redis URL that carries a password.
    pub fn has_password(&self) -> bool {
        match self {
            StoreSpec::Embedded(_) => false,
            StoreSpec::Redis(url) => {
                // A cluster URL's user info is shared by its nodes: read it
                // as that of its first node (split as the client splits it).
                let single = match redis::connect::cluster_nodes(url) {
                    Some(Ok(nodes)) => nodes[0].clone(),
                    Some(Err(_)) => return false,
                    None => url.clone(),
                };
                ::redis::parse_redis_url(&single)
                    .is_some_and(|u| u.password().is_some_and(|p| !p.is_empty()))
            }
        }
    }
}

/// Splits `scheme://rest` when `s` starts with a URL scheme (RFC 3986:
/// a letter, then letters, digits, `+`, `-` or `.`).
fn url_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

/// Masks the userinfo of a URL (`redis://user:secret@host` → `redis://user:***@host`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    // The user info ends at the last `@`: a password with an unencoded `/`
    // or `@` must not end it early and be shown. Redis URLs carry no `@`
    // in their path or query.
    match rest.rfind('@') {
        None => url.to_string(),
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &rest[at..])
        }
    }
}

/// Tuning shared by the backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Deadline for one login check.
    pub check_timeout: Duration,
    /// Deadline for one admin call or one pipelined chunk of a bulk write.
    pub admin_timeout: Duration,
    /// How long audience data outlives the end of its campaign.
    pub retention: Duration,
    /// Past this age without confirmation, answers that rest on a copy of
    /// the store's state (a catalog, a cache) are stale.
    pub max_staleness: Duration,
    /// How audience uploads pace their writes (Redis store; off by default
    /// here, on by default in `serve`).
    pub upload_pacing: redis::UploadPacing,
    /// How many audience versions each campaign keeps for rollback, the
    /// live one included (`--keep-versions`, at least 1).
    pub keep_versions: usize,
    /// Redis store: a snapshot up to this many bytes is one string, as
    /// every earlier version wrote it; a bigger one is a hash of pieces,
    /// since a Redis string stops at 512 MB (see `snapshot.rs`).
    pub snapshot_string_max_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            check_timeout: Duration::from_millis(50),
            admin_timeout: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_staleness: Duration::from_secs(5),
            upload_pacing: redis::UploadPacing::default(),
            keep_versions: history::DEFAULT_KEEP_VERSIONS,
            snapshot_string_max_bytes: redis::SNAPSHOT_STRING_MAX_BYTES,
        }
    }
}

/// Campaign metadata, audiences and login checks.
///
/// Audience writes take a whole bitmap: parsing and de-duplication happen
/// before the store is touched, so a bad upload never reaches it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `embedded` or `redis`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Creates `campaign`, empty at version 0.
    async fn create_campaign(&self, campaign: Campaign) -> StoreResult<Campaign>;
    /// Every campaign, by id.
    async fn list_campaigns(&self) -> StoreResult<Vec<Campaign>>;
    /// One campaign.
    async fn get_campaign(&self, id: &str) -> StoreResult<Campaign>;
    /// Applies `patch` (name, window); the audience is untouched.
    async fn update_campaign(&self, id: &str, patch: &CampaignPatch) -> StoreResult<Campaign>;
    /// Removes the campaign and frees its audience without blocking the backend.
    async fn delete_campaign(&self, id: &str) -> StoreResult<()>;

    /// Replaces the whole audience; readers see the old one or the new one,
    /// never a mix. `by` names who asked, for the history.
    async fn replace_audience(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange>;
    /// Adds `members` to the audience, as a new version when any was absent.
    async fn add_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange>;
    /// Removes `members` from the audience, as a new version when any was present.
    async fn remove_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange>;
    /// The whole audience in its compact form, for export.
    async fn audience(&self, id: &str) -> StoreResult<Arc<Audience>>;

    /// The kept audience versions, newest first: at most
    /// [`StoreOptions::keep_versions`], the live one first once there is one.
    async fn versions(&self, id: &str) -> StoreResult<Vec<AudienceVersion>>;
    /// Publishes kept version `version`'s audience again, as a new version
    /// made like a replace (same lease, fence and checks);
    /// [`StoreError::VersionNotKept`] when the history does not hold it,
    /// [`StoreError::Moved`] when `expected_live` is given and the live
    /// version is another (checked under the write lease).
    async fn rollback(
        &self,
        id: &str,
        version: u64,
        expected_live: Option<u64>,
        by: &str,
    ) -> StoreResult<AudienceChange>;

    /// Whether `design` may hold `members` in this store: the refusal a
    /// replace or add to exactly that audience would meet, for dry runs.
    fn check_audience(&self, design: Design, members: &Audience) -> StoreResult<()> {
        if let Some(ids) = members.as_integers() {
            design.check_ids(ids)?;
        }
        Ok(())
    }

    /// Is `user` in campaign `id`'s audience? Returns the campaign too so the
    /// caller can report whether it is active. A user that cannot be an ID
    /// of the campaign's type is not a member (callers that must refuse it
    /// check with [`User::key_for`]).
    async fn is_member(&self, id: &str, user: &User) -> StoreResult<(Campaign, bool)>;
    /// The batch form of [`Store::is_member`], one answer per user in order.
    async fn are_members(&self, id: &str, users: &[User]) -> StoreResult<(Campaign, Vec<bool>)>;
    /// IDs of the campaigns active at `now` whose audience holds `user`,
    /// sorted: each campaign reads `user` as its own ID type. The batch
    /// form with one user, unless a backend has a faster way.
    async fn campaigns_for(&self, user: &User, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        Ok(self
            .campaigns_for_many(std::slice::from_ref(user), now)
            .await?
            .remove(0))
    }
    /// The batch form of [`Store::campaigns_for`], one list per user in order.
    async fn campaigns_for_many(
        &self,
        users: &[User],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Vec<String>>>;

    /// Whether answers of [`Store::campaigns_for_many`] rest on a copy of the
    /// campaign list older than the staleness bound (they are then stale).
    fn catalog_is_stale(&self) -> bool {
        false
    }

    /// Whether checks read replicas, which may lag their primaries.
    fn answers_from_replicas(&self) -> bool {
        false
    }

    /// Ok when the backend answers; the error says why not.
    async fn ready(&self) -> StoreResult<()>;

    /// Appends one change to the durable audit log.
    async fn record(&self, event: &AuditEvent) -> StoreResult<()>;
    /// The newest `limit` audit events, newest first, for one campaign or all.
    async fn audit(&self, campaign: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEvent>>;
}

/// One change to a campaign, for the audit log: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// RFC 3339, UTC.
    pub at: String,
    /// The name of the admin token used.
    pub actor: String,
    /// The campaign changed.
    pub campaign: String,
    /// `created`, `updated`, `deleted`, `audience_replaced`, `audience_added`,
    /// `audience_removed` or `audience_rolled_back`.
    pub action: String,
    /// A sentence for humans, e.g. "replaced 3,000,000 IDs with 10 at version 4".
    pub summary: String,
    /// The audience version after the change, when it changed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl AuditEvent {
    /// An event by `actor` (filled in by the writer when empty) at the current time.
    pub fn new(
        actor: &str,
        campaign: &str,
        action: &str,
        summary: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            at: crate::domain::fmt_time(Utc::now()),
            actor: actor.to_string(),
            campaign: campaign.to_string(),
            action: action.to_string(),
            summary: summary.into(),
            version: None,
        }
    }

    /// The event, naming the audience version the change made.
    pub fn at_version(mut self, version: u64) -> AuditEvent {
        self.version = Some(version);
        self
    }
}

/// Most events an audit query returns.
pub const MAX_AUDIT_LIMIT: usize = 1_000;

/// Opens the store named by `spec`.
#[cfg(feature = "server")]
pub async fn open(spec: &StoreSpec, options: StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match spec {
        StoreSpec::Embedded(dir) => {
            Arc::new(embedded::EmbeddedStore::open_keeping(dir, options.keep_versions).await?)
        }
        StoreSpec::Redis(url) => Arc::new(redis::RedisStore::connect(url, options).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_pick_the_backend_by_scheme() {
        let parse = |s| StoreSpec::parse(s).unwrap();
        assert_eq!(
            parse("redis://127.0.0.1:6379/2"),
            StoreSpec::Redis("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            parse("Rediss://host:6380"),
            StoreSpec::Redis("rediss://host:6380".into())
        );
        assert_eq!(parse("./data"), StoreSpec::Embedded("./data".into()));
        assert_eq!(parse("data:v2"), StoreSpec::Embedded("data:v2".into()));
        assert_eq!(
            parse("/srv/a://b"),
            StoreSpec::Embedded("/srv/a://b".into()),
            "a path is not a scheme"
        );
    }

    #[test]
    fn other_urls_are_refused_with_the_accepted_forms_and_no_password() {
        for bad in [
            "ftp://x",
            "redis+clsuter://x",
            "unix:///tmp/redis.sock",
            "redis:/h",
            "redis:h:6379",
            "",
            "http://u:hunter2@h",
        ] {
            let e = StoreSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("redis://") && e.contains("rediss://"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn cluster_urls_list_nodes_and_nothing_else() {
        assert_eq!(
            StoreSpec::parse("REDIS+CLUSTER://h:7000,h:7001").unwrap(),
            StoreSpec::Redis("redis+cluster://h:7000,h:7001".into())
        );
        assert!(StoreSpec::parse("rediss+cluster://app@h:7000/").is_ok());
        for bad in [
            "redis+cluster://h:7000,,h:7001",
            "redis+cluster://h:7000/1",
            "redis+cluster://u:hunter2@h:7000?x=1",
            "redis+cluster://",
        ] {
            let e = StoreSpec::parse(bad).unwrap_err();
            assert!(matches!(e, StoreSpecError::Cluster { .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let has = |s| StoreSpec::parse(s).unwrap().has_password();
        assert!(has("redis+cluster://:hunter2@h:1,h:2"));
        assert!(has("redis+cluster://:pa,ss@h:1,h:2"));
        assert!(!has("redis+cluster://app@h:1,h:2"));
    }

    #[test]
    fn only_a_non_empty_password_counts() {
        let has = |s| StoreSpec::parse(s).unwrap().has_password();
        assert!(has("redis://:hunter2@h"));
        assert!(has("rediss://app:hunter2@h:6380/1"));
        assert!(!has("redis://app@h"));
        assert!(!has("redis://h:6379"));
        assert!(!has("./data"));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            redact_url("redis://app:hunter2@10.0.0.1:6379/0"),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("rediss://:hunter2@host"), "rediss://:***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        // Unencoded `/` and `@` in a password: the user info ends at the last `@`.
        assert_eq!(
            redact_url("redis://app:ab/c@d@host:6379/0"),
            "redis://app:***@host:6379/0"
        );
    }
}
