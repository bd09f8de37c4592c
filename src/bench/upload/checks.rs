//! Member checks on a fixed schedule over keep-alive HTTP connections:
//! the load of `--scenario upload-at-peak`.
//!
//! Check `i` is due at `i / rate` whatever the answers do (open loop), so a
//! stall shows up as the latency of every check due during it; a closed
//! loop would simply send fewer. One task per connection claims the next
//! due check; when every connection is busy, checks wait, and the wait
//! counts: latency runs from when the check was due if it had to queue, and
//! from when it was sent otherwise, because the runtime's timers fire on
//! millisecond ticks and that slack is the generator's, not the server's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::Phase;

#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    Answer(bool),
    Timeout,
    Failed,
}

/// One check: when it was due and sent (from the load's start), how long
/// it took, and what came back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub intended: Duration,
    pub sent: Duration,
    pub latency: Duration,
    pub user: u64,
    pub outcome: Outcome,
}

/// What the load sends.
pub(super) struct Settings {
    /// Checks due per second.
    pub rate: f64,
    /// Keep-alive connections, so at most this many checks in flight.
    pub connections: usize,
    /// Past this, a check counts as a timeout.
    pub deadline: Duration,
    /// Users are drawn uniformly from `[0, users)`.
    pub users: u64,
    pub seed: u64,
}

/// Checks on a fixed schedule, from one task per connection.
pub(super) struct Load {
    pub t0: Instant,
    /// Checks due at or after this (ns from `t0`) are not sent.
    stop: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Connects every connection, then starts the schedule.
    pub async fn start(addr: SocketAddr, id: &str, settings: &Settings) -> anyhow::Result<Load> {
        let mut conns = Vec::with_capacity(settings.connections);
        for _ in 0..settings.connections {
            conns.push(connect(addr).await?);
        }
        let t0 = Instant::now() + Duration::from_millis(100);
        let stop = Arc::new(AtomicU64::new(u64::MAX));
        let next = Arc::new(AtomicU64::new(0));
        let path: Arc<str> = format!("/v1/campaigns/{id}/members/").into();
        let tasks = conns
            .into_iter()
            .enumerate()
            .map(|(w, conn)| {
                let worker = Worker {
                    addr,
                    path: path.clone(),
                    t0,
                    interval_ns: 1e9 / settings.rate,
                    next: next.clone(),
                    stop: stop.clone(),
                    deadline: settings.deadline,
                    space: settings.users,
                    rng: StdRng::seed_from_u64(settings.seed ^ ((w as u64) << 20)),
                };
                tokio::spawn(worker.run(conn))
            })
            .collect();
        Ok(Load { t0, stop, tasks })
    }

    /// Sends no check due at or after `end` (from the start), waits for the
    /// ones in flight, and returns every check.
    pub async fn finish(self, end: Duration) -> anyhow::Result<Vec<Sample>> {
        self.stop.store(end.as_nanos() as u64, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.context("a check connection panicked")?);
        }
        Ok(samples)
    }
}

struct Worker {
    addr: SocketAddr,
    path: Arc<str>,
    t0: Instant,
    interval_ns: f64,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
    deadline: Duration,
    space: u64,
    rng: StdRng,
}

