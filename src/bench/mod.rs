//! `guestlist bench`: replays the login storm against each design on a real
//! Redis and regenerates the story's comparison table from measurements.
//!
//! # Map
//!
//! ```text
//!   plan          what to run: designs × audiences × paths × how checks arrive
//!   housekeeping  load an audience in a design's shape, read Redis counters,
//!                 clean up under the bench's private key prefix
//!   target        one check: json key, store design, near-cache, or HTTP
//!   serve         the `guestlist serve` the HTTP runs go through
//!   load          the generators: closed loop and open loop (fixed arrival rate)
//!   probes        the bench's own CPU and memory, the machine
//!   results       results.json;  report (tables) and charts read only it
//!   cluster       connections and per-master counters on Redis Cluster
//! ```
//!
//! - `json` is the story's original: GET one key, deserialize the whole array,
//!   scan it. It exists only here, never as a store design.
//! - `set`, `per-user` and `bitmap` go through [`RedisStore`], the same code the
//!   service runs, so the figures are the service's own.
//! - `near-cache` reads a `set` campaign through the service's near-cache and
//!   [`Checker`]: answers from process memory, Redis only on a change.
//!
//! `--scenario upload-at-peak` ([`upload`]) instead drives a real `serve`
//! ([`serve`]) over HTTP at a fixed rate while an audience is replaced.
//!
//! Each design and audience size is loaded once; every run then measures it
//! for the same duration after the same warm-up. Everything the bench
//! writes lives under a private key prefix and is removed at the end, so it
//! can run against a shared server.

mod baseline;
pub mod baselines;
mod charts;
mod cluster;
mod housekeeping;
mod load;
mod plan;
mod probes;
pub mod report;
pub mod results;
pub mod serve;
mod target;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use redis::IntoConnectionInfo;

use crate::config::BenchArgs;
use crate::lookup::Checker;
use crate::store::StoreOptions;
use crate::store::redis::{ConnectOptions, Keys, RedisStore};
pub use baseline::{MEMBER_ROUTE, start_bare_route};
use cluster::{BenchConn, CommandCounts};
use housekeeping::{Loaded, RedisCounters};
use load::{Tally, Window};
use plan::Audience;
pub use plan::{BenchDesign, MAX_SWEEP_STEPS, Mode, Plan, Via};
use results::{Results, Run};
use target::{Path, Target};

/// Runs the bench described by `args`, prints the tables, writes `--out`.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == crate::config::Scenario::UploadAtPeak {
        return upload::main(&args).await;
    }
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
    println!("{}", report::open_loop_table(&results));
    println!("{}", report::paths_table(&results));
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
    let admin = connect(
        url,
        connect_options,
        Duration::from_secs(30),
        plan.allow_remote,
    )
    .await?;
    let cluster_masters = admin.is_cluster().then(|| admin.masters());
    let redis_version = housekeeping::info_field(&admin, "server", "redis_version")
        .await?
        .unwrap_or_default();

    let progress = ProgressBar::new(plan.runs() as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    let mut runs = Vec::with_capacity(plan.runs());
    let env = Env {
        url,
        connect_options,
        plan,
        store: &store,
        admin: &admin,
        prefix: &prefix,
        progress: &progress,
    };
    let outcome = async {
        // The first load of each design pays one-off costs (scripts, the
        // allocator's first arenas) that are not per ID: paid here, before
        // any memory reading.
        housekeeping::warm_up(&store, &admin, &prefix, &plan.designs, plan.id_type).await?;
        // `json` goes last: its big replies leave the allocator holding
        // hundreds of megabytes, which would show up as every later design's
        // peak RSS. Results keep the order the designs were asked in.
        let mut order = plan.designs.clone();
        order.sort_by_key(|d| *d == BenchDesign::Json);
        for &design in &order {
            for &size in &plan.audiences {
                let audience = Arc::new(Audience::generate(plan, size));
                progress.set_message(format!("{} × {size}: loading", design.name()));
                let loaded =
                    housekeeping::load(&store, &admin, &prefix, design, &audience, plan.id_type)
                        .await?;
                for &via in plan.via.iter().filter(|v| v.applies_to(design)) {
                    env.measure_path(design, via, &loaded, &audience, &mut runs)
                        .await?;
                }
                housekeeping::unload(&store, &admin, &loaded).await?;
                // The next memory reading must not see this one's clean-up.
                housekeeping::quiesce(&admin, &prefix).await?;
            }
        }
        if plan.redis_baselines {
            progress.set_message("against redis-benchmark and redis-cli --pipe");
            // The store's own comparison concurrency: where the closed-loop
            // matrix measures capacity on the default plan.
            let concurrency = 64;
            return Ok(Some(
                baselines::run(url, &store, &admin, &prefix, concurrency, plan.duration).await?,
            ));
        }
        anyhow::Ok(None)
    }
    .await;
    progress.finish_and_clear();
    let position = |name: &str| plan.designs.iter().position(|d| d.name() == name);
    runs.sort_by_key(|r| position(&r.design));
    // Leave nothing behind, whether the runs succeeded or not.
    let cleaned = housekeeping::remove_prefix(&admin, &prefix).await;
    let baselines = outcome?;
    cleaned?;

    Ok(Results {
        machine: probes::machine(),
        redis_version,
        cluster_masters,
        date: crate::domain::fmt_time(Utc::now()),
        command,
        seed: plan.seed,
        id_type: plan.id_type.as_str().to_string(),
        duration_secs: plan.duration.as_secs_f64(),
        runs,
        baselines,
    })
}

