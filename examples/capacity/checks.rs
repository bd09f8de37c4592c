//! Checks per Redis CPU-second: a closed loop of `is_member` against one
//! campaign, with the masters' CPU read from `INFO cpu` before and after.
//!
//! The client is a debug build sharing two cores with Redis, so its own
//! checks/s says little about a real deployment; the Redis CPU each check
//! costs does not depend on the client's build, and is what sizes shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guestlist::store::Store;
use guestlist::store::redis::RedisStore;
use serde::Serialize;

use crate::nodes::Masters;

#[derive(Debug, Serialize)]
pub struct CheckRun {
    pub design: String,
    pub ids: u64,
    pub concurrency: usize,
    pub seconds: f64,
    pub checks: u64,
    pub errors: u64,
    pub client_checks_per_s: f64,
    /// user + sys CPU seconds of every master during the loop.
    pub redis_cpu_s: f64,
    pub redis_cpu_us_per_check: f64,
    pub checks_per_redis_cpu_s: f64,
    /// The busiest master's part of that CPU: 1.0 means one shard did it all.
    pub busiest_master_cpu_share: f64,
    /// Checks per CPU-second of the busiest master: the checks/s of the
    /// whole workload when that master's one core is saturated.
    pub checks_per_busiest_master_cpu_s: f64,
}

/// Runs `concurrency` tasks checking random users in `0..2 * ids` against
/// campaign `id` (a dense audience `0..ids`, so about half are members)
/// for `duration`.
pub async fn closed_loop(
    store: &RedisStore,
    masters: &Masters<'_>,
    design: &str,
    id: &str,
    ids: u64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<CheckRun> {
    let checks = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = masters.cpu()?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let (store, id) = (store.clone(), id.to_string());
        let (checks, errors) = (checks.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // A per-task xorshift: the loop should cost the client little.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (task as u64 + 1);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match store
                    .is_member(&id, &guestlist::User::from_int(x % (2 * ids)))
                    .await
                {
                    Ok(_) => checks.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = masters.cpu()?;
    let per_master: Vec<f64> = cpu_after
        .iter()
        .map(|(port, after)| {
            let before = cpu_before
                .iter()
                .find(|(p, _)| p == port)
                .map_or(0.0, |(_, b)| *b);
            after - before
        })
        .collect();
    let redis_cpu_s: f64 = per_master.iter().sum();
    let busiest = per_master.iter().copied().fold(0.0, f64::max);
    let checks = checks.load(Ordering::Relaxed);
    Ok(CheckRun {
        design: design.to_string(),
        ids,
        concurrency,
        seconds,
        checks,
        errors: errors.load(Ordering::Relaxed),
        client_checks_per_s: checks as f64 / seconds,
        redis_cpu_s,
        redis_cpu_us_per_check: redis_cpu_s * 1e6 / checks.max(1) as f64,
        checks_per_redis_cpu_s: checks as f64 / redis_cpu_s,
        busiest_master_cpu_share: busiest / redis_cpu_s,
        checks_per_busiest_master_cpu_s: checks as f64 / busiest,
    })
}
