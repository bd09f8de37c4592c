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
//!   judged when it is read, so no sync has to run for an entry to turn
//!   stale; past `max_staleness` it is flagged stale and the caller's policy
//!   decides whether to serve it or refuse. The judgement is exact but
//!   rarely needs a system call (see `clock`).
//! - **What identifies an entry**: the campaign's incarnation and version,
//!   never the version alone: a deleted and re-created campaign starts its
//!   versions again, and must never be answered from its predecessor.
//! - **How big it may grow**: entries are admitted, active campaigns first,
//!   until `max_bytes`; campaigns that do not fit are answered by the store.
//!
//! The map is published through an `ArcSwap`: readers never lock and never
//! wait for a reload, which builds a new map beside the old one. Each thread
//! keeps its own reference to the published map (`snapshot`), so a lookup
//! touches no shared counter either; a [`CampaignHandle`] also skips the
//! lookup by id.
//!
//! Files: `members` (how an audience is held), `state` (what is published),
//! `snapshot` (per-thread copies), `clock` (staleness without a system call),
//! `handle` (campaign handles), `feed` (what the cache follows: a trait the
//! Redis store implements), `sync` (following it), `keys128` (UUID and
//! string audiences), `pages` (their big arrays, on huge pages).

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

mod clock;
mod feed;
#[cfg(any(test, feature = "test-util"))]
mod fixed;
mod handle;
mod keys128;
mod members;
mod pages;
mod snapshot;
mod state;
mod sync;

pub use feed::ChangeFeed;
pub use handle::CampaignHandle;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::UserId;
use crate::ids::{IdType, User};
use clock::Clock;
use snapshot::Way;
use state::{Entry, Slots, State};

/// What to do with an answer from an entry that is past its staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum, utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Answer anyway, flagged `stale`: login keeps working through an outage.
    #[default]
    Serve,
    /// Refuse (503), for callers that prefer no answer to an old one.
    Error,
}

/// How the near-cache runs.
#[derive(Debug, Clone)]
pub struct NearCacheOptions {
    /// Upper bound on the bitmaps held, in bytes.
    pub max_bytes: u64,
    /// Age past which an unconfirmed entry is stale.
    pub max_staleness: Duration,
    /// What a stale answer does: serve it flagged, or fail.
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

/// An answer from the cache for one user and campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedMembership {
    /// Whether the user is in the cached audience.
    pub member: bool,
    /// Whether the copy is past the staleness bound.
    pub stale: bool,
    /// The campaign's window start, for whether it is active.
    pub starts_at: DateTime<Utc>,
    /// The campaign's window end.
    pub ends_at: DateTime<Utc>,
    /// The campaign's user ID type, which says how the user was read.
    pub user_id_type: IdType,
}

/// A cached answer for a batch of users, from [`NearCache::are_members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBatch {
    /// Whether each user, in order, is in the cached audience.
    pub members: Vec<bool>,
    /// Whether the copy is past the staleness bound.
    pub stale: bool,
    /// The campaign's user ID type, which says how the users were read.
    pub user_id_type: IdType,
}

impl CachedMembership {
    /// Whether the campaign's window holds `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// A cached campaign as `/v1/cache` and [`NearCache::status`] show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CachedCampaign {
    /// The campaign's id.
    pub id: String,
    /// The audience version held.
    pub version: u64,
    /// IDs held.
    pub ids: u64,
    /// Heap bytes held.
    pub bytes: u64,
    /// Whether the copy is past the staleness bound.
    pub stale: bool,
    /// Milliseconds since this version was last confirmed against the store.
    pub confirmed_ms_ago: u64,
}

