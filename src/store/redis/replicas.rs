//! `--min-replicas-ack`: a publish is acknowledged only once N replicas
//! hold it. Redis replicates asynchronously; `WAIT` turns that into a bound
//! on what a failover can lose (see `docs/data-model.md`, "Replicas").
//!
//! `WAIT` counts the replicas that reached the *calling connection's* last
//! write. So each wait first writes a small key on the node it waits on and
//! waits for that: the node's replication stream is in order, so the
//! replicas that hold this write hold every earlier write to the node, by
//! any connection. The waits run on a connection of their own, because
//! Redis blocks a connection during `WAIT` and checks, reconciliation and
//! other writers must not queue behind it.
//!
//! A failover during the publish is caught by comparing which node owns
//! each slot before the publish and at each wait: a new master may lack
//! what was staged on the old one, and its replicas would confirm the loss.

use std::time::Duration;

use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};

use super::RedisStore;
use super::batch::Batch;
use super::design;
use super::keys;
use super::meta::CampaignMeta;
use crate::store::{StoreError, StoreResult};

/// How long a publish waits for replicas unless configured.
const REPLICA_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many replicas must confirm a publish, and for how long to wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaAck {
    pub(crate) min: u32,
    pub(crate) timeout: Duration,
}

impl ReplicaAck {
    pub(crate) fn new(options: &super::ConnectOptions) -> ReplicaAck {
        ReplicaAck {
            min: options.min_replicas_ack,
            timeout: options.replica_ack_timeout.unwrap_or(REPLICA_ACK_TIMEOUT),
        }
    }

    /// The deadline of the connection the waits use: past the wait itself.
    pub(crate) fn deadline(&self) -> Duration {
        self.timeout + Duration::from_secs(1)
    }
}

/// When in a publish the replicas are waited for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AckPoint<'a> {
    /// Everything staged (this snapshot last), nothing published: a
    /// shortfall leaves the live audience untouched.
    Staged(&'a str),
    /// Just published on the primary.
    Published,
}

/// Which node owns each slot range: `(start, end, node id)`, sorted. `None`
/// on a single Redis.
pub(crate) type Masters = Option<Vec<(i64, i64, String)>>;

impl RedisStore {
    /// The cluster's masters as a publish starts, when replicas must
    /// confirm it; compared again at each wait.
    pub(crate) async fn masters_before_publish(&self) -> StoreResult<Masters> {
        match &self.inner.acks {
            Some(conn) if conn.is_cluster() && self.inner.replicas.min > 0 => self.masters().await,
            _ => Ok(None),
        }
    }

