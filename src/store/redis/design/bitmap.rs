//! The `bitmap` design: one Redis bitmap per campaign, bit N for user N.
//!
//! `GETBIT guestlist:{<campaign>}:bitmap <user>` answers a check in O(1) with
//! a 4-byte reply. Memory is one bit per ID up to the largest member, so it
//! beats a SET by far on dense ID spaces (a million members among ten million
//! IDs cost 1.25 MB) and loses badly on sparse ones: one member at
//! 4,000,000,000 would cost 500 MB, and writing it would be one command
//! allocating and zeroing all of it while every login waits. So an audience
//! whose bitmap would cost more than the same audience as a SET is refused
//! ([`check_cost`]) before anything is written. IDs must be below 2^32
//! (Redis strings stop at 512 MiB); larger ones are refused too.
//!
//! Writes use BITFIELD with up to [`CHUNK`] `SET u1` operations per command,
//! in ascending order, so the string grows gradually; a replace builds a
//! staging bitmap and the fenced commit swaps it in like the `set` design.
//! The audience size lives in the metadata, never counted with BITCOUNT.

use async_trait::async_trait;
use redis::Value;

use crate::ids::Audience;
use crate::store::redis::batch::Batch;
use roaring::RoaringTreemap;

use super::{CHUNK, Delta, RedisDesign, next_reply, parse, stage_in_chunks};
use crate::domain::{Design, UserId};
use crate::store::redis::conn::Conn;
use crate::store::redis::keys::{Keys, Stamp};
use crate::store::redis::meta::{CampaignMeta, Identity};
use crate::store::redis::publish::{Fenced, NO_ARGS};
use crate::store::{StoreError, StoreResult};

pub(crate) struct BitmapDesign {
    pub(crate) keys: Keys,
}

/// What a SET costs per member once past Redis's compact intset encoding
/// (measured on Redis 7.0: 48 MB for 1,000,000 IDs).
const SET_BYTES_PER_ID: u64 = 48;
/// Bitmaps up to this size are always accepted: writing them costs less
/// than a millisecond whatever their density.
const ALWAYS_OK_BYTES: u64 = 1 << 20;

/// Refuses an audience whose bitmap would take more memory than the same
/// IDs in the `set` design (and more than [`ALWAYS_OK_BYTES`]).
pub(crate) fn check_cost(members: &RoaringTreemap) -> Result<(), crate::domain::Invalid> {
    let Some(max) = members.max() else {
        return Ok(());
    };
    let bitmap = max / 8 + 1;
    let set = members.len() * SET_BYTES_PER_ID;
    if bitmap <= ALWAYS_OK_BYTES || bitmap <= set {
        return Ok(());
    }
    Err(crate::domain::Invalid {
        code: "invalid_campaign",
        field: "design",
        message: format!(
            "a bitmap for these {} IDs would take {} (one bit per ID up to the largest, {max}), \
             while the set design would hold them in about {}; use the set or per-user design \
             for sparse IDs",
            members.len(),
            human_bytes(bitmap),
            human_bytes(set),
        ),
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} bytes"),
    }
}

/// Most bytes one command adds to a staging bitmap.
const GROW_STEP: u64 = 1 << 20;

fn in_range(user: UserId) -> bool {
    Design::Bitmap.max_user_id().is_some_and(|max| user <= max)
}

/// The bit of a probed user (its decimal text), if the bitmap can hold it.
fn bit_of(user: &str) -> Option<u64> {
    user.parse().ok().filter(|u| in_range(*u))
}

/// The integer IDs of an audience; a bitmap campaign holds no other type
/// (refused when the campaign is created).
fn integers(members: &Audience) -> StoreResult<&RoaringTreemap> {
    members.as_integers().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{} IDs reached the bitmap design; it should have been refused",
            members.id_type()
        ))
    })
}

/// A BITFIELD command setting each of `ids` to `bit`.
fn bitfield_set(key: &str, ids: &[u64], bit: u8) -> redis::Cmd {
    let mut cmd = redis::cmd("BITFIELD");
    cmd.arg(key);
    for id in ids {
        cmd.arg("SET").arg("u1").arg(*id).arg(bit);
    }
    cmd
}

