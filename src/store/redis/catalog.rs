//! The catalog: every campaign's metadata, as this instance knows it.
//!
//! Checks of one campaign read its metadata with the probe (fresh), but
//! "which campaigns is this user in?" and the near-cache need the list of
//! campaigns, which lives in one index SET outside any campaign's slot. So
//! each instance keeps a catalog and keeps it honest by **reconciling**:
//! read the index, then each campaign's incarnation and revision (two
//! small fields, pipelined), and reload in full only what changed. A
//! reconciliation runs at least every [`RECONCILE_EVERY`], at once when a
//! change is announced on pub/sub, and when the change counter moves.
//!
//! Announcements are hints: a writer can die between its commit and its
//! announcement, and pub/sub drops messages while disconnected. Only a
//! reconciliation confirms the catalog, so its age (time since the start
//! of the last one that succeeded) is what readers are told: past
//! [`RedisStore::max_catalog_age`], answers that depend on it are stale.
//!
//! A malformed or partial metadata hash is skipped, logged once and counted
//! (`guestlist_catalog_malformed_campaigns`); it never stops the catalog.

use super::batch::Batch;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::connect::{ClusterTarget, Target};
use super::meta::CampaignMeta;
use super::{Inner, RedisStore};
use crate::store::StoreResult;
use futures_util::{FutureExt, StreamExt};

/// Longest the catalog goes without a reconciliation while Redis answers.
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How often the change counter is polled between reconciliations.
const POLL: Duration = Duration::from_millis(250);
/// An index entry whose metadata has been missing this long is pruned: a
/// create writes the index first, so a briefly missing one may be a create
/// in flight.
const PRUNE_AFTER: Duration = Duration::from_secs(60);

/// See [`RedisStore::on_catalog_change`].
pub type CatalogListener = Box<dyn Fn(&HashMap<String, Arc<CampaignMeta>>) + Send + Sync>;

/// The campaigns this instance knows.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) campaigns: HashMap<String, Arc<CampaignMeta>>,
    /// Start of the last reconciliation that succeeded: everything committed
    /// before it is in the catalog.
    pub(crate) reconciled_at: Option<Instant>,
    counter: Option<i64>,
    /// Campaigns this instance changed itself (remembered or forgot), and
    /// when. A reconciliation that started before such a change read an
    /// older state of that campaign, so it keeps the local one: the catalog
    /// never goes back.
    touched: HashMap<String, Instant>,
    /// Incarnations this instance saw deleted, shared by every version of
    /// the catalog so that recording one need not copy the catalog.
    gone: Arc<std::sync::Mutex<Tombstones>>,
}

/// What this instance saw deleted, and when, each kept [`GONE_FOR`] and at
/// most [`GONE_CAP`]:
/// - `deleted`: incarnations seen deleted. A read that loaded one just
///   before the delete may finish after it, and must not bring it back.
/// - `absent`: campaigns a check found absent without knowing their
///   incarnation; what a read begun before then brings is not added.
///
/// Two maps, so that a flood of checks for campaigns that do not exist
/// (each leaves an absence) never pushes out a real deletion.
#[derive(Default)]
struct Tombstones {
    deleted: HashMap<String, (super::keys::Stamp, Instant)>,
    absent: HashMap<String, Instant>,
}

/// Makes room in `map` for one more: expired entries go first, and only a
/// map still full (churn faster than [`GONE_FOR`]) is emptied. Scans only
/// when full, so recording stays cheap on the request path.
fn make_room<V>(map: &mut HashMap<String, V>, at: impl Fn(&V) -> Instant) {
    if map.len() >= GONE_CAP {
        map.retain(|_, v| at(v).elapsed() < GONE_FOR);
    }
    if map.len() >= GONE_CAP {
        map.clear();
    }
}

impl Tombstones {
    fn record_deleted(&mut self, id: &str, incarnation: super::keys::Stamp) {
        make_room(&mut self.deleted, |(_, at)| *at);
        self.deleted
            .insert(id.to_string(), (incarnation, Instant::now()));
    }

