//! `guestlist bench`: replays the login storm against each design on a real
//! Redis and regenerates the story's comparison table from measurements.
//!
//! - `json` is the story's original: GET one key, deserialize the whole array,
//!   scan it. It exists only here, never as a store design.
//! - `set`, `per-user` and `bitmap` go through [`RedisStore`], the same code the
//!   service runs, so the figures are the service's own.
//! - `near-cache` reads a `set` campaign through the service's near-cache and
//!   [`Checker`]: answers from process memory, Redis only on a change.
//!
//! Each design and audience size is loaded once; every concurrency level then
//! runs for the same duration with closed-loop virtual users. Everything the
//! bench writes lives under a private key prefix and is removed at the end, so
//! it can run against a shared server.

mod baseline;
mod cluster;
pub mod report;
pub mod results;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::IntoConnectionInfo;
use roaring::RoaringTreemap;

use crate::config::BenchArgs;
use crate::domain::{Campaign, Design};
use crate::lookup::{CheckError as LookupError, Checker, Source};
use crate::nearcache::{NearCache, NearCacheOptions};
use crate::store::redis::{ConnectOptions, Keys, RedisStore};
use crate::store::{Store, StoreError, StoreOptions};
use cluster::{BenchConn, CommandCounts};
use results::{Machine, Results, Run};

pub use baseline::{MEMBER_ROUTE, start_bare_route};

/// A design as the bench knows it: the store designs plus the story's JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDesign {
    Json,
    Store(Design),
    /// The `set` design read through an in-process near-cache, as `serve`
    /// and the library client do.
    NearCache,
}

impl BenchDesign {
    pub fn parse(s: &str) -> anyhow::Result<BenchDesign> {
        match s {
            "json" => Ok(BenchDesign::Json),
            "near-cache" => Ok(BenchDesign::NearCache),
            other => Design::parse(other)
                .map(BenchDesign::Store)
                .with_context(|| {
                    format!(
                    "unknown design {other:?}; choose from json, set, per-user, bitmap, near-cache"
                )
                }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BenchDesign::Json => "json",
            BenchDesign::Store(d) => d.as_str(),
            BenchDesign::NearCache => "near-cache",
        }
    }
}

/// The matrix to run, after `--quick` and defaults are applied.
#[derive(Debug, Clone)]
pub struct Plan {
    pub designs: Vec<BenchDesign>,
    pub audiences: Vec<u64>,
    pub concurrency: Vec<usize>,
    pub duration: Duration,
    pub seed: u64,
    pub hit_ratio: f64,
    pub id_space_factor: u64,
    pub deadline: Duration,
}

impl Plan {
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        let designs = args
            .designs
            .iter()
            .map(|d| BenchDesign::parse(d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The quick matrix still covers the incident: 30,000 IDs at 64 concurrent logins.
        let (audiences, concurrency, duration) = if args.quick {
            (vec![100, 30_000], vec![1, 64], Duration::from_secs(2))
        } else {
            (
                args.audience.clone(),
                args.concurrency.clone(),
                args.duration,
            )
        };
        anyhow::ensure!(!designs.is_empty(), "--designs is empty");
        anyhow::ensure!(
            audiences.iter().all(|a| *a > 0),
            "--audience sizes must be positive"
        );
        anyhow::ensure!(
            concurrency.iter().all(|c| (1..=4096).contains(c)),
            "--concurrency levels must be between 1 and 4096"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&args.hit_ratio),
            "--hit-ratio must be between 0 and 1"
        );
        anyhow::ensure!(
            args.id_space_factor >= 1,
            "--id-space-factor must be at least 1"
        );
        if designs.contains(&BenchDesign::Store(Design::Bitmap)) {
            let largest = audiences.iter().max().copied().unwrap_or(0);
            anyhow::ensure!(
                largest.saturating_mul(args.id_space_factor) <= u32::MAX as u64 + 1,
                "the bitmap design holds ids below 2^32; lower --audience or --id-space-factor"
            );
        }
        Ok(Plan {
            designs,
            audiences,
            concurrency,
            duration,
            seed: args.seed,
            hit_ratio: args.hit_ratio,
            id_space_factor: args.id_space_factor,
            deadline: args.check_timeout,
        })
    }