/// What every run of one bench invocation shares.
struct Env<'a> {
    url: &'a str,
    connect_options: &'a ConnectOptions,
    plan: &'a Plan,
    store: &'a RedisStore,
    admin: &'a BenchConn,
    prefix: &'a str,
    progress: &'a ProgressBar,
}

impl Env<'_> {
    /// Every run of one loaded design × audience through one path: the
    /// closed-loop concurrency levels, then the open-loop rates.
    async fn measure_path(
        &self,
        design: BenchDesign,
        via: Via,
        loaded: &Loaded,
        audience: &Arc<Audience>,
        runs: &mut Vec<Run>,
    ) -> anyhow::Result<()> {
        let plan = self.plan;
        // The server for HTTP runs lives as long as this path's runs.
        let served = match via {
            Via::Http => Some(serve::Serve::start(&self.serve_options(design)).await?),
            Via::Direct => None,
        };
        let label = |what: String| {
            format!(
                "{} via {} × {}: {what}",
                design.name(),
                via.label(design),
                audience.list.len()
            )
        };
        if plan.modes.contains(&Mode::Closed) {
            for &workers in &plan.concurrency {
                self.progress
                    .set_message(label(format!("{workers} concurrent")));
                let target = self
                    .target(design, via, loaded, served.as_ref(), workers)
                    .await?;
                let run = self
                    .measure(target, audience, loaded, Load::Closed(workers))
                    .await?;
                runs.push(run);
                self.progress.inc(1);
            }
        }
        if plan.modes.contains(&Mode::Open) {
            let mut rates = plan.arrival_rates.clone();
            if plan.sweep {
                rates.truncate(1);
            }
            let mut step = 0;
            while let Some(&rate) = rates.get(step) {
                self.progress
                    .set_message(label(format!("{rate:.0} checks/s offered")));
                let target = self
                    .target(design, via, loaded, served.as_ref(), plan.max_in_flight)
                    .await?;
                let run = self
                    .measure(target, audience, loaded, Load::Open(rate))
                    .await?;
                let saturated = past_capacity(&run, plan);
                runs.push(run);
                self.progress.inc(1);
                step += 1;
                if plan.sweep && !saturated && step < MAX_SWEEP_STEPS {
                    rates.push(rate * 2.0);
                }
            }
        }
        Ok(())
    }

    /// The server the HTTP runs of `design` go through: this bench's Redis
    /// and key prefix, the near-cache only for `near-cache`, and the
    /// bench's deadline as the server's own, so it does not give up first.
    fn serve_options(&self, design: BenchDesign) -> serve::ServeOptions {
        let mut options = serve::ServeOptions::new(self.url);
        options.near_cache = design == BenchDesign::NearCache;
        options.extra_args = vec![
            "--redis-key-prefix".into(),
            self.prefix.into(),
            "--check-timeout".into(),
            format!("{}ms", self.plan.deadline.as_millis().max(1)),
        ];
        for (flag, path) in [
            ("--redis-ca-file", &self.connect_options.ca_file),
            ("--redis-client-cert", &self.connect_options.client_cert),
            ("--redis-client-key", &self.connect_options.client_key),
        ] {
            if let Some(path) = path {
                options.extra_args.push(flag.into());
                options.extra_args.push(path.display().to_string());
            }
        }
        options
    }

    /// A fresh target per run: when a run ends with replies still queued
    /// (json at high concurrency queues gigabytes), dropping its
    /// connection makes Redis drop them instead of streaming them into the
    /// next run's measurements.
    async fn target(
        &self,
        design: BenchDesign,
        via: Via,
        loaded: &Loaded,
        served: Option<&serve::Serve>,
        connections: usize,
    ) -> anyhow::Result<Arc<Target>> {
        let campaign = || {
            loaded
                .campaign
                .clone()
                .expect("a store design has a campaign")
        };
        let path = match (via, design) {
            (Via::Http, _) => {
                let served = served.expect("HTTP runs have a server");
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(connections)
                    .timeout(self.plan.deadline)
                    .build()
                    .context("building the HTTP client")?;
                Path::Http {
                    client,
                    prefix: format!("{}/v1/campaigns/{}/members/", served.base_url(), campaign()),
                    from_cache: design == BenchDesign::NearCache,
                }
            }
            (Via::Direct, BenchDesign::Json) => Path::Json {
                conn: connect(
                    self.url,
                    self.connect_options,
                    self.plan.deadline,
                    self.plan.allow_remote,
                )
                .await?,
                key: loaded.json_key.clone().expect("json was loaded"),
            },
            (Via::Direct, BenchDesign::Store(_)) => Path::Store {
                store: self.store.clone(),
                campaign: campaign(),
            },
            (Via::Direct, BenchDesign::NearCache) => Path::InProcess {
                lookup: Checker::new(Arc::new(self.store.clone()), loaded.cache.clone()),
                campaign: campaign(),
            },
        };
        let target = Target {
            design,
            via,
            path,
            id_type: self.plan.id_type,
        };
        if let Path::Http {
            from_cache: true, ..
        } = &target.path
        {
            wait_for_cache(&target, self.plan.deadline).await?;
        }
        Ok(Arc::new(target))
    }

    /// One run: the generator through its warm-up and window, with Redis
    /// and client counters read at the window's edges, inside it.
    async fn measure(
        &self,
        target: Arc<Target>,
        audience: &Arc<Audience>,
        loaded: &Loaded,
        how: Load,
    ) -> anyhow::Result<Run> {
        let plan = self.plan;
        let window = Window::after_warmup(plan);
        let generator = {
            let (plan, target, audience) = (plan.clone(), target.clone(), audience.clone());
            tokio::spawn(async move {
                match how {
                    Load::Closed(workers) => {
                        load::closed_loop(&plan, target, audience, workers, window).await
                    }
                    Load::Open(rate) => {
                        load::open_loop(&plan, target, audience, rate, window).await
                    }
                }
            })
        };
        tokio::time::sleep_until(window.start.into()).await;
        let edges = Edges::read(self.admin).await?;
        probes::reset_peak_rss();
        tokio::time::sleep_until(window.end.into()).await;
        let at_end = Edges::read(self.admin).await?;
        let peak_rss = probes::peak_rss_bytes();
        let tally = generator.await.context("the load generator panicked")??;
        let (design, via) = (target.design, target.via);
        drop(target);
        housekeeping::settle().await;
        let mut run = run_of(plan, design, via, audience, how, tally, &edges, &at_end);
        run.redis_bytes_per_id = loaded.bytes_per_id;
        run.cache_bytes_per_id = loaded.cache_bytes_per_id;
        run.client_peak_rss_bytes = peak_rss;
        Ok(run)
    }
}

