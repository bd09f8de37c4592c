//! The write protocol: every change commits through one fenced script on
//! the campaign's own keys (one hash slot).
//!
//! A write holds the campaign's lease, reads the metadata, stages what is
//! big beside the live data under a fresh attempt stamp, and commits with
//! [`Fenced`]: the script applies the commands only if the lease token, the
//! incarnation and the revision are still the ones read. So a writer that
//! lost its lease, or whose campaign was deleted and re-created meanwhile,
//! can never publish, and two audiences can never both become version V+1.
//!
//! After the commit, outside it (the keys live in other slots): the change
//! is announced (`INCR` of the catalog counter and `PUBLISH`). A writer that
//! dies before announcing leaves the change to the catalog's periodic
//! reconciliation. Staged data is named by its attempt, so clean-up after a
//! failed attempt can never touch another writer's data.

use super::batch::Batch;
use std::time::Duration;

use crate::ids::Audience;
use chrono::Utc;
use redis::ToRedisArgs;

use super::RedisStore;
use super::design::{CHUNK, Delta};
use super::history::Kept;
use super::keys::{self, Keys, Stamp};
use super::meta::CampaignMeta;
use super::replicas::AckPoint;
use super::snapshot;
use crate::domain::{AudienceChange, CampaignPatch, fmt_time};
use crate::store::history::Origin;
use crate::store::{StoreError, StoreResult};

const FENCED: &str = include_str!("scripts/fenced.lua");
/// Readers that fetched an old snapshot's name may still finish reading it.
pub(crate) const OLD_SNAPSHOT_TTL_SECS: i64 = 60;
/// Bounds of how long a replaced generation (or a closed per-user range)
/// stays readable; see [`RedisStore::retire_delay`].
const RETIRE_DELAY_MIN: Duration = Duration::from_secs(1);
/// Below the 60 s an old snapshot lives, which clean-up reads.
const RETIRE_DELAY_MAX: Duration = Duration::from_secs(30);

/// For [`Fenced::op`] on commands that take only keys.
pub(crate) const NO_ARGS: Vec<u64> = Vec::new();

/// A fenced commit being built: like a MULTI, but checked against the
/// lease and the revision inside the same script.
pub(crate) struct Fenced {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Fenced {
    /// A commit over `meta`'s campaign, valid only while the lease `token` is held
    /// and the campaign is still at the incarnation and revision read.
    pub(crate) fn new(keys: &Keys, meta: &CampaignMeta, token: &str) -> Fenced {
        let id = meta.id();
        let args = vec![
            token.as_bytes().to_vec(),
            meta.incarnation.to_string().into_bytes(),
            meta.revision.to_string().into_bytes(),
        ];
        Fenced {
            keys: vec![keys.meta(id), keys.lock(id)],
            args,
        }
    }

    fn key_index(&mut self, key: &str) -> usize {
        match self.keys.iter().position(|k| k == key) {
            Some(i) => i + 1,
            None => {
                self.keys.push(key.to_string());
                self.keys.len()
            }
        }
    }

    /// Queues `name keys… args…`.
    pub(crate) fn op(&mut self, name: &str, keys: &[&str], args: impl ToRedisArgs) {
        let indexes: Vec<usize> = keys.iter().map(|k| self.key_index(k)).collect();
        let args = args.to_redis_args();
        self.args.push(name.as_bytes().to_vec());
        self.args.push(indexes.len().to_string().into_bytes());
        self.args.push(args.len().to_string().into_bytes());
        self.args
            .extend(indexes.iter().map(|i| i.to_string().into_bytes()));
        self.args.extend(args);
    }

    /// Queues the swap of `staging` onto `live` (see `scripts/fenced.lua`).
    pub(crate) fn swap(&mut self, live: &str, staging: &str, trash: &str, expire_at: i64) {
        self.op("SWAP", &[live, staging, trash], expire_at);
    }

    /// The metadata fields this commit writes, plus the revision bump that
    /// fences the next commit.
    fn meta(&mut self, keys: &Keys, next: &CampaignMeta, fields: &[(&str, String)]) {
        let meta = keys.meta(next.id());
        let mut pairs: Vec<(&str, String)> = fields.to_vec();
        pairs.push((keys::FIELD_REVISION, next.revision.to_string()));
        self.op("HSET", &[&meta], pairs);
    }

