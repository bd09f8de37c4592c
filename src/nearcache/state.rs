//! What the cache publishes: its entries, one per cached campaign, in one
//! immutable `State` swapped in whole at every sync, and the slot numbers
//! that let a campaign handle find its entry in any state without hashing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::members::Members;
use crate::domain::Campaign;
use crate::store::redis::Stamp;

pub(super) type Map = HashMap<String, Arc<Entry>, foldhash::fast::RandomState>;

/// One cached audience.
pub(super) struct Entry {
    pub(super) campaign: Campaign,
    pub(super) incarnation: Stamp,
    pub(super) members: Arc<Members>,
    pub(super) bytes: u64,
    /// Milliseconds since the cache's epoch when this version was last confirmed.
    pub(super) confirmed_ms: AtomicU64,
    /// The store has been seen answering from another state of this
    /// campaign: the entry must not answer as fresh any more, or a client
    /// that just got the newer answer from the store could next get an
    /// older one from here.
    pub(super) superseded: AtomicBool,
}

/// The published state: entries plus whether they cover every campaign that
/// can be active, which decides whether "which campaigns" can be answered here.
pub(super) struct State {
    pub(super) entries: Map,
    /// The same entries in a list, for [`State::find`].
    pub(super) list: Vec<Arc<Entry>>,
    /// The same entries by slot number (see [`Slots`]), for campaign handles.
    pub(super) by_slot: Box<[Option<Arc<Entry>>]>,
    pub(super) complete: bool,
}

/// Up to this many cached campaigns, a lookup compares ids one by one rather
/// than hashing: a few live campaigns is the common case, and comparing a
/// few short strings costs less than hashing one.
const LINEAR: usize = 8;

impl State {
    pub(super) fn empty() -> State {
        State {
            entries: Map::default(),
            list: Vec::new(),
            by_slot: Box::new([]),
            complete: false,
        }
    }

    #[inline]
    pub(super) fn find(&self, campaign: &str) -> Option<&Arc<Entry>> {
        if self.list.len() <= LINEAR {
            self.list.iter().find(|e| e.campaign.id == campaign)
        } else {
            self.entries.get(campaign)
        }
    }

    #[inline]
    pub(super) fn at_slot(&self, slot: usize) -> Option<&Arc<Entry>> {
        self.by_slot.get(slot)?.as_ref()
    }
}

/// A campaign id with the slot number its entry has in every state
/// published while this slot lives. Held by campaign handles.
pub(super) struct Slot {
    pub(super) id: String,
    pub(super) index: usize,
}

/// Slot numbers by campaign id. A number stays with its id while the
/// campaign is cached or any handle holds its slot, so a handle finds its
/// campaign in every later state with one indexed load; it is given to
/// another id only once neither holds, so no handle can see another
/// campaign's entry at its number.
#[derive(Default)]
pub(super) struct Slots {
    table: Mutex<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    by_id: HashMap<String, Arc<Slot>>,
    free: Vec<usize>,
    next: usize,
}

impl Slots {
    /// Publishes `entries` as the new state of `shared`. Slot numbers are
    /// assigned and the state stored under one lock, so a handle is only
    /// ever handed out for a slot the current state knows.
    pub(super) fn publish(&self, shared: &ArcSwap<State>, entries: Map, complete: bool) {
        let mut table = self.table.lock().expect("lock poisoned");
        let SlotTable { by_id, free, next } = &mut *table;
        // The registry is the only holder when the count is one, and new
        // holders are only made under this lock: such a slot can go.
        by_id.retain(|id, slot| {
            let keep = entries.contains_key(id) || Arc::strong_count(slot) > 1;
            if !keep {
                free.push(slot.index);
            }
            keep
        });
        for id in entries.keys() {
            if !by_id.contains_key(id) {
                let index = free.pop().unwrap_or_else(|| {
                    *next += 1;
                    *next - 1
                });
                let slot = Arc::new(Slot {
                    id: id.clone(),
                    index,
                });
                by_id.insert(id.clone(), slot);
            }
        }
        let mut by_slot = vec![None; *next].into_boxed_slice();
        for (id, entry) in &entries {
            by_slot[by_id[id].index] = Some(entry.clone());
        }
        let list = entries.values().cloned().collect();
        shared.store(Arc::new(State {
            entries,
            list,
            by_slot,
            complete,
        }));
    }

    /// The slot of `campaign`, if it is cached now.
    pub(super) fn get(&self, shared: &ArcSwap<State>, campaign: &str) -> Option<Arc<Slot>> {
        let table = self.table.lock().expect("lock poisoned");
        let slot = table.by_id.get(campaign)?;
        shared.load().at_slot(slot.index)?;
        Some(slot.clone())
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.lock().expect("lock poisoned").by_id.len()
    }
}
