//! Pacing of bulk writes, so an audience upload yields to logins.
//!
//! An upload and the logins share one Redis (one thread) and, usually, the
//! same few cores. Sent flat out, a 10,000,000-ID upload keeps Redis busy
//! for seconds and every check queues behind its commands. Login checks
//! cannot tell the upload to wait, so the upload must notice and wait.
//!
//! ## The control law
//!
//! The only signal the writer needs is one it already has: how long its own
//! round trips take. A round trip of `n` commands costs Redis the same work
//! whenever it is sent; when it takes longer than the fastest recent round
//! trips of the same size, the difference is time spent waiting for
//! something else: checks ahead of it in Redis, or the CPU it shares with
//! them. That is exactly the contention the checks feel too.
//!
//! - **Baseline.** For each round-trip size, the fastest of the last
//!   [`WINDOW`] round trips. "Fastest" because waiting only ever adds
//!   latency; "recent" so the baseline follows a set that grows (inserts
//!   into a bigger set cost more) instead of holding on to one lucky round
//!   trip. Sizes are kept apart because a round trip of 4 commands is not
//!   comparable with one of 32.
//! - **Congestion.** A round trip slower than [`CONGESTED`] × its baseline.
//!   Below that, latency is noise; 1.5× is where the checks' p99 already
//!   shows the upload.
//! - **Multiplicative decrease.** On congestion, the budget drops to half of
//!   the rate the upload actually achieved, and the round trip halves
//!   (fewer commands in a burst means a check waits behind fewer of them).
//!   Halving clears a queue within a few round trips; a smaller cut would
//!   leave logins waiting while it converges.
//! - **Additive increase.** Each uncongested second adds [`INCREASE`] IDs/s
//!   to the budget, and [`CLEAN_TO_GROW`] uncongested round trips in a row
//!   double the round trip again. Growing slowly and falling fast (AIMD,
//!   as TCP does) settles just below the point where checks start to wait,
//!   and probes for spare room when the logins' peak passes.
//! - **Slow start.** Until the first congestion there is no budget: an
//!   upload on an idle Redis runs as fast as it did before pacing existed.
//! - **Floor.** The budget never drops below [`MIN_RATE`], so an upload
//!   always finishes (10,000,000 IDs in under four minutes at the floor),
//!   whatever else shares the machine.
//!
//! The budget is a schedule shared by every upload of the store: each round
//! trip reserves its IDs' share of time, so two concurrent uploads split
//! the budget instead of doubling it. An optional hard cap
//! (`--upload-rate`) bounds the budget from above, paced or not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::PIPELINE_DEPTH;

/// How many recent round trips of one size the baseline is taken from.
pub(crate) const WINDOW: usize = 32;
/// Round trips of a size seen before its baseline is trusted.
const MIN_SAMPLES: usize = 4;
/// A round trip this many times slower than its baseline is congestion.
pub(crate) const CONGESTED: f64 = 1.5;
/// What the budget grows by per uncongested second, in IDs per second.
pub(crate) const INCREASE: f64 = 100_000.0;
/// The lowest budget, in IDs per second.
pub(crate) const MIN_RATE: f64 = 50_000.0;
/// Uncongested round trips in a row that double the round-trip size.
pub(crate) const CLEAN_TO_GROW: u32 = 8;

/// How audience writes are paced; part of the store's options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UploadPacing {
    /// Adapt the write rate to the latency Redis shows (see this module).
    pub adaptive: bool,
    /// A hard cap on IDs written per second, over all uploads.
    pub max_ids_per_sec: Option<u64>,
}

impl UploadPacing {
    fn is_off(&self) -> bool {
        !self.adaptive && self.max_ids_per_sec.is_none()
    }
}

/// What one round trip said about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Too few round trips of this size yet to judge it.
    Learning,
    Clean,
    Congested,
}

/// The recent round trips of one size.
#[derive(Default)]
struct Baseline {
    recent: VecDeque<Duration>,
}

impl Baseline {
    fn fastest(&self) -> Option<Duration> {
        (self.recent.len() >= MIN_SAMPLES)
            .then(|| self.recent.iter().min().copied())
            .flatten()
    }

    fn push(&mut self, took: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }
}

