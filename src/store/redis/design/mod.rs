//! The three Redis data models for an audience, behind one trait.
//!
//! The store owns leases, versions, snapshots and the fenced commit; a
//! design only says how its audience is staged, changed, probed and freed.
//! Adding a design is one file here, one arm in [`for_design`] and one in
//! `Design::ALL`.
//!
//! Users reach Redis as their canonical text ([`crate::ids::UserKey::text`]):
//! an integer's decimal digits (what Redis would write for the number
//! itself), a UUID's lowercase hyphenated form, a string ID's exact bytes.
//! So another application's `SISMEMBER` with the same text answers.

mod bitmap;
mod per_user;
mod set;

use async_trait::async_trait;
use redis::Value;

use crate::ids::{Audience, IdType};
use crate::store::redis::batch::Batch;
use roaring::RoaringTreemap;

use super::conn::Conn;
use super::keys::{Keys, Stamp};
use super::meta::{CampaignMeta, Identity};
use super::publish::Fenced;
use crate::domain::Design;
use crate::store::{StoreError, StoreResult};

/// Members per command for bulk writes and batch probes: big enough to
/// amortise round trips, small enough that no command holds Redis for more
/// than about 100 µs.
pub const CHUNK: usize = 1_000;

/// One design's data model. Every method that takes a [`Fenced`] only
/// queues commands on the campaign's own keys (one hash slot); methods
/// that touch per-user keys run outside any transaction, in an order that
/// readers never observe half-done (see `per_user`).
#[async_trait]
pub(crate) trait RedisDesign: Send + Sync {
    /// Writes the whole audience beside the live one under `attempt`, in
    /// chunks, invisible to readers until [`RedisDesign::publish`] commits.
    async fn stage(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        attempt: Stamp,
        version: u64,
        members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()>;

    /// Queues what makes `attempt`'s staged audience live.
    fn publish(&self, tx: &mut Fenced, id: &str, attempt: Stamp, expire_at: i64);

    /// Frees a generation no longer live (replaced, deleted, or staged and
    /// never published). Best effort; everything it frees also expires.
    async fn retire(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        generation: Stamp,
        members: &Audience,
    ) -> StoreResult<()>;

    /// Applies an in-place change of at most [`CHUNK`] IDs making `version`.
    /// Single-key designs queue it inside the commit; `per-user` writes it
    /// ahead, invisible until the version moves (and returns `true`: the
    /// change must be recorded as pending so it can be undone).
    async fn write_delta(
        &self,
        conn: &Conn,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        version: u64,
        delta: &Delta,
        expire_at: i64,
    ) -> StoreResult<()>;

    /// Whether [`RedisDesign::write_delta`] writes outside the commit.
    fn delta_ahead(&self) -> bool {
        false
    }

    /// Undoes the writes of a pending in-place change that never committed.
    async fn undo_delta(
        &self,
        _conn: &Conn,
        _meta: &CampaignMeta,
        _version: u64,
        _delta: &Delta,
    ) -> StoreResult<()> {
        Ok(())
    }

    /// Drops what readers of versions before `version` needed, once no
    /// reader can still be on them.
    async fn prune_delta(
        &self,
        _conn: &Conn,
        _meta: &CampaignMeta,
        _version: u64,
        _removed: &Audience,
    ) -> StoreResult<()> {
        Ok(())
    }

    /// Queues, inside the delete commit, the removal of the live data.
    fn delete(&self, tx: &mut Fenced, id: &str);

    /// Moves the expiry of the live data: inside the commit for keys of the
    /// campaign's slot, and for per-user keys ahead of it (only ever later).
    async fn expire(
        &self,
        conn: &Conn,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()>;

    /// Whether retiring or moving expiry needs the member list.
    fn keys_per_member(&self) -> bool;

    /// Whether [`RedisDesign::queue_probe`]'s commands live in the
    /// campaign's slot, so the probe and the metadata read can be one
    /// MULTI: one answer, one version.
    fn probe_in_campaign_slot(&self) -> bool;

    /// Queues commands answering "is each of `users` (canonical texts of
    /// the campaign's ID type) in campaign `id`?".
    fn queue_probe(&self, pipe: &mut Batch, id: &str, users: &[String]);

    /// Reads [`RedisDesign::queue_probe`]'s replies, for the state `at`.
    fn read_probe(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        id: &str,
        at: &Identity,
        users: &[String],
    ) -> StoreResult<Vec<bool>>;

    /// Queues commands answering "which of `campaigns` (all of this design)
    /// hold each of `users`". By default, one probe per campaign.
    fn queue_campaigns_for(&self, pipe: &mut Batch, campaigns: &[&CampaignMeta], users: &[String]) {
        for c in campaigns {
            self.queue_probe(pipe, c.id(), users);
        }
    }

    /// Reads [`RedisDesign::queue_campaigns_for`]'s replies: one row per
    /// campaign, one answer per user.
    fn read_campaigns_for(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        campaigns: &[&CampaignMeta],
        users: &[String],
    ) -> StoreResult<Vec<Vec<bool>>> {
        campaigns
            .iter()
            .map(|c| self.read_probe(replies, c.id(), &Identity::of(c), users))
            .collect()
    }
}

/// An in-place change: IDs that join and IDs that leave, of one type.
#[derive(Debug, Clone)]
pub(crate) struct Delta {
    pub add: Audience,
    pub remove: Audience,
}

impl Delta {
    /// No change, for a campaign of `id_type`.
    pub(crate) fn none(id_type: IdType) -> Delta {
        Delta {
            add: Audience::empty(id_type),
            remove: Audience::empty(id_type),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.add.len() + self.remove.len()
    }

    /// Both sets as one string (each [`Audience::to_bytes`] behind its
    /// length), for the pending key. At most [`CHUNK`] IDs: small.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [&self.add, &self.remove] {
            let bytes = part.to_bytes();
            out.extend((bytes.len() as u64).to_le_bytes());
            out.extend(bytes);
        }
        out
    }

    /// Reads [`Delta::encode`]'s form for a campaign of `id_type`.
    pub(crate) fn decode(bytes: &[u8], id_type: IdType) -> StoreResult<Delta> {
        let bad = |why: String| StoreError::Corrupt(format!("malformed pending change: {why}"));
        let mut rest = bytes;
        let mut part = || -> StoreResult<Audience> {
            let (len, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("cut short".into()))?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| bad(e.to_string()))?;
            let body = tail.get(..len).ok_or_else(|| bad("cut short".into()))?;
            rest = &tail[len..];
            Audience::from_bytes(id_type, body).map_err(bad)
        };
        Ok(Delta {
            add: part()?,
            remove: part()?,
        })
    }
}

