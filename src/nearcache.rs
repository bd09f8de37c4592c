//! The near-cache: in-process replicas of every scheduled or active audience.
//!
//! Login checks answered here cost a hash lookup and a bitmap probe (tens of
//! nanoseconds) and no network at all. The cache follows the Redis store:
//!
//! - **What it holds**: the audience of each scheduled or active campaign,
//!   loaded from the compact roaring snapshot the store publishes with every
//!   version (a few bytes per ID, one fetch per version), and kept in the form
//!   that probes fastest within three bytes per ID (see `Members`).
//! - **When it reloads**: whenever the store's catalog refreshes, which happens
//!   at once when a change is announced on pub/sub and at least once a second
//!   by the version poll, so a lost message costs at most a second.
//! - **How stale it may be**: each entry remembers when its version was last
//!   confirmed by a reconciliation of the store's catalog. Its age is
//!   computed when it is read, so no background task has to run for an
//!   entry to turn stale; past `max_staleness` it is flagged stale and the
//!   caller's policy decides whether to serve it or refuse.
//! - **What identifies an entry**: the campaign's incarnation and version,
//!   never the version alone: a deleted and re-created campaign starts its
//!   versions again, and must never be answered from its predecessor.
//! - **How big it may grow**: entries are admitted, active campaigns first,
//!   until `max_bytes`; campaigns that do not fit are answered by the store.
//!
//! The map is published through an `ArcSwap`: readers never lock and never
//! wait for a reload, which builds a new map beside the old one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use roaring::{RoaringBitmap, RoaringTreemap};
use serde::Serialize;

use crate::domain::{Campaign, Status, UserId};
use crate::store::redis::{CampaignMeta, RedisStore, Stamp};

/// What to do with an answer from an entry that is past its staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Answer anyway, flagged `stale`: login keeps working through an outage.
    #[default]
    Serve,
    /// Refuse (503), for callers that prefer no answer to an old one.
    Error,
}

#[derive(Debug, Clone)]
pub struct NearCacheOptions {
    /// Upper bound on the bitmaps held, in bytes.
    pub max_bytes: u64,
    /// Age past which an unconfirmed entry is stale.
    pub max_staleness: Duration,
    pub on_stale: StalePolicy,
}

impl Default for NearCacheOptions {
    fn default() -> Self {
        NearCacheOptions {
            max_bytes: 1 << 30,
            max_staleness: Duration::from_secs(5),
            on_stale: StalePolicy::Serve,
        }
    }
}

/// How often the cache gauges are recomputed.
const TICK: Duration = Duration::from_millis(500);

type Map = HashMap<String, Arc<Entry>, foldhash::fast::RandomState>;

/// An audience as the cache holds it, in whichever form answers fastest
/// without costing more memory than roaring's compact form.
enum Members {
    /// A flat bitset over `0..=max`, one bit per possible ID. Chosen when the
    /// audience is dense enough that it is no bigger than the roaring form
    /// (roaring then holds mostly 8 KiB bitmap containers anyway). A probe is
    /// one shift and one load, with no search for the container, so the cost
    /// stays flat from a hundred IDs to tens of millions.
    Dense {
        bits: Box<[u64]>,
        len: u64,
    },
    /// Sparse 32-bit audiences: IDs grouped into small blocks found through
    /// a directory indexed by their high bits. At most three bytes per ID,
    /// and a probe reads one directory slot and scans a few neighbours,
    /// instead of binary-searching first roaring's container keys and then
    /// a container of hundreds of IDs.
    Sorted(SortedBlocks),
    /// Every ID fits in 32 bits but the directory would cost more than the
    /// IDs themselves (a few IDs spread very wide): a plain `RoaringBitmap`,
    /// which saves the treemap's extra tree lookup on every probe.
    Narrow(RoaringBitmap),
    Wide(RoaringTreemap),
}

