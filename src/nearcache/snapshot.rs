//! Each thread's copy of the published state, so a lookup reads it without
//! touching a shared counter.
//!
//! `ArcSwap::load` costs about 18 ns here: it registers the reader in a
//! shared debt list (atomic read-modify-writes) so the state cannot be freed
//! under it. A thread that keeps its own strong reference to the state needs
//! none of that: one plain load of the shared pointer tells whether its copy
//! is still the published one (`arc_swap::Cache` does exactly this), and only
//! after a sync does the next lookup pay for a full load.
//!
//! The copies live in a small per-thread table with one line per cache (by
//! [`Way`]); two caches that share a line in one thread evict each other,
//! which costs time, never correctness: a line is only used when it holds
//! the very `ArcSwap` the lookup asks for.
//!
//! The price is memory: a thread keeps the state it last read alive until
//! its next lookup (or its exit), so right after a sync that replaced an
//! audience, an idle thread can hold the old audience besides the new one.
//! Threads that serve logins look up constantly and let go within the next
//! request; `max_bytes` bounds what the cache publishes, not these copies.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::{ArcSwap, Cache};

use super::state::State;

const WAYS: usize = 4;

type Line = Option<Cache<Arc<ArcSwap<State>>, Arc<State>>>;

thread_local! {
    static LINES: RefCell<[Line; WAYS]> = const { RefCell::new([const { None }; WAYS]) };
}

/// Which line of each thread's table a cache uses: caches made one after
/// another take different lines.
#[derive(Clone, Copy)]
pub(super) struct Way(usize);

impl Way {
    pub(super) fn next() -> Way {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Way(NEXT.fetch_add(1, Ordering::Relaxed) % WAYS)
    }
}

/// Runs `read` on the current state of `shared`, from this thread's copy
/// when it is still the published one.
#[inline]
pub(super) fn with_state<R>(
    shared: &Arc<ArcSwap<State>>,
    way: Way,
    read: impl Fn(&State) -> R,
) -> R {
    // `read` is called from as few places as possible, and the answer is
    // wrapped once: an answer moved through extra layers, or a `read` left
    // out of line, cost more than the lookup itself.
    let local = LINES.try_with(|lines| {
        let mut lines = lines.try_borrow_mut();
        let fallback;
        let state: &State = match &mut lines {
            Ok(lines) => {
                let line = &mut lines[way.0];
                let cache = match line {
                    Some(cache) if std::ptr::eq(cache.arc_swap(), &**shared) => cache,
                    _ => line.insert(Cache::new(shared.clone())),
                };
                cache.load()
            }
            // Taken only here, and `read` never comes back in: the borrow
            // can only fail if a caller's `read` does.
            Err(_) => {
                fallback = shared.load();
                &fallback
            }
        };
        read(state)
    });
    // Err: the thread is exiting and its table is gone.
    local.unwrap_or_else(|_| read(&shared.load()))
}
