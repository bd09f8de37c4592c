//! Connections to Redis and the deadline every call on them gets.
//!
//! A store holds two: checks use one with a short deadline, admin work and
//! bulk writes another with a long one, so a million-ID upload never queues
//! ahead of a login. Every call records its latency and errors by `op`.
//!
//! On Redis Cluster a connection is the redis crate's cluster client (slot
//! routing, MOVED/ASK, topology refresh after a failover); a [`Batch`] is
//! split by slot and its parts sent to their nodes in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, Value};

use super::batch::Batch;
use super::connect::Target;
use super::pace::Pacer;
use crate::store::{StoreError, StoreResult};

/// Commands sent per round trip during bulk writes.
pub(crate) const PIPELINE_DEPTH: usize = 32;

/// How long opening a connection to one Redis node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis connection paired with the deadline every call on it gets.
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    deadline: Duration,
    /// Paces [`Conn::bulk`]; `None` sends bulk writes flat out.
    pacer: Option<Pacer>,
}

#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use, so the service starts (and
/// reports not ready) while the cluster is unreachable, as with one Redis.
///
/// A read-only connection is made again after a call fails with a timeout
/// or an I/O error (at most once a second): after some failovers the client keeps routing a slot to
/// a node that lost it and waits out every deadline, and a new connection
/// reads the slot map afresh. The connection is made on a task of its own,
/// so a caller's short deadline cannot abandon it half made.
struct LazyCluster {
    client: ClusterClient,
    conn: ArcSwapOption<ClusterConnection>,
    /// When the current connection was made; a reset waits a second past it.
    made: std::sync::Mutex<Instant>,
    connecting: tokio::sync::Mutex<()>,
    /// Only a connection that never writes is made again: a new connection
    /// could overtake writes still queued on the old one (an undo arriving
    /// before the change it undoes), while a read can be sent anywhere.
    may_remake: bool,
}

/// What a connection carries, which decides how it routes and recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Use {
    /// Login checks, reads only; `replicas` sends them to replicas.
    Checks { replicas: bool },
    /// Writes and admin reads, always on primaries.
    Writes,
}

impl LazyCluster {
    async fn get(self: &Arc<Self>) -> redis::RedisResult<ClusterConnection> {
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        // One attempt at a time: callers that arrive meanwhile wait for it
        // rather than each opening connections to every node.
        let _turn = self.connecting.lock().await;
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let this = self.clone();
        let made = tokio::spawn(async move {
            let conn = this.client.get_async_connection().await?;
            if this.conn.load().is_none() {
                this.conn.store(Some(Arc::new(conn.clone())));
                *this.made.lock().expect("lock poisoned") = Instant::now();
            }
            redis::RedisResult::Ok(conn)
        });
        made.await
            .unwrap_or_else(|e| Err(redis::RedisError::from(std::io::Error::other(e))))
    }

    /// Drops the connection after a failure that may mean a stale slot map.
    fn observe<T>(&self, result: &redis::RedisResult<T>) {
        let Err(e) = result else { return };
        if !self.may_remake || !(e.is_timeout() || e.is_io_error() || e.is_connection_dropped()) {
            return;
        }
        let mut made = self.made.lock().expect("lock poisoned");
        if made.elapsed() > Duration::from_secs(1) && self.conn.load().is_some() {
            self.conn.store(None);
            *made = Instant::now();
            tracing::info!(error = %e, "Redis Cluster call failed; reconnecting to re-read the slot map");
        }
    }
}