impl Members {
    /// Picks the form for `ids` and returns it with the bytes it holds.
    fn new(ids: RoaringTreemap) -> (Members, u64) {
        let compact = ids.serialized_size() as u64;
        let max = ids.max();
        // Words needed for a flat bitset over 0..=max.
        let words = max.map_or(0, |m| m / 64 + 1);
        if words * 8 <= compact {
            let mut bits = vec![0u64; words as usize].into_boxed_slice();
            for id in ids.iter() {
                bits[(id / 64) as usize] |= 1 << (id % 64);
            }
            let len = ids.len();
            return (Members::Dense { bits, len }, words * 8);
        }
        if let Some(sorted) = SortedBlocks::new(&ids) {
            let bytes = sorted.bytes();
            return (Members::Sorted(sorted), bytes);
        }
        if max.is_none_or(|max| max <= u64::from(u32::MAX)) {
            let narrow = ids
                .bitmaps()
                .next()
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (Members::Narrow(narrow), compact)
        } else {
            (Members::Wide(ids), compact)
        }
    }

    #[inline]
    fn contains(&self, user: UserId) -> bool {
        match self {
            Members::Dense { bits, .. } => usize::try_from(user / 64)
                .ok()
                .and_then(|word| bits.get(word))
                .is_some_and(|w| (w >> (user % 64)) & 1 == 1),
            Members::Sorted(sorted) => u32::try_from(user).is_ok_and(|u| sorted.contains(u)),
            Members::Narrow(ids) => u32::try_from(user).is_ok_and(|u| ids.contains(u)),
            Members::Wide(ids) => ids.contains(user),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Members::Dense { len, .. } => *len,
            Members::Sorted(sorted) => sorted.lows.len() as u64,
            Members::Narrow(ids) => ids.len(),
            Members::Wide(ids) => ids.len(),
        }
    }
}

/// See [`Members::Sorted`].
struct SortedBlocks {
    /// IDs are grouped by `id >> shift`; the shift is chosen per audience so
    /// blocks hold a handful of IDs each.
    shift: u32,
    /// `offsets[h]..offsets[h + 1]` is the block of IDs whose high bits are `h`.
    offsets: Box<[u32]>,
    /// The low `shift` bits of each ID, sorted within each block.
    lows: Box<[u16]>,
}

/// Blocks up to this many IDs are scanned; bigger ones (clustered IDs) are
/// binary-searched, so a skewed audience costs no more than roaring would.
const SCAN: usize = 16;

impl SortedBlocks {
    /// The finest grouping whose directory costs at most one byte per ID
    /// (four-byte offsets, one per four IDs or more), so an audience costs
    /// at most three bytes per ID. `None` when even 2^16-wide blocks would
    /// cost more: too few IDs spread too wide, left to roaring.
    fn new(ids: &RoaringTreemap) -> Option<SortedBlocks> {
        let max = u32::try_from(ids.max()?).ok()?;
        let len = ids.len();
        let shift = (0..=16).find(|s| 4 * (u64::from(max >> s) + 2) <= len)?;
        let blocks = (max >> shift) as usize + 1;
        let mut offsets = Vec::with_capacity(blocks + 1);
        let mut lows = Vec::with_capacity(len as usize);
        offsets.push(0);
        for id in ids.iter() {
            let block = (id >> shift) as usize;
            while offsets.len() <= block {
                offsets.push(lows.len() as u32);
            }
            lows.push((id & ((1 << shift) - 1)) as u16);
        }
        offsets.push(lows.len() as u32);
        Some(SortedBlocks {
            shift,
            offsets: offsets.into_boxed_slice(),
            lows: lows.into_boxed_slice(),
        })
    }

    fn bytes(&self) -> u64 {
        (self.offsets.len() * 4 + self.lows.len() * 2) as u64
    }

    #[inline]
    fn contains(&self, id: u32) -> bool {
        let high = (id >> self.shift) as usize;
        let (Some(&start), Some(&end)) = (self.offsets.get(high), self.offsets.get(high + 1))
        else {
            return false;
        };
        let block = &self.lows[start as usize..end as usize];
        let low = (id & ((1 << self.shift) - 1)) as u16;
        if block.len() <= SCAN {
            block.contains(&low)
        } else {
            block.binary_search(&low).is_ok()
        }
    }
}

