//! The `bitmap` design: one Redis bitmap per campaign, bit N for user N.
//!
//! `GETBIT guestlist:{<campaign>}:bitmap <user>` answers a check in O(1) with
//! a 4-byte reply. Memory is one bit per ID up to the largest member, so it
//! beats a SET by far on dense ID spaces (a million members among ten million
//! IDs cost 1.25 MB) and loses on sparse ones. IDs must be below 2^32 (Redis
//! strings stop at 512 MiB); larger ones are refused before anything is
//! written. The audience size lives in the campaign metadata, so it is never
//! counted with BITCOUNT.
//!
//! Writes use BITFIELD with up to [`CHUNK`] `SET u1` operations per command;
//! a replace builds a staging bitmap and swaps it in like the `set` design.
//! Members are written in ascending order, so the string grows gradually
//! rather than in one allocation.

use async_trait::async_trait;
use redis::{Pipeline, Value};
use roaring::RoaringTreemap;

use super::keys::Keys;
use super::{CHUNK, Conn, Layout, next_reply, parse, queue_swap, stage_in_chunks};
use crate::domain::{Campaign, Design, UserId};
use crate::store::{StoreError, StoreResult};

pub(crate) struct BitmapLayout {
    pub(crate) keys: Keys,
}

fn in_range(user: UserId) -> bool {
    Design::Bitmap.max_user_id().is_some_and(|max| user <= max)
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
impl Layout for BitmapLayout {
    async fn stage(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
        _expire_at: i64,
    ) -> StoreResult<()> {
        if let Some(max) = members.max().filter(|m| !in_range(*m)) {
            return Err(StoreError::Corrupt(format!(
                "user id {max} reached the bitmap layout; it should have been refused"
            )));
        }
        let key = self.keys.bitmap_staging(campaign, generation);
        stage_in_chunks(conn, &key, members, |key, chunk| {
            bitfield_set(key, chunk, 1)
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

    fn publish(&self, tx: &mut Pipeline, campaign: &str, generation: u64, expire_at: i64) {
        queue_swap(
            tx,
            &self.keys.bitmap(campaign),
            &self.keys.bitmap_staging(campaign, generation),
            &self.keys.trash(campaign, generation),
            expire_at,
        );
    }

    fn apply_delta(
        &self,
        tx: &mut Pipeline,
        campaign: &str,
        _generation: u64,
        add: &[u64],
        remove: &[u64],
        expire_at: i64,
    ) {
        let key = self.keys.bitmap(campaign);
        if !add.is_empty() {
            tx.add_command(bitfield_set(&key, add, 1)).ignore();
        }
        // Removed ids beyond the limit cannot be members; skip them.
        let remove: Vec<u64> = remove.iter().copied().filter(|u| in_range(*u)).collect();
        if !remove.is_empty() {
            tx.add_command(bitfield_set(&key, &remove, 0)).ignore();
        }
        tx.cmd("EXPIREAT").arg(&key).arg(expire_at).ignore();
    }

    async fn retire(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        _members: &RoaringTreemap,
    ) -> StoreResult<()> {
        // A published generation was already unlinked by the swap; this
        // only matters for a staged one that never went live.
        conn.unlink("retire", &self.keys.bitmap_staging(campaign, generation))
            .await
    }

    fn delete(&self, tx: &mut Pipeline, campaign: &str) {
        tx.cmd("UNLINK").arg(self.keys.bitmap(campaign)).ignore();
    }

    async fn move_expiry(
        &self,
        conn: &Conn,
        campaign: &str,
        _members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()> {
        conn.expire_at("expire", &self.keys.bitmap(campaign), expire_at)
            .await
    }

    fn keys_per_member(&self) -> bool {
        false
    }

    fn queue_membership(&self, pipe: &mut Pipeline, campaign: &Campaign, users: &[UserId]) {
        let key = self.keys.bitmap(&campaign.id);
        // Users beyond the limit are answered "no" without asking Redis
        // (GETBIT would reject the offset).
        let queued: Vec<u64> = users.iter().copied().filter(|u| in_range(*u)).collect();
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

    fn read_membership(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        users: &[UserId],
    ) -> StoreResult<Vec<bool>> {
        let queued = users.iter().filter(|u| in_range(**u)).count();
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
            .map(|u| in_range(*u) && answers.next().unwrap_or(false))
            .collect())
    }
}
