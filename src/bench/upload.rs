//! `guestlist bench --scenario upload-at-peak`: does an audience upload hurt
//! the logins that run beside it?
//!
//! A real `guestlist serve` (the `set` design, near-cache off, so every
//! check reaches Redis) answers member checks sent at a fixed rate over
//! keep-alive connections. Midway, an administrator replaces the campaign's
//! audience through the API. The checks' latency before, during and after
//! the upload is reported, once with upload pacing off and once on, each on
//! its own server process against the same Redis.
//!
//! The checks' load is in [`checks`].

mod checks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use checks::{Load, Outcome, Sample, Settings, summarize};

use super::cluster::{self, BenchConn};
use super::results::Machine;
use super::serve::{Serve, ServeOptions};
use crate::config::BenchArgs;
use crate::store::redis::ConnectOptions;

/// IDs of audience `k` are `10 × i + k`: membership is arithmetic, so
/// checking an answer needs no copy of the audience.
const BEFORE: u64 = 1;
const AFTER: u64 = 3;
/// Checks in the first second warm connections and caches; not reported.
const WARM_UP: Duration = Duration::from_secs(1);
/// IDs in the campaign before the upload: the story's 30,000.
const INITIAL_IDS: u64 = 30_000;

/// The scenario after `--quick` and defaults are applied.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    pub upload_ids: u64,
    pub check_rate: f64,
    pub connections: usize,
    pub phase: Duration,
    pub deadline: Duration,
    pub seed: u64,
    pub upload_rate: Option<u64>,
}

impl UploadPlan {
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<UploadPlan> {
        let u = &args.upload;
        let (upload_ids, check_rate, phase) = if args.quick {
            (300_000, 2_000.0, Duration::from_secs(3))
        } else {
            (u.upload_ids, u.upload_check_rate, u.upload_phase)
        };
        anyhow::ensure!(upload_ids > 0, "--upload-ids must be positive");
        anyhow::ensure!(
            check_rate >= 1.0 && check_rate.is_finite(),
            "--upload-check-rate must be at least 1"
        );
        anyhow::ensure!(
            (1..=4096).contains(&u.upload_connections),
            "--upload-connections must be between 1 and 4096"
        );
        Ok(UploadPlan {
            upload_ids,
            check_rate,
            connections: u.upload_connections,
            phase,
            deadline: args.check_timeout,
            seed: args.seed,
            upload_rate: u.upload_rate,
        })
    }
}