    fn runs(&self) -> usize {
        self.designs.len() * self.audiences.len() * self.concurrency.len()
    }
}

/// Runs the bench described by `args`, prints the tables, writes `--out`.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let under = cluster::under_test(&args).await?;
    let connect = args.redis_tls.connect_options()?;
    let url = under.url.clone();
    let results =
        cluster::on_own_runtime(
            async move { run_with(&url, &connect, &plan, command_line()).await },
        )
        .await?;
    println!("{}", report::comparison_table(&results));
    println!("{}", report::runs_table(&results));
    if let Some(dir) = &args.out {
        report::write_all(&results, dir)
            .with_context(|| format!("writing results to {}", dir.display()))?;
        eprintln!("wrote {}", dir.display());
    }
    Ok(())
}

/// The bench is a load generator: it only ever points at loopback. A
/// cluster URL is checked by [`cluster::check_loopback`].
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let info = url
        .into_connection_info()
        .context("invalid Redis URL (not shown: it may hold a password)")?;
    let host = match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
            host.clone()
        }
        redis::ConnectionAddr::Unix(_) => return Ok(()),
        other => bail!("unsupported Redis address {other:?}"),
    };
    cluster::ensure_loopback(&host)
}

/// The command as run, for the report; a Redis URL's password is masked
/// since the report is meant to be committed and shared.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| crate::store::redact_url(&a))
        .collect();
    format!("guestlist {}", args.join(" "))
}

/// Runs the whole matrix against the Redis at `url`, one server or a
/// `redis+cluster://` URL.
pub async fn run(url: &str, plan: &Plan, command: String) -> anyhow::Result<Results> {
    run_with(url, &ConnectOptions::default(), plan, command).await
}

