//! The Redis store: shared by any number of service instances.
//!
//! What lives where (every key format is in [`keys`]):
//! - campaign metadata in one hash per campaign, plus a small index set and a
//!   catalog version counter that instances poll once a second;
//! - each audience in the layout of its campaign's design ([`set`],
//!   [`per_user`]), behind the [`Layout`] trait;
//! - a compact roaring snapshot of every audience version, which serves
//!   export, incremental changes and per-user clean-up without ever reading a
//!   big SET whole.
//!
//! Rules every write follows, because one slow command stalls every login:
//! - bulk data moves in commands of about [`CHUNK`] members, pipelined;
//! - a replace builds the new audience beside the live one and publishes it in
//!   one short MULTI/EXEC, then frees the old one with UNLINK;
//! - a writer holds a lease lock per campaign, so two admins cannot interleave;
//! - staging data carries a short TTL, so an interrupted write cannot linger.
//!
//! Checks use their own connection with a short deadline; bulk writes use
//! another with a long one, so a million-ID upload never queues ahead of a login.

mod bitmap;
mod keys;
mod per_user;
mod set;

pub use keys::{Keys, PREFIX};

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, Value};
use roaring::RoaringTreemap;

use super::{AuditEvent, Store, StoreError, StoreOptions, StoreResult};
use crate::domain::{AudienceChange, Campaign, CampaignPatch, Design, UserId, fmt_time};

/// Members per command for bulk writes: big enough to amortise round trips,
/// small enough that no single command holds Redis for more than ~100 µs.
pub const CHUNK: usize = 1_000;
/// Commands sent per round trip during bulk writes.
const PIPELINE_DEPTH: usize = 32;
/// Incremental changes up to this many IDs are applied in place inside one
/// transaction; larger ones rebuild the audience beside the live one so the
/// transaction stays short.
const DELTA_MAX: u64 = 1_000;
/// Staging data outlives an interrupted write by at most this long.
const STAGING_TTL_SECS: i64 = 3_600;
/// Readers that fetched an old snapshot's name may still finish reading it.
const OLD_SNAPSHOT_TTL_SECS: i64 = 60;
/// Snapshot bytes per SET/APPEND/GETRANGE command.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Longest an audience writer may hold a campaign's lease.
const LOCK_LEASE: Duration = Duration::from_secs(600);
/// How often instances poll the catalog version.
const CATALOG_POLL: Duration = Duration::from_secs(1);
/// How long a replaced generation stays readable before it is cleaned up:
/// several catalog polls, so other instances have moved to the new one.
const RETIRE_DELAY: Duration = Duration::from_secs(5);

/// A Redis connection paired with the deadline every call on it gets.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
    deadline: Duration,
}

impl Conn {
    /// Runs one command under the deadline, recording latency and errors.
    pub(crate) async fn cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        let mut c = self.manager.clone();
        timed(
            op,
            self.deadline,
            async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    /// Runs one pipeline (one round trip) under the deadline.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> StoreResult<T> {
        let mut c = self.manager.clone();
        timed(
            op,
            self.deadline,
            async move { pipe.query_async(&mut c).await },
        )
        .await
    }

    /// UNLINKs `key`: freed off Redis's main thread, whatever its size.
    pub(crate) async fn unlink(&self, op: &'static str, key: &str) -> StoreResult<()> {
        self.cmd::<i64>(op, redis::cmd("UNLINK").arg(key))
            .await
            .map(drop)
    }

    /// Sets `key` to expire at the Unix time `at`.
    pub(crate) async fn expire_at(&self, op: &'static str, key: &str, at: i64) -> StoreResult<()> {
        self.cmd::<i64>(op, redis::cmd("EXPIREAT").arg(key).arg(at))
            .await
            .map(drop)
    }

    /// Sends `cmds` in round trips of [`PIPELINE_DEPTH`] commands, discarding replies.
    pub(crate) async fn bulk(
        &self,
        op: &'static str,
        cmds: impl IntoIterator<Item = Cmd>,
    ) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        let mut queued = 0;
        for cmd in cmds {
            pipe.add_command(cmd).ignore();
            queued += 1;
            if queued == PIPELINE_DEPTH {
                self.pipe::<()>(op, &pipe).await?;
                pipe = redis::pipe();
                queued = 0;
            }
        }
        if queued > 0 {
            self.pipe::<()>(op, &pipe).await?;
        }
        Ok(())
    }
}

