//! The cache's clock for staleness: milliseconds since the cache started,
//! read without a system call on the lookup path.
//!
//! Reading the monotonic clock costs about 20 ns here (`clock_gettime`
//! through the vDSO), as much as the rest of a lookup. A ticker thread
//! stores the time every [`TICK`] instead, and a lookup reads that value.
//! The coarse value is never ahead of the real clock (it is a reading from
//! the past), so:
//!
//! - coarse time past an entry's deadline proves the entry stale;
//! - a deadline more than [`GUARD`] after the coarse time proves it fresh,
//!   as long as the ticker is less than [`GUARD`] behind, which holds unless
//!   its thread, sleeping [`TICK`] at a time, goes unscheduled for 25 ticks;
//! - in between, the lookup reads the real clock.
//!
//! So an answer is flagged stale exactly when a clock read per lookup would
//! flag it; the real read is only paid in the last [`GUARD`] of an entry
//! that the store has stopped confirming, which does not happen while the
//! store is reachable (confirmations move the deadline seconds ahead every
//! second). Campaign windows (`starts_at`, `ends_at`) are not judged here at
//! all: they go out with the answer and the caller compares them with its
//! own clock, as before.
//!
//! The one case the argument does not cover is a ticker that stopped for
//! longer than [`GUARD`] while lookups ran, which would take a host stalling
//! one thread of the process but not the others; a process stopped as a
//! whole (SIGSTOP, a paused VM) resumes its ticker within one tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the ticker stores the time.
const TICK: Duration = Duration::from_millis(10);

/// How far from a deadline the coarse time is trusted, in milliseconds.
const GUARD: u64 = 250;

/// Padded to its own cache lines: the ticker writes `coarse_ms` every tick,
/// and that write must not evict lines the lookups read.
#[repr(align(128))]
pub(super) struct Clock {
    epoch: Instant,
    coarse_ms: AtomicU64,
    /// False when the ticker thread could not be started: every read is then
    /// a real one.
    ticking: AtomicBool,
}

impl Clock {
    /// A clock starting now, with its ticker thread, which ends once the
    /// clock is dropped.
    pub(super) fn start() -> Arc<Clock> {
        let clock = Arc::new(Clock {
            epoch: Instant::now(),
            coarse_ms: AtomicU64::new(0),
            ticking: AtomicBool::new(true),
        });
        let weak: Weak<Clock> = Arc::downgrade(&clock);
        let spawned = std::thread::Builder::new()
            .name("nearcache-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(clock) = weak.upgrade() else { return };
                    clock.coarse_ms.store(clock.now_ms(), Ordering::Relaxed);
                }
            });
        if spawned.is_err() {
            clock.ticking.store(false, Ordering::Relaxed);
        }
        clock
    }

    /// Milliseconds since the epoch, read from the system clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `at` as milliseconds since the epoch.
    pub(super) fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Whether now, in milliseconds since the epoch, is past `deadline`:
    /// the same answer as `self.now_ms() > deadline`, usually without
    /// reading the system clock (see the module notes).
    #[inline]
    pub(super) fn is_past(&self, deadline: u64) -> bool {
        if self.ticking.load(Ordering::Relaxed) {
            let coarse = self.coarse_ms.load(Ordering::Relaxed);
            if coarse > deadline {
                return true;
            }
            if deadline - coarse > GUARD {
                return false;
            }
        }
        self.now_ms() > deadline
    }

    #[cfg(test)]
    pub(super) fn coarse_ms(&self) -> u64 {
        self.coarse_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock with no ticker, ten seconds old, whose coarse time says `coarse_ms`.
    fn stopped(coarse_ms: u64, ticking: bool) -> Clock {
        Clock {
            epoch: Instant::now() - Duration::from_secs(10),
            coarse_ms: AtomicU64::new(coarse_ms),
            ticking: AtomicBool::new(ticking),
        }
    }

    #[test]
    fn the_coarse_time_follows_the_real_clock_and_never_leads_it() {
        let clock = Clock::start();
        std::thread::sleep(Duration::from_millis(120));
        let coarse = clock.coarse_ms();
        let real = clock.now_ms();
        assert!(coarse <= real, "coarse {coarse} ahead of real {real}");
        assert!(coarse >= 50, "ticker did not advance: {coarse} ms");
    }

    /// A coarse time a little behind must not delay the answer: deadlines
    /// near it are judged by the real clock.
    #[test]
    fn deadlines_near_the_coarse_time_are_judged_by_the_real_clock() {
        let clock = stopped(10_000 - 100, true);
        let now = clock.now_ms();
        assert!(clock.is_past(now - 50), "50 ms ago is past");
        assert!(!clock.is_past(now + 60_000));
        assert!(
            clock.is_past(10_000 - 200),
            "before the coarse time is past"
        );
    }

    #[test]
    fn without_a_ticker_every_read_is_real() {
        let clock = stopped(0, false);
        assert!(
            clock.is_past(9_000),
            "a stuck coarse time must not be trusted"
        );
        assert!(!clock.is_past(11_000));
    }
}
