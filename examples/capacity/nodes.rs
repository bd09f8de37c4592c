//! What the example reads from the cluster's masters: `INFO` fields summed
//! over them, a memory sampler, and the snapshot key a campaign names.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use guestlist::redis_cluster::RedisCluster;

/// Integer or decimal fields of one `INFO` section, from every master.
pub struct Masters<'a> {
    cluster: &'a RedisCluster,
}

/// `name:value` from an `INFO` reply.
pub fn field(info: &str, name: &str) -> Option<f64> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

impl<'a> Masters<'a> {
    pub fn new(cluster: &'a RedisCluster) -> Self {
        Masters { cluster }
    }

    /// Each master's port and its `INFO section` reply.
    pub fn info(&self, section: &str) -> anyhow::Result<Vec<(u16, String)>> {
        self.cluster
            .for_each_master(|_, c| redis::cmd("INFO").arg(section).query::<String>(c))
    }

    /// `name` summed over every master.
    pub fn sum(&self, section: &str, name: &str) -> anyhow::Result<f64> {
        self.info(section)?
            .iter()
            .map(|(port, info)| field(info, name).with_context(|| format!("{name} on {port}")))
            .sum()
    }

    pub fn used_memory(&self) -> anyhow::Result<i64> {
        Ok(self.sum("memory", "used_memory")? as i64)
    }

    pub fn repl_offset(&self) -> anyhow::Result<i64> {
        Ok(self.sum("replication", "master_repl_offset")? as i64)
    }

    /// Redis CPU seconds (user + system, main thread and the rest) per master.
    pub fn cpu(&self) -> anyhow::Result<Vec<(u16, f64)>> {
        self.info("cpu")?
            .into_iter()
            .map(|(port, info)| {
                let user = field(&info, "used_cpu_user").context("used_cpu_user")?;
                let sys = field(&info, "used_cpu_sys").context("used_cpu_sys")?;
                Ok((port, user + sys))
            })
            .collect()
    }

    /// Waits until no master has lazily freed objects pending and the summed
    /// `used_memory` holds still for half a second (within 64 KiB: client
    /// buffers and `INFO` itself move it that much), so a reading is not
    /// taken while memory is still being released.
    pub fn settle(&self, within: Duration) -> anyhow::Result<i64> {
        let deadline = Instant::now() + within;
        let mut last = self.used_memory()?;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let pending = self.sum("memory", "lazyfree_pending_objects")?;
            let now = self.used_memory()?;
            let still = (now - last).abs() <= 64 << 10;
            if (pending == 0.0 && still) || Instant::now() > deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    /// The length (`STRLEN`, or a hash's `bytes` field) and `MEMORY USAGE`
    /// of the live snapshot of campaign `id`,
    /// found through the fields `incarnation` and `snapshot` of its `meta`.
    pub fn snapshot(&self, prefix: &str, id: &str) -> anyhow::Result<(i64, i64)> {
        let meta = format!("{prefix}:{{{id}}}:meta");
        let mut conn = self
            .cluster
            .connection(self.cluster.master_for_key(&meta)?)?;
        let (incarnation, snapshot): (String, String) = redis::cmd("HMGET")
            .arg(&meta)
            .arg("incarnation")
            .arg("snapshot")
            .query(&mut conn)
            .context("reading the campaign's snapshot name")?;
        let key = format!("{prefix}:{{{id}}}:snapshot:{incarnation}:{snapshot}");
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn)?;
        let strlen: i64 = if kind == "hash" {
            redis::cmd("HGET")
                .arg(&key)
                .arg("bytes")
                .query::<Option<i64>>(&mut conn)?
                .unwrap_or(0)
        } else {
            redis::cmd("STRLEN").arg(&key).query(&mut conn)?
        };
        let usage: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query(&mut conn)?;
        anyhow::ensure!(strlen > 0, "snapshot {key} is empty or missing");
        Ok((strlen, usage))
    }

    /// Empties every master (replicas follow), freeing synchronously so the
    /// next baseline is not still shrinking.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.cluster
            .for_each_master(|_, c| redis::cmd("FLUSHALL").arg("SYNC").query::<()>(c))?;
        Ok(())
    }
}

/// Samples summed `used_memory` every 20 ms on its own connections until
/// stopped, and returns the highest sum seen: the peak of a replace over a
/// live audience, which holds old and new data at once for a while.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<i64>>,
}

impl PeakSampler {
    pub fn start(cluster: &RedisCluster) -> anyhow::Result<PeakSampler> {
        let mut conns = cluster
            .masters()
            .into_iter()
            .map(|p| cluster.connection(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0i64;
            while !flag.load(Ordering::Relaxed) {
                let mut total = 0i64;
                for c in &mut conns {
                    let info: String = redis::cmd("INFO").arg("memory").query(c)?;
                    total += field(&info, "used_memory").context("used_memory")? as i64;
                }
                peak = peak.max(total);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(peak)
        });
        Ok(PeakSampler { stop, handle })
    }

    pub fn finish(self) -> anyhow::Result<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?
    }
}
