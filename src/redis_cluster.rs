//! A private Redis Cluster: `masters` primaries with `replicas` each, every
//! node a `redis-server` on loopback with no persistence, in one temporary
//! directory, all killed on drop. Integration tests use it to kill, pause
//! and restart nodes; the benchmark to measure a clustered store.
//!
//! Every question about roles and slots is asked of the running nodes, never
//! remembered: after a failover the answers change, and callers want the
//! cluster as it is now.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::Value;

use crate::redis_server::ServerOptions;
use crate::store::redis::ConnectOptions;

mod start;

/// The cluster bus listens this far above each node's client port.
const BUS_OFFSET: u16 = 10000;
/// Bounds every wait for the cluster to form, heal or take a node back.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// A paused or dead node must cost a caller this long at most.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub struct RedisCluster {
    nodes: Vec<Node>,
    options: ServerOptions,
    dir: tempfile::TempDir,
}

struct Node {
    port: u16,
    child: Option<Child>,
    stopped: bool,
}

impl Node {
    fn live(&self) -> bool {
        self.child.is_some() && !self.stopped
    }
}

/// A node's role, as it answers `ROLE` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    /// Killed and not restarted.
    Down,
    /// Paused with SIGSTOP.
    Stopped,
    /// Running but did not answer.
    Unreachable,
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub port: u16,
    pub pid: Option<u32>,
    pub role: Role,
}

impl RedisCluster {
    /// Starts a plain-TCP cluster of `masters` (at least 3, as `redis-cli`
    /// requires) with `replicas` each.
    pub fn start(masters: usize, replicas: usize) -> anyhow::Result<RedisCluster> {
        Self::start_with(masters, replicas, ServerOptions::default())
    }

