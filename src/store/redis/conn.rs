//! Connections to Redis and the deadline every call on them gets.
//!
//! A store holds two: checks use one with a short deadline, admin work and
//! bulk writes another with a long one, so a million-ID upload never queues
//! ahead of a login. Every call records its latency and errors by `op`.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline};

use crate::store::{StoreError, StoreResult};

/// Commands sent per round trip during bulk writes.
pub(crate) const PIPELINE_DEPTH: usize = 32;

/// A Redis connection paired with the deadline every call on it gets.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
    deadline: Duration,
}

impl Conn {
    /// A lazily connecting, self-reconnecting connection whose every call
    /// (one command or one pipeline) must answer within `deadline`.
    pub(crate) fn open(client: &redis::Client, deadline: Duration) -> anyhow::Result<Conn> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(deadline))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        Ok(Conn {
            manager: client.get_connection_manager_lazy(config)?,
            deadline,
        })
    }

    /// The same connection with another deadline.
    pub(crate) fn with_deadline(&self, deadline: Duration) -> Conn {
        Conn {
            manager: self.manager.clone(),
            deadline,
        }
    }

    /// Runs one command under the deadline, recording latency and errors.
    pub(crate) async fn cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        let mut c = self.manager.clone();
        timed(
            op,
            self.deadline,
            async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    /// Runs one pipeline (one round trip) under the deadline.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> StoreResult<T> {
        let mut c = self.manager.clone();
        timed(
            op,
            self.deadline,
            async move { pipe.query_async(&mut c).await },
        )
        .await
    }

    /// UNLINKs `key`: freed off Redis's main thread, whatever its size.
    pub(crate) async fn unlink(&self, op: &'static str, key: &str) -> StoreResult<()> {
        self.cmd::<i64>(op, redis::cmd("UNLINK").arg(key))
            .await
            .map(drop)
    }

    /// Sends `cmds` in round trips of [`PIPELINE_DEPTH`] commands, discarding
    /// replies. Pulls commands from the iterator as it goes, so a bulk write
    /// holds one round trip's commands in memory, not the whole audience's.
    pub(crate) async fn bulk(
        &self,
        op: &'static str,
        cmds: impl IntoIterator<Item = Cmd>,
    ) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        let mut queued = 0;
        for cmd in cmds {
            pipe.add_command(cmd).ignore();
            queued += 1;
            if queued == PIPELINE_DEPTH {
                self.pipe::<()>(op, &pipe).await?;
                pipe = redis::pipe();
                queued = 0;
            }
        }
        if queued > 0 {
            self.pipe::<()>(op, &pipe).await?;
        }
        Ok(())
    }
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
