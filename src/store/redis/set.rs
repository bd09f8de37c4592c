//! The `set` design: one Redis SET per campaign, checked with SISMEMBER.
//!
//! The live key `guestlist:{<campaign>}:members` is a public contract. A
//! replace fills a staging SET in chunks, then one transaction renames the
//! live SET to a fresh trash name (O(1): the target does not exist), renames
//! the staging SET onto the now-free live name, and UNLINKs the trash, which
//! Redis frees on a background thread. Readers see the old SET or the new
//! one, never a mix, and nothing big is ever freed on the main thread.

use async_trait::async_trait;
use redis::{Pipeline, Value};
use roaring::RoaringTreemap;

use super::keys::Keys;
use super::{CHUNK, Conn, Layout, next_reply, parse, queue_swap, stage_in_chunks};
use crate::domain::{Campaign, UserId};
use crate::store::{StoreError, StoreResult};

pub(crate) struct SetLayout {
    pub(crate) keys: Keys,
}

#[async_trait]
impl Layout for SetLayout {
    async fn stage(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
        _expire_at: i64,
    ) -> StoreResult<()> {
        let key = self.keys.staging(campaign, generation);
        stage_in_chunks(conn, &key, members, |key, chunk| {
            let mut sadd = redis::cmd("SADD");
            sadd.arg(key).arg(chunk);
            sadd
        })
        .await?;
        // The swap treats a missing staging key as an empty audience, so make
        // sure every chunk landed before anything is published.
        let staged: u64 = conn.cmd("stage", redis::cmd("SCARD").arg(&key)).await?;
        if staged != members.len() {
            return Err(StoreError::Corrupt(format!(
                "staging {key} holds {staged} members, expected {}",
                members.len()
            )));
        }
        Ok(())
    }

    fn publish(&self, tx: &mut Pipeline, campaign: &str, generation: u64, expire_at: i64) {
        queue_swap(
            tx,
            &self.keys.members(campaign),
            &self.keys.staging(campaign, generation),
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
        let key = self.keys.members(campaign);
        if !add.is_empty() {
            tx.cmd("SADD").arg(&key).arg(add).ignore();
        }
        if !remove.is_empty() {
            tx.cmd("SREM").arg(&key).arg(remove).ignore();
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
        conn.unlink("retire", &self.keys.staging(campaign, generation))
            .await
    }

    fn delete(&self, tx: &mut Pipeline, campaign: &str) {
        tx.cmd("UNLINK").arg(self.keys.members(campaign)).ignore();
    }

    async fn move_expiry(
        &self,
        conn: &Conn,
        campaign: &str,
        _members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()> {
        conn.expire_at("expire", &self.keys.members(campaign), expire_at)
            .await
    }

    fn keys_per_member(&self) -> bool {
        false
    }

    fn queue_membership(&self, pipe: &mut Pipeline, campaign: &Campaign, users: &[UserId]) {
        let key = self.keys.members(&campaign.id);
        if let [user] = users {
            pipe.cmd("SISMEMBER").arg(&key).arg(user);
        } else {
            for chunk in users.chunks(CHUNK) {
                pipe.cmd("SMISMEMBER").arg(&key).arg(chunk);
            }
        }
    }

    fn read_membership(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        users: &[UserId],
    ) -> StoreResult<Vec<bool>> {
        if users.len() == 1 {
            return Ok(vec![parse(next_reply(replies)?)?]);
        }
        let mut answers = Vec::with_capacity(users.len());
        for _ in users.chunks(CHUNK) {
            let chunk: Vec<bool> = parse(next_reply(replies)?)?;
            answers.extend(chunk);
        }
        Ok(answers)
    }
}