    /// Starts a cluster whose nodes are configured by `options`. With TLS the
    /// cluster bus and replication run over TLS too. The bus always demands a
    /// client certificate from the CA, whatever `auth_clients` says: nodes
    /// present the `tls-client-cert-file` and `tls-client-key-file` given in
    /// `options.config`, or else the server certificate, which must then be
    /// valid for client authentication. The fixture's own clients present the
    /// same one.
    pub fn start_with(
        masters: usize,
        replicas: usize,
        options: ServerOptions,
    ) -> anyhow::Result<RedisCluster> {
        anyhow::ensure!(
            masters >= 3,
            "a Redis Cluster needs at least 3 masters, not {masters}"
        );
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            options,
            dir: tempfile::tempdir().context("creating a directory for the Redis Cluster")?,
        };
        for _ in 0..masters * (1 + replicas) {
            cluster.add_node()?;
        }
        cluster.create(replicas)?;
        cluster.wait_formed(masters)?;
        Ok(cluster)
    }

    /// Polls `check` until it passes or `within` runs out; the error then
    /// says what was awaited and why the last check failed.
    fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match check() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!("waited {within:?} for {what}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `CLUSTER INFO` of one node, which must say the cluster is whole.
    fn cluster_info(&self, port: u16) -> anyhow::Result<String> {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.connection(port)?)
            .with_context(|| format!("CLUSTER INFO on node {port}"))?;
        let state = field(&info, "cluster_state").unwrap_or("?");
        let slots = field(&info, "cluster_slots_ok").unwrap_or("?");
        anyhow::ensure!(
            state == "ok" && slots == "16384",
            "node {port} says cluster_state:{state}, cluster_slots_ok:{slots}"
        );
        Ok(info)
    }

    fn ensure_linked(&self, port: u16) -> anyhow::Result<()> {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.connection(port)?)
            .with_context(|| format!("INFO replication on node {port}"))?;
        let link = field(&info, "master_link_status").unwrap_or("?");
        anyhow::ensure!(link == "up", "replica {port} has master_link_status:{link}");
        Ok(())
    }

    fn node(&self, port: u16) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .with_context(|| format!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .with_context(|| format!("no cluster node on port {port}"))
    }

    /// A plain (non-cluster) connection to one node, with timeouts so that a
    /// paused node fails the call instead of hanging it.
    pub fn connection(&self, port: u16) -> anyhow::Result<redis::Connection> {
        let client = crate::store::redis::client(&self.url(port), &self.connect_options())?;
        let connection = client
            .get_connection_with_timeout(IO_TIMEOUT)
            .with_context(|| format!("connecting to cluster node {port}"))?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(connection)
    }

    /// What a client needs besides a URL: with TLS, the CA, and the nodes'
    /// client certificate when they ask clients for one.
    pub fn connect_options(&self) -> ConnectOptions {
        let Some(tls) = &self.options.tls else {
            return ConnectOptions::default();
        };
        let (cert, key) = self.client_certificate();
        ConnectOptions {
            ca_file: Some(tls.ca.clone()),
            client_cert: tls.auth_clients.then_some(cert),
            client_key: tls.auth_clients.then_some(key),
            ..ConnectOptions::default()
        }
    }

    /// The certificate and key a node presents as a client (see
    /// [`RedisCluster::start_with`]).
    fn client_certificate(&self) -> (PathBuf, PathBuf) {
        let configured = |name: &str| {
            let (_, values) = self.options.config.iter().rev().find(|(n, _)| n == name)?;
            values.first().map(PathBuf::from)
        };
        let tls = self.options.tls.as_ref().expect("a TLS cluster");
        match (
            configured("tls-client-cert-file"),
            configured("tls-client-key-file"),
        ) {
            (Some(cert), Some(key)) => (cert, key),
            _ => (tls.cert.clone(), tls.key.clone()),
        }
    }

    fn cli_tls_args(&self) -> Vec<std::ffi::OsString> {
        let Some(tls) = &self.options.tls else {
            return Vec::new();
        };
        let (cert, key) = self.client_certificate();
        // Always sent: the bus port asks for it even when clients need none,
        // and a server that does not ask never sees it.
        vec![
            "--tls".into(),
            "--cacert".into(),
            tls.ca.clone().into(),
            "--cert".into(),
            cert.into(),
            "--key".into(),
            key.into(),
        ]
    }

    /// Runs `redis-cli` against one node (TLS flags included) and returns its
    /// stdout; `-c` among `args` follows redirections.
    pub fn cli(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .args(self.cli_tls_args())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .context(
                "running redis-cli: it must be on PATH (Debian: apt-get install redis-tools)",
            )?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli on node {port} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `redis://127.0.0.1:port` of one node (`rediss://` with TLS).
    pub fn url(&self, port: u16) -> String {
        format!("{}://127.0.0.1:{port}", self.scheme())
    }

    /// Every node's URL, running or not, in start order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| self.url(n.port)).collect()
    }

    /// The URLs of the nodes that are running and not paused.
    pub fn node_urls_live(&self) -> Vec<String> {
        self.live_ports().into_iter().map(|p| self.url(p)).collect()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.live())
            .map(|n| n.port)
            .collect()
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (`rediss+cluster://`
    /// with TLS) naming every node, the current masters first.
    pub fn cluster_url(&self) -> String {
        let masters = self.masters();
        let rest = self
            .nodes
            .iter()
            .map(|n| n.port)
            .filter(|p| !masters.contains(p));
        let hosts: Vec<String> = masters
            .iter()
            .copied()
            .chain(rest)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("{}+cluster://{}", self.scheme(), hosts.join(","))
    }

    /// Each node's port, process and role now.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|n| NodeInfo {
                port: n.port,
                pid: n.child.as_ref().map(Child::id),
                role: match (&n.child, n.stopped) {
                    (None, _) => Role::Down,
                    (Some(_), true) => Role::Stopped,
                    (Some(_), false) => self.role(n.port).unwrap_or(Role::Unreachable),
                },
            })
            .collect()
    }

    fn role(&self, port: u16) -> anyhow::Result<Role> {
        let reply: Vec<Value> = redis::cmd("ROLE")
            .query(&mut self.connection(port)?)
            .with_context(|| format!("ROLE on node {port}"))?;
        let name: String = reply
            .into_iter()
            .next()
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or_default();
        match name.as_str() {
            "master" => Ok(Role::Master),
            "slave" => Ok(Role::Replica),
            other => bail!("node {port} has role {other:?}"),
        }
    }

    /// The ports of the live nodes that say they are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| matches!(self.role(p), Ok(Role::Master)))
            .collect()
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> anyhow::Result<u16> {
        let port = *self
            .live_ports()
            .first()
            .context("no cluster node is running")?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.connection(port)?)
            .context("CLUSTER KEYSLOT")?;
        Ok(slot)
    }

    /// The port of the master serving `key` now: the live master whose own
    /// `CLUSTER SLOTS` names itself for the key's slot.
    pub fn master_for_key(&self, key: &str) -> anyhow::Result<u16> {
        let slot = self.keyslot(key)?;
        for port in self.masters() {
            if self.slot_ranges(port)?.iter().any(|r| r.owns(slot, port)) {
                return Ok(port);
            }
        }
        bail!("no live master serves slot {slot} (key {key:?})")
    }

    /// One node's view of who serves which slots.
    fn slot_ranges(&self, port: u16) -> anyhow::Result<Vec<SlotRange>> {
        let reply: Vec<Vec<Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.connection(port)?)
            .with_context(|| format!("CLUSTER SLOTS on node {port}"))?;
        reply
            .into_iter()
            .map(|entry| {
                let mut it = entry.into_iter();
                let (Some(start), Some(end), Some(master)) = (it.next(), it.next(), it.next())
                else {
                    bail!("short CLUSTER SLOTS entry from node {port}");
                };
                let master: Vec<Value> = redis::from_redis_value(master)?;
                let master_port = master
                    .into_iter()
                    .nth(1)
                    .map(redis::from_redis_value)
                    .transpose()?
                    .context("CLUSTER SLOTS entry without a master port")?;
                Ok(SlotRange {
                    start: redis::from_redis_value(start)?,
                    end: redis::from_redis_value(end)?,
                    master: master_port,
                })
            })
            .collect()
    }

    /// SIGKILLs one node and reaps it.
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let node = self.node_mut(port)?;
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("reaping node {port}"))?;
        }
        node.stopped = false;
        Ok(())
    }

    /// Pauses one node (SIGSTOP): its sockets stay open but it answers nothing.
    pub fn stop(&mut self, port: u16) -> anyhow::Result<()> {
        self.signal(port, "STOP")?;
        self.node_mut(port)?.stopped = true;
        Ok(())
    }

    /// Resumes a paused node (SIGCONT).
    pub fn cont(&mut self, port: u16) -> anyhow::Result<()> {
        self.signal(port, "CONT")?;
        self.node_mut(port)?.stopped = false;
        Ok(())
    }

    fn signal(&self, port: u16, name: &str) -> anyhow::Result<()> {
        let pid = self
            .node(port)?
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("node {port} is not running"))?;
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -{name} {pid} failed ({status})");
        Ok(())
    }

    /// Waits until no live node routes any slot to `dead_port` (killed or
    /// paused), every range is served by a live node, and every live node
    /// says the cluster is whole.
    pub fn wait_for_failover(&self, dead_port: u16, within: Duration) -> anyhow::Result<()> {
        let what = format!("the slots of node {dead_port} to move to a live master");
        self.wait_until(&what, within, || {
            let live = self.live_ports();
            anyhow::ensure!(
                !live.contains(&dead_port),
                "node {dead_port} is still running"
            );
            for &port in &live {
                self.cluster_info(port)?;
                for range in self.slot_ranges(port)? {
                    anyhow::ensure!(
                        live.contains(&range.master),
                        "node {port} routes slots {}-{} to node {}, which is not live",
                        range.start,
                        range.end,
                        range.master
                    );
                }
            }
            Ok(())
        })
    }

    /// Starts a killed node again on its port, with its `nodes.conf`, and
    /// waits until it sees the cluster whole and, if it came back as a
    /// replica (as a failed-over master does), is linked to its master.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.node(port)?.child.is_none(),
            "node {port} is already running"
        );
        let child = self.spawn(port)?;
        self.node_mut(port)?.child = Some(child);
        self.wait_until(&format!("node {port} to rejoin"), READY_WITHIN, || {
            self.cluster_info(port)?;
            match self.role(port)? {
                Role::Replica => self.ensure_linked(port),
                _ => Ok(()),
            }
        })
    }

    /// Runs `f` on a connection to every live node, e.g. `SLOWLOG GET` or
    /// `CONFIG RESETSTAT`; results come back with the node's port.
    pub fn for_each_node<T>(
        &self,
        f: impl FnMut(u16, &mut redis::Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<Vec<(u16, T)>> {
        self.run_on(self.live_ports(), f)
    }

    /// Runs `f` on a connection to every live master.
    pub fn for_each_master<T>(
        &self,
        f: impl FnMut(u16, &mut redis::Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<Vec<(u16, T)>> {
        self.run_on(self.masters(), f)
    }

    fn run_on<T>(
        &self,
        ports: Vec<u16>,
        mut f: impl FnMut(u16, &mut redis::Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<Vec<(u16, T)>> {
        ports
            .into_iter()
            .map(|port| {
                let value = f(port, &mut self.connection(port)?)
                    .with_context(|| format!("on cluster node {port}"))?;
                Ok((port, value))
            })
            .collect()
    }

    /// The directory holding every node's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

struct SlotRange {
    start: u16,
    end: u16,
    master: u16,
}

impl SlotRange {
    fn owns(&self, slot: u16, master: u16) -> bool {
        (self.start..=self.end).contains(&slot) && self.master == master
    }
}

/// The value of `name:value` in an `INFO`-style reply.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(field(info, "cluster_state"), Some("ok"));
        assert_eq!(field(info, "cluster_slots_ok"), Some("16384"));
        assert_eq!(field(info, "cluster_slots"), None);
    }
}