/// `upload_at_peak.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadAtPeak {
    pub machine: Machine,
    pub redis_version: String,
    pub date: String,
    pub command: String,
    pub design: String,
    pub near_cache: bool,
    pub check_rate: f64,
    pub connections: usize,
    pub deadline_ms: f64,
    pub initial_ids: u64,
    pub upload_ids: u64,
    /// One per server process: pacing off, then on.
    pub runs: Vec<PacedRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PacedRun {
    /// `serve --upload-pacing`.
    pub pacing: String,
    /// `serve --upload-rate`, if given.
    pub upload_rate: Option<u64>,
    pub upload: UploadOutcome,
    pub before: Phase,
    pub during: Phase,
    pub after: Phase,
    /// p99 during the upload over p99 before it (idle).
    pub p99_during_over_idle: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadOutcome {
    pub ids: u64,
    pub bytes: u64,
    pub status: u16,
    pub audience_size: Option<u64>,
    pub secs: f64,
    pub completed: bool,
}

/// Checks due within one phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    pub secs: f64,
    /// Checks due in the phase.
    pub offered: u64,
    /// Checks answered 200 (right or wrong).
    pub completed: u64,
    /// Checks without an answer within the deadline (counted at the deadline in the percentiles).
    pub timeouts: u64,
    /// Checks answered with an error (e.g. 503) or a broken connection.
    pub failed: u64,
    /// Answers that were neither the old audience's nor the new one's.
    pub wrong: u64,
    pub completed_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Runs the scenario, prints the table, writes `--out`.
pub async fn main(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = UploadPlan::from_args(args)?;
    let under = cluster::under_test(args).await?;
    let url = under.url.clone();
    let command = super::command_line();
    let report = cluster::on_own_runtime(async move { run(&url, &plan, command).await }).await?;
    let table = table(&report);
    println!("{table}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("upload_at_peak.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        std::fs::write(dir.join("upload_at_peak.md"), &table)?;
        eprintln!("wrote {}", dir.display());
    }
    Ok(())
}

/// Both runs against the Redis at `url`.
pub async fn run(url: &str, plan: &UploadPlan, command: String) -> anyhow::Result<UploadAtPeak> {
    crate::tls::install_crypto_provider();
    let admin = BenchConn::open(
        url,
        &ConnectOptions::default(),
        Duration::from_secs(30),
        false,
    )
    .await?;
    let redis_version = super::housekeeping::info_field(&admin, "server", "redis_version")
        .await?
        .unwrap_or_default();
    let initial = Arc::new(audience_body(BEFORE, INITIAL_IDS));
    let upload = Arc::new(audience_body(AFTER, plan.upload_ids));
    let mut runs = Vec::new();
    for pacing in ["off", "on"] {
        let mut extra = vec![
            "--upload-pacing".to_string(),
            pacing.to_string(),
            "--max-upload-bytes".to_string(),
            (body_len(&upload) + (1 << 20)).to_string(),
        ];
        let upload_rate = plan.upload_rate.filter(|_| pacing == "on");
        if let Some(rate) = upload_rate {
            extra.extend(["--upload-rate".to_string(), rate.to_string()]);
        }
        let serve = Serve::start(&ServeOptions {
            extra_args: extra,
            ..ServeOptions::new(url)
        })
        .await?;
        let id = format!("upload-at-peak-{pacing}");
        let measured = one_run(&serve, &id, plan, &initial, &upload).await;
        let removed = delete_campaign(&serve, &id).await;
        drop(serve);
        let mut run = measured.with_context(|| format!("the run with pacing {pacing}"))?;
        removed?;
        quiesce(&admin).await?;
        run.pacing = pacing.to_string();
        run.upload_rate = upload_rate;
        runs.push(run);
    }
    Ok(UploadAtPeak {
        machine: super::probes::machine(),
        redis_version,
        date: crate::domain::fmt_time(Utc::now()),
        command,
        design: "set".into(),
        near_cache: false,
        check_rate: plan.check_rate,
        connections: plan.connections,
        deadline_ms: plan.deadline.as_secs_f64() * 1e3,
        initial_ids: INITIAL_IDS,
        upload_ids: plan.upload_ids,
        runs,
    })
}

/// IDs `10 × i + k` for `i < n`, one per line, in chunks of about 1 MB,
/// built before the clock starts so the client's formatting does not
/// compete with the checks.
fn audience_body(k: u64, n: u64) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut fmt = itoa::Buffer::new();
    for i in 0..n {
        buf.extend_from_slice(fmt.format(10 * i + k).as_bytes());
        buf.push(b'\n');
        if buf.len() >= (1 << 20) - 32 {
            chunks.push(Bytes::from(std::mem::replace(
                &mut buf,
                Vec::with_capacity(1 << 20),
            )));
        }
    }
    if !buf.is_empty() {
        chunks.push(Bytes::from(buf));
    }
    chunks
}

fn body_len(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

fn in_audience(k: u64, n: u64, user: u64) -> bool {
    user % 10 == k && user / 10 < n
}

async fn one_run(
    serve: &Serve,
    id: &str,
    plan: &UploadPlan,
    initial: &Arc<Vec<Bytes>>,
    upload: &Arc<Vec<Bytes>>,
) -> anyhow::Result<PacedRun> {
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/campaigns", serve.base_url()))
        .bearer_auth(serve.admin_token())
        .json(&serde_json::json!({
            "id": id,
            "name": "upload at peak",
            "starts_at": crate::domain::fmt_time(Utc::now() - chrono::Duration::hours(1)),
            "ends_at": crate::domain::fmt_time(Utc::now() + chrono::Duration::hours(6)),
            "design": "set",
        }))
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "creating {id}: {} {}",
        created.status(),
        created.text().await.unwrap_or_default()
    );
    let first = replace(&http, serve, id, initial).await?;
    anyhow::ensure!(
        first.completed,
        "the initial audience was refused: {first:?}"
    );

    let settings = Settings {
        rate: plan.check_rate,
        connections: plan.connections,
        deadline: plan.deadline,
        users: 10 * plan.upload_ids.max(INITIAL_IDS),
        seed: plan.seed,
    };
    let load = Load::start(serve.addr(), id, &settings).await?;
    tokio::time::sleep_until((load.t0 + WARM_UP + plan.phase).into()).await;
    let upload_start = load.t0.elapsed();
    let outcome = replace(&http, serve, id, upload).await?;
    let upload_end = load.t0.elapsed();
    let samples = load.finish(upload_end + plan.phase).await?;
    anyhow::ensure!(
        outcome.completed,
        "the upload failed ({}): {}",
        outcome.status,
        serve.log_text()
    );

    let verdict = |s: &Sample| -> bool {
        let Outcome::Answer(member) = s.outcome else {
            return true;
        };
        let old = in_audience(BEFORE, INITIAL_IDS, s.user);
        let new = in_audience(AFTER, plan.upload_ids, s.user);
        if s.sent < upload_start {
            member == old
        } else if s.intended >= upload_end {
            member == new
        } else {
            member == old || member == new
        }
    };
    let phase = |from: Duration, to: Duration| {
        summarize(
            samples
                .iter()
                .filter(|s| s.intended >= from && s.intended < to),
            to - from,
            plan.deadline,
            &verdict,
        )
    };
    let before = phase(WARM_UP, upload_start);
    let during = phase(upload_start, upload_end);
    let after = phase(upload_end, upload_end + plan.phase);
    Ok(PacedRun {
        pacing: String::new(),
        upload_rate: None,
        p99_during_over_idle: during.p99_us / before.p99_us.max(1e-3),
        upload: outcome,
        before,
        during,
        after,
    })
}