/// One cached audience.
struct Entry {
    campaign: Campaign,
    incarnation: Stamp,
    members: Arc<Members>,
    bytes: u64,
    /// Milliseconds since the cache's epoch when this version was last confirmed.
    confirmed_ms: AtomicU64,
    /// The store has been seen answering from another state of this
    /// campaign: the entry must not answer as fresh any more, or a client
    /// that just got the newer answer from the store could next get an
    /// older one from here.
    superseded: AtomicBool,
}

enum Load {
    Loaded(Arc<Members>, u64),
    /// Cannot fit in the memory budget.
    TooBig,
    /// The store did not deliver the snapshot.
    Failed,
}

/// The published state: entries plus whether they cover every campaign that
/// can be active, which decides whether "which campaigns" can be answered here.
struct State {
    entries: Map,
    /// The same entries in a list, for [`State::find`].
    list: Vec<Arc<Entry>>,
    complete: bool,
}

/// Up to this many cached campaigns, a lookup compares ids one by one rather
/// than hashing: a few live campaigns is the common case, and comparing a
/// few short strings costs less than hashing one.
const LINEAR: usize = 8;

impl State {
    fn new(entries: Map, complete: bool) -> State {
        let list = entries.values().cloned().collect();
        State {
            entries,
            list,
            complete,
        }
    }

    #[inline]
    fn find(&self, campaign: &str) -> Option<&Arc<Entry>> {
        if self.list.len() <= LINEAR {
            self.list.iter().find(|e| e.campaign.id == campaign)
        } else {
            self.entries.get(campaign)
        }
    }
}

/// An answer from the cache for one user and campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedMembership {
    pub member: bool,
    pub stale: bool,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A cached campaign as `/v1/cache` and [`NearCache::status`] show it.
#[derive(Debug, Clone, Serialize)]
pub struct CachedCampaign {
    pub id: String,
    pub version: u64,
    pub ids: u64,
    pub bytes: u64,
    pub stale: bool,
    /// Milliseconds since this version was last confirmed against the store.
    pub confirmed_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheStatus {
    pub campaigns: Vec<CachedCampaign>,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Whether every scheduled or active campaign is loaded.
    pub complete: bool,
    /// Campaigns that did not fit in `max_bytes`, served by the store.
    pub skipped: u64,
    pub max_staleness_ms: u64,
    pub on_stale: StalePolicy,
}

/// How many campaigns the cache holds and how many are stale: what
/// `/readyz`, which anyone may read, shows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    pub campaigns: u64,
    pub stale: u64,
}

/// A cheap handle; clones share one cache. The sync task stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    state: ArcSwap<State>,
    options: NearCacheOptions,
    epoch: Instant,
    skipped: AtomicU64,
    /// Versions found too big for the budget, by campaign, so they are not
    /// downloaded again at every sync. Only the sync task touches it.
    too_big: std::sync::Mutex<HashMap<String, u64>>,
    /// The store followed, for [`NearCache::observe`]; `None` for fixed contents.
    store: Option<RedisStore>,
}

impl NearCache {
    /// Starts a cache that follows `store`.
    pub fn start(store: RedisStore, options: NearCacheOptions) -> NearCache {
        let cache = NearCache {
            inner: Arc::new(Inner {
                state: ArcSwap::from_pointee(State::new(Map::default(), false)),
                options,
                epoch: Instant::now(),
                skipped: AtomicU64::new(0),
                too_big: std::sync::Mutex::new(HashMap::new()),
                store: Some(store.clone()),
            }),
        };
        let weak = Arc::downgrade(&cache.inner);
        store.on_catalog_change(Box::new(move |campaigns| {
            if let Some(inner) = weak.upgrade() {
                NearCache { inner }.supersede_behind(campaigns);
            }
        }));
        spawn_sync(Arc::downgrade(&cache.inner), store);
        cache
    }

    pub fn options(&self) -> &NearCacheOptions {
        &self.inner.options
    }

    /// Is `user` in `campaign`? `None` when the campaign is not cached.
    #[inline]
    pub fn is_member(&self, campaign: &str, user: UserId) -> Option<CachedMembership> {
        let state = self.inner.state.load();
        let entry = state.find(campaign)?;
        Some(CachedMembership {
            member: entry.members.contains(user),
            stale: self.is_stale(entry),
            starts_at: entry.campaign.starts_at,
            ends_at: entry.campaign.ends_at,
        })
    }