/// The near-cache's state, for `GET /v1/cache`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CacheStatus {
    /// Each campaign held.
    pub campaigns: Vec<CachedCampaign>,
    /// Heap bytes held in all.
    pub bytes: u64,
    /// The budget (`--near-cache-max-bytes`).
    pub max_bytes: u64,
    /// Whether every scheduled or active campaign is loaded.
    pub complete: bool,
    /// Campaigns that did not fit in `max_bytes`, served by the store.
    pub skipped: u64,
    /// The staleness bound, in milliseconds.
    pub max_staleness_ms: u64,
    /// What a stale answer does.
    pub on_stale: StalePolicy,
}

/// How many campaigns the cache holds and how many are stale: what
/// `/readyz`, which anyone may read, shows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CacheCounts {
    /// Campaigns held.
    pub campaigns: u64,
    /// Of those, how many are stale.
    pub stale: u64,
}

/// A cheap handle; clones share one cache. The sync task stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Behind its own `Arc` so each thread's copy (`snapshot`) can hold it.
    state: Arc<ArcSwap<State>>,
    way: Way,
    slots: Slots,
    options: NearCacheOptions,
    /// `options.max_staleness`, converted once rather than per lookup.
    max_staleness_ms: u64,
    clock: Arc<Clock>,
    skipped: AtomicU64,
    /// Versions found too big for the budget, by campaign, so they are not
    /// downloaded again at every sync. Only the sync task touches it.
    too_big: std::sync::Mutex<HashMap<String, u64>>,
    /// Campaigns the store answered 404 for, and when (clock ms). Until a
    /// reconciliation begun after that confirms it, no entry of such a
    /// campaign answers as fresh: a reconciliation begun before the delete
    /// may still bring it. Held while a sync publishes, so an answer lands
    /// either before the publish (and is judged) or after (and marks it).
    gone: std::sync::Mutex<HashMap<String, u64>>,
    /// The feed followed, for [`NearCache::observe`]; `None` for fixed contents.
    store: Option<Arc<dyn ChangeFeed>>,
}

impl Inner {
    fn new(options: NearCacheOptions, store: Option<Arc<dyn ChangeFeed>>) -> Inner {
        Inner {
            state: Arc::new(ArcSwap::from_pointee(State::empty())),
            way: Way::next(),
            slots: Slots::default(),
            max_staleness_ms: u64::try_from(options.max_staleness.as_millis()).unwrap_or(u64::MAX),
            options,
            clock: Clock::start(),
            skipped: AtomicU64::new(0),
            too_big: std::sync::Mutex::new(HashMap::new()),
            gone: std::sync::Mutex::new(HashMap::new()),
            store,
        }
    }
}

impl NearCache {
    /// Starts a cache that follows `feed` (in production, the Redis store).
    pub fn start(feed: impl ChangeFeed, options: NearCacheOptions) -> NearCache {
        let store: Arc<dyn ChangeFeed> = Arc::new(feed);
        let cache = NearCache {
            inner: Arc::new(Inner::new(options, Some(store.clone()))),
        };
        let weak = Arc::downgrade(&cache.inner);
        store.on_catalog_change(Box::new(move |campaigns| {
            if let Some(inner) = weak.upgrade() {
                NearCache { inner }.supersede_behind(campaigns);
            }
        }));
        sync::spawn_sync(Arc::downgrade(&cache.inner), store);
        cache
    }

    /// The options it runs with.
    pub fn options(&self) -> &NearCacheOptions {
        &self.inner.options
    }

    /// Is `user` in `campaign`? `None` when the campaign is not cached.
    ///
    /// The answer does not judge the campaign's window: `starts_at` and
    /// `ends_at` come with it for the caller to compare with its clock.
    ///
    /// `None` too for a UUID campaign, which holds no integer user: the
    /// store says why (`NearCache::is_member_named` takes any user).
    #[inline]
    pub fn is_member(&self, campaign: &str, user: UserId) -> Option<CachedMembership> {
        self.with_state(|state| self.answer(state.find(campaign)?, user))
    }