/// The controller: pure arithmetic over the times it is given, so its
/// decisions can be tested without a clock or a Redis.
pub(crate) struct Controller {
    options: UploadPacing,
    depth: usize,
    /// The adaptive budget in IDs per second; `None` before the first
    /// congestion (slow start) and when pacing is not adaptive.
    budget: Option<f64>,
    baselines: HashMap<usize, Baseline>,
    clean_in_a_row: u32,
    /// When the budget last grew or fell, for the additive increase.
    last_change: Option<Instant>,
    /// The earliest start of the next round trip under the budget.
    next_start: Option<Instant>,
}

impl Controller {
    pub(crate) fn new(options: UploadPacing) -> Controller {
        Controller {
            options,
            depth: PIPELINE_DEPTH,
            budget: None,
            baselines: HashMap::new(),
            clean_in_a_row: 0,
            last_change: None,
            next_start: None,
        }
    }

    /// Commands to send in the next round trip.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The rate IDs are written at most, if any bounds it now.
    pub(crate) fn rate(&self) -> Option<f64> {
        let cap = self.options.max_ids_per_sec.map(|c| c as f64);
        match (self.budget, cap) {
            (Some(b), Some(c)) => Some(b.min(c)),
            (b, c) => b.or(c),
        }
    }

    /// Reserves the time a round trip of `ids` IDs takes under the rate;
    /// returns how long to wait, from `now`, before sending it.
    pub(crate) fn admit(&mut self, ids: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate() else {
            return Duration::ZERO;
        };
        let start = self.next_start.map_or(now, |next| next.max(now));
        self.next_start = Some(start + Duration::from_secs_f64(ids as f64 / rate));
        start - now
    }

    /// Learns from a round trip of `cmds` commands carrying `ids` IDs that
    /// took `took` (Redis's answer, not the wait before it) and ended at
    /// `now`; `span` is the time since the previous round trip ended (wait
    /// included), from which the rate achieved is read.
    pub(crate) fn observe(
        &mut self,
        cmds: usize,
        ids: u64,
        took: Duration,
        span: Duration,
        now: Instant,
    ) -> Verdict {
        if !self.options.adaptive {
            return Verdict::Clean;
        }
        let baseline = self.baselines.entry(cmds).or_default();
        let verdict = match baseline.fastest() {
            None => Verdict::Learning,
            Some(fastest) if took.as_secs_f64() > CONGESTED * fastest.as_secs_f64() => {
                Verdict::Congested
            }
            Some(_) => Verdict::Clean,
        };
        baseline.push(took);
        match verdict {
            Verdict::Congested => {
                let achieved = ids as f64 / span.max(took).as_secs_f64().max(1e-6);
                let from = self.budget.map_or(achieved, |b| b.min(achieved));
                self.budget = Some((from / 2.0).max(MIN_RATE));
                self.depth = (self.depth / 2).max(1);
                self.clean_in_a_row = 0;
                self.last_change = Some(now);
            }
            Verdict::Clean => {
                if let (Some(budget), Some(since)) = (self.budget, self.last_change) {
                    let grown = INCREASE * now.saturating_duration_since(since).as_secs_f64();
                    self.budget = Some(budget + grown);
                    self.last_change = Some(now);
                }
                self.clean_in_a_row += 1;
                if self.clean_in_a_row >= CLEAN_TO_GROW && self.depth < PIPELINE_DEPTH {
                    self.depth = (self.depth * 2).min(PIPELINE_DEPTH);
                    self.clean_in_a_row = 0;
                }
            }
            Verdict::Learning => {}
        }
        verdict
    }
}

/// The controller shared by every bulk write of a store.
#[derive(Clone)]
pub(crate) struct Pacer {
    /// A std mutex: held for a few arithmetic operations, never across an
    /// `.await`, by at most a couple of concurrent uploads.
    controller: Arc<Mutex<Controller>>,
    /// When the last round trip ended, for the achieved rate.
    last_end: Arc<Mutex<Option<Instant>>>,
}