async fn timed<T>(
    op: &'static str,
    deadline: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> StoreResult<T> {
    let start = Instant::now();
    let result = tokio::time::timeout(deadline, fut).await;
    metrics::histogram!("guestlist_store_duration_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    let error = match result {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => StoreError::Unavailable(Box::new(e)),
        Err(_) => StoreError::Timeout(deadline),
    };
    let kind = if matches!(error, StoreError::Timeout(_)) {
        "timeout"
    } else {
        "redis"
    };
    metrics::counter!("guestlist_store_errors_total", "op" => op, "kind" => kind).increment(1);
    Err(error)
}

/// One Redis data model for audiences. Implementations own their keys'
/// layout; the store owns locking, versions, snapshots and the publish
/// transaction, so each design only says how its data is written and read.
#[async_trait]
pub(crate) trait Layout: Send + Sync {
    /// Writes the whole audience beside the live one under `generation`,
    /// in chunks, without making it visible.
    async fn stage(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()>;

    /// Queues, inside the publish transaction, what makes `generation` live.
    fn publish(&self, tx: &mut Pipeline, campaign: &str, generation: u64, expire_at: i64);

    /// Queues, inside a transaction, an in-place change of at most
    /// [`DELTA_MAX`] IDs to the live `generation`.
    fn apply_delta(
        &self,
        tx: &mut Pipeline,
        campaign: &str,
        generation: u64,
        add: &[u64],
        remove: &[u64],
        expire_at: i64,
    );

    /// Frees the data of a generation that is no longer live (replaced,
    /// deleted, or staged and never published). Best effort, chunked.
    async fn retire(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
    ) -> StoreResult<()>;

    /// Queues, inside the delete transaction, the removal of the live data.
    fn delete(&self, tx: &mut Pipeline, campaign: &str);

    /// Moves the expiry of the live data. `members` is the live audience, for
    /// layouts whose keys are per member.
    async fn move_expiry(
        &self,
        conn: &Conn,
        campaign: &str,
        members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()>;

    /// Whether [`Layout::retire`] and [`Layout::move_expiry`] need the member list.
    fn keys_per_member(&self) -> bool;

    /// Queues commands answering "is each of `users` in `campaign`?".
    fn queue_membership(&self, pipe: &mut Pipeline, campaign: &Campaign, users: &[UserId]);

    /// Reads the replies queued by [`Layout::queue_membership`], in order.
    fn read_membership(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        users: &[UserId],
    ) -> StoreResult<Vec<bool>>;

    /// Queues commands answering "which of `campaigns` (all of this design)
    /// hold each of `users`". By default, one membership probe per campaign.
    fn queue_campaigns_for(&self, pipe: &mut Pipeline, campaigns: &[&Campaign], users: &[UserId]) {
        for c in campaigns {
            self.queue_membership(pipe, c, users);
        }
    }

    /// Reads the replies of [`Layout::queue_campaigns_for`]: one row per
    /// campaign, one answer per user.
    fn read_campaigns_for(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        campaigns: &[&Campaign],
        users: &[UserId],
    ) -> StoreResult<Vec<Vec<bool>>> {
        campaigns
            .iter()
            .map(|_| self.read_membership(replies, users))
            .collect()
    }
}

/// Swaps staging onto live without RENAME ever overwriting a big key: the
/// live key first moves to a fresh trash name (O(1), the name is free) and is
/// UNLINKed, which frees it off the main thread. An empty new audience has no
/// staging key; then the live key simply goes.
const SWAP_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('UNLINK', KEYS[3])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[1])
  redis.call('EXPIREAT', KEYS[1], ARGV[1])
end
return 1
";

/// Fills `key` (a staging key of a single-key design) with `members`, one
/// command per [`CHUNK`] members built by `chunk_cmd`, pipelined. Starts from
/// nothing even if a crashed attempt left the name behind; the TTL goes on
/// with the first chunk and is refreshed as the build goes on, so staging
/// never outlives a crash and never expires under a long build.
pub(crate) async fn stage_in_chunks(
    conn: &Conn,
    key: &str,
    members: &RoaringTreemap,
    chunk_cmd: impl Fn(&str, &[u64]) -> Cmd,
) -> StoreResult<()> {
    conn.unlink("stage", key).await?;
    let ids: Vec<u64> = members.iter().collect();
    let mut cmds = Vec::with_capacity(ids.len() / CHUNK + ids.len() / (CHUNK * 16) + 2);
    for (i, chunk) in ids.chunks(CHUNK).enumerate() {
        cmds.push(chunk_cmd(key, chunk));
        if i % 16 == 0 {
            let mut expire = redis::cmd("EXPIRE");
            expire.arg(key).arg(STAGING_TTL_SECS);
            cmds.push(expire);
        }
    }
    conn.bulk("stage", cmds).await
}

/// Queues the swap of `staging` onto `live` inside a publish transaction.
pub(crate) fn queue_swap(
    tx: &mut Pipeline,
    live: &str,
    staging: &str,
    trash: &str,
    expire_at: i64,
) {
    tx.cmd("EVAL")
        .arg(SWAP_SCRIPT)
        .arg(3)
        .arg(live)
        .arg(staging)
        .arg(trash)
        .arg(expire_at)
        .ignore();
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn next_reply(replies: &mut dyn Iterator<Item = Value>) -> StoreResult<Value> {
    replies
        .next()
        .ok_or_else(|| corrupt("Redis sent fewer replies than commands"))
}

fn parse<T: FromRedisValue>(v: Value) -> StoreResult<T> {
    redis::from_redis_value(v).map_err(corrupt)
}

/// The campaigns this instance knows, refreshed when the catalog version moves.
#[derive(Default)]
struct Catalog {
    version: Option<i64>,
    loaded: bool,
    campaigns: HashMap<String, Campaign>,
}

/// A cheap handle; clones share connections and the catalog.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    client: redis::Client,
    /// Ticks after every successful catalog refresh, changed or not; the
    /// near-cache listens to it to reload or to confirm what it holds.
    refreshed: tokio::sync::watch::Sender<u64>,
    /// When the catalog was last confirmed against Redis. Written once a
    /// second at most; a std `Mutex` is enough.
    confirmed_at: std::sync::Mutex<Option<Instant>>,
    /// Publish times of announced changes, by campaign: (version, unix ms).
    /// Lets a cache measure write-to-applied lag. Bounded: one per campaign.
    announced: std::sync::Mutex<HashMap<String, (u64, i64)>>,
    check: Conn,
    admin: Conn,
    options: StoreOptions,
    /// Read on every login, written once a second at most. A std `RwLock`
    /// around an `Arc` keeps the read to a pointer copy and is never held
    /// across an `.await`.
    catalog: RwLock<Arc<Catalog>>,
    set: set::SetLayout,
    per_user: per_user::PerUserLayout,
    bitmap: bitmap::BitmapLayout,
}

const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

const CREATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
";

const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

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
        let info = url
            .into_connection_info()
            .context("invalid Redis URL (not shown: it may hold a password)")?
            // Checks are tiny; Nagle's delay would dominate their latency.
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).context("creating the Redis client")?;
        let manager = |deadline: Duration| -> anyhow::Result<Conn> {
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(deadline))
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            Ok(Conn {
                manager: client.get_connection_manager_lazy(config)?,
                deadline,
            })
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                client: client.clone(),
                refreshed: tokio::sync::watch::channel(0).0,
                confirmed_at: std::sync::Mutex::new(None),
                announced: std::sync::Mutex::new(HashMap::new()),
                set: set::SetLayout { keys: keys.clone() },
                per_user: per_user::PerUserLayout { keys: keys.clone() },
                bitmap: bitmap::BitmapLayout { keys: keys.clone() },
                keys,
                check: manager(options.check_timeout)?,
                admin: manager(options.admin_timeout)?,
                options,
                catalog: RwLock::new(Arc::new(Catalog::default())),
            }),
        };
        match store.refresh_catalog(true).await {
            Ok(()) => tracing::info!(
                url = %super::redact_url(url),
                campaigns = store.catalog().campaigns.len(),
                "connected to Redis"
            ),
            Err(e) => tracing::warn!(
                url = %super::redact_url(url),
                error = %e,
                "Redis is not reachable yet; retrying in the background"
            ),
        }
        spawn_catalog_poller(Arc::downgrade(&store.inner));
        spawn_change_listener(Arc::downgrade(&store.inner));
        Ok(store)
    }

    fn layout(&self, design: Design) -> &dyn Layout {
        match design {
            Design::Set => &self.inner.set,
            Design::PerUser => &self.inner.per_user,
            Design::Bitmap => &self.inner.bitmap,
        }
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .expect("catalog lock poisoned")
            .clone()
    }

    /// Records a campaign this instance just wrote (or removed), so its own
    /// next check does not wait for the poller.
    fn remember(&self, id: &str, campaign: Option<Campaign>) {
        let mut slot = self.inner.catalog.write().expect("catalog lock poisoned");
        let mut next = Catalog {
            version: slot.version,
            loaded: slot.loaded,
            campaigns: slot.campaigns.clone(),
        };
        match campaign {
            Some(c) => next.campaigns.insert(id.to_string(), c),
            None => next.campaigns.remove(id),
        };
        *slot = Arc::new(next);
    }

    /// Reloads the catalog if its version moved (or always, with `force`).
    async fn refresh_catalog(&self, force: bool) -> StoreResult<()> {
        let admin = &self.inner.admin;
        let version: Option<i64> = admin
            .cmd(
                "catalog_version",
                redis::cmd("GET").arg(self.keys().catalog_version()),
            )
            .await?;
        let current = self.catalog();
        if !force && current.loaded && current.version == version {
            self.confirmed();
            return Ok(());
        }
        let campaigns = self.load_all().await?;
        let count = campaigns.len();
        *self.inner.catalog.write().expect("catalog lock poisoned") = Arc::new(Catalog {
            version,
            loaded: true,
            campaigns: campaigns.into_iter().map(|c| (c.id.clone(), c)).collect(),
        });
        tracing::debug!(?version, campaigns = count, "catalog reloaded");
        self.confirmed();
        Ok(())
    }

    fn confirmed(&self) {
        *self.inner.confirmed_at.lock().expect("lock poisoned") = Some(Instant::now());
        self.inner.refreshed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ticks after every successful catalog refresh (see [`RedisStore::known_campaigns`]).
    pub fn subscribe_catalog(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.refreshed.subscribe()
    }

    /// The campaigns as of the last catalog refresh, or `None` before the first.
    pub fn known_campaigns(&self) -> Option<Vec<Campaign>> {
        let catalog = self.catalog();
        catalog
            .loaded
            .then(|| catalog.campaigns.values().cloned().collect())
    }

    /// When the catalog was last confirmed current against Redis.
    pub fn confirmed_at(&self) -> Option<Instant> {
        *self.inner.confirmed_at.lock().expect("lock poisoned")
    }

    /// The publish time (unix ms) of the change that produced `version` of
    /// `campaign`, if this instance heard it announced. Taken once.
    pub fn take_announced(&self, campaign: &str, version: u64) -> Option<i64> {
        let mut announced = self.inner.announced.lock().expect("lock poisoned");
        match announced.get(campaign) {
            Some((v, at)) if *v == version => {
                let at = *at;
                announced.remove(campaign);
                Some(at)
            }
            _ => None,
        }
    }

    /// The audience of `campaign` at its version, from the compact snapshot:
    /// a few bytes per ID, never a scan of the live data.
    pub async fn snapshot(&self, campaign: &Campaign) -> StoreResult<RoaringTreemap> {
        self.read_snapshot(campaign).await
    }

    /// Reads every campaign's metadata; prunes index entries whose metadata expired.
    async fn load_all(&self) -> StoreResult<Vec<Campaign>> {
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
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys().meta(id));
        }
        let metas: Vec<HashMap<String, String>> = admin.pipe("list", &pipe).await?;
        let mut campaigns = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, meta) in ids.into_iter().zip(metas) {
            if meta.is_empty() {
                gone.push(id);
            } else {
                campaigns.push(campaign_from_meta(&id, &meta)?);
            }
        }
        if !gone.is_empty() {
            // Their metadata expired with the campaign's retention.
            admin
                .cmd::<i64>(
                    "list",
                    redis::cmd("SREM")
                        .arg(self.keys().campaign_index())
                        .arg(&gone),
                )
                .await?;
        }
        campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(campaigns)
    }

    /// The authoritative metadata of one campaign.
    async fn load(&self, conn: &Conn, id: &str) -> StoreResult<Campaign> {
        let meta: HashMap<String, String> = conn
            .cmd("get", redis::cmd("HGETALL").arg(self.keys().meta(id)))
            .await?;
        if meta.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        campaign_from_meta(id, &meta)
    }

    /// The campaign as the login path sees it: from the catalog, falling back
    /// to Redis for one created moments ago on another instance.
    async fn checked_campaign(&self, id: &str) -> StoreResult<Campaign> {
        let catalog = self.catalog();
        if let Some(c) = catalog.campaigns.get(id) {
            return Ok(c.clone());
        }
        let c = self.load(&self.inner.check, id).await?;
        self.remember(id, Some(c.clone()));
        Ok(c)
    }

    /// Sends a pipeline of check commands; one that queued nothing (every user
    /// outside a design's range) needs no round trip.
    async fn check_replies(&self, pipe: &Pipeline) -> StoreResult<Vec<Value>> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.check.pipe("check", pipe).await
    }

    fn expire_at(&self, campaign: &Campaign) -> i64 {
        // A window that ended long ago still keeps its data for one retention
        // period from now, rather than vanishing the moment it is written.
        let base = campaign.ends_at.max(Utc::now());
        base.timestamp() + self.inner.options.retention.as_secs() as i64
    }

    /// Announces a change on the changes channel so other instances reload
    /// at once. Best effort: the catalog version, bumped inside the write's
    /// own transaction, lets their poll catch up within a second anyway.
    async fn bump_catalog(&self, campaign: &str, version: u64) {
        let message = serde_json::json!({
            "campaign": campaign,
            "version": version,
            "published_at_ms": Utc::now().timestamp_millis(),
        })
        .to_string();
        let mut announce = redis::cmd("PUBLISH");
        announce.arg(self.keys().changes()).arg(message);
        if let Err(e) = self.inner.admin.cmd::<i64>("announce", &announce).await {
            tracing::warn!(error = %e, "could not announce a change; other instances catch up by polling");
        }
    }

    /// Runs `work` holding the campaign's writer lease.
    async fn locked<T>(
        &self,
        id: &str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let token = format!("{:032x}", rand::random::<u128>());
        let admin = &self.inner.admin;
        let acquired: Option<String> = admin
            .cmd(
                "lock",
                redis::cmd("SET")
                    .arg(self.keys().lock(id))
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_LEASE.as_millis() as u64),
            )
            .await?;
        if acquired.is_none() {
            return Err(StoreError::Busy(id.to_string()));
        }
        // Renew the lease while the work runs, so a long build never loses it.
        let renew = async {
            let mut tick = tokio::time::interval(LOCK_LEASE / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let renewed = admin
                    .cmd::<i64>(
                        "lock",
                        redis::cmd("EVAL")
                            .arg(RENEW_SCRIPT)
                            .arg(1)
                            .arg(self.keys().lock(id))
                            .arg(&token)
                            .arg(LOCK_LEASE.as_millis() as u64),
                    )
                    .await;
                match renewed {
                    Ok(1) => {}
                    // Another writer may hold it now: stop before publishing.
                    Ok(_) => {
                        tracing::error!(
                            campaign = id,
                            "the writer lease was lost; abandoning the write"
                        );
                        return StoreError::Busy(id.to_string());
                    }
                    Err(e) => {
                        tracing::warn!(campaign = id, error = %e, "could not renew the writer lease")
                    }
                }
            }
        };
        let result = tokio::select! {
            result = work => result,
            lost = renew => Err(lost),
        };
        let released = admin
            .cmd::<i64>(
                "unlock",
                redis::cmd("EVAL")
                    .arg(UNLOCK_SCRIPT)
                    .arg(1)
                    .arg(self.keys().lock(id))
                    .arg(&token),
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(campaign = id, error = %e, "could not release the writer lease; it expires by itself");
        }
        result
    }

    /// Writes `members` as the snapshot of `version`, in chunks, with a staging TTL.
    async fn write_snapshot(
        &self,
        id: &str,
        version: u64,
        members: &RoaringTreemap,
    ) -> StoreResult<()> {
        let bytes = serialize(members).await?;
        let key = self.keys().snapshot(id, version);
        let mut cmds = Vec::with_capacity(bytes.len() / SNAPSHOT_CHUNK + 2);
        let mut first = redis::cmd("SET");
        first
            .arg(&key)
            .arg(&bytes[..bytes.len().min(SNAPSHOT_CHUNK)])
            .arg("EX")
            .arg(STAGING_TTL_SECS);
        cmds.push(first);
        for chunk in bytes.chunks(SNAPSHOT_CHUNK).skip(1) {
            let mut append = redis::cmd("APPEND");
            append.arg(&key).arg(chunk);
            cmds.push(append);
        }
        self.inner.admin.bulk("snapshot_write", cmds).await
    }

    /// Reads the audience of `campaign` at its current version.
    async fn read_snapshot(&self, campaign: &Campaign) -> StoreResult<RoaringTreemap> {
        if campaign.version == 0 {
            return Ok(RoaringTreemap::new());
        }
        let admin = &self.inner.admin;
        let key = self.keys().snapshot(&campaign.id, campaign.version);
        let len: usize = admin
            .cmd("snapshot_read", redis::cmd("STRLEN").arg(&key))
            .await?;
        if len == 0 {
            return Err(StoreError::Busy(campaign.id.clone()));
        }
        let mut pipe = redis::pipe();
        for start in (0..len).step_by(SNAPSHOT_CHUNK) {
            let end = (start + SNAPSHOT_CHUNK).min(len) - 1;
            pipe.cmd("GETRANGE").arg(&key).arg(start).arg(end);
        }
        let parts: Vec<Vec<u8>> = admin.pipe("snapshot_read", &pipe).await?;
        let bytes = parts.concat();
        if bytes.len() != len {
            // The snapshot expired under us: a newer version replaced it.
            return Err(StoreError::Busy(campaign.id.clone()));
        }
        tokio::task::spawn_blocking(move || RoaringTreemap::deserialize_from(bytes.as_slice()))
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?
            .map_err(|e| corrupt(format!("snapshot of {}: {e}", campaign.id)))
    }

    /// Reads the current audience, retrying once if a concurrent change
    /// retired the snapshot between reading the version and the data.
    async fn current_audience(&self, id: &str) -> StoreResult<(Campaign, RoaringTreemap)> {
        let mut attempt = 0;
        loop {
            let campaign = self.load(&self.inner.admin, id).await?;
            match self.read_snapshot(&campaign).await {
                Err(StoreError::Busy(_)) if attempt < 2 => attempt += 1,
                other => return other.map(|m| (campaign, m)),
            }
        }
    }

    /// Queues the metadata part of publishing a new audience version.
    /// Queues the catalog bump inside a write's own transaction: if the write
    /// lands, other instances' polls see it, even when the reply is lost.
    fn queue_catalog_bump(&self, tx: &mut Pipeline) {
        tx.cmd("INCR").arg(self.keys().catalog_version()).ignore();
    }

    fn queue_commit(&self, tx: &mut Pipeline, campaign: &Campaign, expire_at: i64) {
        let id = &campaign.id;
        self.queue_catalog_bump(tx);
        tx.hset_multiple(
            self.keys().meta(id),
            &[
                (keys::FIELD_SIZE, campaign.audience_size.to_string()),
                (keys::FIELD_VERSION, campaign.version.to_string()),
                (keys::FIELD_GENERATION, campaign.generation.to_string()),
                (keys::FIELD_UPDATED_AT, fmt_time(campaign.updated_at)),
            ],
        )
        .ignore();
        tx.cmd("EXPIREAT")
            .arg(self.keys().meta(id))
            .arg(expire_at)
            .ignore();
        tx.cmd("EXPIREAT")
            .arg(self.keys().snapshot(id, campaign.version))
            .arg(expire_at)
            .ignore();
        if campaign.version > 1 {
            tx.cmd("EXPIRE")
                .arg(self.keys().snapshot(id, campaign.version - 1))
                .arg(OLD_SNAPSHOT_TTL_SECS)
                .ignore();
        }
    }

    /// Frees an old generation in the background; the live data no longer
    /// refers to it, so login never depends on this finishing.
    fn retire_later(&self, campaign: &Campaign, generation: u64, members: Option<RoaringTreemap>) {
        let store = self.clone();
        let campaign = campaign.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_DELAY).await;
            let layout = store.layout(campaign.design);
            let members = match members {
                Some(m) => m,
                None if layout.keys_per_member() => match store.read_snapshot(&campaign).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(campaign = %campaign.id, generation, error = %e, "old audience unreadable; its per-user entries expire by themselves");
                        return;
                    }
                },
                None => RoaringTreemap::new(),
            };
            if let Err(e) = layout
                .retire(&store.inner.admin, &campaign.id, generation, &members)
                .await
            {
                tracing::warn!(campaign = %campaign.id, generation, error = %e, "retiring an old audience failed; it expires by itself");
            }
        });
    }

    /// Replaces the audience by building the new one beside the live one.
    async fn rebuild(
        &self,
        current: &Campaign,
        members: RoaringTreemap,
        changed: u64,
    ) -> StoreResult<AudienceChange> {
        let admin = &self.inner.admin;
        let id = &current.id;
        let layout = self.layout(current.design);
        let generation: u64 = admin
            .cmd(
                "generation",
                redis::cmd("INCR").arg(self.keys().generations()),
            )
            .await?;
        let mut next = current.clone();
        next.version += 1;
        next.generation = generation;
        next.audience_size = members.len();
        next.updated_at = Utc::now();
        let expire_at = self.expire_at(&next);

        let staged = async {
            layout
                .stage(admin, id, generation, &members, expire_at)
                .await?;
            // Written last, so its staging TTL cannot run out during a long build.
            self.write_snapshot(id, next.version, &members).await?;
            let mut tx = redis::pipe();
            tx.atomic();
            layout.publish(&mut tx, id, generation, expire_at);
            self.queue_commit(&mut tx, &next, expire_at);
            admin.pipe::<()>("publish", &tx).await
        }
        .await;
        if let Err(e) = staged {
            if self.published(&next).await {
                tracing::warn!(campaign = %id, error = %e, "the publish reply was lost but the audience is live");
            } else {
                tracing::warn!(campaign = %id, generation, error = %e, "audience rebuild failed; the live audience is unchanged");
                self.discard(&next, generation, members);
                return Err(e);
            }
        }
        tracing::info!(campaign = %id, version = next.version, size = next.audience_size, "audience published");
        // The previous snapshot stays readable for a minute: enough to list
        // the old generation's per-user entries for clean-up.
        let old = current.clone();
        self.remember(id, Some(next.clone()));
        self.bump_catalog(id, next.version).await;
        if old.version > 0 {
            self.retire_later(&old, old.generation, None);
        }
        Ok(AudienceChange {
            audience_size: next.audience_size,
            version: next.version,
            changed,
        })
    }

    /// After a failed publish call: did the transaction land anyway (the reply
    /// was lost)? Unknown counts as "no" only when Redis says so; if Redis
    /// cannot be asked, the staged data is left to its TTL rather than
    /// risking deleting what may now be live.
    async fn published(&self, next: &Campaign) -> bool {
        let version: StoreResult<Option<u64>> = self
            .inner
            .admin
            .cmd(
                "publish",
                redis::cmd("HGET")
                    .arg(self.keys().meta(&next.id))
                    .arg(keys::FIELD_VERSION),
            )
            .await;
        match version {
            Ok(v) => v == Some(next.version),
            // Unknowable now: claim success to the caller? No: report the
            // failure, but do not discard (see `discard_if_unpublished`).
            Err(_) => false,
        }
    }

    /// Removes what a failed rebuild staged. Staging data also carries a TTL,
    /// so a crash here still cleans itself up.
    fn discard(&self, next: &Campaign, generation: u64, members: RoaringTreemap) {
        let store = self.clone();
        let next = next.clone();
        tokio::spawn(async move {
            // Only once Redis confirms the version was not published: a lost
            // reply must never make us delete a live audience.
            let admin = &store.inner.admin;
            let version: StoreResult<Option<u64>> = admin
                .cmd(
                    "discard",
                    redis::cmd("HGET")
                        .arg(store.keys().meta(&next.id))
                        .arg(keys::FIELD_VERSION),
                )
                .await;
            if !matches!(version, Ok(v) if v != Some(next.version)) {
                tracing::warn!(campaign = %next.id, "leaving staged data to its TTL");
                return;
            }
            let _ = admin
                .cmd::<i64>(
                    "discard",
                    redis::cmd("UNLINK").arg(store.keys().snapshot(&next.id, next.version)),
                )
                .await;
            let _ = store
                .layout(next.design)
                .retire(admin, &next.id, generation, &members)
                .await;
        });
    }

    /// Applies a small change in place, inside one transaction.
    async fn apply_delta(
        &self,
        current: &Campaign,
        members: &RoaringTreemap,
        add: &RoaringTreemap,
        remove: &RoaringTreemap,
        changed: u64,
    ) -> StoreResult<AudienceChange> {
        let admin = &self.inner.admin;
        let id = &current.id;
        let mut next = current.clone();
        next.version += 1;
        next.audience_size = members.len();
        next.updated_at = Utc::now();
        let expire_at = self.expire_at(&next);
        self.write_snapshot(id, next.version, members).await?;
        let add: Vec<u64> = add.iter().collect();
        let remove: Vec<u64> = remove.iter().collect();
        let mut tx = redis::pipe();
        tx.atomic();
        self.layout(current.design).apply_delta(
            &mut tx,
            id,
            next.generation,
            &add,
            &remove,
            expire_at,
        );
        self.queue_commit(&mut tx, &next, expire_at);
        if let Err(e) = admin.pipe::<()>("publish", &tx).await {
            if !self.published(&next).await {
                // The unpublished version's snapshot expires with its staging TTL.
                return Err(e);
            }
            tracing::warn!(campaign = %id, error = %e, "the publish reply was lost but the change is live");
        }
        self.remember(id, Some(next.clone()));
        self.bump_catalog(id, next.version).await;
        Ok(AudienceChange {
            audience_size: next.audience_size,
            version: next.version,
            changed,
        })
    }

    /// Add or remove: computes the change against the current snapshot, then
    /// applies it in place when small or rebuilds when large.
    async fn change(
        &self,
        id: &str,
        ids: RoaringTreemap,
        adding: bool,
    ) -> StoreResult<AudienceChange> {
        self.locked(id, async {
            let (current, old) = self.current_audience(id).await?;
            if adding {
                current.design.check_ids(&ids)?;
            }
            let (next, delta) = tokio::task::spawn_blocking(move || {
                let delta = if adding { &ids - &old } else { &ids & &old };
                let next = if adding { &old | &delta } else { &old - &delta };
                (next, delta)
            })
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            let changed = delta.len();
            if changed == 0 {
                return Ok(AudienceChange {
                    audience_size: current.audience_size,
                    version: current.version,
                    changed: 0,
                });
            }
            if changed <= DELTA_MAX {
                let empty = RoaringTreemap::new();
                let (add, remove) = if adding {
                    (&delta, &empty)
                } else {
                    (&empty, &delta)
                };
                self.apply_delta(&current, &next, add, remove, changed)
                    .await
            } else {
                self.rebuild(&current, next, changed).await
            }
        })
        .await
    }
}