impl Conn {
    /// A lazily connecting, self-reconnecting connection whose every call
    /// (one command or one pipeline) must answer within `deadline`.
    /// `use_` says what it carries (see [`Use`]).
    pub(crate) fn open(target: &Target, deadline: Duration, use_: Use) -> anyhow::Result<Conn> {
        let link = match target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(deadline))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                Link::Single(client.get_connection_manager_lazy(config)?)
            }
            Target::Cluster(cluster) => {
                let mut builder = cluster
                    .builder()
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(deadline)
                    // Retries follow MOVED/ASK and ride out a failover's
                    // few seconds; the call's deadline still bounds them.
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(1000);
                if use_ == (Use::Checks { replicas: true }) {
                    builder = builder
                        .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy);
                }
                Link::Cluster(Arc::new(LazyCluster {
                    client: builder.build()?,
                    conn: ArcSwapOption::empty(),
                    made: std::sync::Mutex::new(Instant::now()),
                    connecting: tokio::sync::Mutex::new(()),
                    may_remake: use_ != Use::Writes,
                }))
            }
        };
        Ok(Conn {
            link,
            deadline,
            pacer: None,
        })
    }

    /// The same connection with another deadline.
    pub(crate) fn with_deadline(&self, deadline: Duration) -> Conn {
        Conn {
            link: self.link.clone(),
            deadline,
            pacer: self.pacer.clone(),
        }
    }

    /// The same connection with its bulk writes paced by `pacer`.
    pub(crate) fn with_pacer(self, pacer: Option<Pacer>) -> Conn {
        Conn { pacer, ..self }
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Runs one command under the deadline, recording latency and errors.
    pub(crate) async fn cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        let link = self.link.clone();
        timed(op, self.deadline, async move {
            match link {
                Link::Single(mut c) => cmd.query_async(&mut c).await,
                Link::Cluster(lazy) => {
                    let result = async { cmd.query_async(&mut lazy.get().await?).await }.await;
                    lazy.observe(&result);
                    result
                }
            }
        })
        .await
    }

    /// Runs one command on the nodes `routing` names (cluster), or on the
    /// one server; replies are combined as the command's routing says.
    pub(crate) async fn routed<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: Cmd,
        routing: RoutingInfo,
    ) -> StoreResult<T> {
        let link = self.link.clone();
        timed(op, self.deadline, async move {
            match link {
                Link::Single(mut c) => cmd.query_async(&mut c).await,
                Link::Cluster(lazy) => {
                    let value = async { lazy.get().await?.route_command(cmd, routing).await }.await;
                    lazy.observe(&value);
                    Ok(T::from_redis_value(value?)?)
                }
            }
        })
        .await
    }

    /// Runs one batch under the deadline: one round trip on a single
    /// Redis; on a cluster, one per slot, sent in parallel.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        batch: &Batch,
    ) -> StoreResult<T> {
        let link = self.link.clone();
        timed(op, self.deadline, async move {
            match link {
                Link::Single(mut c) => batch.to_pipeline().query_async(&mut c).await,
                Link::Cluster(lazy) => {
                    let result = cluster_batch(&lazy, batch).await;
                    lazy.observe(&result);
                    Ok(T::from_redis_value(result?)?)
                }
            }
        })
        .await
    }

    /// Runs `batch` as one pipeline on the primary of `key`'s slot (its
    /// commands need not name keys, e.g. `WAIT`), returning every reply.
    pub(crate) async fn pipe_on_slot_of(
        &self,
        op: &'static str,
        key: &str,
        batch: &Batch,
    ) -> StoreResult<Vec<Value>> {
        let link = self.link.clone();
        let mut pipe = Pipeline::new();
        pipe.ignore_errors();
        batch.cmds().for_each(|c| {
            pipe.add_command(c.clone());
        });
        let count = batch.len();
        let key = key.to_string();
        let values: Vec<Value> = timed(op, self.deadline, async move {
            match link {
                Link::Single(mut c) => pipe.query_async(&mut c).await,
                Link::Cluster(lazy) => {
                    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                        key.as_bytes(),
                        SlotAddr::Master,
                    ));
                    let values = async {
                        lazy.get()
                            .await?
                            .route_pipeline(pipe, 0, count, route)
                            .await
                    }
                    .await;
                    lazy.observe(&values);
                    values
                }
            }
        })
        .await?;
        Value::Array(values)
            .extract_error()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))
            .and_then(|v| match v {
                Value::Array(values) => Ok(values),
                other => Err(StoreError::Corrupt(format!(
                    "a pipeline answered {other:?}"
                ))),
            })
    }

    /// UNLINKs `key`: freed off Redis's main thread, whatever its size.
    pub(crate) async fn unlink(&self, op: &'static str, key: &str) -> StoreResult<()> {
        self.cmd::<i64>(op, redis::cmd("UNLINK").arg(key))
            .await
            .map(drop)
    }

    /// Sends `cmds` in round trips of up to [`PIPELINE_DEPTH`] commands,
    /// discarding replies; each command comes with the number of IDs it
    /// carries, which the pacer budgets (see `pace.rs`). Pulls commands from
    /// the iterator as it goes, so a bulk write holds one round trip's
    /// commands in memory, not the whole audience's.
    pub(crate) async fn bulk(
        &self,
        op: &'static str,
        cmds: impl IntoIterator<Item = (Cmd, u64)>,
    ) -> StoreResult<()> {
        let mut cmds = cmds.into_iter();
        loop {
            let depth = self.pacer.as_ref().map_or(PIPELINE_DEPTH, Pacer::depth);
            let mut pipe = Batch::new();
            let mut ids = 0;
            for (cmd, carried) in cmds.by_ref().take(depth) {
                pipe.add_command(cmd).ignore();
                ids += carried;
            }
            if pipe.is_empty() {
                return Ok(());
            }
            let Some(pacer) = &self.pacer else {
                self.pipe::<()>(op, &pipe).await?;
                continue;
            };
            let admitted = Instant::now();
            let wait = pacer.admit(ids);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let sent = Instant::now();
            self.pipe::<()>(op, &pipe).await?;
            pacer.observe(pipe.len(), ids, admitted, sent);
        }
    }
}