    /// [`NearCache::is_member`] for a user of any ID type, read as the
    /// campaign's type (`42` is the string "42" to a string campaign).
    /// `None` too when the user cannot be an ID of that type: the store
    /// then says why.
    #[inline]
    pub fn is_member_named(&self, campaign: &str, user: &User) -> Option<CachedMembership> {
        self.with_state(|state| self.answer_named(state.find(campaign)?, user))
    }

    #[inline]
    fn answer_named(&self, entry: &Entry, user: &User) -> Option<CachedMembership> {
        let member = entry.members.contains_user(user)?;
        Some(self.answer_with(entry, member))
    }

    /// A handle on `campaign` that answers without looking it up by id
    /// again; `None` when the campaign is not cached now. See
    /// [`CampaignHandle`] for what it answers after the campaign changes.
    pub fn campaign(&self, campaign: &str) -> Option<CampaignHandle> {
        let slot = self.inner.slots.get(&self.inner.state, campaign)?;
        Some(CampaignHandle::new(self.clone(), slot))
    }

    /// Runs `read` on the published state, through this thread's copy.
    #[inline]
    fn with_state<R>(&self, read: impl Fn(&State) -> R) -> R {
        snapshot::with_state(&self.inner.state, self.inner.way, read)
    }

    #[inline]
    fn answer(&self, entry: &Entry, user: UserId) -> Option<CachedMembership> {
        if entry.campaign.user_id_type == IdType::Uuid {
            return None;
        }
        Some(self.answer_with(entry, entry.members.contains(user)))
    }

    #[inline]
    fn answer_with(&self, entry: &Entry, member: bool) -> CachedMembership {
        CachedMembership {
            member,
            user_id_type: entry.campaign.user_id_type,
            stale: self.is_stale(entry),
            starts_at: entry.campaign.starts_at,
            ends_at: entry.campaign.ends_at,
        }
    }

    /// The batch form of [`NearCache::is_member_named`]; `None` when not
    /// cached, or when a user cannot be an ID of the campaign's type.
    pub fn are_members(&self, campaign: &str, users: &[User]) -> Option<CachedBatch> {
        let state = self.inner.state.load();
        let entry = state.find(campaign)?;
        let members = users
            .iter()
            .map(|u| entry.members.contains_user(u))
            .collect::<Option<_>>()?;
        Some(CachedBatch {
            members,
            stale: self.is_stale(entry),
            user_id_type: entry.campaign.user_id_type,
        })
    }

