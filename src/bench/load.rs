//! The load generators.
//!
//! - **Closed loop**: a fixed number of virtual users, each asking again
//!   as soon as it has its answer. It measures capacity, but a slow answer
//!   also delays the next question, so queueing never shows (coordinated
//!   omission).
//! - **Open loop**: checks arrive on a fixed schedule, as logins do, and
//!   each latency runs from the check's *intended* start. When a design
//!   cannot keep up, the wait for a free slot, and then the deadline, show
//!   in the figures instead of lowering the rate.
//!
//! Both warm up before the measured window and count only checks that
//! started inside it. Latencies are recorded in nanoseconds with three
//! significant digits: exact below 2 µs, within 100 ns up to 100 µs, and
//! within 0.1% above.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::task::TaskTracker;

use super::plan::{Audience, Plan};
use super::target::{CheckError, Target};

/// The longest latency a histogram holds: two minutes, in ns.
const MAX_NS: u64 = 120_000_000_000;

/// Open loop: checks waiting for a slot beyond this are not queued; they
/// count as timeouts at once, so a design far past saturation cannot make
/// the client hold millions of waiting tasks.
const MAX_WAITING: usize = 100_000;

/// The measured window of a run, on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) start: Instant,
    pub(super) end: Instant,
}

impl Window {
    /// A window that opens after `plan.warmup` from now.
    pub(super) fn after_warmup(plan: &Plan) -> Window {
        let start = Instant::now() + plan.warmup;
        Window {
            start,
            end: start + plan.duration,
        }
    }

    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// What the checks that started inside the window did.
pub(super) struct Tally {
    /// Latency of every check, failed ones included, in ns.
    pub(super) latency: Histogram<u64>,
    /// Checks that started in the window.
    pub(super) checks: u64,
    /// Checks answered correctly before the deadline.
    pub(super) completed: u64,
    /// Checks that failed, timeouts included.
    pub(super) errors: u64,
    /// Checks that missed the deadline (a subset of `errors`).
    pub(super) timeouts: u64,
    /// Open loop: how late the generator dispatched checks, in ns. Every
    /// latency includes it, so it is the harness's floor.
    pub(super) dispatch_lag: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Counts outcomes from many tasks at once.
struct Recorder {
    latency: Mutex<Histogram<u64>>,
    checks: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            latency: Mutex::new(histogram()),
            checks: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    fn count(&self, answer: &Result<bool, CheckError>) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(_) => self.completed.fetch_add(1, Ordering::Relaxed),
            Err(CheckError::Timeout) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.errors.fetch_add(1, Ordering::Relaxed)
            }
            Err(CheckError::Failed | CheckError::WrongAnswer) => {
                self.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// One check that began at `started`; a timeout counts at `deadline`,
    /// not when its late answer came.
    fn record(&self, started: Instant, deadline: Duration, answer: Result<bool, CheckError>) {
        let mut took = started.elapsed();
        if matches!(answer, Err(CheckError::Timeout)) {
            took = took.min(deadline);
        }
        let ns = took.as_nanos().min(MAX_NS as u128) as u64;
        self.latency
            .lock()
            .expect("latency histogram lock")
            .saturating_record(ns.max(1));
        self.count(&answer);
    }

    fn into_tally(self, dispatch_lag: Option<Histogram<u64>>) -> Tally {
        Tally {
            latency: self.latency.into_inner().expect("latency histogram lock"),
            checks: self.checks.into_inner(),
            completed: self.completed.into_inner(),
            errors: self.errors.into_inner(),
            timeouts: self.timeouts.into_inner(),
            dispatch_lag,
        }
    }
}

/// One check with the run's deadline, its answer compared with the audience.
async fn checked(
    target: &Target,
    audience: &Audience,
    user: u64,
    deadline: Duration,
) -> Result<bool, CheckError> {
    let answer = within(tokio::time::Instant::now() + deadline, target.check(user)).await;
    verify(audience, user, answer)
}

/// How long a check that passed its deadline is still waited for.
const LINGER: Duration = Duration::from_secs(30);

/// `check`'s answer, or a timeout once `deadline` passes. A check that
/// times out is still run to its end (for up to [`LINGER`]) before this
/// returns: its command was sent and occupies the server, and its reply
/// memory, until answered. Dropping it at the deadline would free its
/// client slot while Redis still works on it, so a saturated design would
/// pile up commands inside Redis without bound (a `json` audience of a
/// million IDs is an 8 MB reply per check; it took Redis to 23 GB).
async fn within(
    deadline: tokio::time::Instant,
    check: impl Future<Output = Result<bool, CheckError>>,
) -> Result<bool, CheckError> {
    tokio::pin!(check);
    match tokio::time::timeout_at(deadline, &mut check).await {
        Ok(answer) => answer,
        Err(_) => {
            let _ = tokio::time::timeout(LINGER, check).await;
            Err(CheckError::Timeout)
        }
    }
}

fn verify(
    audience: &Audience,
    user: u64,
    answer: Result<bool, CheckError>,
) -> Result<bool, CheckError> {
    answer.and_then(|member| {
        if member == audience.members.contains(user) {
            Ok(member)
        } else {
            Err(CheckError::WrongAnswer)
        }
    })
}

/// Runs `workers` closed-loop virtual users through the warm-up and the
/// window.
pub(super) async fn closed_loop(
    plan: &Plan,
    target: Arc<Target>,
    audience: Arc<Audience>,
    workers: usize,
    window: Window,
) -> anyhow::Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = plan.deadline;
    // One task per virtual user, so they spread over every runtime thread
    // as a real service's requests would. Each keeps its own histogram,
    // grown on demand, so no lock sits on the measured path.
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let stop = stop.clone();
            let (target, audience) = (target.clone(), audience.clone());
            let hit_ratio = plan.hit_ratio;
            let mut rng =
                StdRng::seed_from_u64(audience.seed ^ ((workers as u64) << 32) ^ w as u64);
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
                let mut counts = [0u64; 4];
                while !stop.load(Ordering::Relaxed) {
                    // An in-process answer never waits on I/O; without this
                    // a worker would never give the runtime back.
                    tokio::task::consume_budget().await;
                    let user = audience.draw(&mut rng, hit_ratio);
                    let t0 = Instant::now();
                    let answer = checked(&target, &audience, user, deadline).await;
                    if !window.contains(t0) {
                        continue;
                    }
                    // A timeout counts at the deadline, not when its late
                    // answer finally came.
                    let took = match answer {
                        Err(CheckError::Timeout) => deadline,
                        _ => t0.elapsed(),
                    };
                    let ns = took.as_nanos().min(MAX_NS as u128) as u64;
                    // Grows the histogram as needed (`saturating_record`
                    // would clamp to its current, tiny, range instead).
                    hist.record(ns.max(1)).expect("an auto-resizing histogram");
                    counts[0] += 1;
                    match answer {
                        Ok(_) => counts[1] += 1,
                        Err(CheckError::Timeout) => {
                            counts[2] += 1;
                            counts[3] += 1;
                        }
                        Err(_) => counts[2] += 1,
                    }
                }
                (hist, counts)
            })
        })
        .collect();
    tokio::time::sleep_until(window.end.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Recorder::new().into_tally(None);
    for task in tasks {
        let (hist, [checks, completed, errors, timeouts]) =
            task.await.context("a virtual user panicked")?;
        tally
            .latency
            .add(&hist)
            .context("merging latency histograms")?;
        tally.checks += checks;
        tally.completed += completed;
        tally.errors += errors;
        tally.timeouts += timeouts;
    }
    Ok(tally)
}

