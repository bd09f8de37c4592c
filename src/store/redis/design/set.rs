//! The `set` design: one Redis SET per campaign, checked with SISMEMBER.
//!
//! The live key `guestlist:{<campaign>}:members` is a public contract. A
//! replace fills a staging SET in chunks, then the fenced commit swaps it
//! live (see `SWAP` in `scripts/fenced.lua`): readers see the old SET or the
//! new one, never a mix, and nothing big is freed on the main thread.

use async_trait::async_trait;
use redis::Value;

use crate::ids::Audience;
use crate::store::redis::batch::Batch;

use super::{CHUNK, Delta, RedisDesign, member_args, next_reply, parse, stage_in_chunks};
use crate::store::redis::conn::Conn;
use crate::store::redis::keys::{Keys, Stamp};
use crate::store::redis::meta::{CampaignMeta, Identity};
use crate::store::redis::publish::{Fenced, NO_ARGS};
use crate::store::{StoreError, StoreResult};

pub(crate) struct SetDesign {
    pub(crate) keys: Keys,
}

#[async_trait]
impl RedisDesign for SetDesign {
    async fn stage(
        &self,
        conn: &Conn,
        meta: &CampaignMeta,
        attempt: Stamp,
        _version: u64,
        members: &Audience,
        _expire_at: i64,
    ) -> StoreResult<()> {
        let key = self.keys.staging(meta.id(), attempt);
        stage_in_chunks(conn, &key, members.texts(), |key, chunk| {
            let mut sadd = redis::cmd("SADD");
            sadd.arg(key);
            for member in chunk {
                sadd.arg(member.as_ref());
            }
            vec![sadd]
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

    fn publish(&self, tx: &mut Fenced, id: &str, attempt: Stamp, expire_at: i64) {
        tx.swap(
            &self.keys.members(id),
            &self.keys.staging(id, attempt),
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
        // A published generation was unlinked by the swap; this only
        // matters for one staged and never published.
        conn.unlink("retire", &self.keys.staging(meta.id(), generation))
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
        let key = self.keys.members(meta.id());
        if !delta.add.is_empty() {
            tx.op("SADD", &[&key], member_args(&delta.add));
        }
        if !delta.remove.is_empty() {
            tx.op("SREM", &[&key], member_args(&delta.remove));
        }
        tx.op("EXPIREAT", &[&key], expire_at);
        Ok(())
    }

    fn delete(&self, tx: &mut Fenced, id: &str) {
        tx.op("UNLINK", &[&self.keys.members(id)], NO_ARGS);
    }

    async fn expire(
        &self,
        _conn: &Conn,
        tx: &mut Fenced,
        meta: &CampaignMeta,
        _members: &Audience,
        expire_at: i64,
    ) -> StoreResult<()> {
        tx.op("EXPIREAT", &[&self.keys.members(meta.id())], expire_at);
        Ok(())
    }

    fn keys_per_member(&self) -> bool {
        false
    }

    fn probe_in_campaign_slot(&self) -> bool {
        true
    }

    fn queue_probe(&self, pipe: &mut Batch, id: &str, users: &[String]) {
        let key = self.keys.members(id);
        if let [user] = users {
            pipe.cmd("SISMEMBER").arg(&key).arg(user);
        } else {
            for chunk in users.chunks(CHUNK) {
                pipe.cmd("SMISMEMBER").arg(&key).arg(chunk);
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
