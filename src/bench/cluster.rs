//! The bench on Redis Cluster: its own connections, which reach every
//! master, and the load each master took during a run.
//!
//! The designs need nothing from here: they run through [`RedisStore`] with
//! a `redis+cluster://` URL, exactly as `serve` does. The bench's own work,
//! the `json` key, memory readings and clean-up, needs a connection that
//! can also ask *every* master (a SCAN or an INFO on one node sees only its
//! slots), which [`BenchConn`] gives for both a single Redis and a cluster.
//!
//! The point of running on a cluster is the story's "concurrency risk"
//! column: a design whose every check reads one key sends all of its load to
//! one shard. Each run therefore records, from `INFO commandstats` read on
//! every master just before and just after the measured window, how many
//! commands each master served and the busiest one's share.
//!
//! [`RedisStore`]: crate::store::redis::RedisStore

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult, Value};

use super::results::{Results, Run};
use crate::config::{BenchArgs, StoreLocation};
use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;
use crate::store::redis::ConnectOptions;
use crate::store::redis::connect::{self, Target};

/// Commands a login check sends, whatever the design: the probes (`set`:
/// SISMEMBER, `per-user`: HGETALL, `bitmap`: GETBIT or BITFIELD_RO, `json`:
/// GET), the metadata read that goes with them (HMGET), and the MULTI/EXEC
/// that keeps a probe and its metadata in one snapshot.
const CHECK_COMMANDS: [&str; 9] = [
    "sismember",
    "smismember",
    "hgetall",
    "getbit",
    "bitfield_ro",
    "get",
    "hmget",
    "multi",
    "exec",
];

/// The bench's own readings, left out of the counts so that measuring does
/// not show up as load.
const BENCH_COMMANDS: [&str; 1] = ["info"];

/// What the bench measures, and the private server or cluster it started
/// for that, stopped when this is dropped.
pub(crate) struct Under {
    pub url: String,
    _server: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

/// The Redis `args` names (`--redis`, `--redis-cluster`), or a private
/// server or 3-master cluster started for the run. Only loopback targets
/// are accepted: the bench is a load generator.
pub(crate) async fn under_test(args: &BenchArgs) -> anyhow::Result<Under> {
    let given = args.redis.as_ref().or(args.redis_cluster.as_ref());
    if let Some(StoreLocation(url)) = given {
        if args.redis_cluster.is_some() {
            anyhow::ensure!(
                connect::is_cluster_url(url),
                "--redis-cluster takes a redis+cluster://host:port[,host:port…] URL"
            );
        }
        if args.allow_remote {
            eprintln!(
                "measuring {} on purpose (--allow-remote): the bench writes under a \
                 private key prefix and removes it at the end",
                crate::store::redact_url(url)
            );
        } else {
            check_loopback(url)?;
        }
        return Ok(Under {
            url: url.clone(),
            _server: None,
            _cluster: None,
        });
    }
    if args.cluster {
        let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0)).await??;
        let url = cluster.cluster_url();
        eprintln!("started a private 3-master Redis Cluster: {url}");
        return Ok(Under {
            url,
            _server: None,
            _cluster: Some(cluster),
        });
    }
    let server = tokio::task::spawn_blocking(RedisServer::start).await??;
    eprintln!("started a private redis-server on {}", server.url());
    Ok(Under {
        url: server.url(),
        _server: Some(server),
        _cluster: None,
    })
}

/// Runs `work` on a runtime of its own, which is shut down, tasks and all,
/// before this returns. The store and near-cache leave background tasks
/// (catalog, change notices) that end only on their next wake-up; stopping
/// them here closes their connections before a private server or cluster
/// is stopped, instead of leaving them to log its nodes' disappearance.
pub(crate) async fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    let outcome = runtime.block_on(work);
                    runtime.shutdown_timeout(Duration::from_secs(2));
                    outcome
                });
            let _ = tx.send(outcome);
        })
        .context("starting the bench's thread")?;
    rx.await.context("the bench's thread panicked")?
}