/// A batch on a cluster: an atomic one as one transaction, any other split
/// by slot, the parts sent in parallel and their replies put back in order.
async fn cluster_batch(lazy: &Arc<LazyCluster>, batch: &Batch) -> redis::RedisResult<Value> {
    let conn = lazy.get().await?;
    if batch.is_atomic() {
        return transaction(&conn, batch).await;
    }
    let parts = batch.split_by_slot().into_iter().map(|(pipe, positions)| {
        let mut conn = conn.clone();
        async move {
            let sent = send_part(&mut conn, &pipe).await;
            redis::RedisResult::Ok((positions, sent?))
        }
    });
    let answers = futures_util::future::try_join_all(parts).await?;
    batch.reassemble(answers)
}

/// Runs an atomic batch (one slot) as MULTI/EXEC on its slot's primary.
///
/// After a failover the client may still send it to the old primary, now a
/// replica, which answers MOVED for each queued command and aborts the
/// transaction. That reply does not make the cluster client refresh its
/// slot map; a plain command on the same key does (it follows the MOVED),
/// after which the transaction is sent once more.
async fn transaction(conn: &ClusterConnection, batch: &Batch) -> redis::RedisResult<Value> {
    let pipe = batch.to_pipeline();
    match pipe.query_async(&mut conn.clone()).await {
        Err(e) if is_redirect(&e) => {
            if let Some(key) = pipe.cmd_iter().find_map(super::batch::key_of) {
                refresh_slot_of(conn.clone(), key.to_vec()).await?;
            }
            pipe.query_async(&mut conn.clone()).await
        }
        other => other,
    }
}

/// Whether a reply inside a pipeline is a MOVED redirection.
fn is_moved(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::Moved))
}

/// Sends one slot's part of a batch. A single command goes as a command:
/// the cluster client follows MOVED for commands, while a one-command
/// pipeline sent to a node that lost the slot can wait out its deadline.
/// A MOVED among a pipeline's replies means the node ran none of the part
/// (one slot, one owner): the client learns the new owner and the part is
/// sent again.
async fn send_part(
    conn: &mut ClusterConnection,
    pipe: &Pipeline,
) -> redis::RedisResult<Vec<Value>> {
    if pipe.len() == 1
        && let Some(cmd) = pipe.cmd_iter().next()
    {
        return Ok(vec![cmd.query_async::<Value>(conn).await?]);
    }
    let values: Vec<Value> = pipe.query_async(conn).await?;
    if !values.iter().any(is_moved) {
        return Ok(values);
    }
    if let Some(key) = pipe.cmd_iter().find_map(super::batch::key_of) {
        refresh_slot_of(conn.clone(), key.to_vec()).await?;
    }
    pipe.query_async(conn).await
}

/// Makes the cluster client learn who serves `key`'s slot: a plain
/// command on the key follows a MOVED and refreshes the slot map, which a
/// MOVED inside a pipeline's replies or a transaction does not.
async fn refresh_slot_of(mut conn: ClusterConnection, key: Vec<u8>) -> redis::RedisResult<()> {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut conn)
        .await
        .map(drop)
}

/// Whether `e` (or a command inside the transaction it reports) was
/// redirected to another node.
fn is_redirect(e: &redis::RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| {
        errors.iter().any(|(_, error)| {
            matches!(
                error.kind(),
                Some(redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask)
            )
        })
    })
}

async fn timed<T>(
    op: &'static str,
    deadline: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> StoreResult<T> {
    let start = Instant::now();
    let result = tokio::time::timeout(deadline, fut).await;
    metrics::histogram!("guestlist_store_duration_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    let error = match result {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) if is_fenced(&e) => StoreError::Fenced(e.to_string()),
        Ok(Err(e)) => StoreError::Unavailable(Box::new(e)),
        Err(_) => StoreError::Timeout(deadline),
    };
    let kind = match error {
        StoreError::Timeout(_) => "timeout",
        StoreError::Fenced(_) => "fenced",
        _ => "redis",
    };
    metrics::counter!("guestlist_store_errors_total", "op" => op, "kind" => kind).increment(1);
    Err(error)
}

/// Whether Redis refused a fenced commit (see `scripts/fenced.lua`): a
/// definite "not applied", unlike a timeout or a lost connection.
fn is_fenced(e: &redis::RedisError) -> bool {
    e.code() == Some("FENCED")
}
