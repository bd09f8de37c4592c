//! How the cache follows the store: each catalog refresh reconciles the
//! entries (confirm, reload, drop) and publishes a new state; answers the
//! store gives meanwhile mark older entries superseded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::feed::ChangeFeed;
use super::members::Members;
use super::state::{Entry, Map};
use super::{Inner, NearCache};
use crate::domain::Status;
use crate::store::redis::CampaignMeta;

/// How often the cache gauges are recomputed.
const TICK: Duration = Duration::from_millis(500);
/// How long a 404 is remembered (see `Inner::gone`): far longer than a
/// reconciliation, which runs every second.
const GONE_FOR_MS: u64 = 60_000;
/// A bound on the 404s remembered, for checks of campaigns that never existed.
const GONE_CAP: usize = 10_000;

/// A snapshot as fetched for the cache.
enum Fetched {
    Integers(Vec<u64>),
    Keys(crate::ids::Audience),
}

enum Load {
    Loaded(Arc<Members>, u64),
    /// Cannot fit in the memory budget.
    TooBig,
    /// The store did not deliver the snapshot.
    Failed,
}

impl NearCache {
    /// Brings the cache in line with the store's catalog: confirms entries
    /// whose version is unchanged, loads new versions from their snapshots,
    /// drops ended or deleted campaigns.
    pub(super) async fn sync(&self, store: &dyn ChangeFeed) {
        let Some((mut campaigns, confirmed_at)) = store.known_campaigns() else {
            return;
        };
        let confirmed_ms = self.inner.clock.ms_at(confirmed_at);
        let now = Utc::now();
        campaigns.retain(|m| m.campaign.status_at(now) != Status::Ended);
        let known: std::collections::HashSet<String> =
            campaigns.iter().map(|m| m.id().to_string()).collect();
        // Under a tight budget, active campaigns go first, then the soonest to start.
        campaigns.sort_by_key(|m| {
            (
                m.campaign.status_at(now) != Status::Active,
                m.campaign.starts_at,
            )
        });

        let current = self.inner.state.load_full();
        // Confirm what is unchanged first: loading a new snapshot may take
        // a while, and entries the catalog just confirmed must not age
        // meanwhile.
        for meta in &campaigns {
            if let Some(e) = current.entries.get(meta.id()).filter(|e| same(e, meta)) {
                e.confirmed_ms.fetch_max(confirmed_ms, Ordering::Relaxed);
            }
        }
        let mut entries = Map::default();
        let mut used: u64 = 0;
        let mut complete = true;
        let mut skipped = 0;
        for meta in campaigns {
            let reusable = current.entries.get(meta.id()).filter(|e| same(e, &meta));
            let campaign = &meta.campaign;
            // A reused entry is rebuilt (a PATCH may have moved its window)
            // but keeps its confirmation and whether it was superseded.
            let (members, bytes, confirmed, superseded) = match reusable {
                Some(e) => (
                    e.members.clone(),
                    e.bytes,
                    e.confirmed_ms.load(Ordering::Relaxed),
                    e.superseded.load(Ordering::Relaxed),
                ),
                None => match self.load(store, &meta, used).await {
                    // Loaded from the catalog as it was when this sync began;
                    // if the catalog has moved on since, the check before
                    // publishing supersedes it.
                    Load::Loaded(members, bytes) => (members, bytes, confirmed_ms, false),
                    Load::TooBig => {
                        // Served by the store from now on; an old version must not linger.
                        complete = false;
                        skipped += 1;
                        continue;
                    }
                    Load::Failed => {
                        complete = false;
                        match current.entries.get(&campaign.id) {
                            // Keep serving the old version of the same
                            // incarnation; it ages into stale. A deleted and
                            // re-created campaign's old entry must go.
                            Some(old)
                                if old.incarnation == meta.incarnation
                                    && used + old.bytes <= self.inner.options.max_bytes =>
                            {
                                used += old.bytes;
                                entries.insert(campaign.id.clone(), old.clone());
                            }
                            _ => skipped += 1,
                        }
                        continue;
                    }
                },
            };
            if used + bytes > self.inner.options.max_bytes {
                complete = false;
                skipped += 1;
                self.inner
                    .too_big
                    .lock()
                    .expect("lock poisoned")
                    .insert(campaign.id.clone(), campaign.version);
                continue;
            }
            used += bytes;
            let entry = Entry {
                campaign: campaign.clone(),
                incarnation: meta.incarnation,
                members,
                bytes,
                confirmed_ms: AtomicU64::new(confirmed),
                superseded: AtomicBool::new(superseded),
            };
            entries.insert(entry.campaign.id.clone(), Arc::new(entry));
        }
        self.inner
            .too_big
            .lock()
            .expect("lock poisoned")
            .retain(|id, _| known.contains(id));
        self.inner.skipped.store(skipped, Ordering::Relaxed);
        // A check may have found a newer state in the store (or found the
        // campaign gone) while this sync loaded an older one; it updated the
        // catalog before answering. Judging the entries against the catalog
        // and publishing them with catalog changes held off leaves no moment
        // where such an entry answers as fresh: a change before this is
        // judged here, one after it finds the entries published and
        // supersedes them through its listener.
        let mut entries = Some(entries);
        store.with_catalog_held(&mut |campaigns| {
            let Some(entries) = entries.take() else {
                return;
            };
            let gone = self.inner.gone.lock().expect("lock poisoned");
            for entry in entries.values() {
                let id = &entry.campaign.id;
                let behind = campaigns.get(id).is_none_or(|m| !same(entry, m));
                let confirmed = entry.confirmed_ms.load(Ordering::Relaxed);
                let gone_since = gone.get(id).is_some_and(|at| confirmed <= *at);
                if behind || gone_since {
                    entry.superseded.store(true, Ordering::Relaxed);
                }
            }
            self.inner
                .slots
                .publish(&self.inner.state, entries, complete);
        });
        self.tick();
    }