/// Refuses any target off loopback. A cluster URL's every seed node is
/// checked here; the masters it leads to are checked on connecting.
pub(crate) fn check_loopback(url: &str) -> anyhow::Result<()> {
    if !connect::is_cluster_url(url) {
        return super::check_loopback(url);
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    for node in hosts.trim_end_matches('/').split(',') {
        let host = node
            .rsplit_once(':')
            .map_or(node, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        ensure_loopback(host)?;
    }
    Ok(())
}

pub(crate) fn ensure_loopback(host: &str) -> anyhow::Result<()> {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "the bench generates load and targets loopback Redis servers only; {host} is not \
         one (add --allow-remote to measure it on purpose)"
    );
    Ok(())
}

/// A master as the cluster names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    host: String,
    port: u16,
}

impl Node {
    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The bench's own connection: one Redis, or a cluster with its masters as
/// they were when it connected (the bench never fails a node over).
#[derive(Clone)]
pub(crate) enum BenchConn {
    Single(ConnectionManager),
    Cluster {
        conn: ClusterConnection,
        masters: Arc<Vec<Node>>,
    },
}

impl BenchConn {
    /// Connects to `url`, a single Redis or a `redis+cluster://` URL; every
    /// command must answer within `deadline`. A cluster's masters must be on
    /// loopback unless `allow_remote`.
    pub(crate) async fn open(
        url: &str,
        options: &ConnectOptions,
        deadline: Duration,
        allow_remote: bool,
    ) -> anyhow::Result<BenchConn> {
        let shown = crate::store::redact_url(url);
        match connect::target(url, options)? {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(deadline))
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                let conn = client
                    .get_connection_manager_with_config(config)
                    .await
                    .with_context(|| format!("connecting to {shown}"))?;
                Ok(BenchConn::Single(conn))
            }
            Target::Cluster(cluster) => {
                let client = cluster
                    .builder()
                    .connection_timeout(Duration::from_secs(5))
                    .response_timeout(deadline)
                    .build()?;
                let mut conn = client
                    .get_async_connection()
                    .await
                    .with_context(|| format!("connecting to {shown}"))?;
                let nodes: String = from_value(
                    conn.route_command(
                        redis::cmd("CLUSTER").arg("NODES").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?,
                )?;
                let masters = parse_masters(&nodes)?;
                for master in masters.iter().filter(|_| !allow_remote) {
                    ensure_loopback(&master.host)?;
                }
                Ok(BenchConn::Cluster {
                    conn,
                    masters: Arc::new(masters),
                })
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, BenchConn::Cluster { .. })
    }

    /// The masters' `host:port`s; empty for a single Redis.
    pub(crate) fn masters(&self) -> Vec<String> {
        match self {
            BenchConn::Single(_) => Vec::new(),
            BenchConn::Cluster { masters, .. } => masters.iter().map(Node::name).collect(),
        }
    }

    /// One command, routed by its key on a cluster.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            BenchConn::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            BenchConn::Cluster { conn, .. } => cmd.query_async(&mut conn.clone()).await,
        }
    }

    /// `cmd` on every master (or the one server), with each node's name.
    pub(crate) async fn on_each<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> anyhow::Result<Vec<(String, T)>> {
        match self {
            BenchConn::Single(conn) => {
                let value = cmd.query_async(&mut conn.clone()).await?;
                Ok(vec![("redis".to_string(), value)])
            }
            BenchConn::Cluster { conn, masters } => {
                let mut replies = Vec::with_capacity(masters.len());
                for node in masters.iter() {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: node.host.clone(),
                        port: node.port,
                    });
                    let value = conn
                        .clone()
                        .route_command(cmd.clone(), routing)
                        .await
                        .with_context(|| format!("on cluster node {}", node.name()))?;
                    replies.push((node.name(), from_value(value)?));
                }
                Ok(replies)
            }
        }
    }

    /// Every key matching `pattern` on every master, by SCAN (never KEYS,
    /// which blocks Redis).
    pub(crate) async fn scan(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let nodes: Vec<Option<&Node>> = match self {
            BenchConn::Single(_) => vec![None],
            BenchConn::Cluster { masters, .. } => masters.iter().map(Some).collect(),
        };
        let mut found = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = match (self, node) {
                    (BenchConn::Cluster { conn, .. }, Some(node)) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: node.host.clone(),
                            port: node.port,
                        });
                        from_value(conn.clone().route_command(cmd, routing).await?)?
                    }
                    _ => self.query(&cmd).await?,
                };
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }
}

