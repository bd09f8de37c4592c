//! Reads shared by the checks that wait for them at the same time.
//!
//! On a cluster, a `per-user` check reads the campaign's identity (on the
//! campaign's master) before the user's hash (on the user's). One identity
//! read per check would put half of every check on one master, the hot
//! key the design exists to avoid. Concurrent checks of one campaign share
//! an identity read instead, without weakening what an answer means: a
//! check only takes a read that *started after the check did*, so what it
//! reads is never older than the state when it began, exactly as its own
//! read would be.
//!
//! Rounds, per key: while one read is in flight, the checks that arrive
//! join the next round, which is sent as soon as the current one answers.
//! A check waits at most for the read in flight plus its own, and the
//! campaign's master sees about one read per round trip instead of one
//! per check.
//!
//! Each key's rounds run on a spawned task, so a check that gives up (its
//! deadline passed, its client left) never strands the checks waiting with
//! it. Memory is bounded by the keys read at this instant: a key's entry
//! goes when its last round ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The outcome of one round, shared by its checks.
type Shared<V> = Option<Result<V, Arc<crate::store::StoreError>>>;

/// Starts one read of a key.
pub(crate) type Read<V> = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = crate::store::StoreResult<V>> + Send>> + Send + Sync,
>;

/// Keys with a round in flight, each with the round that follows it once
/// a check asked for one.
type Rounds<V> = Mutex<HashMap<String, Option<watch::Sender<Shared<V>>>>>;

/// Shared reads, by key.
pub(crate) struct Coalesced<V> {
    rounds: Arc<Rounds<V>>,
}