/// Sends checks at `rate` per second from the warm-up to the window's end,
/// then waits for the last ones to answer or time out.
///
/// The schedule runs on a blocking thread of its own, so a busy runtime
/// cannot delay it; a check due while the thread sleeps is dispatched late,
/// and that lateness is part of its latency, recorded as `dispatch_lag` too.
/// In-process checks run inline (they never wait on I/O); the others are
/// tasks that first take one of `plan.max_in_flight` slots.
pub(super) async fn open_loop(
    plan: &Plan,
    target: Arc<Target>,
    audience: Arc<Audience>,
    rate: f64,
    window: Window,
) -> anyhow::Result<Tally> {
    let recorder = Arc::new(Recorder::new());
    let tasks = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(plan.max_in_flight));
    let runtime = tokio::runtime::Handle::current();
    let (deadline, hit_ratio) = (plan.deadline, plan.hit_ratio);
    let mut rng = StdRng::seed_from_u64(audience.seed ^ rate.to_bits());
    let schedule = {
        let (recorder, tasks) = (recorder.clone(), tasks.clone());
        tokio::task::spawn_blocking(move || {
            let mut lag = histogram();
            let begin = Instant::now();
            let interval = 1e9 / rate;
            for i in 0u64.. {
                let intended = begin + Duration::from_nanos((i as f64 * interval) as u64);
                if intended >= window.end {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let user = audience.draw(&mut rng, hit_ratio);
                let measured = window.contains(intended);
                if measured {
                    let late = intended.elapsed().as_nanos().min(MAX_NS as u128) as u64;
                    lag.saturating_record(late.max(1));
                }
                if target.in_process() {
                    let answer = target.check(user).now_or_never();
                    if let Some(answer) = answer {
                        if measured {
                            recorder.record(intended, deadline, verify(&audience, user, answer));
                        }
                        continue;
                    }
                }
                if tasks.len() >= MAX_WAITING {
                    if measured {
                        recorder.count(&Err(CheckError::Timeout));
                    }
                    continue;
                }
                let (target, audience, recorder, slots) = (
                    target.clone(),
                    audience.clone(),
                    recorder.clone(),
                    slots.clone(),
                );
                tasks.spawn_on(
                    async move {
                        // The slot is held until the check ends, past its
                        // deadline too (see `within`), so no more than
                        // --max-in-flight commands are ever at the server.
                        let deadline_at = (intended + deadline).into();
                        let answer =
                            match tokio::time::timeout_at(deadline_at, slots.acquire()).await {
                                Ok(slot) => {
                                    let _slot = slot.expect("slots never close");
                                    within(deadline_at, target.check(user)).await
                                }
                                Err(_) => Err(CheckError::Timeout),
                            };
                        if measured {
                            recorder.record(intended, deadline, verify(&audience, user, answer));
                        }
                    },
                    &runtime,
                );
            }
            lag
        })
    };
    let lag = schedule.await.context("the open-loop schedule panicked")?;
    tasks.close();
    tasks.wait().await;
    let recorder = Arc::into_inner(recorder).context("a check outlived the run")?;
    Ok(recorder.into_tally(Some(lag)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A check past its deadline counts as a timeout, yet is waited for:
    /// its command still occupies the server until answered.
    #[tokio::test(start_paused = true)]
    async fn a_late_check_times_out_but_is_run_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let check = {
            let finished = finished.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                finished.store(true, Ordering::SeqCst);
                Ok(true)
            }
        };
        let start = tokio::time::Instant::now();
        let answer = within(start + Duration::from_secs(1), check).await;
        assert!(matches!(answer, Err(CheckError::Timeout)), "{answer:?}");
        assert!(
            finished.load(Ordering::SeqCst),
            "the late check was dropped"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_never_ends_is_let_go_after_the_linger() {
        let start = tokio::time::Instant::now();
        let answer = within(
            start + Duration::from_secs(1),
            std::future::pending::<Result<bool, CheckError>>(),
        )
        .await;
        assert!(matches!(answer, Err(CheckError::Timeout)));
        assert_eq!(start.elapsed(), Duration::from_secs(1) + LINGER);
    }
}