fn from_value<T: FromRedisValue>(value: Value) -> anyhow::Result<T> {
    Ok(T::from_redis_value(value)?)
}

/// The masters that serve slots, from a `CLUSTER NODES` reply: one line per
/// node, `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong>
/// <epoch> <link> [<slot>…]`.
fn parse_masters(nodes: &str) -> anyhow::Result<Vec<Node>> {
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 {
            continue;
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
            continue;
        }
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = address.rsplit_once(':') else {
            bail!("CLUSTER NODES names a master at {address:?}");
        };
        masters.push(Node {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port
                .parse()
                .with_context(|| format!("CLUSTER NODES names a master at {address:?}"))?,
        });
    }
    anyhow::ensure!(!masters.is_empty(), "CLUSTER NODES lists no master");
    masters.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    Ok(masters)
}

/// Calls per command name on each master, from `INFO commandstats`.
pub(crate) struct CommandCounts(BTreeMap<String, BTreeMap<String, u64>>);

impl CommandCounts {
    /// The masters the counts came from.
    pub(crate) fn masters(&self) -> usize {
        self.0.len()
    }

    pub(crate) async fn read(conn: &BenchConn) -> anyhow::Result<CommandCounts> {
        let replies: Vec<(String, String)> =
            conn.on_each(redis::cmd("INFO").arg("commandstats")).await?;
        Ok(CommandCounts(
            replies
                .into_iter()
                .map(|(node, text)| (node, parse_commandstats(&text)))
                .collect(),
        ))
    }

    /// What each master served since `before`: all commands but the
    /// bench's readings, and the check commands among them.
    fn since(&self, before: &CommandCounts) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let mut all = BTreeMap::new();
        let mut checks = BTreeMap::new();
        for (node, counts) in &self.0 {
            let earlier = before.0.get(node);
            let delta = |name: &str, calls: u64| {
                calls.saturating_sub(earlier.and_then(|e| e.get(name)).copied().unwrap_or(0))
            };
            let mut node_all = 0;
            let mut node_checks = 0;
            for (name, &calls) in counts {
                let served = delta(name, calls);
                if !BENCH_COMMANDS.contains(&name.as_str()) {
                    node_all += served;
                }
                if CHECK_COMMANDS.contains(&name.as_str()) {
                    node_checks += served;
                }
            }
            all.insert(node.clone(), node_all);
            checks.insert(node.clone(), node_checks);
        }
        (all, checks)
    }
}

/// `cmdstat_<name>:calls=<n>,usec=…` lines as name → calls. Subcommands keep
/// Redis's own `cluster|nodes` form.
fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}

/// Records in `run` what each master served between the two readings.
pub(crate) fn record(run: &mut Run, before: &CommandCounts, after: &CommandCounts) {
    let (all, checks) = after.since(before);
    run.busiest_node_share = Some(busiest_share(&all));
    run.busiest_node_check_share = Some(busiest_share(&checks));
    run.node_commands = Some(all);
    run.node_check_commands = Some(checks);
}

/// The busiest node's share of the total; 0 when nothing was served.
fn busiest_share(counts: &BTreeMap<String, u64>) -> f64 {
    let total: u64 = counts.values().sum();
    let busiest = counts.values().copied().max().unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        busiest as f64 / total as f64
    }
}

/// Whether `results` came from a cluster: the node columns apply.
pub(crate) fn on_cluster(results: &Results) -> bool {
    results.runs.iter().any(|r| r.busiest_node_share.is_some())
}

/// The busiest node's share of a run's check commands, as a table cell.
pub(crate) fn busiest_cell(run: &Run) -> String {
    let checks: u64 = run
        .node_check_commands
        .as_ref()
        .map_or(0, |n| n.values().sum());
    match run.busiest_node_check_share {
        None => "n/a".into(),
        // Under one command per thousand checks, what reached Redis was the
        // store's background reads, not checks: a share of those would
        // read as a hot shard that is not there.
        Some(_) if checks.saturating_mul(1000) < run.checks => {
            format!(
                "n/a: {} cmds for all checks",
                crate::numfmt::thousands(checks)
            )
        }
        Some(share) => format!("{:.1}%", share * 100.0),
    }
}