/// [`run`] with a password or TLS files for reaching Redis.
pub async fn run_with(
    url: &str,
    connect_options: &ConnectOptions,
    plan: &Plan,
    command: String,
) -> anyhow::Result<Results> {
    let prefix = format!("guestlist-bench-{:08x}", rand::random::<u32>());
    let keys = Keys::new(prefix.clone());
    let options = StoreOptions {
        check_timeout: plan.deadline,
        admin_timeout: Duration::from_secs(30),
        ..StoreOptions::default()
    };
    let store = RedisStore::open(url, connect_options, options, keys).await?;
    let admin = connect(url, connect_options, Duration::from_secs(30)).await?;
    let cluster_masters = admin.is_cluster().then(|| admin.masters());
    let redis_version = info_field(&admin, "server", "redis_version")
        .await?
        .unwrap_or_default();

    let progress = ProgressBar::new(plan.runs() as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    let mut runs = Vec::with_capacity(plan.runs());
    let outcome = async {
        // `json` goes last: its big replies leave the allocator holding
        // hundreds of megabytes, which would show up as every later design's
        // peak RSS. Results keep the order the designs were asked in.
        let mut order = plan.designs.clone();
        order.sort_by_key(|d| *d == BenchDesign::Json);
        for &design in &order {
            for &size in &plan.audiences {
                let audience = Arc::new(Audience::generate(plan, size));
                progress.set_message(format!("{} × {size}: loading", design.name()));
                let loaded = load(&store, &admin, &prefix, design, &audience).await?;
                for &workers in &plan.concurrency {
                    progress
                        .set_message(format!("{} × {size} × {workers} concurrent", design.name()));
                    // A fresh connection per run: when a run ends with replies
                    // still queued (json at high concurrency queues gigabytes),
                    // closing it makes Redis drop them instead of streaming
                    // them into the next run's measurements.
                    let checker = connect(url, connect_options, plan.deadline).await?;
                    let target = Arc::new(Target {
                        design,
                        lookup: Checker::new(Arc::new(store.clone()), loaded.cache.clone()),
                        store: store.clone(),
                        json_conn: checker,
                        json_key: loaded.json_key.clone(),
                        campaign: loaded.campaign.clone(),
                    });
                    let mut measured =
                        measure(plan, &admin, target.clone(), audience.clone(), workers).await?;
                    drop(target);
                    settle().await;
                    measured.redis_bytes_per_id = loaded.bytes_per_id;
                    runs.push(measured);
                    progress.inc(1);
                }
                unload(&store, &admin, &loaded).await?;
                // The next memory reading must not see this one's clean-up.
                quiesce(&admin, &prefix).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish_and_clear();
    let position = |name: &str| plan.designs.iter().position(|d| d.name() == name);
    runs.sort_by_key(|r| position(&r.design));
    // Leave nothing behind, whether the runs succeeded or not.
    let cleaned = remove_prefix(&admin, &prefix).await;
    outcome?;
    cleaned?;

    Ok(Results {
        machine: machine(),
        redis_version,
        cluster_masters,
        date: crate::domain::fmt_time(Utc::now()),
        command,
        seed: plan.seed,
        duration_secs: plan.duration.as_secs_f64(),
        runs,
    })
}

async fn connect(
    url: &str,
    options: &ConnectOptions,
    deadline: Duration,
) -> anyhow::Result<BenchConn> {
    BenchConn::open(url, options, deadline).await
}

/// The audience of one size: members, and a way to draw users at a hit ratio.
struct Audience {
    members: RoaringTreemap,
    /// The same IDs in a vector, to draw a random member in O(1).
    list: Vec<u64>,
    space: u64,
    seed: u64,
}

impl Audience {
    /// `size` distinct IDs drawn uniformly from `[0, size × factor)`, the same
    /// for a given seed whatever else the matrix holds.
    fn generate(plan: &Plan, size: u64) -> Audience {
        let space = size.saturating_mul(plan.id_space_factor).max(size);
        let seed = plan.seed ^ size.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members = RoaringTreemap::new();
        while members.len() < size {
            members.insert(rng.random_range(0..space));
        }
        let list = members.iter().collect();
        Audience {
            members,
            list,
            space,
            seed,
        }
    }

    fn draw(&self, rng: &mut StdRng, hit_ratio: f64) -> u64 {
        if rng.random_bool(hit_ratio) {
            self.list[rng.random_range(0..self.list.len())]
        } else {
            rng.random_range(0..self.space)
        }
    }
}

struct Loaded {
    json_key: Option<String>,
    campaign: Option<String>,
    /// For `near-cache`: the cache over the loaded campaign. Dropping it
    /// stops its sync task.
    cache: Option<NearCache>,
    bytes_per_id: f64,
}

/// Loads one audience in the shape of `design` and measures what it costs Redis.
async fn load(
    store: &RedisStore,
    admin: &BenchConn,
    prefix: &str,
    design: BenchDesign,
    audience: &Audience,
) -> anyhow::Result<Loaded> {
    settle().await;
    let before = used_memory(admin).await?;
    let loaded = match design {
        BenchDesign::Json => {
            // The story's key: the whole list as one JSON array, written in one SET.
            let key = format!("{prefix}:json:{}", audience.list.len());
            let value = serde_json::to_string(&audience.list)?;
            admin
                .query::<()>(redis::cmd("SET").arg(&key).arg(value))
                .await?;
            Loaded {
                json_key: Some(key),
                campaign: None,
                cache: None,
                bytes_per_id: 0.0,
            }
        }
        BenchDesign::Store(_) | BenchDesign::NearCache => {
            // The near-cache follows a `set` campaign, as `serve` does by default.
            let d = match design {
                BenchDesign::Store(d) => d,
                _ => Design::Set,
            };
            let id = format!("bench-{}-{}", d.as_str(), audience.list.len());
            let now = Utc::now();
            let campaign = Campaign {
                id: id.clone(),
                name: format!("bench {} {}", d.as_str(), audience.list.len()),
                starts_at: now - chrono::Duration::hours(1),
                ends_at: now + chrono::Duration::hours(6),
                design: d,
                audience_size: 0,
                version: 0,
                created_at: now,
                updated_at: now,
            };
            store.create_campaign(campaign).await?;
            store
                .replace_audience(&id, audience.members.clone())
                .await
                .with_context(|| format!("loading {} IDs into {id}", audience.list.len()))?;
            let cache = if design == BenchDesign::NearCache {
                let cache = NearCache::start(store.clone(), NearCacheOptions::default());
                let deadline = Instant::now() + Duration::from_secs(60);
                while cache.is_member(&id, 0).is_none() {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "the near-cache never loaded {id}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(cache)
            } else {
                None
            };
            Loaded {
                json_key: None,
                campaign: Some(id),
                cache,
                bytes_per_id: 0.0,
            }
        }
    };
    settle().await;
    let after = used_memory(admin).await?;
    Ok(Loaded {
        bytes_per_id: after.saturating_sub(before) as f64 / audience.list.len() as f64,
        ..loaded
    })
}

/// Lets Redis settle before a memory reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits until an unloaded design has fully gone, so the next design's memory
/// delta is not understated by this one's clean-up: the store retires
/// per-user entries a few seconds after a delete, and keeps the last snapshot
/// readable for a minute, which the bench does not need to wait for.
async fn quiesce(admin: &BenchConn, prefix: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let users = admin.scan(&format!("{prefix}:user:*")).await?;
        if users.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                users = users.len(),
                "per-user entries linger; memory figures may be off"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fixed = [
        format!("{prefix}:campaigns"),
        format!("{prefix}:catalog-version"),
    ];
    let leftovers: Vec<String> = admin
        .scan(&format!("{prefix}:*"))
        .await?
        .into_iter()
        .filter(|k| !fixed.contains(k))
        .collect();
    unlink_all(admin, &leftovers).await?;
    while Instant::now() < deadline {
        let pending = info_sum(admin, "memory", "lazyfree_pending_objects").await?;
        if pending == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn unlink_all(admin: &BenchConn, keys: &[String]) -> anyhow::Result<()> {
    // On a cluster the client splits a many-key UNLINK by slot.
    for batch in keys.chunks(1000) {
        admin.query::<()>(redis::cmd("UNLINK").arg(batch)).await?;
    }
    Ok(())
}

async fn unload(store: &RedisStore, admin: &BenchConn, loaded: &Loaded) -> anyhow::Result<()> {
    if let Some(key) = &loaded.json_key {
        admin.query::<()>(redis::cmd("UNLINK").arg(key)).await?;
    }
    if let Some(id) = &loaded.campaign {
        store.delete_campaign(id).await?;
    }
    Ok(())
}

/// What a virtual user checks against.
struct Target {
    design: BenchDesign,
    lookup: Checker,
    store: RedisStore,
    json_conn: BenchConn,
    json_key: Option<String>,
    campaign: Option<String>,
}

#[derive(Debug)]
enum CheckError {
    Timeout,
    Failed,
    WrongAnswer,
}

impl Target {
    async fn check(&self, user: u64) -> Result<bool, CheckError> {
        match self.design {
            BenchDesign::Json => {
                // Exactly what the original login path did: fetch everything,
                // parse everything, scan until found.
                let key = self.json_key.as_deref().expect("json key loaded");
                let bytes: Vec<u8> = self
                    .json_conn
                    .query(redis::cmd("GET").arg(key))
                    .await
                    .map_err(|e| {
                        if e.is_timeout() {
                            CheckError::Timeout
                        } else {
                            CheckError::Failed
                        }
                    })?;
                let ids: Vec<u64> =
                    serde_json::from_slice(&bytes).map_err(|_| CheckError::Failed)?;
                Ok(ids.contains(&user))
            }
            BenchDesign::Store(_) => {
                let id = self.campaign.as_deref().expect("campaign loaded");
                match self.store.is_member(id, user).await {
                    Ok((_, member)) => Ok(member),
                    Err(StoreError::Timeout(_)) => Err(CheckError::Timeout),
                    Err(_) => Err(CheckError::Failed),
                }
            }
            BenchDesign::NearCache => {
                let id = self.campaign.as_deref().expect("campaign loaded");
                match self.lookup.is_member(id, user).await {
                    // A check the cache could not answer is not a cache check.
                    Ok(m) if m.source == Source::Cache => Ok(m.member),
                    Ok(_) => Err(CheckError::Failed),
                    Err(LookupError::Store(StoreError::Timeout(_))) => Err(CheckError::Timeout),
                    Err(_) => Err(CheckError::Failed),
                }
            }
        }
    }
}

/// Runs `workers` closed-loop virtual users for the plan's duration.
async fn measure(
    plan: &Plan,
    admin: &BenchConn,
    target: Arc<Target>,
    audience: Arc<Audience>,
    workers: usize,
) -> anyhow::Result<Run> {
    let before = RedisCounters::read(admin).await?;
    let commands_before = match admin.is_cluster() {
        true => Some(CommandCounts::read(admin).await?),
        false => None,
    };
    let client_before = client_cpu_us();
    reset_peak_rss();

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let outer_deadline = plan.deadline;
    // One task per virtual user, so they spread over every runtime thread
    // as a real service's requests would.
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, errors, timeouts) = (stop.clone(), errors.clone(), timeouts.clone());
            let (target, audience) = (target.clone(), audience.clone());
            let hit_ratio = plan.hit_ratio;
            let mut rng =
                StdRng::seed_from_u64(audience.seed ^ ((workers as u64) << 32) ^ w as u64);
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
                    .expect("valid histogram bounds");
                while !stop.load(Ordering::Relaxed) {
                    // An in-process answer never waits on I/O; without this
                    // a worker would never give the runtime back.
                    tokio::task::consume_budget().await;
                    let user = audience.draw(&mut rng, hit_ratio);
                    let t0 = Instant::now();
                    let answer =
                        match tokio::time::timeout(outer_deadline, target.check(user)).await {
                            Ok(r) => r,
                            Err(_) => Err(CheckError::Timeout),
                        };
                    let answer = answer.and_then(|member| {
                        if member == audience.members.contains(user) {
                            Ok(member)
                        } else {
                            Err(CheckError::WrongAnswer)
                        }
                    });
                    let us = t0.elapsed().as_micros().max(1) as u64;
                    hist.saturating_record(us);
                    match answer {
                        Ok(_) => {}
                        Err(CheckError::Timeout) => {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(CheckError::Failed | CheckError::WrongAnswer) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist
            })
        })
        .collect();
    tokio::time::sleep(plan.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut histograms = Vec::with_capacity(tasks.len());
    for task in tasks {
        histograms.push(task.await.context("a virtual user panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let client_cpu = client_cpu_us().saturating_sub(client_before);
    let peak_rss = peak_rss_bytes();
    let commands_after = match commands_before {
        Some(_) => Some(CommandCounts::read(admin).await?),
        None => None,
    };
    let after = RedisCounters::read(admin).await?;

    let mut merged = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    for h in &histograms {
        merged.add(h).context("merging latency histograms")?;
    }
    let checks = merged.len();
    let per_check = |v: f64| if checks == 0 { 0.0 } else { v / checks as f64 };
    let mut run = Run {
        design: target.design.name().to_string(),
        audience: audience.list.len() as u64,
        concurrency: workers,
        checks,
        errors: errors.load(Ordering::Relaxed),
        timeouts: timeouts.load(Ordering::Relaxed),
        checks_per_sec: checks as f64 / elapsed,
        p50_us: merged.value_at_quantile(0.50) as f64,
        p90_us: merged.value_at_quantile(0.90) as f64,
        p99_us: merged.value_at_quantile(0.99) as f64,
        p999_us: merged.value_at_quantile(0.999) as f64,
        max_us: merged.max() as f64,
        redis_bytes_per_check: per_check(
            after
                .net_output_bytes
                .saturating_sub(before.net_output_bytes) as f64,
        ),
        redis_cpu_us_per_check: per_check((after.cpu_us - before.cpu_us).max(0.0)),
        redis_bytes_per_id: 0.0,
        client_cpu_us_per_check: per_check(client_cpu as f64),
        client_peak_rss_bytes: peak_rss,
        busiest_node_share: None,
        busiest_node_check_share: None,
        node_commands: None,
        node_check_commands: None,
    };
    if let (Some(before), Some(after)) = (&commands_before, &commands_after) {
        cluster::record(&mut run, before, after);
    }
    Ok(run)
}

/// Server-side counters read around a run.
struct RedisCounters {
    net_output_bytes: u64,
    cpu_us: f64,
}

impl RedisCounters {
    /// Summed over every master on a cluster.
    async fn read(admin: &BenchConn) -> anyhow::Result<RedisCounters> {
        let stats = info(admin, "stats").await?;
        let cpu = info(admin, "cpu").await?;
        let sum = |texts: &[String], name: &str| -> f64 {
            texts
                .iter()
                .filter_map(|text| parse_info(text, name)?.parse::<f64>().ok())
                .sum()
        };
        Ok(RedisCounters {
            net_output_bytes: sum(&stats, "total_net_output_bytes") as u64,
            cpu_us: (sum(&cpu, "used_cpu_user") + sum(&cpu, "used_cpu_sys")) * 1e6,
        })
    }
}

/// `INFO section` of the server, or of every master on a cluster.
async fn info(admin: &BenchConn, section: &str) -> anyhow::Result<Vec<String>> {
    let replies = admin.on_each(redis::cmd("INFO").arg(section)).await?;
    Ok(replies.into_iter().map(|(_, text)| text).collect())
}

/// A field as the first node reports it.
async fn info_field(
    admin: &BenchConn,
    section: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let texts = info(admin, section).await?;
    Ok(texts
        .first()
        .and_then(|t| parse_info(t, name))
        .map(str::to_string))
}

/// A numeric field summed over every node that reports it.
async fn info_sum(admin: &BenchConn, section: &str, name: &str) -> anyhow::Result<f64> {
    let texts = info(admin, section).await?;
    Ok(texts
        .iter()
        .filter_map(|t| parse_info(t, name)?.parse::<f64>().ok())
        .sum())
}

async fn used_memory(admin: &BenchConn) -> anyhow::Result<u64> {
    let texts = info(admin, "memory").await?;
    let mut total = 0;
    for text in &texts {
        total += parse_info(text, "used_memory")
            .and_then(|v| v.parse::<u64>().ok())
            .context("INFO memory has no used_memory")?;
    }
    Ok(total)
}

fn parse_info<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Removes every key under the bench's prefix.
async fn remove_prefix(admin: &BenchConn, prefix: &str) -> anyhow::Result<()> {
    let keys = admin.scan(&format!("{prefix}:*")).await?;
    unlink_all(admin, &keys).await
}

/// User + system CPU time of this process, in µs (Linux; 0 elsewhere).
fn client_cpu_us() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on every mainstream Linux ABI.
    (ticks(11) + ticks(12)) * 10_000
}

/// Resets the kernel's peak-RSS mark so each run reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        os,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        Plan {
            designs: vec![BenchDesign::Json],
            audiences: vec![1000],
            concurrency: vec![1],
            duration: Duration::from_secs(1),
            seed,
            hit_ratio: 0.1,
            id_space_factor: 10,
            deadline: Duration::from_secs(1),
        }
    }

    #[test]
    fn audiences_are_the_same_for_a_seed_and_differ_across_seeds() {
        let a = Audience::generate(&plan(7), 1000);
        let b = Audience::generate(&plan(7), 1000);
        let c = Audience::generate(&plan(8), 1000);
        assert_eq!(a.members, b.members);
        assert_ne!(a.members, c.members);
        assert_eq!(a.members.len(), 1000);
        assert!(a.members.max().unwrap() < 10_000);
    }

    #[test]
    fn draws_hit_members_at_about_the_hit_ratio() {
        let a = Audience::generate(&plan(1), 1000);
        let mut rng = StdRng::seed_from_u64(3);
        let hits = (0..10_000)
            .filter(|_| a.members.contains(a.draw(&mut rng, 0.1)))
            .count();
        // 10% forced hits plus ~9% of the random draws landing on a member.
        assert!((1_500..2_400).contains(&hits), "{hits}");
    }

    #[test]
    fn only_loopback_servers_are_targets() {
        assert!(check_loopback("redis://127.0.0.1:6379").is_ok());
        assert!(check_loopback("redis://localhost:6379/2").is_ok());
        assert!(check_loopback("redis://10.0.0.5:6379").is_err());
    }

    #[test]
    fn info_fields_are_found_by_name() {
        let text = "# Stats\r\ntotal_net_output_bytes:1234\r\nused_cpu_sys:1.5\r\n";
        assert_eq!(parse_info(text, "total_net_output_bytes"), Some("1234"));
        assert_eq!(parse_info(text, "missing"), None);
    }
}