    /// The batch form of [`NearCache::is_member`]; `None` when not cached.
    pub fn are_members(&self, campaign: &str, users: &[UserId]) -> Option<(Vec<bool>, bool)> {
        let state = self.inner.state.load();
        let entry = state.find(campaign)?;
        let answers = users.iter().map(|u| entry.members.contains(*u)).collect();
        Some((answers, self.is_stale(entry)))
    }

    /// Active campaigns holding each user, sorted, and whether any answer is
    /// stale. `None` unless every campaign that could be active is cached.
    pub fn campaigns_for_many(
        &self,
        users: &[UserId],
        now: DateTime<Utc>,
    ) -> Option<(Vec<Vec<String>>, bool)> {
        let state = self.inner.state.load();
        if !state.complete {
            return None;
        }
        let mut active: Vec<&Arc<Entry>> = state
            .entries
            .values()
            .filter(|e| e.campaign.is_active_at(now))
            .collect();
        active.sort_by(|a, b| a.campaign.id.cmp(&b.campaign.id));
        let stale = active.iter().any(|e| self.is_stale(e));
        let lists = users
            .iter()
            .map(|u| {
                active
                    .iter()
                    .filter(|e| e.members.contains(*u))
                    .map(|e| e.campaign.id.clone())
                    .collect()
            })
            .collect();
        Some((lists, stale))
    }

    pub fn status(&self) -> CacheStatus {
        let state = self.inner.state.load();
        let now_ms = self.now_ms();
        let mut campaigns: Vec<CachedCampaign> = state
            .entries
            .values()
            .map(|e| CachedCampaign {
                id: e.campaign.id.clone(),
                version: e.campaign.version,
                ids: e.members.len(),
                bytes: e.bytes,
                stale: self.is_stale(e),
                confirmed_ms_ago: now_ms.saturating_sub(e.confirmed_ms.load(Ordering::Relaxed)),
            })
            .collect();
        campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        CacheStatus {
            bytes: campaigns.iter().map(|c| c.bytes).sum(),
            campaigns,
            max_bytes: self.inner.options.max_bytes,
            complete: state.complete,
            skipped: self.inner.skipped.load(Ordering::Relaxed),
            max_staleness_ms: self.inner.options.max_staleness.as_millis() as u64,
            on_stale: self.inner.options.on_stale,
        }
    }

    /// Whether the cache has loaded every campaign it should hold.
    pub fn is_warm(&self) -> bool {
        self.inner.state.load().complete
    }

    pub fn counts(&self) -> CacheCounts {
        let state = self.inner.state.load();
        CacheCounts {
            campaigns: state.entries.len() as u64,
            stale: state.entries.values().filter(|e| self.is_stale(e)).count() as u64,
        }
    }

    /// Whether the cache alone answers every check within the stale policy
    /// while the store cannot: it holds every campaign it should, and its
    /// answers are fresh or the policy serves stale ones.
    pub fn answers_without_store(&self) -> bool {
        let state = self.inner.state.load();
        state.complete
            && (self.inner.options.on_stale == StalePolicy::Serve
                || !state.entries.values().any(|e| self.is_stale(e)))
    }