/// The implementations, built once per store.
pub(crate) struct Designs {
    set: set::SetDesign,
    per_user: per_user::PerUserDesign,
    bitmap: bitmap::BitmapDesign,
}

impl Designs {
    pub(crate) fn new(keys: &Keys) -> Designs {
        Designs {
            set: set::SetDesign { keys: keys.clone() },
            per_user: per_user::PerUserDesign { keys: keys.clone() },
            bitmap: bitmap::BitmapDesign { keys: keys.clone() },
        }
    }

    /// The one place a design name becomes its implementation.
    pub(crate) fn for_design(&self, design: Design) -> &dyn RedisDesign {
        match design {
            Design::Set => &self.set,
            Design::PerUser => &self.per_user,
            Design::Bitmap => &self.bitmap,
        }
    }
}

/// Refuses a bitmap audience that would cost far more memory than the same
/// audience as a SET (and would take one huge allocation to write).
pub(crate) fn check_bitmap_cost(members: &RoaringTreemap) -> Result<(), crate::domain::Invalid> {
    bitmap::check_cost(members)
}

/// Every member as the argument Redis stores: its canonical text.
fn member_args(members: &Audience) -> Vec<String> {
    members.texts().map(std::borrow::Cow::into_owned).collect()
}

pub(crate) fn next_reply(replies: &mut dyn Iterator<Item = Value>) -> StoreResult<Value> {
    replies
        .next()
        .ok_or_else(|| StoreError::Corrupt("Redis sent fewer replies than commands".into()))
}

