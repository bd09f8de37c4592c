//! The HTTP member check of `guestlist serve` (embedded store, default
//! listener, logs at `info`, metrics on) against a bare axum route that
//! answers the same JSON bytes on the same path pattern, both in this
//! process on one Tokio runtime, each loaded in turn by `wrk`.
//!
//! ```sh
//! apt-get install -y wrk
//! cargo bench --bench http_vs_bare -- --rounds 5 --duration 10 --connections 64 --threads 2
//! ```
//!
//! The machine is shared by `wrk` and the servers, so runs alternate
//! between the two targets (the first target swaps every round) and the
//! summary is the median of the per-round ratios.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser as _;
use guestlist::config::{Cli, Command, LogFormat};

const ADMIN: &str = "bench-admin-token-0123456789";
const CAMPAIGN: &str = "spring-sale";
const AUDIENCE: u64 = 100_000;
/// A member: the answer is the longer of the two.
const USER: u64 = 4_242;

struct Options {
    rounds: usize,
    duration: u64,
    connections: usize,
    threads: usize,
}

impl Options {
    /// Flags after `--`; cargo adds `--bench`, which is ignored.
    fn parse() -> Options {
        let mut options = Options {
            rounds: 5,
            duration: 10,
            connections: 64,
            threads: 2,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || -> u64 {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--rounds" => options.rounds = value() as usize,
                "--duration" => options.duration = value(),
                "--connections" => options.connections = value() as usize,
                "--threads" => options.threads = value() as usize,
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        options
    }
}

/// What one `wrk` run reported.
#[derive(Debug, Clone, Copy)]
struct Figures {
    requests_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    // SAFETY: no other thread exists yet; the runtime starts below.
    unsafe { std::env::set_var("GUESTLIST_ADMIN_TOKEN", ADMIN) };
    guestlist::telemetry::init_logs(LogFormat::Text, "info");
    guestlist::tls::install_crypto_provider();
    // The runtime `guestlist serve` gets from `#[tokio::main]`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = guestlist::redis_server::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let cli = Cli::try_parse_from([
        "guestlist",
        "serve",
        "--listen",
        &listen,
        "--store",
        dir.path().to_str().expect("a UTF-8 temp path"),
    ])?;
    let Command::Serve(args) = cli.command else {
        unreachable!("parsed a serve command line");
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(guestlist::server::serve(args, async move {
        let _ = stopped.await;
    }));
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    load_campaign(&http, &base).await?;

    let path = format!("/v1/campaigns/{CAMPAIGN}/members/{USER}");
    let answer = http.get(format!("{base}{path}")).send().await?;
    anyhow::ensure!(answer.status().is_success(), "{:?}", answer.text().await);
    let body: Bytes = answer.bytes().await?;
    let (bare_addr, bare) = guestlist::bench::start_bare_route(body.clone()).await?;
    let bare_url = format!("http://{bare_addr}{path}");
    let same = http.get(&bare_url).send().await?.bytes().await?;
    anyhow::ensure!(same == body, "the bare route answers other bytes");
    let guestlist_url = format!("{base}{path}");
    println!(
        "body ({} bytes): {}",
        body.len(),
        String::from_utf8_lossy(&body)
    );

    // Warms both: connections, allocator, caches.
    for url in [&bare_url, &guestlist_url] {
        wrk(url, &options, 2).await?;
    }
    println!(
        "wrk -t{} -c{} -d{}s --latency, {} rounds, alternating",
        options.threads, options.connections, options.duration, options.rounds
    );
    println!(
        "{:>5} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "round",
        "bare req/s",
        "gl req/s",
        "bare p50",
        "gl p50",
        "bare p99",
        "gl p99",
        "rps ×",
        "p99 ×"
    );
    let mut ratios = Vec::new();
    for round in 0..options.rounds {
        let (bare_figures, guestlist_figures) = if round % 2 == 0 {
            let b = wrk(&bare_url, &options, options.duration).await?;
            (b, wrk(&guestlist_url, &options, options.duration).await?)
        } else {
            let g = wrk(&guestlist_url, &options, options.duration).await?;
            (wrk(&bare_url, &options, options.duration).await?, g)
        };
        let rps = guestlist_figures.requests_per_sec / bare_figures.requests_per_sec;
        let p99 = guestlist_figures.p99_us / bare_figures.p99_us;
        println!(
            "{:>5} {:>12.0} {:>12.0} {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>7.2} {:>7.2}",
            round + 1,
            bare_figures.requests_per_sec,
            guestlist_figures.requests_per_sec,
            bare_figures.p50_us,
            guestlist_figures.p50_us,
            bare_figures.p99_us,
            guestlist_figures.p99_us,
            rps,
            p99,
        );
        ratios.push((rps, p99));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median ratio guestlist/bare: req/s {:.2}×, p99 {:.2}×",
        median(ratios.iter().map(|r| r.0).collect()),
        median(ratios.iter().map(|r| r.1).collect()),
    );

    bare.abort();
    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("guestlist serve did not come up at {base}")
}

/// A live campaign whose audience is the even numbers below twice [`AUDIENCE`].
async fn load_campaign(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let created = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "id": CAMPAIGN, "name": "bench", "design": "set",
            "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z",
        }))
        .send()
        .await?;
    anyhow::ensure!(created.status().is_success(), "{:?}", created.text().await);
    let ids: String = (0..AUDIENCE).map(|i| format!("{}\n", i * 2)).collect();
    let replaced = http
        .put(format!("{base}/v1/campaigns/{CAMPAIGN}/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(ids)
        .send()
        .await?;
    anyhow::ensure!(
        replaced.status().is_success(),
        "{:?}",
        replaced.text().await
    );
    Ok(())
}

async fn wrk(url: &str, options: &Options, seconds: u64) -> anyhow::Result<Figures> {
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", options.threads))
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running wrk (apt-get install -y wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw error answers:\n{text}");
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("unreadable wrk output:\n{text}"))
}

/// Reads `Requests/sec:` and the 50% and 99% lines of `--latency`.
fn parse_wrk(text: &str) -> Option<Figures> {
    let mut figures = Figures {
        requests_per_sec: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => figures.requests_per_sec = v.parse().ok()?,
            (Some("50%"), Some(v)) => figures.p50_us = micros(v)?,
            (Some("99%"), Some(v)) => figures.p99_us = micros(v)?,
            _ => {}
        }
    }
    let known = [figures.requests_per_sec, figures.p50_us, figures.p99_us];
    known.iter().all(|v| v.is_finite()).then_some(figures)
}

/// `wrk` latencies such as `812.00us`, `1.23ms` or `2.01s`, in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        _ => return None,
    };
    Some(number * scale)
}