/// One row per run: how its commands spread over the masters.
pub(crate) fn node_table(results: &Results) -> String {
    let masters: Vec<String> = results.cluster_masters.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = write!(
        out,
        "| Design | Audience | Concurrency | checks/s | busiest node (check cmds) \
         | check cmds to Redis | busiest node (all cmds) | all cmds to Redis |"
    );
    for m in &masters {
        let _ = write!(out, " {m} check / all |");
    }
    out.push('\n');
    out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|");
    out.push_str(&"--:|".repeat(masters.len()));
    out.push('\n');
    for run in &results.runs {
        let all = run.node_commands.clone().unwrap_or_default();
        let checks = run.node_check_commands.clone().unwrap_or_default();
        let mut cells = vec![
            run.design.clone(),
            crate::numfmt::thousands(run.audience),
            crate::numfmt::thousands(run.concurrency as u64),
            crate::numfmt::format_rate(run.checks_per_sec),
            busiest_cell(run),
            crate::numfmt::thousands(checks.values().sum()),
            run.busiest_node_share
                .map_or_else(|| "n/a".into(), |s| format!("{:.1}%", s * 100.0)),
            crate::numfmt::thousands(all.values().sum()),
        ];
        for m in &masters {
            cells.push(format!(
                "{} / {}",
                crate::numfmt::thousands(checks.get(m).copied().unwrap_or(0)),
                crate::numfmt::thousands(all.get(m).copied().unwrap_or(0))
            ));
        }
        out.push_str(&super::report::markdown_row(&cells));
    }
    let _ = writeln!(
        out,
        "\nCounts are `INFO commandstats` deltas on each master over the measured window. \
         Check commands are {}; all commands leave out only the bench's own INFO readings.",
        CHECK_COMMANDS.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_come_from_cluster_nodes_without_replicas_or_failed_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003 slave a1 0 1 1 connected
d4 127.0.0.1:7004@17004 master,fail - 0 1 3 disconnected 10923-16383
e5 127.0.0.1:7005@17005 master - 0 1 4 connected
";
        let masters = parse_masters(nodes).unwrap();
        let names: Vec<String> = masters.iter().map(Node::name).collect();
        assert_eq!(names, ["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert!(parse_masters("").is_err());
    }

    #[test]
    fn commandstats_deltas_split_checks_from_the_rest_and_skip_info() {
        let stats = |sismember: u64, info: u64, set: u64| {
            format!(
                "# Commandstats\r\ncmdstat_sismember:calls={sismember},usec=5,usec_per_call=0.1\r\n\
                 cmdstat_info:calls={info},usec=1\r\ncmdstat_set:calls={set},usec=1\r\n\
                 cmdstat_cluster|nodes:calls=2,usec=1\r\n"
            )
        };
        let counts = |entries: &[(&str, String)]| {
            CommandCounts(
                entries
                    .iter()
                    .map(|(n, t)| (n.to_string(), parse_commandstats(t)))
                    .collect(),
            )
        };
        let before = counts(&[("a", stats(10, 5, 1)), ("b", stats(0, 5, 0))]);
        let after = counts(&[("a", stats(910, 9, 1)), ("b", stats(100, 9, 3))]);
        let (all, checks) = after.since(&before);
        assert_eq!(checks["a"], 900);
        assert_eq!(checks["b"], 100);
        assert_eq!(all["a"], 900);
        assert_eq!(all["b"], 103);
        assert!((busiest_share(&checks) - 0.9).abs() < 1e-9);
        assert_eq!(busiest_share(&BTreeMap::new()), 0.0);
    }

    #[test]
    fn cluster_urls_are_loopback_only_on_every_seed_node() {
        assert!(check_loopback("redis+cluster://127.0.0.1:7000,localhost:7001").is_ok());
        assert!(check_loopback("redis+cluster://:pw@127.0.0.1:7000,[::1]:7001").is_ok());
        let e = check_loopback("redis+cluster://127.0.0.1:7000,10.0.0.5:7001").unwrap_err();
        assert!(e.to_string().contains("10.0.0.5"), "{e}");
    }
}
