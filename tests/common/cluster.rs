//! Redis Cluster for tests: one 3-master cluster shared by every test of a
//! test binary (each test writes under its own key prefix), and a guard
//! that kills its nodes when the binary exits, however it exits.
//!
//! A cluster takes about 2 s to form; one per contract case would be most
//! of the suite's time. Tests that kill or pause nodes start their own.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use guestlist::redis_cluster::RedisCluster;
use guestlist::store::redis::Keys;

static SHARED: OnceLock<RedisCluster> = OnceLock::new();
/// A `sh` that waits on its stdin, then kills the nodes: statics are never
/// dropped, but the pipe closes when this process ends.
static GUARD: OnceLock<Mutex<Guard>> = OnceLock::new();
static PREFIXES: AtomicU64 = AtomicU64::new(0);

/// The binary's shared 3-master cluster, started on first use.
pub fn shared() -> &'static RedisCluster {
    SHARED.get_or_init(|| {
        let cluster = RedisCluster::start(3, 0).expect("a local Redis Cluster starts");
        let _ = GUARD.set(Mutex::new(guard(&cluster)));
        cluster
    })
}

/// Kills a cluster's nodes when dropped, or when this test binary exits
/// without dropping it (a panic in a static's user, a kill).
pub struct Guard(#[allow(dead_code)] Child);

/// A [`Guard`] of `cluster`'s nodes: keep it as long as the cluster.
pub fn guard(cluster: &RedisCluster) -> Guard {
    let pids: Vec<String> = cluster
        .nodes()
        .iter()
        .filter_map(|n| n.pid)
        .map(|p| p.to_string())
        .collect();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read _ ; kill -9 {} 2>/dev/null", pids.join(" ")))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh starts");
    // Nothing is ever written: only the pipe's end matters.
    let _ = child.stdin.as_mut().map(|s| s.flush());
    Guard(child)
}

/// A key prefix no other test of this binary uses.
pub fn fresh_keys() -> Keys {
    let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
    Keys::new(format!("t{}-{n}", std::process::id()))
}
