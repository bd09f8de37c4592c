//! The Redis store: shared by any number of service instances.
//!
//! ```text
//!   mod.rs      RedisStore: connect, writes' entry points, a thin `impl Store`
//!   checks.rs   the login path: one campaign's check, a user's campaigns
//!   coalesce.rs reads shared by concurrent checks of one campaign
//!   connect.rs  how to reach Redis or a Redis Cluster: URL, password, TLS
//!   conn.rs     connections with per-call deadlines and metrics
//!   pace.rs     bulk writes paced by Redis's latency, so uploads yield to logins
//!   batch.rs    commands sent together, split by slot on a cluster
//!   settings.rs server settings that hurt logins, checked at start-up
//!   catalog.rs  the campaign catalog, reconciled; change listener
//!   lease.rs    the writer lease (one writer per campaign)
//!   publish.rs  the write protocol: fenced commits, rebuilds, deltas
//!   replicas.rs `--min-replicas-ack`: WAIT for replicas around a publish
//!   snapshot.rs compact roaring snapshots of every audience version
//!   history.rs  the kept versions: their records, and which snapshots stay
//!   meta.rs     the `meta` hash, parsed strictly
//!   audit.rs    the audit stream
//!   keys.rs     every key format
//!   scripts/    the Lua scripts, one per atomic step
//!   design/     `set`, `per-user`, `bitmap`: how each lays out an audience
//! ```
//!
//! Rules every write follows, because one slow command stalls every login
//! and because the store must run unchanged on Redis Cluster:
//! - bulk data moves in commands of about [`CHUNK`] members, pipelined, and
//!   is staged beside the live data under names unique to the attempt;
//! - every change commits through one fenced script over the campaign's
//!   own keys (one hash slot), which refuses a writer that lost its lease;
//! - no transaction or script touches keys of two hash slots; what spans
//!   slots (the index, announcements, per-user keys) is ordered so that a
//!   crash between any two steps is repaired or never seen by readers.
//!
//! Checks use their own connection with a short deadline; bulk writes use
//! another with a long one, so a million-ID upload never queues ahead of a login.

mod audit;
mod batch;
mod catalog;
mod checks;
mod coalesce;
mod conn;
pub(crate) mod connect;
mod design;
mod history;
mod keys;
mod lease;
mod meta;
mod pace;
mod publish;
mod replicas;
mod settings;
mod snapshot;

pub use catalog::CatalogListener;
pub use connect::{ConnectOptions, PASSWORD_VAR, client, is_cluster_url, uses_tls};
pub use design::CHUNK;
pub use keys::{Keys, PREFIX, Stamp};
pub use meta::CampaignMeta;
pub use pace::UploadPacing;
pub use snapshot::SNAPSHOT_STRING_MAX_BYTES;

use batch::Batch;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::history::{AudienceVersion, Origin, VersionAction};
use super::{AuditEvent, Store, StoreError, StoreOptions, StoreResult, check_id_type};
use crate::domain::{AudienceChange, Campaign, CampaignPatch, Design};
use crate::ids::{Audience, User};
use catalog::Catalog;
use conn::Conn;
use design::{Delta, Designs, RedisDesign};

const CREATE: &str = include_str!("scripts/create.lua");

/// A cheap handle; clones share connections and the catalog.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    target: connect::Target,
    /// How many replicas must confirm a publish, and for how long to wait.
    replicas: replicas::ReplicaAck,
    /// The connection replica waits run on (`--min-replicas-ack` ≥ 1).
    acks: Option<Conn>,
    /// Checks read replicas (`--read-from-replicas`).
    replica_reads: bool,
    /// Ticks after every catalog change or reconciliation; the near-cache
    /// listens to it to reload or to confirm what it holds.
    refreshed: tokio::sync::watch::Sender<u64>,
    /// Publish times of announced changes, by campaign: (version, unix ms).
    /// Lets a cache measure write-to-applied lag. Bounded: one per campaign.
    announced: std::sync::Mutex<HashMap<String, (u64, i64)>>,
    check: Conn,
    /// Identity reads shared by concurrent `per-user` checks on a cluster.
    identities: coalesce::Coalesced<Vec<Option<String>>>,
    admin: Conn,
    options: StoreOptions,
    /// Read on every login, written about once a second. A std `RwLock`
    /// around an `Arc` keeps the read to a pointer copy and is never held
    /// across an `.await`.
    catalog: RwLock<Arc<Catalog>>,
    /// Called on every catalog change (see `catalog::on_catalog_change`);
    /// registered once at start-up, read on every change.
    catalog_listeners: RwLock<Vec<catalog::CatalogListener>>,
    designs: Designs,
}