/// How checks arrive in one run.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many virtual users.
    Closed(usize),
    /// This many checks per second.
    Open(f64),
}

/// Counters read at one edge of the measured window.
struct Edges {
    redis: RedisCounters,
    commands: Option<CommandCounts>,
    client_cpu_us: u64,
    at: std::time::Instant,
}

impl Edges {
    async fn read(admin: &BenchConn) -> anyhow::Result<Edges> {
        let client_cpu_us = probes::client_cpu_us();
        let at = std::time::Instant::now();
        let redis = RedisCounters::read(admin).await?;
        let commands = match admin.is_cluster() {
            true => Some(CommandCounts::read(admin).await?),
            false => None,
        };
        Ok(Edges {
            redis,
            commands,
            client_cpu_us,
            at,
        })
    }
}

/// A sweep stops once a design misses its deadline for more than 1% of
/// checks or its p99 passes half the deadline: past that, it only queues.
fn past_capacity(run: &Run, plan: &Plan) -> bool {
    let late = run.timeouts as f64 > run.checks as f64 * 0.01;
    let failing = run.errors as f64 > run.checks as f64 * 0.01;
    late || failing || run.p99_us >= plan.deadline.as_secs_f64() * 1e6 / 2.0
}

/// The share of a resource past which a row is flagged as saturated.
const SATURATED: f64 = 0.9;

