//! The bench against Redis's own tools, side by side in one run:
//!
//! - checks: `redis-benchmark` sending `SISMEMBER` at a concurrency,
//!   against the library sending the same command at the same concurrency,
//!   and the store's whole check (one round trip: the campaign's metadata
//!   and the probe in one `MULTI`, so the answer is of one version);
//! - a 1,000,000-ID replace: `redis-cli --pipe` sending the `SADD`s alone,
//!   against `replace_audience` (staging in chunks, then the fenced
//!   commit), with `SLOWLOG` watching for any command over 10 ms.
//!
//! Only a plain single Redis: the tools take a host and port, not a
//! cluster, TLS files or a password in the environment.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use redis::IntoConnectionInfo;
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use super::cluster::BenchConn;
use crate::domain::{Campaign, Design};
use crate::store::Store;
use crate::store::redis::{CHUNK, Keys, RedisStore};

/// Members of the set the checks probe.
const CHECK_AUDIENCE: u64 = 30_000;
/// IDs in the replace compared with `redis-cli --pipe`.
const REPLACE_SIZE: u64 = 1_000_000;
/// A command slower than this fails the "never slow" goal.
const SLOW_MICROS: u64 = 10_000;

/// What one comparison run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baselines {
    /// Connections (`redis-benchmark -c`) and concurrent library tasks.
    pub concurrency: usize,
    /// `redis-benchmark … SISMEMBER key __rand_int__`, requests/s.
    pub redis_benchmark_rps: f64,
    /// The same command through the library's connection, requests/s.
    pub library_sismember_rps: f64,
    /// `library_sismember_rps / redis_benchmark_rps`; the goal is ≥ 0.8.
    pub sismember_ratio: f64,
    /// The store's whole `set` check (`is_member`), checks/s.
    pub store_check_rps: f64,
    /// `store_check_rps / redis_benchmark_rps`.
    pub store_check_ratio: f64,
    /// Seconds `redis-cli --pipe` took to send the replace's `SADD`s.
    pub pipe_secs: f64,
    /// Seconds `replace_audience` took for the same IDs.
    pub replace_secs: f64,
    /// `replace_secs / pipe_secs`; the goal is ≤ 1.5.
    pub replace_ratio: f64,
    /// `SLOWLOG` entries over 10 ms during the replace.
    pub slow_commands: Vec<String>,
}

/// Host and port of a plain `redis://` URL, or why the tools cannot reach it.
fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let info = url.into_connection_info().context("invalid Redis URL")?;
    if info.redis_settings().password().is_some() {
        bail!("the Redis baselines need a Redis without a password");
    }
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => Ok((host.clone(), *port)),
        _ => bail!("the Redis baselines need a plain redis:// server (no TLS, cluster or socket)"),
    }
}