impl RedisStore {
    /// Connects lazily: the service starts (and reports not ready) while Redis
    /// is down, and the connections recover by themselves when it returns.
    pub async fn connect(url: &str, options: StoreOptions) -> anyhow::Result<RedisStore> {
        Self::connect_with_keys(url, options, Keys::default()).await
    }

    /// Like [`RedisStore::connect`], with every key under `keys`' prefix.
    pub async fn connect_with_keys(
        url: &str,
        options: StoreOptions,
        keys: Keys,
    ) -> anyhow::Result<RedisStore> {
        Self::open(url, &ConnectOptions::default(), options, keys).await
    }

    /// Like [`RedisStore::connect_with_keys`], with a password or TLS files
    /// from `connect`.
    pub async fn open(
        url: &str,
        connect: &ConnectOptions,
        options: StoreOptions,
        keys: Keys,
    ) -> anyhow::Result<RedisStore> {
        let target = connect::target(url, connect)?;
        anyhow::ensure!(
            !connect.read_from_replicas || matches!(target, connect::Target::Cluster(_)),
            "--read-from-replicas needs a redis+cluster:// or rediss+cluster:// store"
        );
        let store = RedisStore {
            inner: Arc::new(Inner {
                refreshed: tokio::sync::watch::channel(0).0,
                announced: std::sync::Mutex::new(HashMap::new()),
                designs: Designs::new(&keys),
                keys,
                check: Conn::open(
                    &target,
                    options.check_timeout,
                    conn::Use::Checks {
                        replicas: connect.read_from_replicas,
                    },
                )?,
                identities: coalesce::Coalesced::default(),
                admin: Conn::open(&target, options.admin_timeout, conn::Use::Writes)?
                    .with_pacer(pace::Pacer::new(options.upload_pacing)),
                replicas: replicas::ReplicaAck::new(connect),
                acks: match replicas::ReplicaAck::new(connect) {
                    ack if ack.min > 0 => {
                        Some(Conn::open(&target, ack.deadline(), conn::Use::Writes)?)
                    }
                    _ => None,
                },
                replica_reads: connect.read_from_replicas,
                target,
                options,
                catalog: RwLock::new(Arc::new(Catalog::default())),
                catalog_listeners: RwLock::new(Vec::new()),
            }),
        };
        let mut first = catalog::Reconciler::default();
        match store.reconcile(&mut first).await {
            Ok(()) => tracing::info!(
                url = %super::redact_url(url),
                tls = uses_tls(url),
                cluster = is_cluster_url(url),
                campaigns = store.catalog().campaigns.len(),
                "connected to Redis"
            ),
            Err(e) => tracing::warn!(
                url = %super::redact_url(url),
                tls = uses_tls(url),
                cluster = is_cluster_url(url),
                error = %e,
                "Redis is not reachable yet; retrying in the background"
            ),
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        catalog::spawn_reconciler(Arc::downgrade(&store.inner), wake.clone());
        catalog::spawn_change_listener(Arc::downgrade(&store.inner), wake);
        Ok(store)
    }

    /// Logs a warning for each server setting that hurts logins (see
    /// `settings.rs`); settings that cannot be read are logged at info.
    pub async fn check_settings(&self) {
        let (found, unreadable) = settings::read(&self.inner.admin).await;
        for error in unreadable {
            tracing::info!(%error, "could not check Redis settings that affect logins");
        }
        for warning in settings::warnings(&found) {
            tracing::warn!("Redis setting: {warning}");
        }
    }

    fn design(&self, design: Design) -> &dyn RedisDesign {
        self.inner.designs.for_design(design)
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn expire_at(&self, campaign: &Campaign) -> i64 {
        // A window that ended long ago still keeps its data for one retention
        // period from now, rather than vanishing the moment it is written.
        let base = campaign.ends_at.max(Utc::now());
        base.timestamp() + self.inner.options.retention.as_secs() as i64
    }

    /// The audience of `meta` at its version, from its compact snapshot:
    /// a few bytes per ID, never a scan of the live data. `Busy` when the
    /// snapshot is gone because a newer version replaced it.
    pub async fn snapshot(&self, meta: &CampaignMeta) -> StoreResult<Audience> {
        self.read_audience(meta).await
    }

    /// The integer audience `meta` names, as its IDs in ascending order:
    /// what the near-cache builds its own form from, without a treemap in
    /// between.
    pub async fn snapshot_ids(&self, meta: &CampaignMeta) -> StoreResult<Vec<u64>> {
        if meta.campaign.version == 0 {
            return Ok(Vec::new());
        }
        self.read_snapshot(meta, snapshot::decode_sorted).await
    }

    async fn read_audience(&self, meta: &CampaignMeta) -> StoreResult<Audience> {
        if meta.campaign.version == 0 {
            return Ok(Audience::empty(meta.campaign.user_id_type));
        }
        let audience = self.read_snapshot(meta, snapshot::decode).await?;
        same_type(meta, audience)
    }

    async fn read_snapshot<T: Send + 'static>(
        &self,
        meta: &CampaignMeta,
        decode: fn(&[u8]) -> Result<T, String>,
    ) -> StoreResult<T> {
        let key = self
            .keys()
            .snapshot(meta.id(), meta.incarnation, meta.snapshot);
        snapshot::read(&self.inner.admin, &key, decode)
            .await?
            .ok_or_else(|| StoreError::Busy(meta.id().to_string()))
    }

    /// The authoritative metadata of one campaign.
    async fn load(&self, conn: &Conn, id: &str) -> StoreResult<CampaignMeta> {
        let hash: HashMap<String, String> = conn
            .cmd("get", redis::cmd("HGETALL").arg(self.keys().meta(id)))
            .await?;
        if hash.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        CampaignMeta::parse(id, &hash)
    }

    /// The current audience, retrying if a concurrent change retired the
    /// snapshot between reading the version and the data.
    async fn current_audience(&self, id: &str) -> StoreResult<(CampaignMeta, Audience)> {
        let mut attempt = 0;
        loop {
            let meta = self.load(&self.inner.admin, id).await?;
            match self.read_audience(&meta).await {
                Err(StoreError::Busy(_)) if attempt < 2 => attempt += 1,
                other => return other.map(|m| (meta, m)),
            }
        }
    }

    /// Takes the campaign's writer lease.
    async fn lease(&self, id: &str) -> StoreResult<lease::Lease> {
        lease::acquire(&self.inner.admin, self.keys(), id).await
    }

    /// The campaign's current metadata for a writer holding `lease`, after
    /// undoing any change a previous writer left half-done.
    async fn current(&self, token: &str, id: &str) -> StoreResult<CampaignMeta> {
        let meta = self.load(&self.inner.admin, id).await?;
        self.recover(token, &meta).await
    }

    /// Refuses an audience the campaign's design cannot hold well.
    fn audience_fits(design: Design, members: &Audience) -> StoreResult<()> {
        let Some(members) = members.as_integers() else {
            // Only integer designs limit IDs; bitmap campaigns take no
            // other type (refused at create).
            return Ok(());
        };
        design.check_ids(members)?;
        if design == Design::Bitmap {
            design::check_bitmap_cost(members).map_err(|e| StoreError::Unsuitable {
                code: "bitmap_too_sparse",
                field: "design",
                message: e.message,
            })?;
        }
        Ok(())
    }

    /// Add or remove: computes the change against the current snapshot,
    /// then applies it in place when small or rebuilds when large.
    async fn change(
        &self,
        id: &str,
        ids: Audience,
        adding: bool,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let action = if adding {
            VersionAction::Added
        } else {
            VersionAction::Removed
        };
        let origin = Origin::new(by, action);
        let lease = self.lease(id).await?;
        let token = lease.token.clone();
        lease
            .run(async {
                let current = self.current(&token, id).await?;
                check_id_type(&current.campaign, &ids)?;
                let old = self.read_audience(&current).await?;
                let design = current.campaign.design;
                if adding && let Some(ids) = ids.as_integers() {
                    design.check_ids(ids)?;
                }
                let id_type = current.campaign.user_id_type;
                let (next, delta) = tokio::task::spawn_blocking(move || {
                    let mut delta = Delta::none(id_type);
                    let next = if adding {
                        delta.add = ids.difference(&old);
                        old.union(&delta.add)
                    } else {
                        delta.remove = ids.difference(&ids.difference(&old));
                        old.difference(&delta.remove)
                    };
                    (next, delta)
                })
                .await
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                let changed = delta.len();
                if changed == 0 {
                    // Nothing to write, but this may be the retry of a
                    // change its replicas never confirmed: confirm it now.
                    let masters = self.masters_before_publish().await?;
                    self.await_replicas(&current, replicas::AckPoint::Published, &masters)
                        .await?;
                    return Ok(AudienceChange {
                        previous_size: current.campaign.audience_size,
                        audience_size: current.campaign.audience_size,
                        version: current.campaign.version,
                        changed: 0,
                    });
                }
                if adding {
                    Self::audience_fits(design, &next)?;
                }
                if changed as usize <= CHUNK {
                    self.apply_delta(&token, &current, &next, delta, &origin)
                        .await
                } else {
                    self.rebuild(&token, &current, next, changed, &origin).await
                }
            })
            .await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn check_audience(&self, design: Design, members: &Audience) -> StoreResult<()> {
        Self::audience_fits(design, members)
    }

    async fn create_campaign(&self, campaign: Campaign) -> StoreResult<Campaign> {
        let admin = &self.inner.admin;
        let meta = CampaignMeta::new(campaign);
        let id = meta.id();
        // Indexed first: a reconciliation must never see a campaign's
        // announcement before its index entry. An entry whose create died
        // before the metadata was written is pruned later.
        admin
            .cmd::<i64>(
                "create",
                redis::cmd("SADD").arg(self.keys().campaign_index()).arg(id),
            )
            .await?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(CREATE)
            .arg(1)
            .arg(self.keys().meta(id))
            .arg(self.expire_at(&meta.campaign));
        for (field, value) in meta.fields() {
            script.arg(field).arg(value);
        }
        let created: i64 = admin.cmd("create", &script).await?;
        if created == 0 {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        self.remember(meta.clone());
        self.announce(id, 0).await;
        tracing::info!(campaign = %id, design = meta.campaign.design.as_str(), incarnation = %meta.incarnation, "campaign created");
        Ok(meta.campaign)
    }

    async fn list_campaigns(&self) -> StoreResult<Vec<Campaign>> {
        let admin = &self.inner.admin;
        let ids: Vec<String> = admin
            .cmd(
                "list",
                redis::cmd("SMEMBERS").arg(self.keys().campaign_index()),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Batch::new();
        for id in &ids {
            pipe.hgetall(self.keys().meta(id));
        }
        let hashes: Vec<HashMap<String, String>> = admin.pipe("list", &pipe).await?;
        // Malformed entries are skipped here as in the catalog (which logs
        // and counts them), so one bad key never hides the others.
        let mut campaigns: Vec<Campaign> = ids
            .iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .filter_map(|(id, h)| CampaignMeta::parse(id, &h).ok())
            .map(|m| m.campaign)
            .collect();
        campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(campaigns)
    }

    async fn get_campaign(&self, id: &str) -> StoreResult<Campaign> {
        Ok(self.load(&self.inner.admin, id).await?.campaign)
    }

    async fn update_campaign(&self, id: &str, patch: &CampaignPatch) -> StoreResult<Campaign> {
        let lease = self.lease(id).await?;
        let token = lease.token.clone();
        lease
            .run(async {
                let current = self.current(&token, id).await?;
                let next = self.patch(&token, &current, patch).await?;
                tracing::info!(campaign = %id, "campaign updated");
                Ok(next.campaign)
            })
            .await
    }

    async fn delete_campaign(&self, id: &str) -> StoreResult<()> {
        let lease = self.lease(id).await?;
        let token = lease.token.clone();
        lease
            .run(async {
                let current = self.current(&token, id).await?;
                self.delete(&token, &current).await?;
                tracing::info!(campaign = %id, incarnation = %current.incarnation, "campaign deleted");
                Ok(())
            })
            .await
    }

    async fn replace_audience(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let origin = Origin::new(by, VersionAction::Replaced);
        let lease = self.lease(id).await?;
        let token = lease.token.clone();
        lease
            .run(async {
                let current = self.current(&token, id).await?;
                check_id_type(&current.campaign, &members)?;
                Self::audience_fits(current.campaign.design, &members)?;
                let received = members.len();
                self.rebuild(&token, &current, members, received, &origin)
                    .await
            })
            .await
    }

    async fn add_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        self.change(id, members, true, by).await
    }

    async fn remove_members(
        &self,
        id: &str,
        members: Audience,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        self.change(id, members, false, by).await
    }

    async fn versions(&self, id: &str) -> StoreResult<Vec<AudienceVersion>> {
        let meta = self.load(&self.inner.admin, id).await?;
        Ok(history::records(self.kept(&meta).await?))
    }

    /// Reads the kept version under the lease, from the incarnation the
    /// commit is fenced on, so a delete and re-create in between can never
    /// publish the old campaign's audience into the new one.
    async fn rollback(
        &self,
        id: &str,
        version: u64,
        expected_live: Option<u64>,
        by: &str,
    ) -> StoreResult<AudienceChange> {
        let mut origin = Origin::new(by, VersionAction::RolledBack);
        origin.restored = Some(version);
        let lease = self.lease(id).await?;
        let token = lease.token.clone();
        lease
            .run(async {
                let current = self.current(&token, id).await?;
                // The commit is fenced on this revision: the live version
                // checked here is the one the rollback replaces.
                super::history::check_live(id, current.campaign.version, expected_live)?;
                let kept = self.kept(&current).await?;
                let members = self.kept_audience(&current, &kept, version).await?;
                Self::audience_fits(current.campaign.design, &members)?;
                let size = members.len();
                self.rebuild(&token, &current, members, size, &origin).await
            })
            .await
    }

    async fn audience(&self, id: &str) -> StoreResult<Arc<Audience>> {
        Ok(Arc::new(self.current_audience(id).await?.1))
    }

    async fn is_member(&self, id: &str, user: &User) -> StoreResult<(Campaign, bool)> {
        let (campaign, mut answers) = self.are_members(id, std::slice::from_ref(user)).await?;
        Ok((campaign, answers.pop().unwrap_or(false)))
    }

    /// Users that cannot be IDs of the campaign's type are left out of the
    /// probe and answered `false`.
    async fn are_members(&self, id: &str, users: &[User]) -> StoreResult<(Campaign, Vec<bool>)> {
        self.probe(id, users).await
    }

    async fn campaigns_for_many(
        &self,
        users: &[User],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Vec<String>>> {
        self.campaigns_for_many_at(users, now).await
    }

    fn catalog_is_stale(&self) -> bool {
        RedisStore::catalog_is_stale(self)
    }

    fn answers_from_replicas(&self) -> bool {
        self.inner.replica_reads
    }

    async fn ready(&self) -> StoreResult<()> {
        let conn = self.inner.check.with_deadline(
            self.inner
                .options
                .check_timeout
                .max(Duration::from_millis(250)),
        );
        let pong: String = conn.cmd("ping", &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Corrupt(format!("PING answered {pong:?}")));
        }
        if self.catalog().reconciled_at.is_none() {
            return Err(StoreError::Unavailable(
                "the campaign catalog has not been loaded from Redis yet".into(),
            ));
        }
        Ok(())
    }

    async fn record(&self, event: &AuditEvent) -> StoreResult<()> {
        self.append_audit(event).await
    }

    async fn audit(&self, campaign: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        self.read_audit(campaign, limit).await
    }
}

/// `audience`, if it is of `meta`'s ID type: a snapshot of another type
/// is damage (or a key written by something else), never an answer.
pub(crate) fn same_type(meta: &CampaignMeta, audience: Audience) -> StoreResult<Audience> {
    if audience.id_type() == meta.campaign.user_id_type {
        return Ok(audience);
    }
    Err(StoreError::Corrupt(format!(
        "campaign {:?} takes {} IDs, but its snapshot holds {} IDs",
        meta.id(),
        meta.campaign.user_id_type,
        audience.id_type()
    )))
}