impl Worker {
    async fn run(mut self, conn: Http) -> Vec<Sample> {
        let mut conn = Some(conn);
        let mut samples = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let due_ns = (i as f64 * self.interval_ns) as u64;
            if due_ns >= self.stop.load(Ordering::Relaxed) {
                return samples;
            }
            let intended = Duration::from_nanos(due_ns);
            let due = self.t0 + intended;
            let user = self.rng.random_range(0..self.space);
            let claimed = Instant::now();
            if claimed > due + self.deadline {
                // Already past its deadline while it waited for a
                // connection: a timeout, not sent (sending it would only
                // feed a queue nobody waits on).
                samples.push(Sample {
                    intended,
                    sent: claimed - self.t0,
                    latency: self.deadline,
                    user,
                    outcome: Outcome::Timeout,
                });
                continue;
            }
            tokio::time::sleep_until(due.into()).await;
            let sent = Instant::now();
            let from = if claimed <= due { sent } else { due };
            let left = (from + self.deadline).saturating_duration_since(sent);
            let answer = tokio::time::timeout(left, self.check(&mut conn, user)).await;
            let outcome = match answer {
                Ok(Ok(member)) => Outcome::Answer(member),
                Ok(Err(_)) => Outcome::Failed,
                Err(_) => Outcome::Timeout,
            };
            if !matches!(outcome, Outcome::Answer(_)) {
                // The answer may still come; this connection cannot carry
                // the next check until it has, so take a fresh one.
                conn = None;
            }
            samples.push(Sample {
                intended,
                sent: sent - self.t0,
                latency: match outcome {
                    Outcome::Timeout => self.deadline,
                    _ => from.elapsed(),
                },
                user,
                outcome,
            });
        }
    }

    async fn check(&self, conn: &mut Option<Http>, user: u64) -> anyhow::Result<bool> {
        let sender = match conn {
            Some(sender) => sender,
            None => conn.insert(connect(self.addr).await?),
        };
        sender.ready().await?;
        let request = hyper::Request::get(format!("{}{user}", self.path))
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK {
            bail!("status {status}");
        }
        #[derive(Deserialize)]
        struct Answer {
            member: bool,
        }
        Ok(serde_json::from_slice::<Answer>(&body)?.member)
    }
}

type Http = SendRequest<Empty<Bytes>>;

/// A keep-alive HTTP/1.1 connection; its driver runs on a task of its own.
async fn connect(addr: SocketAddr) -> anyhow::Result<Http> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, driver) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(driver);
    Ok(sender)
}

pub(super) fn summarize<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    span: Duration,
    deadline: Duration,
    right: &dyn Fn(&Sample) -> bool,
) -> Phase {
    let mut hist =
        Histogram::<u64>::new_with_bounds(100, 100_000_000_000, 3).expect("valid histogram bounds");
    let mut phase = Phase {
        secs: span.as_secs_f64(),
        ..Phase::default()
    };
    for s in samples {
        phase.offered += 1;
        match s.outcome {
            Outcome::Answer(_) => phase.completed += 1,
            Outcome::Timeout => phase.timeouts += 1,
            Outcome::Failed => phase.failed += 1,
        }
        if !right(s) {
            phase.wrong += 1;
        }
        let latency = match s.outcome {
            Outcome::Timeout => deadline,
            _ => s.latency,
        };
        hist.saturating_record(latency.as_nanos() as u64);
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    phase.completed_per_sec = phase.completed as f64 / phase.secs.max(1e-9);
    if phase.offered > 0 {
        phase.p50_us = us(0.50);
        phase.p99_us = us(0.99);
        phase.p999_us = us(0.999);
        phase.max_us = hist.max() as f64 / 1e3;
    }
    phase
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, outcome: Outcome) -> Sample {
        Sample {
            intended: Duration::ZERO,
            sent: Duration::ZERO,
            latency: Duration::from_millis(ms),
            user: 0,
            outcome,
        }
    }

    #[test]
    fn timeouts_count_at_the_deadline_and_wrong_answers_are_counted() {
        let mut samples: Vec<Sample> = (0..98).map(|_| sample(1, Outcome::Answer(true))).collect();
        samples.push(sample(3, Outcome::Timeout));
        samples.push(sample(2, Outcome::Failed));
        let right = |s: &Sample| !matches!(s.outcome, Outcome::Answer(_)) || s.latency.is_zero();
        let phase = summarize(
            samples.iter(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            &right,
        );
        assert_eq!(phase.offered, 100);
        assert_eq!(phase.completed, 98);
        assert_eq!((phase.timeouts, phase.failed, phase.wrong), (1, 1, 98));
        assert!((phase.p50_us - 1_000.0).abs() < 2.0, "{phase:?}");
        assert!((phase.max_us - 1_000_000.0).abs() < 1_000.0, "{phase:?}");
    }
}
