//! A cache over fixed contents, never synced: for micro-benchmarks and
//! tests of the lookup path (`test-util`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::members::Members;
use super::state::{Entry, Map};
use super::{Inner, NearCache, NearCacheOptions};
use crate::domain::Campaign;
use crate::ids::Audience;
use crate::store::redis::Stamp;

impl NearCache {
    /// A cache over fixed contents, confirmed now and never synced: for
    /// micro-benchmarks and tests of the lookup path.
    /// Audiences of any ID type: a `RoaringTreemap` of integers, or an
    /// [`Audience`].
    pub fn from_audiences<A: Into<Audience>>(audiences: Vec<(Campaign, A)>) -> NearCache {
        let inner = Inner::new(NearCacheOptions::default(), None);
        inner
            .slots
            .publish(&inner.state, fixed_entries(audiences), true);
        NearCache {
            inner: Arc::new(inner),
        }
    }

    /// Publishes `audiences` in place of the contents, as a sync would.
    #[cfg(test)]
    pub(super) fn replace_for_test(&self, audiences: Vec<(Campaign, roaring::RoaringTreemap)>) {
        let entries = fixed_entries(audiences);
        self.inner.slots.publish(&self.inner.state, entries, true);
    }
}

/// Entries for fixed contents, confirmed far in the future so they never age.
fn fixed_entries<A: Into<Audience>>(audiences: Vec<(Campaign, A)>) -> Map {
    let mut entries = Map::default();
    for (campaign, members) in audiences {
        let (members, bytes) = match members.into() {
            Audience::Integers(ids) => Members::new(ids),
            keys => Members::of_keys(keys).expect("not integers"),
        };
        let entry = Entry {
            campaign,
            incarnation: Stamp::default(),
            members: Arc::new(members),
            bytes,
            confirmed_ms: AtomicU64::new(u64::MAX / 2),
            superseded: AtomicBool::new(false),
        };
        entries.insert(entry.campaign.id.clone(), Arc::new(entry));
    }
    entries
}