/// Open loop: the generator is behind when its p99 dispatch lag passes 1 ms.
const LAG_LIMIT_US: f64 = 1_000.0;

#[allow(clippy::too_many_arguments)]
fn run_of(
    plan: &Plan,
    design: BenchDesign,
    via: Via,
    audience: &Audience,
    how: Load,
    tally: Tally,
    start: &Edges,
    end: &Edges,
) -> Run {
    let window_us = end.at.duration_since(start.at).as_secs_f64().max(1e-6) * 1e6;
    let checks = tally.checks;
    let per_check = |v: f64| if checks == 0 { 0.0 } else { v / checks as f64 };
    let us = |ns: u64| ns as f64 / 1_000.0;
    let q = |quantile: f64| us(tally.latency.value_at_quantile(quantile));
    let client_cpu = end.client_cpu_us.saturating_sub(start.client_cpu_us) as f64;
    let redis_cpu = (end.redis.cpu_us - start.redis.cpu_us).max(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let masters = start.commands.as_ref().map_or(1, |c| c.masters().max(1)) as f64;
    let client_cpu_share = client_cpu / window_us / cpus;
    let redis_cpu_share = redis_cpu / window_us / masters;
    let dispatch_lag_p99_us = tally
        .dispatch_lag
        .as_ref()
        .map(|lag| us(lag.value_at_quantile(0.99)));
    let mut saturated = Vec::new();
    if client_cpu_share >= SATURATED || dispatch_lag_p99_us.is_some_and(|lag| lag > LAG_LIMIT_US) {
        saturated.push("client".to_string());
    }
    if redis_cpu_share >= SATURATED {
        saturated.push("redis".to_string());
    }
    let (mode, concurrency, offered_rate) = match how {
        Load::Closed(workers) => (Mode::Closed, workers, None),
        Load::Open(rate) => (Mode::Open, plan.max_in_flight, Some(rate)),
    };
    let mut run = Run {
        design: design.name().to_string(),
        via: via.label(design).to_string(),
        audience: audience.list.len() as u64,
        mode: mode.name().to_string(),
        concurrency,
        offered_rate,
        checks,
        completed: tally.completed,
        errors: tally.errors,
        timeouts: tally.timeouts,
        checks_per_sec: checks as f64 / plan.duration.as_secs_f64(),
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: us(tally.latency.max()),
        redis_bytes_per_check: per_check(
            end.redis
                .net_output_bytes
                .saturating_sub(start.redis.net_output_bytes) as f64,
        ),
        redis_cpu_us_per_check: per_check(redis_cpu),
        redis_bytes_per_id: 0.0,
        cache_bytes_per_id: None,
        client_cpu_us_per_check: per_check(client_cpu),
        client_peak_rss_bytes: 0,
        client_cpu_share,
        redis_cpu_share,
        dispatch_lag_p99_us,
        saturated,
        busiest_node_share: None,
        busiest_node_check_share: None,
        node_commands: None,
        node_check_commands: None,
    };
    if let (Some(before), Some(after)) = (&start.commands, &end.commands) {
        cluster::record(&mut run, before, after);
    }
    run
}

/// Waits until the server's near-cache answers for the campaign, so an
/// HTTP near-cache run measures the cache, not its first load.
async fn wait_for_cache(target: &Target, deadline: Duration) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + Duration::from_secs(60).max(deadline);
    while std::time::Instant::now() < until {
        if target.check(0).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server's near-cache never answered for the campaign")
}
async fn connect(
    url: &str,
    options: &ConnectOptions,
    deadline: Duration,
    allow_remote: bool,
) -> anyhow::Result<BenchConn> {
    BenchConn::open(url, options, deadline, allow_remote).await
}
#[cfg(test)]
mod tests {
    use super::housekeeping::parse_info;
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn plan(seed: u64) -> Plan {
        Plan {
            designs: vec![BenchDesign::Json],
            audiences: vec![1000],
            seed,
            ..Plan::default()
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