    fn record_absent(&mut self, id: &str) {
        make_room(&mut self.absent, |at| *at);
        self.absent.insert(id.to_string(), Instant::now());
    }

    fn deleted(&self, id: &str) -> Option<(super::keys::Stamp, Instant)> {
        self.deleted
            .get(id)
            .copied()
            .filter(|(_, at)| at.elapsed() < GONE_FOR)
    }

    fn absent_since(&self, id: &str) -> Option<Instant> {
        self.absent
            .get(id)
            .copied()
            .filter(|at| at.elapsed() < GONE_FOR)
    }
}

/// How long a deleted incarnation is remembered as gone: far longer than
/// any read in flight (they are bounded by the store's deadlines).
const GONE_FOR: Duration = Duration::from_secs(60);
/// A bound on the tombstones kept, for campaign churn.
const GONE_CAP: usize = 10_000;

/// Whether `a` is a later state of its campaign than `b`: a later revision
/// of the same incarnation, or a later-created incarnation.
fn newer(a: &CampaignMeta, b: &CampaignMeta) -> bool {
    if a.incarnation == b.incarnation {
        a.revision > b.revision
    } else {
        a.campaign.created_at > b.campaign.created_at
    }
}

/// One announced change, as sent on the changes channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Change {
    pub campaign: String,
    pub version: u64,
    pub published_at_ms: i64,
}

impl Change {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Book-keeping of the reconciler, touched only by the task that runs it.
#[derive(Default)]
pub(crate) struct Reconciler {
    /// Index entries without metadata, since when.
    missing: HashMap<String, Instant>,
    /// Campaigns skipped as malformed, at the revision seen, so each is
    /// logged once.
    malformed: HashMap<String, Option<String>>,
}

impl RedisStore {
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .expect("catalog lock poisoned")
            .clone()
    }

    fn update_catalog(&self, f: impl FnOnce(&mut Catalog)) {
        let mut slot = self.inner.catalog.write().expect("catalog lock poisoned");
        let mut next = Catalog {
            campaigns: slot.campaigns.clone(),
            reconciled_at: slot.reconciled_at,
            counter: slot.counter,
            touched: slot.touched.clone(),
            gone: Arc::clone(&slot.gone),
        };
        f(&mut next);
        // Under the lock, before anyone can read the new catalog: whatever
        // follows it (the near-cache) learns first which of its copies it
        // has left behind, so nothing this process answers goes back.
        for listener in self
            .inner
            .catalog_listeners
            .read()
            .expect("lock poisoned")
            .iter()
        {
            listener(&next.campaigns);
        }
        *slot = Arc::new(next);
    }

    /// Calls `listener` with the new campaign list every time the catalog
    /// changes, before the change is visible to any reader.
    pub fn on_catalog_change(&self, listener: CatalogListener) {
        self.inner
            .catalog_listeners
            .write()
            .expect("lock poisoned")
            .push(listener);
    }

    /// Records a campaign state this instance just wrote or read fresh, so
    /// its own next check need not wait for a reconciliation. Ignored if
    /// the catalog already holds a newer state of it.
    pub(crate) fn remember(&self, meta: CampaignMeta) {
        self.learn(meta, None);
    }

    /// [`RedisStore::remember`] for a state read by a read begun at
    /// `started`: ignored if the campaign was found absent after that.
    pub(crate) fn remember_read(&self, meta: CampaignMeta, started: Instant) {
        self.learn(meta, Some(started));
    }