impl<V> Default for Coalesced<V> {
    fn default() -> Self {
        Coalesced {
            rounds: Arc::default(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Coalesced<V> {
    /// The result of a read of `key` that starts after this call, shared
    /// with every other caller waiting for the same round, or a timeout
    /// after `deadline` (the wait for a round in flight plus its own read
    /// would otherwise be up to two reads' deadlines). `read` starts a
    /// read; a key's later rounds reuse the first caller's.
    pub(crate) async fn get(
        &self,
        key: &str,
        read: Read<V>,
        deadline: Duration,
    ) -> crate::store::StoreResult<V> {
        let (mut round, start) = {
            let mut rounds = self.rounds.lock().expect("rounds lock");
            match rounds.get_mut(key) {
                // A read is in flight and may have started before this call:
                // wait for the next one.
                Some(next) => (
                    next.get_or_insert_with(|| watch::channel(None).0)
                        .subscribe(),
                    None,
                ),
                None => {
                    let (first, waiting) = watch::channel(None);
                    rounds.insert(key.to_string(), None);
                    (waiting, Some(first))
                }
            }
        };
        if let Some(first) = start {
            // The guard goes into the task before it is spawned, outside the
            // lock: a task dropped before it ever runs still ends the key's
            // rounds, so no later check waits for a round nobody sends.
            let rounds = EndRounds {
                rounds: self.rounds.clone(),
                key: key.to_string(),
                ended: false,
            };
            tokio::spawn(run(rounds, first, read));
        }
        let wait = async {
            let outcome = round.wait_for(Option::is_some).await.map_err(|_| {
                crate::store::StoreError::Unavailable(
                    "a shared read ended without an answer".into(),
                )
            })?;
            Ok::<_, crate::store::StoreError>(outcome.clone().expect("waited for an outcome"))
        };
        let outcome = tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| crate::store::StoreError::Timeout(deadline))??;
        outcome.map_err(|e| shared_error(&e))
    }

    /// How many keys have a round in flight (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.rounds.lock().expect("rounds lock").len()
    }
}

/// Ends a key's rounds when its task ends in any way but the normal one (a
/// panic in a read, or the task dropped unrun): the next check starts
/// afresh, and the checks of a round that will not be sent get an error
/// when its sender goes.
struct EndRounds<V> {
    rounds: Arc<Rounds<V>>,
    key: String,
    ended: bool,
}

impl<V> Drop for EndRounds<V> {
    fn drop(&mut self) {
        if !self.ended
            && let Ok(mut rounds) = self.rounds.lock()
        {
            rounds.remove(&self.key);
        }
    }
}

/// Sends a key's rounds one after another until no check waits for more.
async fn run<V: Clone + Send + Sync + 'static>(
    mut guard: EndRounds<V>,
    mut round: watch::Sender<Shared<V>>,
    read: Read<V>,
) {
    loop {
        let outcome = read().await.map_err(Arc::new);
        round.send_replace(Some(outcome));
        // Taking the next round and ending the key happen under one lock:
        // a check that arrives after this sees no round in flight and
        // starts its own, one that arrived before is in `next`.
        let mut all = guard.rounds.lock().expect("rounds lock");
        match all.get_mut(&guard.key).and_then(Option::take) {
            Some(next) => round = next,
            None => {
                all.remove(&guard.key);
                drop(all);
                guard.ended = true;
                return;
            }
        }
    }
}

/// The error of a shared read, for one of the checks that shared it.
fn shared_error(error: &crate::store::StoreError) -> crate::store::StoreError {
    use crate::store::StoreError;
    match error {
        StoreError::Timeout(after) => StoreError::Timeout(*after),
        StoreError::Corrupt(what) => StoreError::Corrupt(what.clone()),
        other => StoreError::Unavailable(other.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A deadline no test reaches unless it means to.
    const LONG: Duration = Duration::from_secs(60);

    /// A read that counts itself, takes `delay`, and answers its number.
    fn counting(reads: Arc<AtomicU64>, delay: Duration) -> Read<u64> {
        Arc::new(move || {
            let reads = reads.clone();
            Box::pin(async move {
                let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                Ok(n)
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_a_read_that_started_after_them() {
        let shared = Arc::new(Coalesced::default());
        let reads = Arc::new(AtomicU64::new(0));
        let read = counting(reads.clone(), Duration::from_millis(10));
        // The first caller starts read 1.
        let first = tokio::spawn({
            let (shared, read) = (shared.clone(), read.clone());
            async move { shared.get("c", read, LONG).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Read 1 is in flight: these 50 must not take it; they share read 2.
        let later: Vec<_> = (0..50)
            .map(|_| {
                let (shared, read) = (shared.clone(), read.clone());
                tokio::spawn(async move { shared.get("c", read, LONG).await.unwrap() })
            })
            .collect();
        assert_eq!(first.await.unwrap(), 1);
        for answer in later {
            assert_eq!(answer.await.unwrap(), 2);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(shared.in_flight(), 0, "nothing is kept once idle");
        // Idle again: the next caller gets a read of its own.
        assert_eq!(shared.get("c", read, LONG).await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_do_not_share_and_errors_reach_every_waiter() {
        let shared = Arc::new(Coalesced::<u64>::default());
        let failing: Read<u64> = Arc::new(|| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Err(crate::store::StoreError::Timeout(Duration::from_millis(5)))
            })
        });
        let reads = Arc::new(AtomicU64::new(0));
        let ok = counting(reads.clone(), Duration::from_millis(5));
        let a = tokio::spawn({
            let (shared, failing) = (shared.clone(), failing.clone());
            async move { shared.get("a", failing, LONG).await }
        });
        let b = tokio::spawn({
            let (shared, ok) = (shared.clone(), ok.clone());
            async move { shared.get("b", ok, LONG).await }
        });
        assert!(matches!(
            a.await.unwrap(),
            Err(crate::store::StoreError::Timeout(_))
        ));
        assert_eq!(b.await.unwrap().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_bounded_by_the_deadline() {
        let shared = Arc::new(Coalesced::default());
        let reads = Arc::new(AtomicU64::new(0));
        let slow = counting(reads.clone(), Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let answer = shared.get("c", slow, Duration::from_millis(100)).await;
        assert!(
            matches!(answer, Err(crate::store::StoreError::Timeout(_))),
            "{answer:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn a_round_whose_task_never_runs_strands_no_one() {
        let shared = Coalesced::<u64>::default();
        let reads = Arc::new(AtomicU64::new(0));
        let read = counting(reads.clone(), Duration::from_millis(1));
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        // Register as a round's first caller on a runtime that then ends
        // before the round's task ever runs.
        let ending = runtime();
        let mut get = Box::pin(shared.get("c", read.clone(), LONG));
        ending.block_on(async {
            let _ = futures_util::poll!(&mut get);
        });
        drop(ending);
        drop(get);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "the read never ran");
        assert_eq!(
            shared.in_flight(),
            0,
            "the dropped task ended the key's rounds"
        );
        let answer = runtime().block_on(shared.get("c", read, LONG));
        assert_eq!(answer.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_strands_no_one() {
        let shared = Arc::new(Coalesced::default());
        let reads = Arc::new(AtomicU64::new(0));
        let read = counting(reads.clone(), Duration::from_millis(10));
        let impatient = tokio::time::timeout(
            Duration::from_millis(1),
            shared.get("c", read.clone(), LONG),
        )
        .await;
        assert!(impatient.is_err(), "gave up before the read answered");
        // The read it started still runs; a later caller gets the next one.
        assert_eq!(shared.get("c", read, LONG).await.unwrap(), 2);
    }
}