    async fn masters(&self) -> StoreResult<Masters> {
        let Some(conn) = &self.inner.acks else {
            return Ok(None);
        };
        let slots: Vec<Value> = conn
            .routed(
                "replicas",
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await?;
        let mut masters = Vec::with_capacity(slots.len());
        for range in slots {
            let parsed: Option<(i64, i64, String)> = (|| {
                let Value::Array(fields) = range else {
                    return None;
                };
                let start = redis::from_redis_value(fields.first()?.clone()).ok()?;
                let end = redis::from_redis_value(fields.get(1)?.clone()).ok()?;
                let Value::Array(node) = fields.get(2)? else {
                    return None;
                };
                let id = redis::from_redis_value(node.get(2)?.clone()).ok()?;
                Some((start, end, id))
            })();
            masters.push(parsed.ok_or_else(|| {
                StoreError::Corrupt("CLUSTER SLOTS answered in an unknown shape".into())
            })?);
        }
        masters.sort();
        Ok(Some(masters))
    }

    /// Waits until [`ReplicaAck`]'s replicas hold this publish: on the
    /// campaign's primary, and for a design whose keys spread over the
    /// cluster, on every primary. At `Staged` the attempt's snapshot must
    /// still be there; at `Published` the campaign's metadata must be at
    /// `meta`'s revision, so the wait is for this very commit.
    pub(crate) async fn await_replicas(
        &self,
        meta: &CampaignMeta,
        point: AckPoint<'_>,
        before: &Masters,
    ) -> StoreResult<()> {
        let ack = self.inner.replicas;
        let Some(conn) = &self.inner.acks else {
            return Ok(());
        };
        if ack.min == 0 {
            return Ok(());
        }
        let id = meta.id();
        let refuse = |why: String| {
            let tail = match point {
                AckPoint::Staged(_) => {
                    "nothing was published and the live audience is unchanged; retry when the replicas are back"
                }
                AckPoint::Published => {
                    "the new version may be lost in a failover; retrying the same request is safe"
                }
            };
            tracing::warn!(campaign = %id, point = ?point, why, "replicas did not confirm a publish");
            metrics::counter!("guestlist_replica_ack_shortfalls_total").increment(1);
            StoreError::Unreplicated(format!("campaign {id:?}: {why}; {tail}"))
        };
        let now = if before.is_some() {
            self.masters().await?
        } else {
            None
        };
        if now != *before {
            return Err(refuse(
                "the cluster changed masters during the publish (a failover?)".into(),
            ));
        }

        let own = self.keys().ack(id);
        let mut nodes = vec![own.clone()];
        if let Some(masters) = &now
            && self.design(meta.campaign.design).keys_per_member()
        {
            nodes.extend(ack_keys_per_master(self.keys(), masters));
        }
        let waits = nodes.iter().map(|key| {
            let mut batch = Batch::new();
            batch
                .cmd("SET")
                .arg(key)
                .arg(rand::random::<u64>())
                .arg("EX")
                .arg(60);
            if *key == own {
                match point {
                    AckPoint::Staged(snapshot) => batch.cmd("EXISTS").arg(snapshot),
                    AckPoint::Published => batch
                        .cmd("HMGET")
                        .arg(self.keys().meta(id))
                        .arg(keys::FIELD_INCARNATION)
                        .arg(keys::FIELD_REVISION),
                };
            }
            batch
                .cmd("WAIT")
                .arg(ack.min)
                .arg(ack.timeout.as_millis() as u64);
            async move { conn.pipe_on_slot_of("replicas", key, &batch).await }
        });
        let replies = futures_util::future::try_join_all(waits).await?;
        let mut confirmed = u64::MAX;
        for (key, reply) in nodes.iter().zip(replies) {
            let mut reply = reply.into_iter().skip(1);
            if *key == own {
                let check = design::next_reply(&mut reply)?;
                match point {
                    AckPoint::Staged(_) => {
                        let exists: i64 = design::parse(check)?;
                        if exists != 1 {
                            return Err(refuse(
                                "the staged audience is gone from the primary (a failover?)".into(),
                            ));
                        }
                    }
                    AckPoint::Published => {
                        let seen: Vec<Option<String>> = design::parse(check)?;
                        let expected = [
                            Some(meta.incarnation.to_string()),
                            Some(meta.revision.to_string()),
                        ];
                        if seen != expected {
                            return Err(refuse(format!(
                                "version {} is not on the campaign's primary any more (a failover?)",
                                meta.campaign.version
                            )));
                        }
                    }
                }
            }
            let count: u64 = design::parse(design::next_reply(&mut reply)?)?;
            confirmed = confirmed.min(count);
        }
        if confirmed < u64::from(ack.min) {
            let what = match point {
                AckPoint::Staged(_) => "the new audience".to_string(),
                AckPoint::Published => {
                    format!("version {}, live on the primary,", meta.campaign.version)
                }
            };
            return Err(refuse(format!(
                "only {confirmed} of {} replicas confirmed {what} within {:?}",
                ack.min, ack.timeout
            )));
        }
        Ok(())
    }
}

/// One key per master (other than by luck the campaign's own), each in a
/// slot that master owns, for a wait on every master.
fn ack_keys_per_master(keys: &keys::Keys, masters: &[(i64, i64, String)]) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (start, end, node) in masters {
        if seen.contains(&node.as_str()) {
            continue;
        }
        seen.push(node);
        // About 16,384 / (end - start + 1) candidates until one lands in
        // the range: a handful for a master of a few thousand slots.
        let key = (0u64..)
            .map(|i| keys.node_ack(i))
            .find(|k| (*start..=*end).contains(&i64::from(slot_number(k))))
            .expect("every slot range holds some key");
        out.push(key);
    }
    out
}

/// A key's slot as a number (the redis crate keeps it private).
fn slot_number(key: &str) -> u16 {
    let slot = Slot::for_key(key);
    (0..16_384)
        .find(|&n| Slot::new(n) == Some(slot))
        .expect("a slot is below 16,384")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_numbers_match_redis() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(slot_number("foo"), 12182);
        assert_eq!(slot_number("{user1000}.following"), 3443);
    }

    #[test]
    fn each_master_gets_a_key_in_its_own_slots() {
        let keys = keys::Keys::default();
        let masters = vec![
            (0, 5460, "a".to_string()),
            (5461, 10922, "b".to_string()),
            (10923, 16383, "c".to_string()),
            (16000, 16010, "a".to_string()),
        ];
        let chosen = ack_keys_per_master(&keys, &masters);
        assert_eq!(chosen.len(), 3);
        for (key, (start, end, _)) in chosen.iter().zip(&masters) {
            assert!(
                (*start..=*end).contains(&i64::from(slot_number(key))),
                "{key}"
            );
        }
    }
}
