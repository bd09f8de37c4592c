//! Campaign handles: a campaign id resolved once, for callers that check
//! the same campaign again and again.
//!
//! A lookup by id compares or hashes the id at every call; a handle holds
//! the slot number its campaign has in every published state (`state`), so
//! its lookup is one indexed load in this thread's copy of the state.

use std::sync::Arc;

use super::state::Slot;
use super::{CachedMembership, NearCache};
use crate::domain::UserId;
use crate::ids::User;

/// A campaign of a [`NearCache`], found once by id.
///
/// A handle names a campaign id, not one version of it: every answer comes
/// from what the cache holds for that id at the moment, and is the answer
/// [`NearCache::is_member`] gives for the same id and user, since both read
/// the same published state.
///
/// - **Audience replaced** (a new version): answers come from the new
///   version once the cache has loaded it. Meanwhile the old one answers,
///   flagged stale if this process has seen the store answer from the new
///   one.
/// - **Campaign deleted, ended, or no longer cached** (over the memory
///   budget, or its reload failed after a re-creation): `None`, as by id;
///   the caller asks the store.
/// - **Campaign deleted and re-created** under the same id: answers come
///   from the new campaign once it is loaded, never from its predecessor;
///   `None` in between if the cache dropped the old one first.
/// - **Campaign window**: not judged here, as by id; the answer carries
///   `starts_at` and `ends_at` (see [`CachedMembership::is_active_at`]).
///
/// Clones are cheap and share the slot. A handle keeps its cache (and the
/// cache's sync task) alive.
#[derive(Clone)]
pub struct CampaignHandle {
    cache: NearCache,
    slot: Arc<Slot>,
}

impl CampaignHandle {
    pub(super) fn new(cache: NearCache, slot: Arc<Slot>) -> CampaignHandle {
        CampaignHandle { cache, slot }
    }

    /// The campaign's id.
    pub fn id(&self) -> &str {
        &self.slot.id
    }

    /// Is `user` in the campaign? `None` when the campaign is not cached
    /// now, or is a UUID campaign (which holds no integer user).
    #[inline]
    pub fn is_member(&self, user: UserId) -> Option<CachedMembership> {
        let index = self.slot.index;
        self.cache
            .with_state(|state| self.cache.answer(state.at_slot(index)?, user))
    }

    /// [`CampaignHandle::is_member`] for a user of any ID type, read as the
    /// campaign's type; `None` too when the user cannot be of that type.
    #[inline]
    pub fn is_member_named(&self, user: &User) -> Option<CachedMembership> {
        let index = self.slot.index;
        self.cache
            .with_state(|state| self.cache.answer_named(state.at_slot(index)?, user))
    }
}