/// Runs both comparisons against the Redis at `url`, under `prefix`.
pub(super) async fn run(
    url: &str,
    store: &RedisStore,
    admin: &BenchConn,
    prefix: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Baselines> {
    let (host, port) = host_port(url)?;
    let id = "baseline-check";
    create(store, id).await?;
    let members: RoaringTreemap = (0..CHECK_AUDIENCE).map(|i| i * 10).collect();
    store.replace_audience(id, members.into(), "bench").await?;
    let key = Keys::new(prefix).members(id);

    let requests = 200_000;
    let redis_benchmark_rps = redis_benchmark(&host, port, concurrency, requests, &key)?;
    let library_sismember_rps = closed_loop(concurrency, duration, {
        let (admin, key) = (admin.clone(), key.clone());
        move |user| {
            let (admin, key) = (admin.clone(), key.clone());
            async move {
                admin
                    .query::<bool>(redis::cmd("SISMEMBER").arg(&key).arg(user))
                    .await
                    .is_ok()
            }
        }
    })
    .await;
    let store_check_rps = closed_loop(concurrency, duration, {
        let store = store.clone();
        move |user| {
            let store = store.clone();
            async move {
                store
                    .is_member(id, &crate::ids::User::from_int(user))
                    .await
                    .is_ok()
            }
        }
    })
    .await;
    store.delete_campaign(id).await?;

    let (pipe_secs, replace_secs, slow_commands) =
        replace_against_pipe(&host, port, store, admin, prefix).await?;
    Ok(Baselines {
        concurrency,
        redis_benchmark_rps,
        library_sismember_rps,
        sismember_ratio: library_sismember_rps / redis_benchmark_rps,
        store_check_rps,
        store_check_ratio: store_check_rps / redis_benchmark_rps,
        pipe_secs,
        replace_secs,
        replace_ratio: replace_secs / pipe_secs,
        slow_commands,
    })
}

async fn create(store: &RedisStore, id: &str) -> anyhow::Result<()> {
    let now = Utc::now();
    store
        .create_campaign(Campaign {
            id: id.into(),
            name: id.into(),
            starts_at: now - chrono::Duration::hours(1),
            ends_at: now + chrono::Duration::hours(1),
            design: Design::Set,
            user_id_type: Default::default(),
            audience_size: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok(())
}

/// `redis-benchmark` at `concurrency` connections; its requests/s.
fn redis_benchmark(
    host: &str,
    port: u16,
    concurrency: usize,
    requests: u64,
    key: &str,
) -> anyhow::Result<f64> {
    let output = Command::new("redis-benchmark")
        .args(["-h", host, "-p", &port.to_string()])
        .args(["-c", &concurrency.to_string(), "-n", &requests.to_string()])
        .args(["-r", &(CHECK_AUDIENCE * 10).to_string(), "--csv"])
        .args(["SISMEMBER", key, "__rand_int__"])
        .stdin(Stdio::null())
        .output()
        .context("running redis-benchmark (Debian: redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_benchmark_csv(&String::from_utf8_lossy(&output.stdout))
}

/// The requests/s of the first result row of `redis-benchmark --csv`:
/// a header, then `"test","rps",…` rows with every field quoted.
fn parse_benchmark_csv(text: &str) -> anyhow::Result<f64> {
    text.lines()
        .filter(|line| !line.starts_with("\"test\""))
        .find_map(|line| {
            let field = line.split("\",\"").nth(1)?;
            field.trim_matches('"').parse::<f64>().ok()
        })
        .with_context(|| format!("no requests/s in redis-benchmark's output: {text:?}"))
}

/// `concurrency` tasks calling `check` back to back for `duration`; the
/// successful calls per second.
async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, check: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency as u64)
        .map(|w| {
            let (stop, done, check) = (stop.clone(), done.clone(), check.clone());
            tokio::spawn(async move {
                let mut user = w.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                while !stop.load(Ordering::Relaxed) {
                    user = user.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    if check((user >> 33) % (CHECK_AUDIENCE * 10)).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Times `redis-cli --pipe` sending the replace's SADDs into a scratch key,
/// then `replace_audience` of the same IDs, with `SLOWLOG` at 10 ms.
async fn replace_against_pipe(
    host: &str,
    port: u16,
    store: &RedisStore,
    admin: &BenchConn,
    prefix: &str,
) -> anyhow::Result<(f64, f64, Vec<String>)> {
    let ids: RoaringTreemap = (0..REPLACE_SIZE).map(|i| i * 2).collect();
    let scratch = format!("{prefix}:baseline:pipe");
    let protocol = sadd_protocol(&scratch, &ids);
    let started = Instant::now();
    let mut child = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running redis-cli --pipe (Debian: redis-tools)")?;
    let mut stdin = child.stdin.take().context("redis-cli's stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&protocol));
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let pipe_secs = started.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the redis-cli writer panicked"))??;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !report.contains("errors: 0") {
        bail!("redis-cli --pipe failed: {report}");
    }
    admin
        .query::<()>(redis::cmd("UNLINK").arg(&scratch))
        .await?;

    let old: String = admin
        .query::<Vec<String>>(
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("slowlog-log-slower-than"),
        )
        .await?
        .pop()
        .unwrap_or_else(|| "10000".into());
    admin
        .query::<()>(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("slowlog-log-slower-than")
                .arg(SLOW_MICROS),
        )
        .await?;
    admin
        .query::<()>(redis::cmd("SLOWLOG").arg("RESET"))
        .await?;
    let id = "baseline-replace";
    create(store, id).await?;
    let started = Instant::now();
    let replaced = store.replace_audience(id, ids.into(), "bench").await;
    let replace_secs = started.elapsed().as_secs_f64();
    let slow: Vec<redis::Value> = admin
        .query(redis::cmd("SLOWLOG").arg("GET").arg(100))
        .await?;
    admin
        .query::<()>(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("slowlog-log-slower-than")
                .arg(old),
        )
        .await?;
    replaced?;
    store.delete_campaign(id).await?;
    Ok((pipe_secs, replace_secs, describe_slowlog(slow)))
}

/// The SADDs of `ids` into `key` in chunks of [`CHUNK`], as Redis protocol.
fn sadd_protocol(key: &str, ids: &RoaringTreemap) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() as usize * 12);
    let mut chunk = Vec::with_capacity(CHUNK);
    let flush = |chunk: &mut Vec<u64>, out: &mut Vec<u8>| {
        if chunk.is_empty() {
            return;
        }
        let _ = write!(
            out,
            "*{}\r\n$4\r\nSADD\r\n${}\r\n{key}\r\n",
            chunk.len() + 2,
            key.len()
        );
        for id in chunk.drain(..) {
            let text = id.to_string();
            let _ = write!(out, "${}\r\n{text}\r\n", text.len());
        }
    };
    for id in ids {
        chunk.push(id);
        if chunk.len() == CHUNK {
            flush(&mut chunk, &mut out);
        }
    }
    flush(&mut chunk, &mut out);
    out
}

/// `SLOWLOG GET` entries as `µs: command key` lines.
fn describe_slowlog(entries: Vec<redis::Value>) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|entry| {
            let redis::Value::Array(fields) = entry else {
                return None;
            };
            let micros: i64 = redis::from_redis_value(fields.get(2)?.clone()).ok()?;
            let args: Vec<String> = redis::from_redis_value(fields.get(3)?.clone()).ok()?;
            // The command and its key: a chunk's thousand IDs say nothing.
            let named: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
            Some(format!("{micros} µs: {}", named.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requests_per_second_come_from_the_csv_row() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SISMEMBER k __rand_int__\",\"81234.56\",\"0.700\"\n";
        assert_eq!(parse_benchmark_csv(csv).unwrap(), 81_234.56);
        assert!(parse_benchmark_csv("\"test\",\"rps\"\n").is_err());
    }

    #[test]
    fn the_pipe_protocol_is_one_sadd_per_chunk() {
        let ids: RoaringTreemap = (0..(CHUNK as u64 + 1)).collect();
        let text = String::from_utf8(sadd_protocol("k", &ids)).unwrap();
        assert_eq!(text.matches("SADD").count(), 2);
        assert!(text.starts_with(&format!(
            "*{}\r\n$4\r\nSADD\r\n$1\r\nk\r\n$1\r\n0\r\n",
            CHUNK + 2
        )));
        assert!(text.ends_with("*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$4\r\n1000\r\n"));
    }

    #[test]
    fn only_a_plain_redis_has_a_host_and_port_for_the_tools() {
        assert_eq!(
            host_port("redis://127.0.0.1:7000").unwrap(),
            ("127.0.0.1".to_string(), 7000)
        );
        assert!(host_port("redis://:secret@127.0.0.1:7000").is_err());
        assert!(host_port("rediss://127.0.0.1:7000").is_err());
    }
}
