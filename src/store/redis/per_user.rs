//! The `per-user` design: one small hash per user, no hot key.
//!
//! `guestlist:user:{<user>}:campaigns` holds a field `<campaign>:<generation>`
//! for every audience generation that includes the user. A campaign's live
//! generation is in its metadata, so:
//! - "is U in C?" is one `HEXISTS` of U's key for C's live generation;
//! - "which campaigns is U in?" is one `HKEYS` of U's key, filtered by the
//!   live generation of each active campaign.
//!
//! A replace writes the new generation's fields while the old ones stay live,
//! then flips the generation in the metadata: the old fields are ignored from
//! that instant, without deleting them one by one. They are removed in the
//! background afterwards, and every user key expires with the latest-ending
//! campaign it mentions.

use async_trait::async_trait;
use redis::{Pipeline, Value};
use roaring::RoaringTreemap;

use super::keys::{self, Keys};
use super::{CHUNK, Conn, Layout, next_reply, parse};
use crate::domain::{Campaign, UserId};
use crate::store::StoreResult;

pub(crate) struct PerUserLayout {
    pub(crate) keys: Keys,
}

/// Queues the writes that put `user` in `field`, with an expiry that only grows:
/// `NX` sets it on a new key, `GT` extends it on an existing one (a key holding
/// several campaigns lives as long as the longest).
fn queue_add(pipe: &mut Pipeline, key: &str, field: &str, expire_at: i64) {
    pipe.cmd("HSET").arg(key).arg(field).arg(1).ignore();
    queue_expiry(pipe, key, expire_at);
}

fn queue_expiry(pipe: &mut Pipeline, key: &str, expire_at: i64) {
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

/// Runs `queue` for every member, [`CHUNK`] members per round trip.
async fn for_members(
    conn: &Conn,
    op: &'static str,
    members: &RoaringTreemap,
    queue: impl Fn(&mut Pipeline, u64),
) -> StoreResult<()> {
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for user in members {
        queue(&mut pipe, user);
        queued += 1;
        if queued == CHUNK {
            conn.pipe::<()>(op, &pipe).await?;
            pipe = redis::pipe();
            queued = 0;
        }
    }
    if queued > 0 {
        conn.pipe::<()>(op, &pipe).await?;
    }
    Ok(())
}

#[async_trait]
impl Layout for PerUserLayout {
    async fn stage(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()> {
        let field = keys::per_user_field(campaign, generation);
        for_members(conn, "stage", members, |pipe, user| {
            queue_add(pipe, &self.keys.user(user), &field, expire_at)
        })
        .await
    }

    fn publish(&self, _tx: &mut Pipeline, _campaign: &str, _generation: u64, _expire_at: i64) {
        // Publishing is the generation flip in the metadata, queued by the store.
    }

    fn apply_delta(
        &self,
        tx: &mut Pipeline,
        campaign: &str,
        generation: u64,
        add: &[u64],
        remove: &[u64],
        expire_at: i64,
    ) {
        let field = keys::per_user_field(campaign, generation);
        for &user in add {
            queue_add(tx, &self.keys.user(user), &field, expire_at);
        }
        for &user in remove {
            tx.cmd("HDEL")
                .arg(self.keys.user(user))
                .arg(&field)
                .ignore();
        }
    }

    async fn retire(
        &self,
        conn: &Conn,
        campaign: &str,
        generation: u64,
        members: &RoaringTreemap,
    ) -> StoreResult<()> {
        let field = keys::per_user_field(campaign, generation);
        for_members(conn, "retire", members, |pipe, user| {
            pipe.cmd("HDEL")
                .arg(self.keys.user(user))
                .arg(&field)
                .ignore();
        })
        .await
    }

    fn delete(&self, _tx: &mut Pipeline, _campaign: &str) {
        // Entries stop counting once the metadata is gone; the store retires
        // them in the background from the last snapshot.
    }

    async fn move_expiry(
        &self,
        conn: &Conn,
        _campaign: &str,
        members: &RoaringTreemap,
        expire_at: i64,
    ) -> StoreResult<()> {
        // An earlier end cannot shorten a key another campaign may still need;
        // a later one extends every member's key.
        for_members(conn, "expire", members, |pipe, user| {
            queue_expiry(pipe, &self.keys.user(user), expire_at)
        })
        .await
    }

    fn keys_per_member(&self) -> bool {
        true
    }

    fn queue_membership(&self, pipe: &mut Pipeline, campaign: &Campaign, users: &[UserId]) {
        let field = keys::per_user_field(&campaign.id, campaign.generation);
        for &user in users {
            pipe.cmd("HEXISTS").arg(self.keys.user(user)).arg(&field);
        }
    }

    fn read_membership(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        users: &[UserId],
    ) -> StoreResult<Vec<bool>> {
        users
            .iter()
            .map(|_| parse::<bool>(next_reply(replies)?))
            .collect()
    }

    fn queue_campaigns_for(&self, pipe: &mut Pipeline, _campaigns: &[&Campaign], users: &[UserId]) {
        // One read per user answers for every per-user campaign at once.
        for &user in users {
            pipe.cmd("HKEYS").arg(self.keys.user(user));
        }
    }

    fn read_campaigns_for(
        &self,
        replies: &mut dyn Iterator<Item = Value>,
        campaigns: &[&Campaign],
        users: &[UserId],
    ) -> StoreResult<Vec<Vec<bool>>> {
        let mut rows = vec![vec![false; users.len()]; campaigns.len()];
        for (column, _user) in users.iter().enumerate() {
            let fields: Vec<String> = parse(next_reply(replies)?)?;
            for field in &fields {
                let Some((id, generation)) = keys::parse_per_user_field(field) else {
                    continue;
                };
                if let Some(row) = campaigns
                    .iter()
                    .position(|c| c.id == id && c.generation == generation)
                {
                    rows[row][column] = true;
                }
            }
        }
        Ok(rows)
    }
}