    /// Whether `entry` has gone unconfirmed past the staleness bound, now.
    #[inline]
    fn is_stale(&self, entry: &Entry) -> bool {
        if entry.superseded.load(Ordering::Relaxed) {
            return true;
        }
        let age = self
            .now_ms()
            .saturating_sub(entry.confirmed_ms.load(Ordering::Relaxed));
        age > self.inner.options.max_staleness.as_millis() as u64
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.epoch).as_millis() as u64
    }

    /// Brings the cache in line with the store's catalog: confirms entries
    /// whose version is unchanged, loads new versions from their snapshots,
    /// drops ended or deleted campaigns.
    async fn sync(&self, store: &RedisStore) {
        let Some((mut campaigns, confirmed_at)) = store.known_campaigns() else {
            return;
        };
        let confirmed_ms = self.ms_at(confirmed_at);
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
                    // if the catalog has moved on since, it starts superseded.
                    Load::Loaded(members, bytes) => {
                        let now = store.known_campaign(meta.id());
                        let behind = now.is_none_or(|m| {
                            m.incarnation != meta.incarnation
                                || m.campaign.version != meta.campaign.version
                        });
                        (members, bytes, confirmed_ms, behind)
                    }
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
        let state = Arc::new(State::new(entries, complete));
        self.inner.state.store(state.clone());
        // A check may have found a newer state in the store while this sync
        // loaded an older one; it updated the catalog before answering, so
        // looking again after publishing catches every such entry.
        if let Some((campaigns, _)) = store.known_campaigns() {
            let campaigns = campaigns
                .into_iter()
                .map(|m| (m.id().to_string(), m))
                .collect();
            self.supersede_behind(&campaigns);
        }
        self.tick();
    }

    /// Marks every entry whose state differs from `campaigns` (the store's
    /// catalog) as superseded. Runs on every catalog change, before the
    /// change is visible, so the cache never answers as fresh from a state
    /// older than one this process has seen.
    fn supersede_behind(&self, campaigns: &HashMap<String, Arc<CampaignMeta>>) {
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
    async fn load(&self, store: &RedisStore, meta: &CampaignMeta, used: u64) -> Load {
        let campaign = &meta.campaign;
        // Roaring needs at most ~2 bytes per ID in array containers; a
        // campaign that cannot fit even so is not fetched at all.
        let floor = campaign.audience_size.saturating_mul(2) / 8;
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
        match store.snapshot(meta).await {
            Ok(members) => {
                let ids = members.len();
                let (members, bytes) = Members::new(members);
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
    fn tick(&self) {
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

    /// A cache over fixed contents, confirmed now and never synced: for
    /// micro-benchmarks and tests of the lookup path.
    pub fn from_audiences(audiences: Vec<(Campaign, RoaringTreemap)>) -> NearCache {
        let mut entries = Map::default();
        for (campaign, members) in audiences {
            let (members, bytes) = Members::new(members);
            entries.insert(
                campaign.id.clone(),
                Arc::new(Entry {
                    campaign,
                    incarnation: Stamp::default(),
                    members: Arc::new(members),
                    bytes,
                    // Far in the future: fixed contents never age.
                    confirmed_ms: AtomicU64::new(u64::MAX / 2),
                    superseded: AtomicBool::new(false),
                }),
            );
        }
        NearCache {
            inner: Arc::new(Inner {
                state: ArcSwap::from_pointee(State::new(entries, true)),
                options: NearCacheOptions::default(),
                epoch: Instant::now(),
                skipped: AtomicU64::new(0),
                too_big: std::sync::Mutex::new(HashMap::new()),
                store: None,
            }),
        }
    }
}

/// Whether a cached entry holds the audience `meta` names.
fn same(entry: &Entry, meta: &CampaignMeta) -> bool {
    entry.incarnation == meta.incarnation && entry.campaign.version == meta.campaign.version
}

/// Follows the store's catalog refreshes, and updates gauges between them.
/// Holds only a weak reference, so dropping every handle stops it.
fn spawn_sync(inner: Weak<Inner>, store: RedisStore) {
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
                cache.sync(&store).await;
            } else {
                cache.tick();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Design;

    fn campaign(id: &str, start_h: i64, end_h: i64) -> Campaign {
        let now = Utc::now();
        Campaign {
            id: id.into(),
            name: id.into(),
            starts_at: now + chrono::Duration::hours(start_h),
            ends_at: now + chrono::Duration::hours(end_h),
            design: Design::Set,
            audience_size: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn ids(v: &[u64]) -> RoaringTreemap {
        v.iter().copied().collect()
    }

    /// Every form must answer exactly like the treemap it was built from,
    /// for members, their neighbours, block edges and IDs past the end.
    #[test]
    fn every_form_answers_like_the_treemap() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |bound: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % bound
        };
        let dense: RoaringTreemap = (0..20_000).map(|_| rand(100_000)).collect();
        let sparse: RoaringTreemap = (0..50_000).map(|_| rand(100_000_000)).collect();
        // Skewed within blocks, so interpolation guesses badly and the
        // fallback search has to find the answer.
        let skewed: RoaringTreemap = (0..30_000)
            .map(|i| (rand(40) << 16) | if i % 7 == 0 { rand(65_536) } else { rand(300) })
            .collect();
        let spread: RoaringTreemap = [3, 70_000, u64::from(u32::MAX)].into_iter().collect();
        let wide: RoaringTreemap = [1, 5_000_000_000, u64::MAX - 1].into_iter().collect();
        let cases = [
            ("dense", dense, "dense"),
            ("sparse", sparse, "sorted"),
            ("skewed", skewed, "sorted"),
            ("spread", spread, "narrow"),
            ("wide", wide, "wide"),
            ("empty", RoaringTreemap::new(), "dense"),
        ];
        for (name, ids, form) in cases {
            let (members, bytes) = Members::new(ids.clone());
            let got = match members {
                Members::Dense { .. } => "dense",
                Members::Sorted(_) => "sorted",
                Members::Narrow(_) => "narrow",
                Members::Wide(_) => "wide",
            };
            assert_eq!(got, form, "{name}: form");
            assert_eq!(members.len(), ids.len(), "{name}: len");
            let bound = (ids.serialized_size() as u64).max(3 * ids.len()) + 16;
            assert!(bytes <= bound, "{name}: {bytes} bytes");
            let mut probes: Vec<u64> = vec![0, 1, 65_535, 65_536, u64::from(u32::MAX)];
            probes.extend([u64::from(u32::MAX) + 1, u64::MAX]);
            for id in ids.iter() {
                probes.extend([id.saturating_sub(1), id, id.saturating_add(1)]);
            }
            probes.extend((0..10_000).map(|_| rand(ids.max().unwrap_or(10).saturating_add(10))));
            for p in probes {
                assert_eq!(members.contains(p), ids.contains(p), "{name}: probe {p}");
            }
        }
    }

    #[test]
    fn lookups_answer_from_the_cached_bitmap() {
        let cache = NearCache::from_audiences(vec![(campaign("a", -1, 1), ids(&[1, 5]))]);
        let hit = cache.is_member("a", 5).unwrap();
        assert!(hit.member && !hit.stale);
        assert!(!cache.is_member("a", 6).unwrap().member);
        assert!(cache.is_member("missing", 5).is_none());
        assert_eq!(cache.are_members("a", &[1, 2]).unwrap().0, [true, false]);
    }

    #[test]
    fn only_active_campaigns_are_listed_for_a_user() {
        let cache = NearCache::from_audiences(vec![
            (campaign("b", -1, 1), ids(&[7])),
            (campaign("a", -1, 1), ids(&[7, 8])),
            (campaign("later", 1, 2), ids(&[7])),
        ]);
        let (lists, stale) = cache.campaigns_for_many(&[7, 8, 9], Utc::now()).unwrap();
        assert_eq!(lists, vec![vec!["a", "b"], vec!["a"], vec![]]);
        assert!(!stale);
    }

    /// Staleness is computed when an entry is read: no task has to run
    /// for an unconfirmed entry to turn stale.
    #[test]
    fn entries_turn_stale_past_the_bound_without_any_tick() {
        let cache = NearCache::from_audiences(vec![(campaign("a", -1, 1), ids(&[1]))]);
        for entry in cache.inner.state.load().entries.values() {
            entry.confirmed_ms.store(0, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(20));
        // Same entries, a zero bound: any age is stale.
        let strict = NearCache {
            inner: Arc::new(Inner {
                state: ArcSwap::new(cache.inner.state.load_full()),
                options: NearCacheOptions {
                    max_staleness: Duration::ZERO,
                    ..NearCacheOptions::default()
                },
                epoch: cache.inner.epoch,
                skipped: AtomicU64::new(0),
                too_big: std::sync::Mutex::new(HashMap::new()),
                store: None,
            }),
        };
        assert!(
            !cache.is_member("a", 1).unwrap().stale,
            "within the default bound"
        );
        assert!(strict.is_member("a", 1).unwrap().stale);
        assert_eq!(strict.status().campaigns[0].id, "a");
    }
}