/// Polls the catalog version until the store is dropped.
fn spawn_catalog_poller(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut was_ok = true;
        loop {
            tokio::time::sleep(CATALOG_POLL).await;
            let Some(inner) = inner.upgrade() else { return };
            let store = RedisStore { inner };
            match store.refresh_catalog(false).await {
                Ok(()) if !was_ok => {
                    tracing::info!("Redis reachable again; catalog refreshed");
                    was_ok = true;
                }
                Ok(()) => {}
                Err(e) if was_ok => {
                    tracing::warn!(error = %e, "catalog refresh failed; will keep retrying");
                    was_ok = false;
                }
                Err(_) => {}
            }
        }
    });
}

/// Listens on the changes channel and refreshes the catalog as soon as any
/// instance announces a change. Reconnects by itself and resynchronises in
/// full after every (re)subscription, since messages sent meanwhile are lost.
fn spawn_change_listener(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let client = strong.client.clone();
            let channel = strong.keys.changes();
            drop(strong);
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            let pubsub = match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
                Ok(Ok(p)) => p,
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            if let Some(inner) = inner.upgrade() {
                let _ = RedisStore { inner }.refresh_catalog(true).await;
            }
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                let Some(inner) = inner.upgrade() else { return };
                let store = RedisStore { inner };
                let change: serde_json::Value =
                    serde_json::from_slice(msg.get_payload_bytes()).unwrap_or_default();
                if let (Some(id), Some(version), Some(at)) = (
                    change["campaign"].as_str(),
                    change["version"].as_u64(),
                    change["published_at_ms"].as_i64(),
                ) {
                    let mut announced = store.inner.announced.lock().expect("lock poisoned");
                    // One entry per campaign, consumed by a near-cache; a
                    // hard bound for campaign churn without one.
                    if announced.len() >= 10_000 {
                        announced.clear();
                    }
                    announced.insert(id.to_string(), (version, at));
                }
                if let Err(e) = store.refresh_catalog(false).await {
                    tracing::debug!(error = %e, "refresh after a change announcement failed");
                }
            }
            tracing::debug!("changes subscription ended; reconnecting");
        }
    });
}