/// Replaces `id`'s audience with `body`, streamed.
async fn replace(
    http: &reqwest::Client,
    serve: &Serve,
    id: &str,
    body: &Arc<Vec<Bytes>>,
) -> anyhow::Result<UploadOutcome> {
    let chunks = body.clone();
    let stream = futures_util::stream::iter(
        (0..chunks.len()).map(move |i| Ok::<Bytes, std::io::Error>(chunks[i].clone())),
    );
    let started = Instant::now();
    let response = http
        .put(format!("{}/v1/campaigns/{id}/audience", serve.base_url()))
        .bearer_auth(serve.admin_token())
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    let ids = body
        .iter()
        .map(|c| c.iter().filter(|b| **b == b'\n').count() as u64)
        .sum();
    let audience_size = answer.get("audience_size").and_then(|v| v.as_u64());
    Ok(UploadOutcome {
        ids,
        bytes: body_len(body),
        status: status.as_u16(),
        audience_size,
        secs,
        completed: status.is_success() && audience_size == Some(ids),
    })
}

async fn delete_campaign(serve: &Serve, id: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/campaigns/{id}", serve.base_url()))
        .bearer_auth(serve.admin_token())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "deleting {id}: {}",
        response.status()
    );
    Ok(())
}

/// Waits until Redis has freed what the last run left (big sets are freed
/// in the background), so the next run starts on an idle server.
async fn quiesce(admin: &BenchConn) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if super::housekeeping::info_sum(admin, "memory", "lazyfree_pending_objects").await? == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// The report as markdown: one row per run and phase.
pub fn table(report: &UploadAtPeak) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Upload at peak: {} checks/s over {} connections (set design, near-cache off), \
         audience of {} IDs replaced by {} IDs through the API.\n",
        report.check_rate, report.connections, report.initial_ids, report.upload_ids
    );
    out.push_str(
        "| pacing | upload | phase | due | completed | timeouts | failed | wrong | p50 µs | p99 µs | p99.9 µs | max µs |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in &report.runs {
        let label = match run.upload_rate {
            Some(cap) => format!("{} (cap {cap} IDs/s)", run.pacing),
            None => run.pacing.clone(),
        };
        for (name, p) in [
            ("before", &run.before),
            ("during", &run.during),
            ("after", &run.after),
        ] {
            let upload = if name == "during" {
                format!("{:.1} s", run.upload.secs)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {label} | {upload} | {name} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                p.offered,
                p.completed,
                p.timeouts,
                p.failed,
                p.wrong,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                p.max_us
            );
        }
    }
    out.push('\n');
    for run in &report.runs {
        let _ = writeln!(
            out,
            "- pacing {}: upload {:.1} s, p99 during / idle = {:.2}×",
            run.pacing, run.upload.secs, run.p99_during_over_idle
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_bodies_list_exactly_their_ids() {
        let body = audience_body(AFTER, 250_000);
        assert!(body.len() > 1, "streamed in more than one chunk");
        let text: Vec<u8> = body.iter().flat_map(|c| c.iter().copied()).collect();
        let ids: Vec<u64> = std::str::from_utf8(&text)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(ids.len(), 250_000);
        assert!(ids.iter().all(|id| in_audience(AFTER, 250_000, *id)));
        assert!(!in_audience(AFTER, 250_000, 2_500_003));
        assert!(!in_audience(BEFORE, 250_000, 13));
    }
}