    fn learn(&self, meta: CampaignMeta, read_started: Option<Instant>) {
        self.update_catalog(|c| {
            let gone = c.gone.lock().expect("lock poisoned");
            let deleted = gone
                .deleted(meta.id())
                .is_some_and(|(incarnation, _)| incarnation == meta.incarnation)
                || gone.absent_since(meta.id()).is_some_and(|at| {
                    read_started.is_some_and(|started| at > started)
                        && !c.campaigns.contains_key(meta.id())
                });
            drop(gone);
            if !deleted
                && c.campaigns
                    .get(meta.id())
                    .is_none_or(|old| newer(&meta, old))
            {
                c.touched.insert(meta.id().to_string(), Instant::now());
                c.campaigns.insert(meta.id().to_string(), Arc::new(meta));
            }
        });
        self.inner.refreshed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Drops incarnation `incarnation` of campaign `id`, seen deleted; a
    /// newer incarnation the catalog may already hold stays.
    pub(crate) fn forget(&self, id: &str, incarnation: super::keys::Stamp) {
        self.update_catalog(|c| {
            c.gone
                .lock()
                .expect("lock poisoned")
                .record_deleted(id, incarnation);
            if c.campaigns
                .get(id)
                .is_some_and(|m| m.incarnation == incarnation)
            {
                c.touched.insert(id.to_string(), Instant::now());
                c.campaigns.remove(id);
            }
        });
        self.inner.refreshed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A check just found campaign `id` absent, without knowing which
    /// incarnation it had (this instance's catalog had not learnt it when
    /// the check began). A reconciliation or read begun before now may have
    /// read it before it was deleted; what they bring of it is not added.
    /// What the catalog already lists stays: it may be newer than the check's
    /// read, and a listed campaign must not vanish from "which campaigns is
    /// this user in?". (The probe drops the incarnation it found gone with
    /// [`RedisStore::forget`].)
    ///
    /// Checks of a campaign that does not exist take this path on every
    /// call, so it writes only the tombstone: no copy of the catalog, no
    /// wake of the near-cache.
    pub(crate) fn forget_absent(&self, id: &str) {
        // Under the catalog's lock: a reconciliation cannot merge between a
        // check and the tombstone it leaves.
        let catalog = self.inner.catalog.read().expect("catalog lock poisoned");
        catalog
            .gone
            .lock()
            .expect("lock poisoned")
            .record_absent(id);
    }

    /// How old the catalog is: time since the start of the last successful
    /// reconciliation. `None` before the first.
    pub fn catalog_age(&self) -> Option<Duration> {
        self.catalog().reconciled_at.map(|t| t.elapsed())
    }

    /// Past this age, answers that depend on the catalog are stale.
    pub(crate) fn max_catalog_age(&self) -> Duration {
        self.inner
            .options
            .max_staleness
            .min(self.retire_delay() / 2)
    }

    /// Whether the catalog is too old to answer from as fresh.
    pub fn catalog_is_stale(&self) -> bool {
        self.catalog_age()
            .is_none_or(|age| age > self.max_catalog_age())
    }

    /// Ticks after every catalog change or confirmation; the near-cache
    /// follows it.
    pub fn subscribe_catalog(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.refreshed.subscribe()
    }

    /// The campaigns the catalog holds, with the start of the reconciliation
    /// that confirmed them (read together, so the time never vouches for a
    /// list it did not see); `None` before the first reconciliation.
    pub fn known_campaigns(&self) -> Option<(Vec<Arc<CampaignMeta>>, Instant)> {
        let catalog = self.catalog();
        catalog
            .reconciled_at
            .map(|at| (catalog.campaigns.values().cloned().collect(), at))
    }

    /// Runs `f` on the catalog's campaigns while holding changes off: no
    /// change, and so no listener (see [`RedisStore::on_catalog_change`]),
    /// runs until it returns. What `f` publishes is therefore either judged
    /// against a change or seen by that change's listener, never neither.
    /// `f` must not read the catalog again (the lock is not reentrant).
    pub fn with_catalog_held<R>(
        &self,
        f: impl FnOnce(&HashMap<String, Arc<CampaignMeta>>) -> R,
    ) -> R {
        let catalog = self.inner.catalog.read().expect("catalog lock poisoned");
        f(&catalog.campaigns)
    }

    /// One campaign as the catalog holds it now, however old.
    pub fn known_campaign(&self, id: &str) -> Option<Arc<CampaignMeta>> {
        self.catalog().campaigns.get(id).cloned()
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

    /// Brings the catalog in line with Redis (see the module doc).
    pub(crate) async fn reconcile(&self, state: &mut Reconciler) -> StoreResult<()> {
        let started = Instant::now();
        let admin = &self.inner.admin;
        let counter: Option<i64> = admin
            .cmd(
                "catalog",
                redis::cmd("GET").arg(self.keys().catalog_version()),
            )
            .await?;
        let ids: Vec<String> = admin
            .cmd(
                "catalog",
                redis::cmd("SMEMBERS").arg(self.keys().campaign_index()),
            )
            .await?;
        let mut pipe = Batch::new();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys().meta(id))
                .arg(super::keys::FIELD_INCARNATION)
                .arg(super::keys::FIELD_REVISION);
        }
        let stamps: Vec<(Option<String>, Option<String>)> = if ids.is_empty() {
            Vec::new()
        } else {
            admin.pipe("catalog", &pipe).await?
        };
        let current = self.catalog();
        let mut campaigns = HashMap::with_capacity(ids.len());
        let mut reload = Vec::new();
        for (id, (incarnation, revision)) in ids.iter().zip(stamps) {
            let known = current.campaigns.get(id).filter(|m| {
                Some(m.incarnation.to_string()) == incarnation
                    && Some(m.revision.to_string()) == revision
            });
            match known {
                Some(m) => {
                    campaigns.insert(id.clone(), m.clone());
                }
                None if state.malformed.get(id) == Some(&revision) => {}
                None => reload.push((id.clone(), revision)),
            }
        }
        let mut present: HashSet<String> = campaigns.keys().cloned().collect();
        if !reload.is_empty() {
            let mut pipe = Batch::new();
            for (id, _) in &reload {
                pipe.hgetall(self.keys().meta(id));
            }
            let metas: Vec<HashMap<String, String>> = admin.pipe("catalog", &pipe).await?;
            for ((id, revision), hash) in reload.iter().zip(metas) {
                if hash.is_empty() {
                    continue;
                }
                present.insert(id.clone());
                match CampaignMeta::parse(id, &hash) {
                    Ok(meta) => {
                        state.malformed.remove(id);
                        campaigns.insert(id.clone(), Arc::new(meta));
                    }
                    Err(e) => {
                        tracing::warn!(campaign = %id, error = %e, "skipping a campaign whose metadata is malformed; fix or delete its keys");
                        state.malformed.insert(id.clone(), revision.clone());
                    }
                }
            }
        }
        state.malformed.retain(|id, _| present.contains(id));
        metrics::gauge!("guestlist_catalog_malformed_campaigns").set(state.malformed.len() as f64);
        self.prune_index(state, &ids, &present).await;
        let count = campaigns.len();
        self.update_catalog(|c| {
            merge_reconciled(c, campaigns, &present, started);
            c.counter = counter;
        });
        self.inner.refreshed.send_modify(|n| *n = n.wrapping_add(1));
        tracing::trace!(campaigns = count, "catalog reconciled");
        Ok(())
    }

    /// Removes index entries whose metadata has been gone for a while
    /// (expired by retention, or a create or delete that died halfway).
    async fn prune_index(&self, state: &mut Reconciler, ids: &[String], present: &HashSet<String>) {
        let now = Instant::now();
        state.missing.retain(|id, _| !present.contains(id));
        let mut gone = Vec::new();
        for id in ids.iter().filter(|id| !present.contains(*id)) {
            let since = *state.missing.entry(id.clone()).or_insert(now);
            if now.duration_since(since) >= PRUNE_AFTER {
                gone.push(id.clone());
            }
        }
        if gone.is_empty() {
            return;
        }
        let removed = self
            .inner
            .admin
            .cmd::<i64>(
                "catalog",
                redis::cmd("SREM")
                    .arg(self.keys().campaign_index())
                    .arg(&gone),
            )
            .await;
        if removed.is_ok() {
            for id in &gone {
                state.missing.remove(id);
            }
        }
    }

    /// Whether the change counter moved since the last reconciliation.
    async fn counter_moved(&self) -> StoreResult<bool> {
        let counter: Option<i64> = self
            .inner
            .admin
            .cmd(
                "catalog",
                redis::cmd("GET").arg(self.keys().catalog_version()),
            )
            .await?;
        Ok(counter != self.catalog().counter)
    }
}

/// Keeps the catalog reconciled until the store is dropped: one task, so
/// reconciliations never overlap; announcements wake it early.
pub(crate) fn spawn_reconciler(inner: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut state = Reconciler::default();
        let mut was_ok = true;
        loop {
            let woken = tokio::select! {
                () = wake.notified() => true,
                () = tokio::time::sleep(POLL) => false,
            };
            let Some(inner) = inner.upgrade() else { return };
            let store = RedisStore { inner };
            let due = store
                .catalog()
                .reconciled_at
                .is_none_or(|t| t.elapsed() + POLL > RECONCILE_EVERY);
            let result = if woken || due {
                store.reconcile(&mut state).await
            } else {
                match store.counter_moved().await {
                    Ok(true) => store.reconcile(&mut state).await,
                    other => other.map(drop),
                }
            };
            match result {
                Ok(()) if !was_ok => {
                    tracing::info!("Redis reachable again; catalog reconciled");
                    was_ok = true;
                }
                Ok(()) => {}
                Err(e) if was_ok => {
                    tracing::warn!(error = %e, "catalog reconciliation failed; will keep retrying");
                    was_ok = false;
                }
                Err(_) => {}
            }
        }
    });
}

