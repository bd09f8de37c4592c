//! Measures what `docs/CAPACITY.md` scales up: per design, Redis bytes per
//! ID (live structure and snapshot apart), snapshot and near-cache bytes
//! per ID, replication bytes per ID, the extra memory a replace over a live
//! audience holds at its peak, and Redis CPU per check.
//!
//! ```sh
//! cargo run --example capacity            # 100k and 1M IDs, ~7 minutes
//! cargo run --example capacity -- --quick # 100k IDs only
//! ```
//!
//! Starts a private 3-master Redis Cluster with one replica each on
//! loopback, prints a table and writes `docs/capacity/measured.json`
//! (`--out PATH` to write elsewhere).

mod checks;
mod nodes;

use std::time::{Duration, Instant};

use anyhow::Context;
use guestlist::nearcache::{NearCache, NearCacheOptions};
use guestlist::redis_cluster::RedisCluster;
use guestlist::store::redis::{ConnectOptions, Keys, PREFIX, RedisStore};
use guestlist::store::{Store, StoreOptions};
use rand::{Rng, SeedableRng};
use roaring::RoaringTreemap;
use serde::Serialize;

use nodes::{Masters, PeakSampler};

/// How an audience's IDs are spread.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Spread {
    /// `0..n`: sequential IDs.
    Dense,
    /// `n` distinct IDs drawn from `0..10n`.
    Sparse10,
    /// `n` distinct IDs drawn from `0..1000n`: a small audience picked
    /// from a large user base.
    Sparse1000,
    /// `n` distinct IDs drawn from `0..2^63`: hashed or external IDs.
    Random64,
}

fn audience(spread: Spread, n: u64, seed: u64) -> RoaringTreemap {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ids = RoaringTreemap::new();
    let range = match spread {
        Spread::Dense => {
            ids.insert_range(0..n);
            return ids;
        }
        Spread::Sparse10 => 10 * n,
        Spread::Sparse1000 => 1000 * n,
        // Zero stands for the whole 63-bit space.
        Spread::Random64 => 0,
    };
    // Counted as inserted: `len()` walks every container, which made
    // drawing a million sparse IDs quadratic.
    let mut have = 0;
    while have < n {
        let id = if range == 0 {
            rng.random::<u64>() >> 1
        } else {
            rng.random_range(0..range)
        };
        have += u64::from(ids.insert(id));
    }
    ids
}

#[derive(Debug, Serialize)]
struct Case {
    design: &'static str,
    spread: Spread,
    ids: u64,
    /// First replace, into an empty campaign.
    replace_s: f64,
    used_memory_delta: i64,
    snapshot_strlen: i64,
    snapshot_memory_usage: i64,
    /// `used_memory_delta - snapshot_memory_usage`: the structure checks read.
    live_bytes: i64,
    live_bytes_per_id: f64,
    snapshot_bytes_per_id: f64,
    /// What one near-cache holds for this audience (`NearCache::status`).
    cache_bytes: u64,
    cache_bytes_per_id: f64,
    /// From the cache's start until it held the version.
    cache_load_ms: u64,
    /// `master_repl_offset` summed over masters during the first replace.
    repl_bytes: i64,
    repl_bytes_per_id: f64,
    /// A second replace, same size, over the live audience.
    over_live: OverLive,
}

#[derive(Debug, Serialize)]
struct OverLive {
    replace_s: f64,
    /// Highest summed `used_memory` during the replace and the clean-up of
    /// the old generation, above the level just before it.
    peak_extra_bytes: i64,
    peak_extra_per_id: f64,
    /// Replication from the replace's start until memory settled after the
    /// old generation was removed.
    repl_bytes: i64,
    repl_bytes_per_id: f64,
}

/// A `per-user` campaign over the same users as one already live: what one
/// more membership costs a user who already has a key.
#[derive(Debug, Serialize)]
struct ExtraMembership {
    ids: u64,
    used_memory_delta: i64,
    snapshot_memory_usage: i64,
    live_bytes_per_membership: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    command: String,
    redis_version: String,
    cluster: &'static str,
    machine: String,
    cases: Vec<Case>,
    per_user_extra_membership: Vec<ExtraMembership>,
    checks: Vec<checks::CheckRun>,
    notes: Vec<&'static str>,
}

fn campaign(id: &str, design: &str) -> guestlist::domain::Campaign {
    let now = chrono::Utc::now();
    guestlist::domain::NewCampaign {
        id: id.into(),
        name: id.into(),
        starts_at: (now - chrono::Duration::hours(1)).to_rfc3339(),
        ends_at: (now + chrono::Duration::days(1)).to_rfc3339(),
        design: Some(design.into()),
        user_id_type: None,
    }
    .validate(now)
    .expect("a valid campaign")
}

struct Run<'a> {
    rt: tokio::runtime::Runtime,
    cluster: &'a RedisCluster,
    masters: Masters<'a>,
    store: RedisStore,
}