#[async_trait]
impl RedisDesign for BitmapDesign {
    async fn stage(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        attempt: Stamp,
        _version: u64,
        members: &Audience,
        _expire_at: i64,
    ) -> StoreResult<()> {
        let members = integers(members)?;
        if let Some(max) = members.max().filter(|m| !in_range(*m)) {
            return Err(StoreError::Corrupt(format!(
                "user id {max} reached the bitmap design; it should have been refused"
            )));
        }
        let key = self.keys.bitmap_staging(meta.id(), attempt);
        // Bytes the staging string holds so far. A chunk whose IDs jump far
        // ahead would make one BITFIELD allocate and zero the whole gap; the
        // string is grown to it in GROW_STEP pieces first instead.
        let len = std::sync::atomic::AtomicU64::new(0);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        stage_in_chunks(conn, &key, members.iter(), |key, chunk: &[u64]| {
            let mut cmds = Vec::new();
            let needed = chunk.last().map_or(0, |max| max / 8 + 1);
            while needed > len.load(relaxed) + GROW_STEP {
                let grown = len.fetch_add(GROW_STEP, relaxed) + GROW_STEP;
                let mut grow = redis::cmd("SETRANGE");
                grow.arg(key).arg(grown - 1).arg(&[0u8][..]);
                cmds.push(grow);
            }
            len.fetch_max(needed, relaxed);
            cmds.push(bitfield_set(key, chunk, 1));
            cmds
        })
        .await?;
        // The swap treats a missing staging key as an empty audience; make
        // sure a non-empty one really is there. (BITCOUNT would be O(size).)
        let exists: bool = conn.cmd("stage", redis::cmd("EXISTS").arg(&key)).await?;
        if exists == members.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "staging bitmap {key} is missing"
            )));
        }
        Ok(())
    }

    fn publish(&self, tx: &mut Fenced, id: &str, attempt: Stamp, expire_at: i64) {
        tx.swap(
            &self.keys.bitmap(id),
            &self.keys.bitmap_staging(id, attempt),
            &self.keys.trash(id, attempt),
            expire_at,
        );
    }

    async fn retire(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        generation: Stamp,
        _members: &Audience,
    ) -> StoreResult<()> {
        conn.unlink("retire", &self.keys.bitmap_staging(meta.id(), generation))
            .await
    }

    async fn write_delta(
        &self,
        _conn: &Conn,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        _version: u64,
        delta: &Delta,
        expire_at: i64,
    ) -> StoreResult<()> {
        let key = self.keys.bitmap(meta.id());
        let set = |ids: &mut dyn Iterator<Item = u64>, bit: u8| -> Vec<(&str, &str, u64, u8)> {
            ids.map(|id| ("SET", "u1", id, bit)).collect()
        };
        let add = set(&mut integers(&delta.add)?.iter(), 1);
        if !add.is_empty() {
            tx.op("BITFIELD", &[&key], add);
        }
        // Removed IDs beyond the limit cannot be members; skip them.
        let remove = set(
            &mut integers(&delta.remove)?.iter().filter(|u| in_range(*u)),
            0,
        );
        if !remove.is_empty() {
            tx.op("BITFIELD", &[&key], remove);
        }
        tx.op("EXPIREAT", &[&key], expire_at);
        Ok(())
    }

    fn delete(&self, tx: &mut Fenced, id: &str) {
        tx.op("UNLINK", &[&self.keys.bitmap(id)], NO_ARGS);
    }

    async fn expire(
        &self,
        _conn: &Conn,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        _members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()> {
        tx.op("EXPIREAT", &[&self.keys.bitmap(meta.id())], expire_at);
        Ok(())
    }

    fn keys_per_member(&self) -> bool {
        false
    }

    fn probe_in_campaign_slot(&self) -> bool {
        true
    }

    fn queue_probe(&self, pipe: &mut Batch, id: &str, users: &[String]) {
        let key = self.keys.bitmap(id);
        // Users beyond the limit are answered "no" without asking Redis
        // (GETBIT would reject the offset).
        let queued: Vec<u64> = users.iter().filter_map(|u| bit_of(u)).collect();
        if let [user] = queued.as_slice() {
            pipe.cmd("GETBIT").arg(&key).arg(user);
        } else {
            for chunk in queued.chunks(CHUNK) {
                let mut cmd = redis::cmd("BITFIELD_RO");
                cmd.arg(&key);
                for user in chunk {
                    cmd.arg("GET").arg("u1").arg(*user);
                }
                pipe.add_command(cmd);
            }
        }
    }

    fn read_probe(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        _id: &str,
        _at: &Identity,
        users: &[String],
    ) -> StoreResult<Vec<bool>> {
        let queued = users.iter().filter_map(|u| bit_of(u)).count();
        let mut answers = Vec::with_capacity(queued);
        if queued == 1 {
            answers.push(parse::<bool>(next_reply(replies)?)?);
        } else {
            for _ in 0..queued.div_ceil(CHUNK) {
                let bits: Vec<u8> = parse(next_reply(replies)?)?;
                answers.extend(bits.into_iter().map(|b| b == 1));
            }
        }
        let mut answers = answers.into_iter();
        Ok(users
            .iter()
            .map(|u| bit_of(u).is_some() && answers.next().unwrap_or(false))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_bitmaps_are_refused_and_dense_ones_accepted() {
        let one: RoaringTreemap = [4_000_000_000u64].into_iter().collect();
        let e = check_cost(&one).unwrap_err();
        assert!(e.message.contains("set"), "{}", e.message);
        assert!(e.message.contains("500.0 MB"), "{}", e.message);
        let dense: RoaringTreemap = (0..1_000_000u64).map(|i| i * 10).collect();
        assert!(check_cost(&dense).is_ok());
        let small: RoaringTreemap = [8_000_000u64].into_iter().collect();
        assert!(check_cost(&small).is_ok(), "1 MB is always fine");
    }
}