/// Listens on the changes channel and wakes the reconciler on every
/// announcement. Reconnects by itself; messages sent while disconnected are
/// lost, which the periodic reconciliation covers. On Redis Cluster the
/// channel is sharded (`SSUBSCRIBE`): one shard carries it, instead of the
/// cluster bus copying every message to every node.
pub(crate) fn spawn_change_listener(inner: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let channel = strong.keys.changes();
            // Closed when the store is dropped: the subscription ends with it
            // rather than waiting for a message that may never come.
            let mut store_alive = strong.refreshed.subscribe();
            let subscribed = match &strong.target {
                Target::Single(client) => single_node_changes(client.clone(), channel).boxed(),
                Target::Cluster(cluster) => cluster_changes(cluster.clone(), channel).boxed(),
            };
            drop(strong);
            let mut messages = match tokio::time::timeout(Duration::from_secs(5), subscribed).await
            {
                Ok(Ok(m)) => m,
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            wake.notify_one();
            loop {
                let payload = tokio::select! {
                    payload = messages.next() => payload,
                    alive = store_alive.changed() => match alive {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                let Some(payload) = payload else { break };
                let Some(inner) = inner.upgrade() else { return };
                if let Ok(change) = serde_json::from_slice::<Change>(&payload) {
                    let mut announced = inner.announced.lock().expect("lock poisoned");
                    // One entry per campaign, consumed by a near-cache; a
                    // hard bound for campaign churn without one.
                    if announced.len() >= 10_000 {
                        announced.clear();
                    }
                    announced.insert(change.campaign, (change.version, change.published_at_ms));
                }
                wake.notify_one();
            }
            tracing::debug!("changes subscription ended; reconnecting");
        }
    });
}