impl Run<'_> {
    fn replace(&self, id: &str, members: RoaringTreemap) -> anyhow::Result<f64> {
        let started = Instant::now();
        self.rt
            .block_on(self.store.replace_audience(id, members.into(), "capacity"))
            .with_context(|| format!("replacing the audience of {id}"))?;
        Ok(started.elapsed().as_secs_f64())
    }

    fn create(&self, id: &str, design: &str) -> anyhow::Result<()> {
        self.rt
            .block_on(self.store.create_campaign(campaign(id, design)))
            .with_context(|| format!("creating {id}"))?;
        Ok(())
    }

    /// Bytes a fresh near-cache holds for `id` at `version`, and how long it
    /// took to get there.
    fn cache_bytes(&self, id: &str, version: u64) -> anyhow::Result<(u64, u64)> {
        let options = NearCacheOptions {
            max_bytes: 8 << 30,
            ..NearCacheOptions::default()
        };
        self.rt.block_on(async {
            let started = Instant::now();
            let cache = NearCache::start(self.store.clone(), options);
            loop {
                let status = cache.status();
                if let Some(c) = status
                    .campaigns
                    .iter()
                    .find(|c| c.id == id && c.version == version)
                {
                    return Ok((c.bytes, started.elapsed().as_millis() as u64));
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "the near-cache did not load {id} v{version}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    fn case(&self, design: &'static str, spread: Spread, n: u64) -> anyhow::Result<Case> {
        self.masters.flush()?;
        let id = format!("cap-{design}-{spread:?}-{n}").to_lowercase();
        self.create(&id, design)?;
        let members = audience(spread, n, n);
        let mem0 = self.masters.settle(Duration::from_secs(10))?;
        let repl0 = self.masters.repl_offset()?;
        let replace_s = self.replace(&id, members.clone())?;
        let mem1 = self.masters.settle(Duration::from_secs(30))?;
        let repl_bytes = self.masters.repl_offset()? - repl0;
        let (snapshot_strlen, snapshot_memory_usage) = self.masters.snapshot(PREFIX, &id)?;
        let (cache_bytes, cache_load_ms) = self.cache_bytes(&id, 1)?;
        let used_memory_delta = mem1 - mem0;
        let live_bytes = used_memory_delta - snapshot_memory_usage;

        let base = self.masters.settle(Duration::from_secs(10))?;
        let repl0 = self.masters.repl_offset()?;
        let sampler = PeakSampler::start(self.cluster)?;
        let again = self.replace(&id, members)?;
        // The old generation is removed after the store's retire delay
        // (2 × max_staleness = 2 s here); wait it out, then for memory to settle.
        std::thread::sleep(Duration::from_secs(3));
        self.masters.settle(Duration::from_secs(60))?;
        let peak = sampler.finish()?;
        let repl_again = self.masters.repl_offset()? - repl0;
        let per = |v: f64| v / n as f64;
        Ok(Case {
            design,
            spread,
            ids: n,
            replace_s,
            used_memory_delta,
            snapshot_strlen,
            snapshot_memory_usage,
            live_bytes,
            live_bytes_per_id: per(live_bytes as f64),
            snapshot_bytes_per_id: per(snapshot_strlen as f64),
            cache_bytes,
            cache_bytes_per_id: per(cache_bytes as f64),
            cache_load_ms,
            repl_bytes,
            repl_bytes_per_id: per(repl_bytes as f64),
            over_live: OverLive {
                replace_s: again,
                peak_extra_bytes: peak - base,
                peak_extra_per_id: per((peak - base) as f64),
                repl_bytes: repl_again,
                repl_bytes_per_id: per(repl_again as f64),
            },
        })
    }

    /// A second `per-user` campaign over the users of a first.
    fn extra_membership(&self, n: u64) -> anyhow::Result<ExtraMembership> {
        self.masters.flush()?;
        let members = audience(Spread::Dense, n, n);
        self.create("cap-first", "per-user")?;
        self.replace("cap-first", members.clone())?;
        self.create("cap-second", "per-user")?;
        let mem0 = self.masters.settle(Duration::from_secs(30))?;
        self.replace("cap-second", members)?;
        let mem1 = self.masters.settle(Duration::from_secs(30))?;
        let (_, snapshot_memory_usage) = self.masters.snapshot(PREFIX, "cap-second")?;
        let used_memory_delta = mem1 - mem0;
        Ok(ExtraMembership {
            ids: n,
            used_memory_delta,
            snapshot_memory_usage,
            live_bytes_per_membership: (used_memory_delta - snapshot_memory_usage) as f64
                / n as f64,
        })
    }

    fn checks(&self, design: &str, n: u64, secs: u64) -> anyhow::Result<checks::CheckRun> {
        self.masters.flush()?;
        let id = format!("cap-checks-{design}");
        self.create(&id, design)?;
        self.replace(&id, audience(Spread::Dense, n, n))?;
        // Let every instance-side catalog see the campaign before timing.
        std::thread::sleep(Duration::from_millis(1_500));
        self.rt.block_on(checks::closed_loop(
            &self.store,
            &self.masters,
            design,
            &id,
            n,
            64,
            Duration::from_secs(secs),
        ))
    }
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn print_cases(cases: &[Case]) {
    println!(
        "{:<9} {:<9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
        "design",
        "spread",
        "ids",
        "live B/ID",
        "snap B/ID",
        "cache B/ID",
        "repl B/ID",
        "peak+ B/ID",
        "repl2 B/ID",
        "replace s"
    );
    for c in cases {
        println!(
            "{:<9} {:<9} {:>9} {:>8.1} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>10.1} {:>8.1}",
            c.design,
            format!("{:?}", c.spread).to_lowercase(),
            c.ids,
            c.live_bytes_per_id,
            c.snapshot_bytes_per_id,
            c.cache_bytes_per_id,
            c.repl_bytes_per_id,
            c.over_live.peak_extra_per_id,
            c.over_live.repl_bytes_per_id,
            c.replace_s
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "docs/capacity/measured.json".to_string());
    let sizes: &[u64] = if quick {
        &[100_000]
    } else {
        &[100_000, 1_000_000]
    };
    let check_secs = if quick { 2 } else { 5 };

    let cluster = RedisCluster::start(3, 1).context("starting a 3-master, 1-replica cluster")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = StoreOptions {
        check_timeout: Duration::from_secs(1),
        admin_timeout: Duration::from_secs(30),
        // Keeps the retire delay (twice this) short, so a replace over a
        // live audience finishes its clean-up within the measurement.
        max_staleness: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = rt.block_on(RedisStore::open(
        &cluster.cluster_url(),
        &ConnectOptions::default(),
        options,
        Keys::default(),
    ))?;
    let run = Run {
        rt,
        cluster: &cluster,
        masters: Masters::new(&cluster),
        store,
    };
    // Loads the scripts and warms every connection, so the first case's
    // baseline already includes them.
    run.case("set", Spread::Dense, 1_000)?;

    let mut cases = Vec::new();
    for &n in sizes {
        for (design, spreads) in [
            // Snapshot and near-cache bytes do not depend on the design, so
            // the sparsest 32-bit spread is measured once, with `set`.
            (
                "set",
                &[
                    Spread::Dense,
                    Spread::Sparse10,
                    Spread::Sparse1000,
                    Spread::Random64,
                ][..],
            ),
            (
                "per-user",
                &[Spread::Dense, Spread::Sparse10, Spread::Random64],
            ),
            // IDs past 2^32 are refused by the bitmap design.
            ("bitmap", &[Spread::Dense, Spread::Sparse10]),
        ] {
            for &spread in spreads {
                let case = run.case(design, spread, n)?;
                eprintln!("{design} {spread:?} {n}: {case:?}");
                cases.push(case);
            }
        }
    }
    let extra = sizes
        .iter()
        .map(|&n| run.extra_membership(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let check_ids = *sizes.last().expect("a size");
    let mut check_runs = Vec::new();
    for design in ["set", "per-user", "bitmap"] {
        let r = run.checks(design, check_ids, check_secs)?;
        eprintln!("checks {design}: {r:?}");
        check_runs.push(r);
    }

    print_cases(&cases);
    for e in &extra {
        println!(
            "per-user, one more membership for {} users who have a key: {:.1} B each",
            e.ids, e.live_bytes_per_membership
        );
    }
    println!(
        "{:<9} {:>9} {:>10} {:>10} {:>12} {:>10}",
        "checks", "ids", "client/s", "Redis µs", "per Redis s", "busiest"
    );
    for r in &check_runs {
        println!(
            "{:<9} {:>9} {:>10.0} {:>10.2} {:>12.0} {:>9.0}%",
            r.design,
            r.ids,
            r.client_checks_per_s,
            r.redis_cpu_us_per_check,
            r.checks_per_redis_cpu_s,
            100.0 * r.busiest_master_cpu_share
        );
    }

    let report = Report {
        command: format!(
            "cargo run --locked --example capacity{}",
            if quick { " -- --quick" } else { "" }
        ),
        redis_version: redis_version(),
        cluster: "3 masters, 1 replica each, loopback, no persistence",
        machine: format!(
            "{} CPUs shared by client, 6 Redis nodes and other work; debug-profile client",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        cases,
        per_user_extra_membership: extra,
        checks: check_runs,
        notes: vec![
            "used_memory is summed over the 3 masters; replicas hold the same again",
            "live_bytes = used_memory delta of the first replace minus MEMORY USAGE of the snapshot key",
            "repl_bytes is the master_repl_offset delta summed over masters: bytes each replica receives",
            "over_live: a second replace of the same size over the live audience; peak includes the retired generation and both snapshots",
            "checks: 64 concurrent is_member calls, users uniform in 0..2n over a dense 0..n audience; CPU is used_cpu_user+used_cpu_sys of the masters",
        ],
    };
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {out}");
    Ok(())
}