    /// Active campaigns holding each user, sorted, and whether any answer is
    /// stale. `None` unless every campaign that could be active is cached.
    pub fn campaigns_for_many(
        &self,
        users: &[User],
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
                    .filter(|e| e.members.contains_user(u) == Some(true))
                    .map(|e| e.campaign.id.clone())
                    .collect()
            })
            .collect();
        Some((lists, stale))
    }

    /// Every campaign held, with sizes and staleness.
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

    /// How many campaigns are held, and how many are stale.
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

    /// Whether `entry` has gone unconfirmed past the staleness bound, now:
    /// its age (now less its confirmation) exceeds the bound.
    #[inline]
    fn is_stale(&self, entry: &Entry) -> bool {
        if entry.superseded.load(Ordering::Relaxed) {
            return true;
        }
        let confirmed = entry.confirmed_ms.load(Ordering::Relaxed);
        let deadline = confirmed.saturating_add(self.inner.max_staleness_ms);
        self.inner.clock.is_past(deadline)
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Campaign, Design};
    use roaring::RoaringTreemap;

    fn campaign(id: &str, start_h: i64, end_h: i64) -> Campaign {
        versioned_campaign(id, 1, start_h, end_h)
    }

    /// A `set` campaign at `version`, its window in hours from now; shared
    /// with the other tests of the cache.
    pub(super) fn versioned_campaign(id: &str, version: u64, start_h: i64, end_h: i64) -> Campaign {
        let now = Utc::now();
        Campaign {
            id: id.into(),
            name: id.into(),
            starts_at: now + chrono::Duration::hours(start_h),
            ends_at: now + chrono::Duration::hours(end_h),
            design: Design::Set,
            user_id_type: Default::default(),
            audience_size: 0,
            version,
            created_at: now,
            updated_at: now,
        }
    }

    fn ids(v: &[u64]) -> RoaringTreemap {
        v.iter().copied().collect()
    }

    #[test]
    fn lookups_answer_from_the_cached_bitmap() {
        let cache = NearCache::from_audiences(vec![(campaign("a", -1, 1), ids(&[1, 5]))]);
        let hit = cache.is_member("a", 5).unwrap();
        assert!(hit.member && !hit.stale);
        assert!(!cache.is_member("a", 6).unwrap().member);
        assert!(cache.is_member("missing", 5).is_none());
        assert_eq!(
            cache
                .are_members("a", &User::ints(&[1, 2]))
                .unwrap()
                .members,
            [true, false]
        );
    }

    /// A cached answer reads the user as the campaign's type, and says
    /// nothing (`None`: the store answers, and refuses) for a user that
    /// cannot be of it: the integer API never calls a UUID campaign's user
    /// a non-member.
    #[test]
    fn typed_campaigns_answer_only_users_of_their_type() {
        use crate::ids::{Audience, IdType, Strings};
        let mut devices = campaign("devices", -1, 1);
        devices.user_id_type = IdType::Uuid;
        let mut emails = campaign("emails", -1, 1);
        emails.user_id_type = IdType::String;
        let uuid = User::parse("3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F").unwrap();
        let cache = NearCache::from_audiences(vec![
            (devices, Audience::Uuids(vec![uuid.as_uuid().unwrap()])),
            (
                emails,
                Audience::Strings(Strings::from_unsorted(vec!["42", "a+b@example.com"])),
            ),
        ]);
        assert!(cache.is_member("devices", 5).is_none());
        let handle = cache.campaign("devices").unwrap();
        assert!(handle.is_member(5).is_none());
        let alice = User::parse("alice").unwrap();
        assert!(cache.is_member_named("devices", &alice).is_none());
        assert!(
            cache
                .are_members("devices", &[uuid.clone(), alice])
                .is_none()
        );
        let hit = cache.is_member_named("devices", &uuid).unwrap();
        assert!(hit.member && hit.user_id_type == IdType::Uuid);
        assert!(handle.is_member_named(&uuid).unwrap().member);
        // 42 is the string "42" to a string campaign.
        assert!(cache.is_member("emails", 42).unwrap().member);
        assert!(!cache.is_member("emails", 43).unwrap().member);
        let named = User::parse("a+b@example.com").unwrap();
        assert!(cache.is_member_named("emails", &named).unwrap().member);
        let (lists, _) = cache
            .campaigns_for_many(&[User::from_int(42), named, uuid], Utc::now())
            .unwrap();
        assert_eq!(lists, vec![vec!["emails"], vec!["emails"], vec!["devices"]]);
    }

    #[test]
    fn only_active_campaigns_are_listed_for_a_user() {
        let cache = NearCache::from_audiences(vec![
            (campaign("b", -1, 1), ids(&[7])),
            (campaign("a", -1, 1), ids(&[7, 8])),
            (campaign("later", 1, 2), ids(&[7])),
        ]);
        let (lists, stale) = cache
            .campaigns_for_many(&User::ints(&[7, 8, 9]), Utc::now())
            .unwrap();
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
        // Same entries, a zero bound: any age is stale.
        let strict = Inner::new(
            NearCacheOptions {
                max_staleness: Duration::ZERO,
                ..NearCacheOptions::default()
            },
            None,
        );
        strict.state.store(cache.inner.state.load_full());
        let strict = NearCache {
            inner: Arc::new(strict),
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !cache.is_member("a", 1).unwrap().stale,
            "within the default bound"
        );
        assert!(strict.is_member("a", 1).unwrap().stale);
        assert_eq!(strict.status().campaigns[0].id, "a");
    }
}
