//! The `per-user` design: one small hash per user, no hot key.
//!
//! `guestlist:user:{<user>}:campaigns` holds a field
//! `<campaign>:<incarnation>:<generation>` for every audience generation
//! that has held the user. Its value lists the audience versions that hold
//! the user as ranges (`3-` from version 3 on, `3-7` for versions 3 to 6; see
//! `scripts/ranges.lua`). A campaign's live incarnation, generation and
//! version are in its metadata, so "is U in C?" reads U's hash and keeps the
//! field of C's live generation whose ranges hold C's live version.
//!
//! User keys live in other hash slots than the campaign's, so no write can
//! change both atomically. Every write is ordered so readers never see it
//! half-done:
//! - a **replace** writes a new generation's fields first (invisible: the
//!   metadata still names the old generation), then the fenced commit flips
//!   the generation; the old fields are removed later;
//! - an **in-place change** to version V+1 first records itself as pending
//!   in the metadata (fenced), then opens or closes ranges at V+1
//!   (invisible to readers at V), then the fenced commit moves the version.
//!   If the writer dies in between, the next writer undoes the ranges from
//!   the pending record before it does anything else.
//! - the key's expiry only grows (`NX` then `GT`), so a key holding several
//!   campaigns lives as long as the longest.

use async_trait::async_trait;
use redis::Value;

use crate::ids::Audience;
use crate::store::redis::batch::Batch;

use super::{CHUNK, Delta, RedisDesign, next_reply, parse};
use crate::store::StoreResult;
use crate::store::redis::conn::Conn;
use crate::store::redis::keys::{self, Keys, Stamp};
use crate::store::redis::meta::{CampaignMeta, Identity};
use crate::store::redis::publish::Fenced;

pub(crate) struct PerUserDesign {
    pub(crate) keys: Keys,
}

const RANGES: &str = include_str!("../scripts/ranges.lua");

/// Whether a field value's ranges hold `version`.
fn holds(value: &str, version: u64) -> bool {
    value.split(',').any(|range| {
        let Some((from, to)) = range.split_once('-') else {
            return false;
        };
        let from_ok = from.parse::<u64>().is_ok_and(|f| f <= version);
        let to_ok = to.is_empty() || to.parse::<u64>().is_ok_and(|t| version < t);
        from_ok && to_ok
    })
}

/// Queues the expiry that only grows: `NX` sets it on a new key, `GT`
/// extends it on an existing one.
fn queue_expiry(pipe: &mut Batch, key: &str, expire_at: i64) {
    pipe.cmd("EXPIREAT")
        .arg(key)
        .arg(expire_at)
        .arg("NX")
        .ignore();
    pipe.cmd("EXPIREAT")
        .arg(key)
        .arg(expire_at)
        .arg("GT")
        .ignore();
}

/// Runs `queue` for every member (as its canonical text), [`CHUNK`]
/// members per round trip.
async fn for_members(
    conn: &Conn,
    op: &'static str,
    members: &Audience,
    queue: impl Fn(&mut Batch, &str),
) -> StoreResult<()> {
    let mut pipe = Batch::new();
    let mut queued = 0;
    for user in members.texts() {
        queue(&mut pipe, &user);
        queued += 1;
        if queued == CHUNK {
            conn.pipe::<()>(op, &pipe).await?;
            pipe = Batch::new();
            queued = 0;
        }
    }
    if queued > 0 {
        conn.pipe::<()>(op, &pipe).await?;
    }
    Ok(())
}

impl PerUserDesign {
    /// Runs `ranges.lua`'s `op` at `version` on each user's live field.
    async fn ranges(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        users: &Audience,
        op: &str,
        version: u64,
        expire_at: i64,
    ) -> StoreResult<()> {
        let field = keys::per_user_field(meta.id(), meta.incarnation, meta.generation);
        for_members(conn, "ranges", users, |pipe, user| {
            pipe.cmd("EVAL")
                .arg(RANGES)
                .arg(1)
                .arg(self.keys.user(user))
                .arg(&field)
                .arg(op)
                .arg(version)
                .arg(expire_at)
                .ignore();
        })
        .await
    }
}