type Payloads = futures_util::stream::BoxStream<'static, Vec<u8>>;

async fn single_node_changes(
    client: redis::Client,
    channel: String,
) -> redis::RedisResult<Payloads> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    Ok(pubsub
        .into_on_message()
        .map(|msg| msg.get_payload_bytes().to_vec())
        .boxed())
}

/// The cluster client delivers pushes to a channel and re-subscribes by
/// itself after a reconnect or a failover moves the channel's slot; a
/// `Disconnection` push (and the gap it leaves) wakes the reconciler too,
/// through an empty payload.
async fn cluster_changes(cluster: ClusterTarget, channel: String) -> redis::RedisResult<Payloads> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
    let client = cluster
        .builder()
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()?;
    let mut conn = client.get_async_connection().await?;
    conn.ssubscribe(&channel).await?;
    let stream = futures_util::stream::unfold((rx, conn), |(mut rx, conn)| async move {
        loop {
            let push = rx.recv().await?;
            match push.kind {
                redis::PushKind::SMessage | redis::PushKind::Message => {
                    let payload = match push.data.get(1) {
                        Some(redis::Value::BulkString(bytes)) => bytes.clone(),
                        _ => Vec::new(),
                    };
                    return Some((payload, (rx, conn)));
                }
                redis::PushKind::Disconnection => return Some((Vec::new(), (rx, conn))),
                _ => {}
            }
        }
    });
    Ok(stream.boxed())
}