    fn into_cmd(self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(FENCED).arg(self.keys.len()).arg(&self.keys);
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd
    }
}

/// How a commit call ended when it did not return OK.
enum Landed {
    Yes,
    No,
    /// Redis could not be asked.
    Unknown,
}

impl RedisStore {
    /// How long a replaced generation (or a closed per-user range) stays
    /// readable after its replacement commits: twice the staleness bound,
    /// so an instance whose catalog is within the bound (and so may still
    /// name the old generation) always finds it.
    pub(crate) fn retire_delay(&self) -> Duration {
        (self.inner.options.max_staleness * 2).clamp(RETIRE_DELAY_MIN, RETIRE_DELAY_MAX)
    }

    /// Runs a fenced commit. A refused fence is a definite "not applied"
    /// and reported as `Busy`; a lost reply is resolved by reading the
    /// revision back.
    async fn commit(&self, tx: Fenced, next: &CampaignMeta) -> StoreResult<()> {
        self.commit_as(tx, next, false).await
    }

    /// [`RedisStore::commit`], where `gone` says the commit deletes the
    /// campaign (so a lost reply is resolved by its absence).
    async fn commit_as(&self, tx: Fenced, next: &CampaignMeta, gone: bool) -> StoreResult<()> {
        let cmd = tx.into_cmd();
        let error = match self.inner.admin.cmd::<i64>("commit", &cmd).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Fenced(why)) => {
                tracing::error!(campaign = %next.id(), why, "commit refused: another writer took over");
                return Err(StoreError::Busy(next.id().to_string()));
            }
            Err(e) => e,
        };
        match self.landed(next, gone).await {
            Landed::Yes => {
                tracing::warn!(campaign = %next.id(), error = %error, "the commit reply was lost but the change landed");
                Ok(())
            }
            Landed::No | Landed::Unknown => Err(error),
        }
    }

    /// After a failed commit call: did it land anyway (the reply was lost)?
    async fn landed(&self, next: &CampaignMeta, gone: bool) -> Landed {
        let seen: StoreResult<Vec<Option<String>>> = self
            .inner
            .admin
            .cmd(
                "commit",
                redis::cmd("HMGET")
                    .arg(self.keys().meta(next.id()))
                    .arg(keys::FIELD_INCARNATION)
                    .arg(keys::FIELD_REVISION),
            )
            .await;
        let Ok(seen) = seen else {
            return Landed::Unknown;
        };
        let incarnation = seen.first().cloned().flatten();
        let same = incarnation == Some(next.incarnation.to_string());
        let landed = if gone {
            !same
        } else {
            same && seen.get(1).cloned().flatten() == Some(next.revision.to_string())
        };
        if landed { Landed::Yes } else { Landed::No }
    }

    /// Tells other instances: the counter for pollers, the channel for
    /// listeners. Best effort; reconciliation covers a lost announcement.
    pub(crate) async fn announce(&self, id: &str, version: u64) {
        let message = super::catalog::Change {
            campaign: id.to_string(),
            version,
            published_at_ms: Utc::now().timestamp_millis(),
        };
        let mut pipe = Batch::new();
        pipe.cmd("INCR").arg(self.keys().catalog_version()).ignore();
        // A cluster's classic PUBLISH is copied to every node over the
        // cluster bus; a sharded one stays on the shard of the channel.
        let publish = if self.inner.admin.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        pipe.cmd(publish)
            .arg(self.keys().changes())
            .arg(message.encode())
            .ignore();
        if let Err(e) = self.inner.admin.pipe::<()>("announce", &pipe).await {
            tracing::warn!(campaign = id, error = %e, "could not announce a change; other instances catch up by reconciling");
        }
    }

    /// The next metadata after an audience change of `current`.
    fn next_version(current: &CampaignMeta, size: u64, snapshot: Stamp) -> CampaignMeta {
        let mut next = current.clone();
        next.campaign.version += 1;
        next.campaign.audience_size = size;
        next.campaign.updated_at = Utc::now();
        next.revision += 1;
        next.snapshot = snapshot;
        next.pending = None;
        next
    }

    /// Fields an audience commit writes.
    fn audience_fields(next: &CampaignMeta) -> Vec<(&'static str, String)> {
        vec![
            (keys::FIELD_SIZE, next.campaign.audience_size.to_string()),
            (keys::FIELD_VERSION, next.campaign.version.to_string()),
            (keys::FIELD_GENERATION, next.generation.to_string()),
            (keys::FIELD_SNAPSHOT, next.snapshot.to_string()),
            (keys::FIELD_UPDATED_AT, fmt_time(next.campaign.updated_at)),
        ]
    }

    /// Queues what every audience commit does besides the design's part:
    /// metadata, expiries, the new snapshot kept, and the history: the new
    /// version recorded, the versions past `--keep-versions` let go.
    fn queue_audience_commit(
        &self,
        tx: &mut Fenced,
        next: &CampaignMeta,
        kept: Vec<Kept>,
        origin: &Origin,
    ) {
        let keys = self.keys();
        let id = next.id();
        let expire_at = self.expire_at(&next.campaign);
        tx.meta(keys, next, &Self::audience_fields(next));
        tx.op("HDEL", &[&keys.meta(id)], keys::FIELD_PENDING);
        tx.op("UNLINK", &[&keys.pending(id)], NO_ARGS);
        tx.op("EXPIREAT", &[&keys.meta(id)], expire_at);
        tx.op(
            "EXPIREAT",
            &[&keys.snapshot(id, next.incarnation, next.snapshot)],
            expire_at,
        );
        self.queue_history(tx, next, kept, origin, expire_at);
    }

    /// Replaces the audience by building the new one beside the live one.
    pub(crate) async fn rebuild(
        &self,
        token: &str,
        current: &CampaignMeta,
        members: Audience,
        changed: u64,
        origin: &Origin,
    ) -> StoreResult<AudienceChange> {
        let admin = &self.inner.admin;
        let kept = self.kept(current).await?;
        let id = current.id();
        let design = self.design(current.campaign.design);
        let attempt = Stamp::random();
        let mut next = Self::next_version(current, members.len(), attempt);
        next.generation = attempt;
        let expire_at = self.expire_at(&next.campaign);
        let snapshot_key = self.keys().snapshot(id, next.incarnation, attempt);
        let masters = self.masters_before_publish().await?;

        let staged = async {
            design
                .stage(
                    admin,
                    current,
                    attempt,
                    next.campaign.version,
                    &members,
                    expire_at,
                )
                .await?;
            // Written last, so its staging TTL cannot run out during a long build.
            snapshot::write(admin, &snapshot_key, &members, self.snapshot_string_max()).await?;
            self.await_replicas(current, AckPoint::Staged(&snapshot_key), &masters)
                .await?;
            let mut tx = Fenced::new(self.keys(), current, token);
            design.publish(&mut tx, id, attempt, expire_at);
            self.queue_audience_commit(&mut tx, &next, kept, origin);
            self.commit(tx, &next).await
        }
        .await;
        if let Err(e) = staged {
            tracing::warn!(campaign = %id, %attempt, error = %e, "audience rebuild failed; the live audience is unchanged");
            // Every name below belongs to this attempt alone, so removing
            // them can never touch what another writer published; if Redis
            // cannot be reached they expire by themselves.
            if let Err(clean) = admin.unlink("discard", &snapshot_key).await {
                tracing::debug!(error = %clean, "leaving the attempt's snapshot to its TTL");
            }
            if let Err(clean) = design.retire(admin, current, attempt, &members).await {
                tracing::debug!(error = %clean, "leaving the attempt's staging to its TTL");
            }
            return Err(e);
        }
        tracing::info!(campaign = %id, version = next.campaign.version, size = next.campaign.audience_size, "audience published");
        self.remember(next.clone());
        self.announce(id, next.campaign.version).await;
        if current.campaign.version > 0 && design.keys_per_member() {
            self.retire_later(current.clone(), current.generation, None);
        }
        self.await_replicas(&next, AckPoint::Published, &masters)
            .await?;
        Ok(AudienceChange {
            previous_size: current.campaign.audience_size,
            audience_size: next.campaign.audience_size,
            version: next.campaign.version,
            changed,
        })
    }

    /// Applies a change of at most [`CHUNK`] IDs in place.
    pub(crate) async fn apply_delta(
        &self,
        token: &str,
        current: &CampaignMeta,
        members: &Audience,
        delta: Delta,
        origin: &Origin,
    ) -> StoreResult<AudienceChange> {
        debug_assert!(delta.len() as usize <= CHUNK);
        let admin = &self.inner.admin;
        let kept = self.kept(current).await?;
        let id = current.id();
        let design = self.design(current.campaign.design);
        let attempt = Stamp::random();
        let snapshot_key = self.keys().snapshot(id, current.incarnation, attempt);
        let masters = self.masters_before_publish().await?;
        snapshot::write(admin, &snapshot_key, members, self.snapshot_string_max()).await?;
        let version = current.campaign.version + 1;
        let expire_at = self.expire_at(&current.campaign);
        // Designs that write ahead of the commit record the change first
        // (fenced), so a successor can undo it if this writer dies.
        let base = if design.delta_ahead() {
            let mut pending = current.clone();
            pending.revision += 1;
            pending.pending = Some(version);
            let mut tx = Fenced::new(self.keys(), current, token);
            tx.op("SET", &[&self.keys().pending(id)], delta.encode());
            tx.op("EXPIREAT", &[&self.keys().pending(id)], expire_at);
            tx.meta(
                self.keys(),
                &pending,
                &[(keys::FIELD_PENDING, version.to_string())],
            );
            self.commit(tx, &pending).await?;
            pending
        } else {
            current.clone()
        };
        let mut next = Self::next_version(&base, members.len(), attempt);
        next.campaign.version = version;
        let mut tx = Fenced::new(self.keys(), &base, token);
        let written = async {
            design
                .write_delta(admin, &mut tx, &base, version, &delta, expire_at)
                .await?;
            self.await_replicas(&base, AckPoint::Staged(&snapshot_key), &masters)
                .await?;
            self.queue_audience_commit(&mut tx, &next, kept, origin);
            self.commit(tx, &next).await
        }
        .await;
        if let Err(e) = written {
            if design.delta_ahead() {
                // Undo now if possible; otherwise the pending record lets
                // the next writer do it.
                let _ = self.recover(token, &base).await;
            }
            let _ = admin.unlink("discard", &snapshot_key).await;
            return Err(e);
        }
        self.remember(next.clone());
        self.announce(id, version).await;
        let changed = delta.len();
        if design.delta_ahead() && !delta.remove.is_empty() {
            self.prune_later(next.clone(), delta.remove);
        }
        self.await_replicas(&next, AckPoint::Published, &masters)
            .await?;
        Ok(AudienceChange {
            previous_size: current.campaign.audience_size,
            audience_size: next.campaign.audience_size,
            version,
            changed,
        })
    }

    /// Undoes a pending in-place change left by a writer that died (or
    /// failed) before committing it. Returns the metadata after.
    pub(crate) async fn recover(
        &self,
        token: &str,
        meta: &CampaignMeta,
    ) -> StoreResult<CampaignMeta> {
        let Some(version) = meta.pending else {
            return Ok(meta.clone());
        };
        let admin = &self.inner.admin;
        let id = meta.id();
        let bytes: Option<Vec<u8>> = admin
            .cmd("recover", redis::cmd("GET").arg(self.keys().pending(id)))
            .await?;
        let delta = match bytes {
            Some(b) => Delta::decode(&b, meta.campaign.user_id_type)?,
            None => Delta::none(meta.campaign.user_id_type),
        };
        self.design(meta.campaign.design)
            .undo_delta(admin, meta, version, &delta)
            .await?;
        let mut next = meta.clone();
        next.revision += 1;
        next.pending = None;
        let mut tx = Fenced::new(self.keys(), meta, token);
        tx.meta(self.keys(), &next, &[]);
        tx.op("HDEL", &[&self.keys().meta(id)], keys::FIELD_PENDING);
        tx.op("UNLINK", &[&self.keys().pending(id)], NO_ARGS);
        self.commit(tx, &next).await?;
        tracing::warn!(campaign = %id, version, undone = delta.len(), "undid an in-place change that never committed");
        self.remember(next.clone());
        Ok(next)
    }

    /// PATCH: the window and name in one fenced commit, with every expiry
    /// that follows the window moved inside it (or, for per-user keys,
    /// extended ahead of it).
    pub(crate) async fn patch(
        &self,
        token: &str,
        current: &CampaignMeta,
        patch: &CampaignPatch,
    ) -> StoreResult<CampaignMeta> {
        let admin = &self.inner.admin;
        let id = current.id();
        let mut next = current.clone();
        next.campaign = patch.apply(&current.campaign, Utc::now())?;
        next.revision += 1;
        let expire_at = self.expire_at(&next.campaign);
        let mut tx = Fenced::new(self.keys(), current, token);
        let c = &next.campaign;
        tx.meta(
            self.keys(),
            &next,
            &[
                (keys::FIELD_NAME, c.name.clone()),
                (keys::FIELD_STARTS_AT, fmt_time(c.starts_at)),
                (keys::FIELD_ENDS_AT, fmt_time(c.ends_at)),
                (keys::FIELD_UPDATED_AT, fmt_time(c.updated_at)),
            ],
        );
        tx.op("EXPIREAT", &[&self.keys().meta(id)], expire_at);
        if c.version > 0 {
            // The live snapshot is among the kept ones.
            let kept = self.kept(current).await?;
            self.queue_history_expiry(&mut tx, &next, &kept, expire_at);
        }
        // The expiry follows max(ends_at, now), so any window edit moves it.
        let window_changed = patch.starts_at.is_some() || patch.ends_at.is_some();
        if window_changed && c.audience_size > 0 {
            let design = self.design(c.design);
            let members = if design.keys_per_member() {
                self.read_audience(current).await?
            } else {
                Audience::empty(c.user_id_type)
            };
            design
                .expire(admin, &mut tx, current, &members, expire_at)
                .await?;
        }
        self.commit(tx, &next).await?;
        self.remember(next.clone());
        self.announce(id, c.version).await;
        Ok(next)
    }

    /// Delete: the metadata and live data in one fenced commit.
    pub(crate) async fn delete(&self, token: &str, current: &CampaignMeta) -> StoreResult<()> {
        let id = current.id();
        let keys = self.keys();
        let design = self.design(current.campaign.design);
        let kept = self.kept(current).await?;
        let mut tx = Fenced::new(keys, current, token);
        self.queue_history_delete(&mut tx, current, &kept);
        tx.op("UNLINK", &[&keys.meta(id)], NO_ARGS);
        tx.op("UNLINK", &[&keys.pending(id)], NO_ARGS);
        design.delete(&mut tx, id);
        if current.campaign.version > 0 {
            // Kept a minute so per-user entries can be listed for clean-up.
            tx.op(
                "EXPIRE",
                &[&keys.snapshot(id, current.incarnation, current.snapshot)],
                OLD_SNAPSHOT_TTL_SECS,
            );
        }
        let mut gone = current.clone();
        gone.revision += 1;
        self.commit_as(tx, &gone, true).await?;
        if let Err(e) = self
            .inner
            .admin
            .cmd::<i64>(
                "delete",
                redis::cmd("SREM").arg(keys.campaign_index()).arg(id),
            )
            .await
        {
            tracing::warn!(campaign = %id, error = %e, "index entry left behind; reconciliation prunes it");
        }
        self.forget(id, current.incarnation);
        self.announce(id, current.campaign.version).await;
        if current.campaign.version > 0 && design.keys_per_member() {
            self.retire_later(current.clone(), current.generation, None);
        }
        Ok(())
    }

    fn snapshot_string_max(&self) -> usize {
        self.inner.options.snapshot_string_max_bytes
    }

    /// Frees an old generation in the background once no instance can still
    /// be reading it; login never depends on this finishing.
    fn retire_later(&self, meta: CampaignMeta, generation: Stamp, members: Option<Audience>) {
        let store = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(store.retire_delay()).await;
            let design = store.design(meta.campaign.design);
            let members = match members {
                Some(m) => m,
                None => match store.read_audience(&meta).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(campaign = %meta.id(), %generation, error = %e, "old audience unreadable; its per-user entries expire by themselves");
                        return;
                    }
                },
            };
            if let Err(e) = design
                .retire(&store.inner.admin, &meta, generation, &members)
                .await
            {
                tracing::warn!(campaign = %meta.id(), %generation, error = %e, "retiring an old audience failed; it expires by itself");
            }
        });
    }

    /// Drops closed per-user ranges once no instance can still read them.
    fn prune_later(&self, meta: CampaignMeta, removed: Audience) {
        let store = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(store.retire_delay()).await;
            let design = store.design(meta.campaign.design);
            if let Err(e) = design
                .prune_delta(&store.inner.admin, &meta, meta.campaign.version, &removed)
                .await
            {
                tracing::warn!(campaign = %meta.id(), error = %e, "pruning removed per-user entries failed; they expire by themselves");
            }
        });
    }
}