pub(crate) fn parse<T: redis::FromRedisValue>(v: Value) -> StoreResult<T> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Fills a single staging key with `members`, one command per [`CHUNK`]
/// members built by `chunk_cmd`, pipelined, streaming from the audience so
/// only one round trip's commands are in memory. Starts from nothing; the
/// staging TTL goes on with the first chunk and is refreshed every 16, so
/// staging never outlives a crash and never expires under a long build.
pub(crate) async fn stage_in_chunks<T: Send>(
    conn: &Conn,
    key: &str,
    members: impl Iterator<Item = T> + Send,
    chunk_cmd: impl Fn(&str, &[T]) -> Vec<redis::Cmd> + Send,
) -> StoreResult<()> {
    conn.unlink("stage", key).await?;
    let mut ids = members;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut index = 0usize;
    let cmds = std::iter::from_fn(move || {
        buf.clear();
        buf.extend(ids.by_ref().take(CHUNK));
        if buf.is_empty() {
            return None;
        }
        let mut cmds = chunk_cmd(key, &buf);
        if index.is_multiple_of(16) {
            let mut expire = redis::cmd("EXPIRE");
            expire.arg(key).arg(super::snapshot::STAGING_TTL_SECS);
            cmds.push(expire);
        }
        index += 1;
        // The chunk's IDs are counted once, on its first command.
        let ids = buf.len() as u64;
        Some(
            cmds.into_iter()
                .enumerate()
                .map(move |(i, cmd)| (cmd, if i == 0 { ids } else { 0 })),
        )
    })
    .flatten();
    conn.bulk("stage", cmds).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::ids::{Strings, User};
    use crate::store::redis::conn::PIPELINE_DEPTH;

    /// A pending change reads back exactly for every type, and a damaged
    /// one is refused, never half-read.
    #[test]
    fn pending_changes_read_back_exactly_for_every_type() {
        let strings = |items: Vec<&str>| Audience::Strings(Strings::from_unsorted(items));
        let deltas = [
            Delta {
                add: Audience::from_iter([1u64, 1 << 40]),
                remove: Audience::from_iter([7u64]),
            },
            Delta {
                add: Audience::Uuids(vec![3, u128::MAX]),
                remove: Audience::empty(IdType::Uuid),
            },
            Delta {
                add: strings(vec!["a+b@example.com", "42"]),
                remove: strings(vec!["\u{c9}lodie"]),
            },
        ];
        for delta in deltas {
            let id_type = delta.add.id_type();
            let bytes = delta.encode();
            let back = Delta::decode(&bytes, id_type).unwrap();
            assert_eq!((&back.add, &back.remove), (&delta.add, &delta.remove));
            for cut in 0..bytes.len() {
                assert!(
                    Delta::decode(&bytes[..cut], id_type).is_err(),
                    "cut at {cut}"
                );
            }
        }
        assert_eq!(
            member_args(&strings(vec!["b", "a"])),
            ["a", "b"],
            "members go to Redis as their exact text"
        );
        let uuid = User::parse("3F2A6C1E-8B7D-4C2A-9E1F-0A1B2C3D4E5F").unwrap();
        let key = uuid.key(IdType::Uuid).unwrap();
        assert_eq!(
            member_args(&Audience::from_keys(IdType::Uuid, [key]).unwrap()),
            ["3f2a6c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f"]
        );
        assert_eq!(member_args(&Audience::from_iter([42u64])), ["42"]);
    }

    /// Staging streams: when the k-th chunk's command is built, all but the
    /// last round trip or two of earlier chunks are already in Redis. A
    /// stage that built every command first (a gigabyte for 30M IDs) fails.
    #[cfg(feature = "test-util")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staging_builds_commands_as_it_sends_them() {
        let server = crate::redis_server::RedisServer::start().unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let target = crate::store::redis::connect::Target::Single(client.clone());
        let conn = Conn::open(
            &target,
            Duration::from_secs(10),
            crate::store::redis::conn::Use::Writes,
        )
        .unwrap();
        let members: RoaringTreemap = (0..(CHUNK * PIPELINE_DEPTH * 4) as u64).collect();
        let built = AtomicUsize::new(0);
        let probe = std::sync::Mutex::new(client.get_connection().unwrap());
        stage_in_chunks(&conn, "s", members.iter(), |key, chunk| {
            let k = built.fetch_add(1, Ordering::Relaxed);
            let landed: usize = tokio::task::block_in_place(|| {
                redis::cmd("SCARD")
                    .arg(key)
                    .query(&mut *probe.lock().unwrap())
                    .unwrap()
            });
            let behind = k.saturating_sub(2 * PIPELINE_DEPTH) * CHUNK;
            assert!(
                landed >= behind,
                "chunk {k} built with only {landed} IDs sent"
            );
            let mut sadd = redis::cmd("SADD");
            sadd.arg(key).arg(chunk);
            vec![sadd]
        })
        .await
        .unwrap();
        assert_eq!(built.load(Ordering::Relaxed), 4 * PIPELINE_DEPTH);
    }
}