/// Replaces `c`'s campaigns with those a reconciliation that began at
/// `started` read (`present`: every id whose metadata it found, readable
/// or not), keeping what is known to be newer than the read:
/// - what this instance changed itself while it ran (`touched`);
/// - deletions seen while it ran: an incarnation this instance saw deleted
///   after the read began stays deleted, even if the read still found it;
/// - absences seen while it ran: a campaign the catalog lacks and a check
///   found absent after the read began is not added (see `forget_absent`);
/// - deletions it finds: an incarnation whose metadata is no longer there
///   is remembered as gone, so that a late answer read before its delete
///   cannot bring it back (see `remember`). One skipped for unreadable
///   metadata is not: it may be repaired under the same incarnation.
///
/// A read that began after a deletion was seen is the authority on it: if
/// it finds the incarnation, the tombstone was wrong (a replica behind)
/// and goes.
fn merge_reconciled(
    c: &mut Catalog,
    mut campaigns: HashMap<String, Arc<CampaignMeta>>,
    present: &HashSet<String>,
    started: Instant,
) {
    let mut gone = c.gone.lock().expect("lock poisoned");
    campaigns.retain(|id, m| {
        let deleted_since = gone
            .deleted(id)
            .is_some_and(|(incarnation, at)| incarnation == m.incarnation && at >= started);
        // Found absent, incarnation unknown: only what the catalog lacks is
        // held back, so nothing it lists disappears on this account.
        let absent_since = gone
            .absent_since(id)
            .is_some_and(|at| at >= started && !c.campaigns.contains_key(id));
        !deleted_since && !absent_since
    });
    for (id, at) in &c.touched {
        if *at < started {
            continue;
        }
        match c.campaigns.get(id) {
            Some(mine) if campaigns.get(id).is_none_or(|read| !newer(read, mine)) => {
                campaigns.insert(id.clone(), mine.clone());
            }
            Some(_) => {}
            None => {
                campaigns.remove(id);
            }
        }
    }
    // A deletion a read begun after it contradicts was wrong (a replica
    // behind): the read is the authority. An absence stays its full term:
    // it guards against late reads, which a later reconciliation cannot
    // vouch for.
    gone.deleted.retain(|id, (incarnation, at)| {
        let found_since = *at < started
            && campaigns
                .get(id)
                .is_some_and(|m| m.incarnation == *incarnation);
        !found_since && at.elapsed() < GONE_FOR
    });
    for (id, old) in &c.campaigns {
        let deleted = !present.contains(id)
            && campaigns
                .get(id)
                .is_none_or(|m| m.incarnation != old.incarnation);
        if deleted {
            gone.record_deleted(id, old.incarnation);
        }
    }
    drop(gone);
    c.touched.retain(|_, at| *at >= started);
    c.campaigns = campaigns;
    c.reconciled_at = Some(started);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewCampaign;
    use crate::store::StoreOptions;

    /// A read that loaded a campaign's metadata just before it was deleted
    /// can finish after this instance forgot it: the deleted incarnation
    /// must not come back (the catalog would go back in time, and checks
    /// would answer for a campaign that is gone).
    #[tokio::test]
    async fn a_forgotten_incarnation_is_not_remembered_again() {
        let store = offline_store().await;
        let now = chrono::Utc::now();
        let campaign = NewCampaign {
            id: "c".into(),
            name: "c".into(),
            starts_at: (now - chrono::Duration::hours(1)).to_rfc3339(),
            ends_at: (now + chrono::Duration::hours(1)).to_rfc3339(),
            design: Some("per-user".into()),
            user_id_type: None,
        }
        .validate(now)
        .unwrap();
        let old = CampaignMeta::new(campaign.clone());
        store.remember(old.clone());
        store.forget("c", old.incarnation);
        store.remember(old.clone());
        assert!(!store.catalog().campaigns.contains_key("c"));

        // A new incarnation of the same id is learnt as usual.
        let new = CampaignMeta::new(campaign);
        store.remember(new.clone());
        assert_eq!(
            store.catalog().campaigns.get("c").map(|m| m.incarnation),
            Some(new.incarnation)
        );
    }

    /// A store whose Redis never answers: it connects lazily and these
    /// tests only touch its catalog.
    async fn offline_store() -> RedisStore {
        RedisStore::connect("redis://127.0.0.1:1", StoreOptions::default())
            .await
            .unwrap()
    }

    fn meta(id: &str) -> Arc<CampaignMeta> {
        let now = chrono::Utc::now();
        let campaign = NewCampaign {
            id: id.into(),
            name: id.into(),
            starts_at: (now - chrono::Duration::hours(1)).to_rfc3339(),
            ends_at: (now + chrono::Duration::hours(1)).to_rfc3339(),
            design: Some("per-user".into()),
            user_id_type: None,
        }
        .validate(now)
        .unwrap();
        Arc::new(CampaignMeta::new(campaign))
    }

    /// A reconciliation that no longer finds an incarnation records it as
    /// gone, so a late answer read before the delete cannot restore it.
    #[tokio::test]
    async fn an_incarnation_a_reconciliation_dropped_is_not_remembered_again() {
        let store = offline_store().await;
        let old = meta("c");
        store.remember((*old).clone());
        store.update_catalog(|c| {
            merge_reconciled(c, HashMap::new(), &HashSet::new(), Instant::now())
        });
        assert!(!store.catalog().campaigns.contains_key("c"));
        store.remember((*old).clone());
        assert!(
            !store.catalog().campaigns.contains_key("c"),
            "a deleted incarnation came back"
        );
    }

    /// A reconciliation that read an incarnation before this instance saw
    /// it deleted does not bring it back.
    #[tokio::test]
    async fn a_reconciliation_read_before_a_delete_does_not_restore_it() {
        let store = offline_store().await;
        let old = meta("c");
        let started = Instant::now();
        store.remember((*old).clone());
        // Seen deleted, then forgotten by a reconciliation that ran meanwhile.
        store.forget("c", old.incarnation);
        store.update_catalog(|c| {
            c.touched.clear();
        });
        let read = HashMap::from([("c".to_string(), old.clone())]);
        let present = HashSet::from(["c".to_string()]);
        store.update_catalog(|c| merge_reconciled(c, read.clone(), &present, started));
        assert!(
            !store.catalog().campaigns.contains_key("c"),
            "a reconciliation restored a deleted incarnation"
        );
        // A read that began after the delete was seen and still finds the
        // incarnation is the authority: the tombstone was wrong.
        let later = Instant::now();
        store.update_catalog(|c| merge_reconciled(c, read, &present, later));
        assert!(store.catalog().campaigns.contains_key("c"));
        store.remember((*old).clone());
        assert!(store.catalog().campaigns.contains_key("c"));
    }

    /// A check on an instance whose catalog has not learnt a campaign yet
    /// reads its metadata directly and may find it deleted; a
    /// reconciliation that read it before the delete and merges after must
    /// not bring it back, or the near-cache would load the deleted audience
    /// and answer from it as fresh after the check answered 404.
    #[tokio::test]
    async fn a_campaign_a_check_found_absent_is_not_restored_by_an_earlier_reconciliation() {
        let store = offline_store().await;
        let old = meta("c");
        let reconciliation_started = Instant::now();
        store.forget_absent("c");
        let read = HashMap::from([("c".to_string(), old.clone())]);
        let present = HashSet::from(["c".to_string()]);
        store.update_catalog(|c| {
            merge_reconciled(c, read.clone(), &present, reconciliation_started)
        });
        assert!(
            !store.catalog().campaigns.contains_key("c"),
            "a reconciliation read before the check restored a deleted campaign"
        );
        // One that began after the check saw it absent is the authority.
        store.update_catalog(|c| merge_reconciled(c, read, &present, Instant::now()));
        assert!(store.catalog().campaigns.contains_key("c"));
    }

    /// The same for a check's own read of the metadata, begun before another
    /// check found the campaign absent and finished after.
    #[tokio::test]
    async fn a_read_begun_before_a_campaign_was_found_absent_does_not_restore_it() {
        let store = offline_store().await;
        let old = meta("c");
        let read_started = Instant::now();
        store.forget_absent("c");
        store.remember_read((*old).clone(), read_started);
        assert!(
            !store.catalog().campaigns.contains_key("c"),
            "a read from before the absence restored the campaign"
        );
        store.remember_read((*old).clone(), Instant::now());
        assert!(store.catalog().campaigns.contains_key("c"));
    }

    /// Finding a campaign absent without knowing its incarnation never
    /// drops one the catalog lists: "which campaigns is this user in?"
    /// would stop listing a campaign it listed a moment ago, which may be a
    /// create that landed after the check's read.
    #[tokio::test]
    async fn finding_a_campaign_absent_keeps_what_the_catalog_lists() {
        let store = offline_store().await;
        let listed = meta("c");
        store.remember((*listed).clone());
        let reconciliation_started = Instant::now();
        store.forget_absent("c");
        assert!(store.catalog().campaigns.contains_key("c"));
        let read = HashMap::from([("c".to_string(), listed.clone())]);
        let present = HashSet::from(["c".to_string()]);
        store.update_catalog(|c| {
            c.touched.clear();
            merge_reconciled(c, read, &present, reconciliation_started)
        });
        assert!(store.catalog().campaigns.contains_key("c"));
    }

    /// A create this instance made after a check found the campaign absent
    /// survives a reconciliation that began before both.
    #[tokio::test]
    async fn a_create_after_an_absence_survives_an_earlier_reconciliation() {
        let store = offline_store().await;
        let reconciliation_started = Instant::now();
        store.forget_absent("c");
        let created = meta("c");
        store.remember((*created).clone());
        store.update_catalog(|c| {
            merge_reconciled(c, HashMap::new(), &HashSet::new(), reconciliation_started)
        });
        assert_eq!(
            store.catalog().campaigns.get("c").map(|m| m.incarnation),
            Some(created.incarnation)
        );
    }

    /// Checks of a deleted campaign go on finding it absent; those
    /// absences, and a flood of them for campaigns that never existed, must
    /// not wear out the deletion: the deleted incarnation stays out.
    #[tokio::test]
    async fn absences_never_push_out_a_deletion() {
        let store = offline_store().await;
        let old = meta("c");
        store.remember((*old).clone());
        store.forget("c", old.incarnation);
        store.forget_absent("c");
        for i in 0..GONE_CAP + 10 {
            store.forget_absent(&format!("never-{i}"));
        }
        // A read begun after every absence (say, from a replica behind).
        store.remember_read((*old).clone(), Instant::now());
        assert!(
            !store.catalog().campaigns.contains_key("c"),
            "a deleted incarnation came back"
        );
    }

    /// Unreadable metadata hides a campaign but does not mark it deleted:
    /// repaired under the same incarnation, it is learnt again at once.
    #[tokio::test]
    async fn a_campaign_skipped_as_malformed_is_not_marked_deleted() {
        let store = offline_store().await;
        let old = meta("c");
        store.remember((*old).clone());
        let present = HashSet::from(["c".to_string()]);
        store.update_catalog(|c| merge_reconciled(c, HashMap::new(), &present, Instant::now()));
        assert!(!store.catalog().campaigns.contains_key("c"));
        let repaired = HashMap::from([("c".to_string(), old.clone())]);
        store.update_catalog(|c| merge_reconciled(c, repaired, &present, Instant::now()));
        assert!(store.catalog().campaigns.contains_key("c"));
    }
}