async fn serialize(members: &RoaringTreemap) -> StoreResult<Vec<u8>> {
    let members = members.clone();
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::with_capacity(members.serialized_size());
        members.serialize_into(&mut bytes).map(|()| bytes)
    })
    .await
    .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    .map_err(corrupt)
}

fn campaign_from_meta(id: &str, meta: &HashMap<String, String>) -> StoreResult<Campaign> {
    let field = |name: &str| -> StoreResult<&str> {
        meta.get(name)
            .map(String::as_str)
            .ok_or_else(|| corrupt(format!("campaign {id:?} metadata lacks {name:?}")))
    };
    let time = |name: &str| -> StoreResult<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(field(name)?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(format!("campaign {id:?} field {name:?}: {e}")))
    };
    let number = |name: &str| -> StoreResult<u64> {
        meta.get(name).map_or(Ok(0), |v| {
            v.parse()
                .map_err(|e| corrupt(format!("campaign {id:?} field {name:?}: {e}")))
        })
    };
    Ok(Campaign {
        id: id.to_string(),
        name: field(keys::FIELD_NAME)?.to_string(),
        starts_at: time(keys::FIELD_STARTS_AT)?,
        ends_at: time(keys::FIELD_ENDS_AT)?,
        design: Design::parse(field(keys::FIELD_DESIGN)?)
            .ok_or_else(|| corrupt(format!("campaign {id:?} has an unknown design")))?,
        audience_size: number(keys::FIELD_SIZE)?,
        version: number(keys::FIELD_VERSION)?,
        generation: number(keys::FIELD_GENERATION)?,
        created_at: time(keys::FIELD_CREATED_AT)?,
        updated_at: time(keys::FIELD_UPDATED_AT)?,
    })
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create_campaign(&self, campaign: Campaign) -> StoreResult<Campaign> {
        let admin = &self.inner.admin;
        let id = &campaign.id;
        let mut script = redis::cmd("EVAL");
        script
            .arg(CREATE_SCRIPT)
            .arg(1)
            .arg(self.keys().meta(id))
            .arg(self.expire_at(&campaign))
            .arg(keys::FIELD_NAME)
            .arg(&campaign.name)
            .arg(keys::FIELD_STARTS_AT)
            .arg(fmt_time(campaign.starts_at))
            .arg(keys::FIELD_ENDS_AT)
            .arg(fmt_time(campaign.ends_at))
            .arg(keys::FIELD_DESIGN)
            .arg(campaign.design.as_str())
            .arg(keys::FIELD_SIZE)
            .arg(0)
            .arg(keys::FIELD_VERSION)
            .arg(0)
            .arg(keys::FIELD_GENERATION)
            .arg(0)
            .arg(keys::FIELD_CREATED_AT)
            .arg(fmt_time(campaign.created_at))
            .arg(keys::FIELD_UPDATED_AT)
            .arg(fmt_time(campaign.updated_at));
        let created: i64 = admin.cmd("create", &script).await?;
        if created == 1 {
            admin
                .cmd::<i64>(
                    "create",
                    redis::cmd("INCR").arg(self.keys().catalog_version()),
                )
                .await?;
        }
        if created == 0 {
            return Err(StoreError::AlreadyExists(id.clone()));
        }
        admin
            .cmd::<i64>(
                "create",
                redis::cmd("SADD").arg(self.keys().campaign_index()).arg(id),
            )
            .await?;
        self.remember(id, Some(campaign.clone()));
        self.bump_catalog(id, 0).await;
        tracing::info!(campaign = %id, design = campaign.design.as_str(), "campaign created");
        Ok(campaign)
    }

    async fn list_campaigns(&self) -> StoreResult<Vec<Campaign>> {
        self.load_all().await
    }

    async fn get_campaign(&self, id: &str) -> StoreResult<Campaign> {
        self.load(&self.inner.admin, id).await
    }

    async fn update_campaign(&self, id: &str, patch: &CampaignPatch) -> StoreResult<Campaign> {
        self.locked(id, async {
            let admin = &self.inner.admin;
            let current = self.load(admin, id).await?;
            let next = patch.apply(&current, Utc::now())?;
            let expire_at = self.expire_at(&next);
            let mut tx = redis::pipe();
            tx.atomic();
            tx.hset_multiple(
                self.keys().meta(id),
                &[
                    (keys::FIELD_NAME, next.name.clone()),
                    (keys::FIELD_STARTS_AT, fmt_time(next.starts_at)),
                    (keys::FIELD_ENDS_AT, fmt_time(next.ends_at)),
                    (keys::FIELD_UPDATED_AT, fmt_time(next.updated_at)),
                ],
            )
            .ignore();
            tx.cmd("EXPIREAT")
                .arg(self.keys().meta(id))
                .arg(expire_at)
                .ignore();
            if next.version > 0 {
                tx.cmd("EXPIREAT")
                    .arg(self.keys().snapshot(id, next.version))
                    .arg(expire_at)
                    .ignore();
            }
            self.queue_catalog_bump(&mut tx);
            admin.pipe::<()>("update", &tx).await?;
            // The expiry follows max(ends_at, now), so any window edit moves it.
            let window_changed = patch.starts_at.is_some() || patch.ends_at.is_some();
            if window_changed && next.audience_size > 0 {
                let layout = self.layout(next.design);
                let members = if layout.keys_per_member() {
                    self.read_snapshot(&next).await?
                } else {
                    RoaringTreemap::new()
                };
                layout.move_expiry(admin, id, &members, expire_at).await?;
            }
            self.remember(id, Some(next.clone()));
            self.bump_catalog(id, next.version).await;
            tracing::info!(campaign = %id, "campaign updated");
            Ok(next)
        })
        .await
    }

    async fn delete_campaign(&self, id: &str) -> StoreResult<()> {
        self.locked(id, async {
            let admin = &self.inner.admin;
            let current = self.load(admin, id).await?;
            let layout = self.layout(current.design);
            let mut tx = redis::pipe();
            tx.atomic();
            tx.cmd("UNLINK").arg(self.keys().meta(id)).ignore();
            layout.delete(&mut tx, id);
            // Kept a minute so per-user entries can be listed for clean-up.
            if current.version > 0 {
                tx.cmd("EXPIRE")
                    .arg(self.keys().snapshot(id, current.version))
                    .arg(OLD_SNAPSHOT_TTL_SECS)
                    .ignore();
            }
            self.queue_catalog_bump(&mut tx);
            admin.pipe::<()>("delete", &tx).await?;
            // Outside the transaction: the index lives in another cluster slot,
            // and a campaign whose metadata is gone is pruned from it on reload.
            if let Err(e) = admin
                .cmd::<i64>(
                    "delete",
                    redis::cmd("SREM").arg(self.keys().campaign_index()).arg(id),
                )
                .await
            {
                tracing::warn!(campaign = %id, error = %e, "index entry left behind; the next catalog reload prunes it");
            }
            self.remember(id, None);
            self.bump_catalog(id, current.version).await;
            if current.version > 0 && layout.keys_per_member() {
                self.retire_later(&current, current.generation, None);
            }
            tracing::info!(campaign = %id, "campaign deleted");
            Ok(())
        })
        .await
    }

    async fn replace_audience(
        &self,
        id: &str,
        members: RoaringTreemap,
    ) -> StoreResult<AudienceChange> {
        self.locked(id, async {
            let current = self.load(&self.inner.admin, id).await?;
            current.design.check_ids(&members)?;
            let received = members.len();
            self.rebuild(&current, members, received).await
        })
        .await
    }

    async fn add_members(&self, id: &str, members: RoaringTreemap) -> StoreResult<AudienceChange> {
        self.change(id, members, true).await
    }

    async fn remove_members(
        &self,
        id: &str,
        members: RoaringTreemap,
    ) -> StoreResult<AudienceChange> {
        self.change(id, members, false).await
    }

    async fn audience(&self, id: &str) -> StoreResult<Arc<RoaringTreemap>> {
        Ok(Arc::new(self.current_audience(id).await?.1))
    }

    async fn is_member(&self, id: &str, user: UserId) -> StoreResult<(Campaign, bool)> {
        let (campaign, mut answers) = self.are_members(id, &[user]).await?;
        Ok((campaign, answers.pop().unwrap_or(false)))
    }

    async fn are_members(&self, id: &str, users: &[UserId]) -> StoreResult<(Campaign, Vec<bool>)> {
        let campaign = self.checked_campaign(id).await?;
        let layout = self.layout(campaign.design);
        let mut pipe = redis::pipe();
        layout.queue_membership(&mut pipe, &campaign, users);
        let replies = self.check_replies(&pipe).await?;
        let answers = layout.read_membership(&mut replies.into_iter(), users)?;
        Ok((campaign, answers))
    }

    async fn campaigns_for(&self, user: UserId, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        Ok(self.campaigns_for_many(&[user], now).await?.remove(0))
    }

    async fn campaigns_for_many(
        &self,
        users: &[UserId],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Vec<String>>> {
        let catalog = self.catalog();
        if !catalog.loaded {
            return Err(StoreError::Unavailable(
                "the campaign catalog has not been loaded from Redis yet".into(),
            ));
        }
        let mut active: Vec<&Campaign> = catalog
            .campaigns
            .values()
            .filter(|c| c.is_active_at(now) && c.audience_size > 0)
            .collect();
        active.sort_by(|a, b| a.id.cmp(&b.id));
        let mut result = vec![Vec::new(); users.len()];
        if active.is_empty() {
            return Ok(result);
        }
        // One round trip for every campaign and every user, grouped by design
        // so a design can answer for all its campaigns at once.
        let groups: Vec<(Design, Vec<&Campaign>)> = [Design::Set, Design::PerUser, Design::Bitmap]
            .into_iter()
            .map(|d| {
                (
                    d,
                    active.iter().copied().filter(|c| c.design == d).collect(),
                )
            })
            .filter(|(_, cs): &(Design, Vec<&Campaign>)| !cs.is_empty())
            .collect();
        let mut pipe = redis::pipe();
        for (design, campaigns) in &groups {
            self.layout(*design)
                .queue_campaigns_for(&mut pipe, campaigns, users);
        }
        let replies = self.check_replies(&pipe).await?;
        let mut replies = replies.into_iter();
        let mut hits: Vec<(&str, Vec<bool>)> = Vec::new();
        for (design, campaigns) in &groups {
            let rows = self
                .layout(*design)
                .read_campaigns_for(&mut replies, campaigns, users)?;
            hits.extend(campaigns.iter().map(|c| c.id.as_str()).zip(rows));
        }
        hits.sort_by(|a, b| a.0.cmp(b.0));
        for (id, row) in hits {
            for (slot, member) in result.iter_mut().zip(row) {
                if member {
                    slot.push(id.to_string());
                }
            }
        }
        Ok(result)
    }

    async fn ready(&self) -> StoreResult<()> {
        let conn = Conn {
            manager: self.inner.check.manager.clone(),
            deadline: self.inner.check.deadline.max(Duration::from_millis(250)),
        };
        let pong: String = conn.cmd("ping", &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(corrupt(format!("PING answered {pong:?}")));
        }
        if !self.catalog().loaded {
            return Err(StoreError::Unavailable(
                "the campaign catalog has not been loaded from Redis yet".into(),
            ));
        }
        Ok(())
    }

    async fn record(&self, event: &AuditEvent) -> StoreResult<()> {
        let json = serde_json::to_string(event).map_err(corrupt)?;
        self.inner
            .admin
            .cmd::<String>(
                "audit",
                redis::cmd("XADD")
                    .arg(self.keys().audit())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(keys::AUDIT_CAP)
                    .arg("*")
                    .arg("event")
                    .arg(json),
            )
            .await
            .map(drop)
    }

    async fn audit(&self, campaign: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        // Newest first, a page at a time; a campaign filter reads at most
        // a few pages so one query never walks the whole stream.
        const PAGE: usize = 1_000;
        const MAX_PAGES: usize = 20;
        let mut events = Vec::new();
        let mut end = "+".to_string();
        for _ in 0..MAX_PAGES {
            let page: redis::streams::StreamRangeReply = self
                .inner
                .admin
                .cmd(
                    "audit",
                    redis::cmd("XREVRANGE")
                        .arg(self.keys().audit())
                        .arg(&end)
                        .arg("-")
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let count = page.ids.len();
            for entry in &page.ids {
                let Some(json) = entry.get::<String>("event") else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<AuditEvent>(&json) else {
                    continue;
                };
                if campaign.is_none_or(|c| c == event.campaign) {
                    events.push(event);
                    if events.len() == limit {
                        return Ok(events);
                    }
                }
            }
            match page.ids.last() {
                // Exclusive start for the next page (Redis 6.2+).
                Some(last) if count == PAGE => end = format!("({}", last.id),
                _ => break,
            }
        }
        Ok(events)
    }
}