    /// Marks every entry whose state differs from `campaigns` (the store's
    /// catalog) as superseded. Runs on every catalog change, before the
    /// change is visible, so the cache never answers as fresh from a state
    /// older than one this process has seen.
    pub(super) fn supersede_behind(&self, campaigns: &HashMap<String, Arc<CampaignMeta>>) {
        for entry in self.inner.state.load().list.iter() {
            if campaigns
                .get(&entry.campaign.id)
                .is_none_or(|m| !same(entry, m))
            {
                entry.superseded.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Tells the cache the store just answered that `campaign` does not
    /// exist: its entry, if any, stops answering as fresh.
    pub fn observe_gone(&self, campaign: &str) {
        let now = self.now_ms();
        let mut gone = self.inner.gone.lock().expect("lock poisoned");
        if gone.len() >= GONE_CAP {
            gone.retain(|_, at| now.saturating_sub(*at) < GONE_FOR_MS);
        }
        if gone.len() >= GONE_CAP {
            gone.clear();
        }
        gone.insert(campaign.to_string(), now);
        if let Some(entry) = self.inner.state.load().find(campaign) {
            entry.superseded.store(true, Ordering::Relaxed);
        }
    }

    /// Tells the cache the store just answered for `campaign` at `version`
    /// (and, through the catalog the answer updated, at which incarnation):
    /// an entry of another state stops answering as fresh until the next
    /// sync replaces it, so reads never go back in time.
    pub fn observe(&self, campaign: &str, version: u64) {
        let state = self.inner.state.load();
        let Some(entry) = state.find(campaign) else {
            return;
        };
        let other_incarnation = || {
            let store = self.inner.store.as_ref();
            store
                .and_then(|s| s.known_campaign(campaign))
                .is_some_and(|m| m.incarnation != entry.incarnation)
        };
        if entry.campaign.version != version || other_incarnation() {
            entry.superseded.store(true, Ordering::Relaxed);
        }
    }

    /// Fetches one campaign's snapshot if it can fit.
    async fn load(&self, store: &dyn ChangeFeed, meta: &CampaignMeta, used: u64) -> Load {
        let campaign = &meta.campaign;
        // No form holds an integer ID in less than a bit (a full bitset),
        // nor a UUID or string in less than its 16-byte key; a campaign
        // that cannot fit even so is not fetched at all.
        let integers = campaign.user_id_type == crate::ids::IdType::Integer;
        let floor = if integers {
            campaign.audience_size / 8
        } else {
            campaign.audience_size.saturating_mul(16)
        };
        let known_too_big = self
            .inner
            .too_big
            .lock()
            .expect("lock poisoned")
            .get(&campaign.id)
            .is_some_and(|v| *v == campaign.version);
        if known_too_big || used + floor > self.inner.options.max_bytes {
            metrics::counter!("guestlist_cache_reloads_total", "outcome" => "skipped").increment(1);
            return Load::TooBig;
        }
        let started = Instant::now();
        // An integer snapshot arrives as a plain list of IDs (8 bytes each
        // for a moment), never as a treemap, which for sparse 64-bit IDs
        // would cost some 150 bytes of heap per ID on the way.
        let fetched = if integers {
            store.snapshot_ids(meta).await.map(Fetched::Integers)
        } else {
            store.snapshot_audience(meta).await.map(Fetched::Keys)
        };
        match fetched {
            Ok(fetched) => {
                let ids = campaign.audience_size;
                let built = tokio::task::spawn_blocking(move || match fetched {
                    Fetched::Integers(ids) => Ok(Members::from_sorted(ids)),
                    // The store checked the snapshot's type against the
                    // campaign's, so integers here would be a bug.
                    Fetched::Keys(audience) => Members::of_keys(audience).ok_or_else(|| {
                        "an integer snapshot for a campaign of another type".to_string()
                    }),
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|built| built);
                let (members, bytes) = match built {
                    Ok(built) => built,
                    Err(error) => {
                        tracing::warn!(campaign = %campaign.id, %error, "near-cache build failed");
                        return Load::Failed;
                    }
                };
                metrics::counter!("guestlist_cache_reloads_total", "outcome" => "ok").increment(1);
                metrics::histogram!("guestlist_cache_reload_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                if let Some(published_ms) = store.take_announced(&campaign.id, campaign.version) {
                    let lag = (Utc::now().timestamp_millis() - published_ms).max(0) as f64 / 1000.0;
                    metrics::histogram!("guestlist_cache_invalidation_lag_seconds").record(lag);
                }
                tracing::debug!(campaign = %campaign.id, version = campaign.version, ids, bytes, "near-cache loaded");
                Load::Loaded(Arc::new(members), bytes)
            }
            Err(e) => {
                metrics::counter!("guestlist_cache_reloads_total", "outcome" => "error")
                    .increment(1);
                tracing::warn!(campaign = %campaign.id, version = campaign.version, error = %e, "near-cache reload failed");
                Load::Failed
            }
        }
    }

    /// Recomputes the cache gauges.
    pub(super) fn tick(&self) {
        let state = self.inner.state.load();
        let (mut bytes, mut ids, mut stale) = (0, 0, 0);
        for entry in state.entries.values() {
            let is_stale = self.is_stale(entry);
            bytes += entry.bytes;
            ids += entry.members.len();
            stale += u64::from(is_stale);
        }
        metrics::gauge!("guestlist_cache_bytes").set(bytes as f64);
        metrics::gauge!("guestlist_cache_ids").set(ids as f64);
        metrics::gauge!("guestlist_cache_campaigns").set(state.entries.len() as f64);
        metrics::gauge!("guestlist_cache_stale_campaigns").set(stale as f64);
        metrics::gauge!("guestlist_cache_skipped_campaigns")
            .set(self.inner.skipped.load(Ordering::Relaxed) as f64);
    }
}

/// Whether a cached entry holds the audience `meta` names.
fn same(entry: &Entry, meta: &CampaignMeta) -> bool {
    entry.incarnation == meta.incarnation && entry.campaign.version == meta.campaign.version
}

/// Follows the store's catalog refreshes, and updates gauges between them.
/// Holds only a weak reference, so dropping every handle stops it.
pub(super) fn spawn_sync(inner: Weak<Inner>, store: Arc<dyn ChangeFeed>) {
    tokio::spawn(async move {
        let mut refreshed = store.subscribe_catalog();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let changed = tokio::select! {
                r = refreshed.changed() => r.is_ok(),
                _ = tick.tick() => false,
            };
            let Some(inner) = inner.upgrade() else { return };
            let cache = NearCache { inner };
            if changed {
                cache.sync(store.as_ref()).await;
            } else {
                cache.tick();
            }
        }
    });
}