impl Pacer {
    /// A pacer for `options`, or none when pacing is off.
    pub(crate) fn new(options: UploadPacing) -> Option<Pacer> {
        (!options.is_off()).then(|| Pacer {
            controller: Arc::new(Mutex::new(Controller::new(options))),
            last_end: Arc::new(Mutex::new(None)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.controller.lock().expect("pacer lock poisoned")
    }

    pub(crate) fn depth(&self) -> usize {
        self.lock().depth()
    }

    /// How long to wait before a round trip of `ids` IDs.
    pub(crate) fn admit(&self, ids: u64) -> Duration {
        self.lock().admit(ids, Instant::now())
    }

    /// Records a round trip that was admitted at `admitted` (before its
    /// wait), sent at `sent`, and has just been answered.
    pub(crate) fn observe(&self, cmds: usize, ids: u64, admitted: Instant, sent: Instant) {
        let now = Instant::now();
        let span = {
            let mut last = self.last_end.lock().expect("pacer lock poisoned");
            // A round trip that follows another at once is measured from
            // that one's end; the first (or one after a pause between
            // uploads) from its own admission.
            let from = last.filter(|l| *l >= admitted).unwrap_or(admitted);
            *last = Some(now);
            now - from
        };
        let mut controller = self.lock();
        let verdict = controller.observe(cmds, ids, now - sent, span, now);
        if verdict == Verdict::Congested {
            metrics::counter!("guestlist_upload_backoffs_total").increment(1);
        }
        metrics::gauge!("guestlist_upload_pace_depth").set(controller.depth() as f64);
        metrics::gauge!("guestlist_upload_pace_ids_per_second")
            .set(controller.rate().unwrap_or(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const IDS: u64 = 32_000;

    fn adaptive() -> Controller {
        Controller::new(UploadPacing {
            adaptive: true,
            max_ids_per_sec: None,
        })
    }

    /// Feeds `n` round trips of the controller's current depth taking
    /// `took` each, back to back, starting at `*now`; returns the verdicts.
    fn feed(c: &mut Controller, now: &mut Instant, took: Duration, n: usize) -> Vec<Verdict> {
        (0..n)
            .map(|_| {
                let wait = c.admit(IDS, *now);
                *now += wait + took;
                c.observe(c.depth(), IDS, took, wait + took, *now)
            })
            .collect()
    }

    #[test]
    fn steady_round_trips_are_never_slowed() {
        let mut c = adaptive();
        let mut now = Instant::now();
        let verdicts = feed(&mut c, &mut now, 4 * MS, 100);
        assert!(
            verdicts[..MIN_SAMPLES]
                .iter()
                .all(|v| *v == Verdict::Learning)
        );
        assert!(verdicts[MIN_SAMPLES..].iter().all(|v| *v == Verdict::Clean));
        assert_eq!(c.depth(), PIPELINE_DEPTH);
        assert_eq!(c.rate(), None);
        assert_eq!(c.admit(IDS, now), Duration::ZERO);
    }

    #[test]
    fn a_round_trip_past_one_and_a_half_baselines_halves_depth_and_rate() {
        let mut c = adaptive();
        let mut now = Instant::now();
        feed(&mut c, &mut now, 4 * MS, 10);
        // 1.4× the baseline is noise.
        assert_eq!(
            feed(&mut c, &mut now, 5_600 * Duration::from_micros(1), 1),
            [Verdict::Clean]
        );
        assert_eq!(c.depth(), PIPELINE_DEPTH);
        // 2× is congestion: the rate achieved was 32,000 IDs in 8 ms.
        assert_eq!(feed(&mut c, &mut now, 8 * MS, 1), [Verdict::Congested]);
        assert_eq!(c.depth(), PIPELINE_DEPTH / 2);
        let rate = c.rate().unwrap();
        assert!((rate - 2_000_000.0).abs() < 1.0, "{rate}");
        // The budget now spaces round trips: 32,000 IDs at 2M IDs/s.
        assert_eq!(c.admit(IDS, now), Duration::ZERO);
        let wait = c.admit(IDS, now);
        assert!((wait.as_secs_f64() - 0.016).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn lasting_congestion_stops_at_one_command_and_the_floor_rate() {
        let mut c = adaptive();
        let mut now = Instant::now();
        feed(&mut c, &mut now, MS, 10);
        let mut slow = 10 * MS;
        for _ in 0..40 {
            // Each size learns its baseline, then slows down.
            feed(&mut c, &mut now, MS, MIN_SAMPLES);
            slow += 10 * MS;
            let verdicts = feed(&mut c, &mut now, slow, 1);
            assert_eq!(verdicts, [Verdict::Congested]);
        }
        assert_eq!(c.depth(), 1);
        assert_eq!(c.rate(), Some(MIN_RATE));
        // Still moving: 32,000 IDs at the floor rate take 0.64 s.
        c.admit(IDS, now);
        let wait = c.admit(IDS, now);
        assert!((wait.as_secs_f64() - 0.64).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn after_congestion_the_rate_grows_linearly_and_the_depth_doubles_back() {
        let mut c = adaptive();
        let mut now = Instant::now();
        feed(&mut c, &mut now, 4 * MS, 10);
        feed(&mut c, &mut now, 40 * MS, 1);
        let t0 = now;
        let r0 = c.rate().unwrap();
        assert_eq!(c.depth(), 16);
        // Round trips of 16 commands: a new size, learned before judged.
        let verdicts = feed(&mut c, &mut now, 2 * MS, MIN_SAMPLES);
        assert!(verdicts.iter().all(|v| *v == Verdict::Learning));
        assert_eq!(c.rate(), Some(r0), "learning round trips change nothing");
        feed(&mut c, &mut now, 2 * MS, 3);
        let grown = c.rate().unwrap() - r0;
        let expected = INCREASE * (now - t0).as_secs_f64();
        assert!((grown - expected).abs() < 1.0, "{grown} vs {expected}");
        assert_eq!(c.depth(), 16);
        feed(&mut c, &mut now, 2 * MS, (CLEAN_TO_GROW - 3) as usize);
        assert_eq!(
            c.depth(),
            32,
            "doubled after {CLEAN_TO_GROW} clean round trips"
        );
        // Back at 32 the old baseline (4 ms) still holds: 5 ms is clean.
        assert_eq!(feed(&mut c, &mut now, 5 * MS, 1), [Verdict::Clean]);
    }

    #[test]
    fn baselines_are_per_size_so_a_bigger_round_trip_is_not_congestion() {
        let mut c = adaptive();
        let mut now = Instant::now();
        for _ in 0..10 {
            assert_ne!(c.observe(8, 8_000, MS, MS, now), Verdict::Congested);
            now += MS;
        }
        // 32 commands take 4× as long as 8: a new size, still learning.
        assert_eq!(c.observe(32, IDS, 4 * MS, 4 * MS, now), Verdict::Learning);
        assert_eq!(c.observe(8, 8_000, 2 * MS, 2 * MS, now), Verdict::Congested);
    }

    #[test]
    fn the_baseline_forgets_round_trips_older_than_its_window() {
        let mut c = adaptive();
        let now = Instant::now();
        for _ in 0..MIN_SAMPLES {
            c.observe(32, IDS, MS, MS, now);
        }
        // The set grew: every round trip now takes 3 ms. They are
        // congestion against the old 1 ms until the window moves past it.
        let verdicts: Vec<Verdict> = (0..2 * WINDOW)
            .map(|_| c.observe(32, IDS, 3 * MS, 3 * MS, now))
            .collect();
        let congested = verdicts
            .iter()
            .take_while(|v| **v == Verdict::Congested)
            .count();
        assert_eq!(congested, WINDOW, "{verdicts:?}");
        assert!(verdicts[congested..].iter().all(|v| *v == Verdict::Clean));
    }

    #[test]
    fn a_hard_cap_spaces_round_trips_without_adapting() {
        let mut c = Controller::new(UploadPacing {
            adaptive: false,
            max_ids_per_sec: Some(100_000),
        });
        let now = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| c.admit(IDS, now)).collect();
        let secs: Vec<f64> = waits.iter().map(Duration::as_secs_f64).collect();
        for (i, s) in secs.iter().enumerate() {
            assert!((s - 0.32 * i as f64).abs() < 1e-6, "{secs:?}");
        }
        assert_eq!(c.observe(32, IDS, 100 * MS, 100 * MS, now), Verdict::Clean);
        assert_eq!(c.depth(), PIPELINE_DEPTH);
    }

    #[test]
    fn the_cap_bounds_the_adaptive_budget_from_above() {
        let mut c = Controller::new(UploadPacing {
            adaptive: true,
            max_ids_per_sec: Some(300_000),
        });
        let mut now = Instant::now();
        assert_eq!(c.rate(), Some(300_000.0));
        feed(&mut c, &mut now, 4 * MS, 10);
        feed(&mut c, &mut now, 40 * MS, 1);
        let rate = c.rate().unwrap();
        assert!((MIN_RATE..300_000.0).contains(&rate), "{rate}");
        // A long clean spell grows the budget past the cap; the cap holds.
        now += Duration::from_secs(60);
        feed(&mut c, &mut now, 2 * MS, 5);
        assert_eq!(c.rate(), Some(300_000.0));
    }

    #[test]
    fn pacing_off_makes_no_pacer() {
        assert!(Pacer::new(UploadPacing::default()).is_none());
        assert!(
            Pacer::new(UploadPacing {
                adaptive: false,
                max_ids_per_sec: Some(1)
            })
            .is_some()
        );
    }
}
