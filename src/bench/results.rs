//! What a benchmark run measured, in the shape `results.json` stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The machine the figures came from; they mean little without it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
}

/// One design × audience × concurrency run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub design: String,
    /// The path checks took: `in-process`, `redis-direct` or `http`.
    pub via: String,
    pub audience: u64,
    /// `closed` (virtual users waiting for answers) or `open` (a fixed
    /// arrival rate).
    pub mode: String,
    /// Closed loop: virtual users. Open loop: checks allowed in flight.
    pub concurrency: usize,
    /// Open loop: checks offered per second; `None` for closed loop.
    pub offered_rate: Option<f64>,
    /// Checks that started during the measured window.
    pub checks: u64,
    /// Checks answered correctly before the deadline.
    pub completed: u64,
    /// Checks that failed, timeouts included.
    pub errors: u64,
    /// Checks that missed the deadline (a subset of `errors`).
    pub timeouts: u64,
    /// Checks that started in the window, per second of window; for an
    /// open-loop run, the rate it held (compare `completed`).
    pub checks_per_sec: f64,
    /// Latency percentiles in µs, from each check's start (open loop: its
    /// intended start), with 1 ns to 0.1% resolution.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Bytes Redis sent to clients per check (`INFO stats` delta).
    pub redis_bytes_per_check: f64,
    /// Redis CPU time (user + sys) per check, in µs (`INFO cpu` delta).
    pub redis_cpu_us_per_check: f64,
    /// Redis memory per audience ID for this design and size (`used_memory` delta).
    pub redis_bytes_per_id: f64,
    /// `near-cache`: heap the cache holds per audience ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes_per_id: Option<f64>,
    /// Client CPU time (user + sys) per check, in µs.
    pub client_cpu_us_per_check: f64,
    /// Peak resident memory of the client during the run.
    pub client_peak_rss_bytes: u64,
    /// The client's CPU time over the window, as a share of every core.
    pub client_cpu_share: f64,
    /// Redis CPU time over the window, as a share of one core per master
    /// (its command thread): near 1, Redis was the bottleneck.
    pub redis_cpu_share: f64,
    /// Open loop: p99 of how late the generator dispatched checks, in µs;
    /// every latency includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_lag_p99_us: Option<f64>,
    /// What ran out during the window: `client` (the generator fell behind
    /// its schedule or the bench used most of the CPUs) and `redis` (Redis
    /// used most of its core). A saturated row measures that limit, not the
    /// design.
    #[serde(default)]
    pub saturated: Vec<String>,
    /// On Redis Cluster: the busiest master's share of every command the
    /// masters served during the window (0 when none), the bench's own
    /// INFO readings left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_node_share: Option<f64>,
    /// On Redis Cluster: the busiest master's share of check commands
    /// (0 when none reached Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_node_check_share: Option<f64>,
    /// On Redis Cluster: commands each master (`host:port`) served during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_commands: Option<BTreeMap<String, u64>>,
    /// On Redis Cluster: check commands each master served during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_check_commands: Option<BTreeMap<String, u64>>,
}

/// Everything one `guestlist bench` invocation produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub machine: Machine,
    pub redis_version: String,
    /// On Redis Cluster: the masters (`host:port`) the runs spread over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_masters: Option<Vec<String>>,
    /// RFC 3339, UTC.
    pub date: String,
    /// The command line that reproduces the run.
    pub command: String,
    pub seed: u64,
    /// `--id-type`: the campaigns' user ID type (`integer` before it existed).
    #[serde(default = "integer")]
    pub id_type: String,
    pub duration_secs: f64,
    pub runs: Vec<Run>,
    /// `--redis-baselines`: the same work through Redis's own tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baselines: Option<super::baselines::Baselines>,
}

fn integer() -> String {
    "integer".into()
}