impl std::fmt::Debug for CampaignHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignHandle")
            .field("id", &self.slot.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use chrono::Utc;
    use roaring::RoaringTreemap;

    use super::*;
    use crate::domain::Campaign;
    use crate::nearcache::tests::versioned_campaign;

    fn active(id: &str, version: u64, ids: &[u64]) -> (Campaign, RoaringTreemap) {
        (
            versioned_campaign(id, version, -1, 1),
            ids.iter().copied().collect(),
        )
    }

    fn member(handle: &CampaignHandle, user: UserId) -> Option<bool> {
        handle.is_member(user).map(|a| a.member)
    }

    #[test]
    fn a_handle_answers_like_the_lookup_by_id() {
        let cache = NearCache::from_audiences(vec![
            active("a", 1, &[1, 5]),
            active("b", 1, &[2, 6_000_000_000]),
        ]);
        let a = cache.campaign("a").expect("a is cached");
        let b = cache.campaign("b").expect("b is cached");
        assert_eq!(a.id(), "a");
        for user in [0, 1, 2, 5, 6, 6_000_000_000] {
            assert_eq!(a.is_member(user), cache.is_member("a", user), "a, {user}");
            assert_eq!(b.is_member(user), cache.is_member("b", user), "b, {user}");
        }
        assert_eq!(member(&a, 5), Some(true));
        assert_eq!(member(&b, 5), Some(false));
        assert!(cache.campaign("missing").is_none());
    }

    #[test]
    fn a_handle_sees_a_replaced_audience() {
        let cache = NearCache::from_audiences(vec![active("a", 1, &[1])]);
        let handle = cache.campaign("a").unwrap();
        assert_eq!(member(&handle, 1), Some(true));
        cache.replace_for_test(vec![active("a", 2, &[2])]);
        assert_eq!(member(&handle, 1), Some(false), "old audience answered");
        assert_eq!(member(&handle, 2), Some(true));
        assert_eq!(cache.is_member("a", 2).map(|a| a.member), Some(true));
    }

    /// Another thread's copy of the state must not outlive a replacement:
    /// the thread read the old state, and its next lookup must not.
    #[test]
    fn a_handle_used_on_another_thread_sees_a_replacement() {
        let cache = NearCache::from_audiences(vec![active("a", 1, &[1])]);
        let handle = cache.campaign("a").unwrap();
        let (ask, asked) = mpsc::channel::<UserId>();
        let (tell, told) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(move || {
                for user in asked {
                    tell.send((member(&handle, user), handle.cache.is_member("a", user)))
                        .unwrap();
                }
            });
            ask.send(1).unwrap();
            let (by_handle, by_id) = told.recv().unwrap();
            assert_eq!(by_handle, Some(true));
            assert_eq!(by_id.map(|a| a.member), Some(true));
            cache.replace_for_test(vec![active("a", 2, &[2])]);
            ask.send(1).unwrap();
            let (by_handle, by_id) = told.recv().unwrap();
            assert_eq!(by_handle, Some(false));
            assert_eq!(by_id.map(|a| a.member), Some(false));
            drop(ask);
        });
    }

    #[test]
    fn a_handle_answers_none_once_its_campaign_is_gone() {
        let cache = NearCache::from_audiences(vec![active("a", 1, &[1]), active("b", 1, &[1])]);
        let handle = cache.campaign("a").unwrap();
        cache.replace_for_test(vec![active("b", 1, &[1])]);
        assert_eq!(handle.is_member(1), None);
        assert!(cache.campaign("a").is_none());
        assert_eq!(cache.is_member("a", 1), None);
        assert_eq!(member(&cache.campaign("b").unwrap(), 1), Some(true));
    }

    #[test]
    fn a_handle_follows_a_recreated_campaign_and_never_its_predecessor() {
        let cache = NearCache::from_audiences(vec![active("a", 7, &[1, 2])]);
        let handle = cache.campaign("a").unwrap();
        cache.replace_for_test(vec![]);
        assert_eq!(handle.is_member(1), None);
        // Re-created: versions start again, with another audience.
        cache.replace_for_test(vec![active("a", 1, &[3])]);
        assert_eq!(member(&handle, 1), Some(false));
        assert_eq!(member(&handle, 3), Some(true));
        let fresh = cache.campaign("a").unwrap();
        assert_eq!(member(&fresh, 3), Some(true));
    }

    /// A slot number is reused only once no handle holds it, so a handle
    /// never lands on another campaign's entry.
    #[test]
    fn slot_numbers_are_reused_only_when_no_handle_holds_them() {
        let cache = NearCache::from_audiences(vec![active("a", 1, &[1]), active("b", 1, &[2])]);
        let a = cache.campaign("a").unwrap();
        drop(cache.campaign("b").unwrap());
        cache.replace_for_test(vec![]);
        assert_eq!(cache.inner.slots.len(), 1, "b's slot freed, a's kept");
        cache.replace_for_test(vec![active("c", 1, &[1]), active("d", 1, &[1])]);
        assert_eq!(a.is_member(1), None, "a landed on another campaign");
        drop(a);
        cache.replace_for_test(vec![active("c", 1, &[1])]);
        assert_eq!(cache.inner.slots.len(), 1, "a's and d's slots freed");
    }

    #[test]
    fn a_handle_reports_an_ended_window_and_staleness_like_the_lookup_by_id() {
        let cache = NearCache::from_audiences(vec![
            (
                versioned_campaign("ended", 1, -2, -1),
                [1].into_iter().collect(),
            ),
            active("live", 1, &[1]),
        ]);
        let ended = cache.campaign("ended").unwrap();
        let answer = ended.is_member(1).unwrap();
        assert_eq!(Some(answer), cache.is_member("ended", 1));
        assert!(
            !answer.is_active_at(Utc::now()),
            "ended window reads active"
        );
        let live = cache.campaign("live").unwrap();
        assert!(live.is_member(1).unwrap().is_active_at(Utc::now()));
        assert!(!live.is_member(1).unwrap().stale);
        cache.observe_gone("live");
        assert!(
            live.is_member(1).unwrap().stale,
            "superseded entry read fresh"
        );
    }

    /// More caches than each thread has lines for: those sharing a line
    /// must still answer from their own state.
    #[test]
    fn caches_sharing_a_thread_line_answer_from_their_own_state() {
        let caches: Vec<NearCache> = (0..9)
            .map(|i| NearCache::from_audiences(vec![active("a", 1, &[i])]))
            .collect();
        let handles: Vec<CampaignHandle> =
            caches.iter().map(|c| c.campaign("a").unwrap()).collect();
        for _ in 0..3 {
            for (i, (cache, handle)) in caches.iter().zip(&handles).enumerate() {
                let i = i as u64;
                assert_eq!(cache.is_member("a", i).map(|a| a.member), Some(true));
                assert_eq!(member(handle, i), Some(true));
                assert_eq!(member(handle, i + 1), Some(false));
            }
        }
    }
}
