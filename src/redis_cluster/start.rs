//! Starting nodes on free port pairs (client and bus), joining them with
//! `redis-cli --cluster create`, and waiting until the cluster is whole.

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{BUS_OFFSET, Node, READY_WITHIN, RedisCluster, Role, field};
use crate::redis_server::free_port;

impl RedisCluster {
    /// Starts one more node on fresh ports, trying again when another process
    /// takes a port between the check and the bind.
    pub(super) fn add_node(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..5 {
            let port = self.pick_port()?;
            match self.spawn(port) {
                Ok(child) => {
                    self.nodes.push(Node {
                        port,
                        child: Some(child),
                        stopped: false,
                    });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt")).context("starting a cluster node")
    }

    /// A port whose bus port is free too, clashing with no node's ports.
    fn pick_port(&self) -> anyhow::Result<u16> {
        let taken: HashSet<u16> = self
            .nodes
            .iter()
            .flat_map(|n| [n.port, n.port + BUS_OFFSET])
            .collect();
        for _ in 0..100 {
            let port = free_port()?;
            let bus = port + BUS_OFFSET;
            if taken.contains(&port) || taken.contains(&bus) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
                return Ok(port);
            }
        }
        bail!("no free loopback port with a free cluster bus port (+{BUS_OFFSET})")
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("node-{port}"))
    }

    /// Starts `redis-server` on `port` and waits until it accepts connections.
    /// Each node has its own directory, so that a replica's received RDB and
    /// its `nodes.conf` are its own, and a restart finds both again.
    pub(super) fn spawn(&self, port: u16) -> anyhow::Result<Child> {
        let dir = self.node_dir(port);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            // Short, so a replica takes over a second or two after its
            // master dies; validity 0 lets any replica take over.
            .args(["--cluster-node-timeout", "1000"])
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--cluster-allow-reads-when-down", "no"])
            // A master otherwise waits 5 s for more replicas before a sync.
            .args(["--repl-diskless-sync-delay", "0"]);
        if self.options.tls.is_some() {
            command.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        let mut child = command
            .args(self.options.args(port))
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting redis-server: it must be on PATH (Debian: apt-get install redis-server)",
            )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "redis-server exited at start ({status}) on port {port}: {}",
                    log_tail(&log)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("redis-server on port {port} did not accept connections within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Assigns the slots with `redis-cli --cluster create`; on one host it
    /// makes the first `masters` nodes the masters.
    pub(super) fn create(&self, replicas: usize) -> anyhow::Result<()> {
        let out_path = self.dir.path().join("create.log");
        let out = File::create(&out_path).context("creating the redis-cli log")?;
        let mut command = Command::new("redis-cli");
        command
            .args(self.cli_tls_args())
            .args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut child = command.spawn().context(
            "running redis-cli: it must be on PATH (Debian: apt-get install redis-tools)",
        )?;
        let deadline = Instant::now() + READY_WITHIN;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        match status {
            Some(s) if s.success() && !output.contains("[ERR]") => Ok(()),
            Some(s) => bail!("redis-cli --cluster create failed ({s}):\n{output}"),
            None => bail!(
                "redis-cli --cluster create did not finish within {READY_WITHIN:?}:\n{output}"
            ),
        }
    }

    /// Waits until every node sees all slots served and every node known,
    /// and every replica has a live link to its master.
    pub(super) fn wait_formed(&self, masters: usize) -> anyhow::Result<()> {
        let total = self.nodes.len();
        self.wait_until("the cluster to form", READY_WITHIN, || {
            let mut seen_masters = 0;
            for node in &self.nodes {
                let info = self.cluster_info(node.port)?;
                let known = field(&info, "cluster_known_nodes").unwrap_or("?");
                anyhow::ensure!(
                    known == total.to_string(),
                    "node {} knows {known} of {total} nodes",
                    node.port
                );
                match self.role(node.port)? {
                    Role::Master => seen_masters += 1,
                    Role::Replica => self.ensure_linked(node.port)?,
                    role => bail!("node {} is {role:?}", node.port),
                }
            }
            anyhow::ensure!(
                seen_masters == masters,
                "{seen_masters} masters, {masters} expected"
            );
            Ok(())
        })
    }
}

/// The last lines of a node's log, to explain why it did not start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