#[async_trait]
impl RedisDesign for PerUserDesign {
    async fn stage(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        attempt: Stamp,
        version: u64,
        members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()> {
        let field = keys::per_user_field(meta.id(), meta.incarnation, attempt);
        let value = format!("{version}-");
        for_members(conn, "stage", members, |pipe, user| {
            let key = self.keys.user(user);
            pipe.cmd("HSET").arg(&key).arg(&field).arg(&value).ignore();
            queue_expiry(pipe, &key, expire_at);
        })
        .await
    }

    fn publish(&self, _tx: &mut Fenced, _id: &str, _attempt: Stamp, _expire_at: i64) {
        // Publishing is the generation flip in the metadata, queued by the store.
    }

    async fn retire(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        generation: Stamp,
        members: &Audience,
    ) -> StoreResult<()> {
        let field = keys::per_user_field(meta.id(), meta.incarnation, generation);
        for_members(conn, "retire", members, |pipe, user| {
            pipe.cmd("HDEL")
                .arg(self.keys.user(user))
                .arg(&field)
                .ignore();
        })
        .await
    }

    async fn write_delta(
        &self,
        conn: &Conn,
        _tx: &mut Fenced,
        meta: &CampaignMeta,
        version: u64,
        delta: &Delta,
        expire_at: i64,
    ) -> StoreResult<()> {
        self.ranges(conn, meta, &delta.add, "open", version, expire_at)
            .await?;
        self.ranges(conn, meta, &delta.remove, "close", version, expire_at)
            .await
    }

    fn delta_ahead(&self) -> bool {
        true
    }

    async fn undo_delta(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        version: u64,
        delta: &Delta,
    ) -> StoreResult<()> {
        self.ranges(conn, meta, &delta.add, "undo-open", version, 0)
            .await?;
        self.ranges(conn, meta, &delta.remove, "undo-close", version, 0)
            .await
    }

    async fn prune_delta(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        version: u64,
        removed: &Audience,
    ) -> StoreResult<()> {
        self.ranges(conn, meta, removed, "prune", version, 0).await
    }

    fn delete(&self, _tx: &mut Fenced, _id: &str) {
        // Fields stop counting once the metadata is gone (and a re-created
        // campaign has another incarnation); they are retired afterwards.
    }

    async fn expire(
        &self,
        conn: &Conn,
        _tx: &mut Fenced,
        _meta: &CampaignMeta,
        members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()> {
        // Ahead of the commit, and only ever later: an earlier end cannot
        // shorten a key another campaign may still need, and extending
        // first means a crash before the commit leaves nothing expiring
        // while the campaign still runs.
        for_members(conn, "expire", members, |pipe, user| {
            queue_expiry(pipe, &self.keys.user(user), expire_at)
        })
        .await
    }

    fn keys_per_member(&self) -> bool {
        true
    }

    fn probe_in_campaign_slot(&self) -> bool {
        false
    }

    fn queue_probe(&self, pipe: &mut Batch, _id: &str, users: &[String]) {
        // The whole (small) hash: which field counts depends on the metadata
        // read in the same round trip.
        for user in users {
            pipe.cmd("HGETALL").arg(self.keys.user(user));
        }
    }

    fn read_probe(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        id: &str,
        at: &Identity,
        users: &[String],
    ) -> StoreResult<Vec<bool>> {
        let field = keys::per_user_field(id, at.incarnation, at.generation);
        users
            .iter()
            .map(|_| {
                let hash: std::collections::HashMap<String, String> = parse(next_reply(replies)?)?;
                Ok(hash.get(&field).is_some_and(|v| holds(v, at.version)))
            })
            .collect()
    }

    fn queue_campaigns_for(&self, pipe: &mut Batch, _: &[&CampaignMeta], users: &[String]) {
        // One read per user answers for every per-user campaign at once.
        self.queue_probe(pipe, "", users);
    }

    fn read_campaigns_for(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        campaigns: &[&CampaignMeta],
        users: &[String],
    ) -> StoreResult<Vec<Vec<bool>>> {
        let mut rows = vec![vec![false; users.len()]; campaigns.len()];
        #[allow(clippy::needless_range_loop)] // `rows` is indexed by campaign first
        for column in 0..users.len() {
            // One reply per user, in order: `column` is that user.
            let hash: std::collections::HashMap<String, String> = parse(next_reply(replies)?)?;
            for (field, value) in &hash {
                let Some((id, incarnation, generation)) = keys::parse_per_user_field(field) else {
                    continue;
                };
                let row = campaigns.iter().position(|c| {
                    c.id() == id && c.incarnation == incarnation && c.generation == generation
                });
                if let Some(row) = row {
                    rows[row][column] = holds(value, campaigns[row].campaign.version);
                }
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::holds;

    #[test]
    fn ranges_hold_exactly_their_versions() {
        assert!(holds("3-", 3) && holds("3-", 99) && !holds("3-", 2));
        assert!(holds("3-7", 6) && !holds("3-7", 7) && !holds("3-7", 2));
        assert!(holds("1-2,5-", 1) && !holds("1-2,5-", 3) && holds("1-2,5-", 5));
        assert!(!holds("", 1) && !holds("x", 1) && !holds("1", 1));
    }
}
