//! The writer lease: one writer per campaign at a time.
//!
//! A lease is a random token in `guestlist:{C}:lock` with a short expiry,
//! renewed while the write runs. It keeps two admins from interleaving, but
//! it is not what makes writes safe: a writer can stall (GC pause, SIGSTOP,
//! a slow network) past its lease while another takes over. Safety comes
//! from the fence: every commit runs `scripts/fenced.lua`, which refuses
//! unless the token is still the one in the key. The lease only has to be
//! short, so a crashed writer blocks its campaign for at most [`LEASE`].

use std::time::{Duration, Instant};

use super::conn::Conn;
use super::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// How long a lease lasts without renewal: the longest a crashed writer
/// can block its campaign.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How often a live writer renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A write gives up once its lease has gone this long unconfirmed: any
/// longer and it may have expired, and the commit would be fenced anyway.
const GIVE_UP_AFTER: Duration = Duration::from_secs(25);

const RENEW: &str = include_str!("scripts/renew.lua");
const RELEASE: &str = include_str!("scripts/release.lua");

/// A held lease: the token the fenced commit presents.
pub(crate) struct Lease {
    pub(crate) token: String,
    key: String,
    id: String,
    conn: Conn,
}

/// Takes campaign `id`'s lease: `Busy` when another writer holds it.
pub(crate) async fn acquire(conn: &Conn, keys: &Keys, id: &str) -> StoreResult<Lease> {
    let key = keys.lock(id);
    let token = format!("{:032x}", rand::random::<u128>());
    let acquired: Option<String> = conn
        .cmd(
            "lock",
            redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64),
        )
        .await?;
    if acquired.is_none() {
        return Err(StoreError::Busy(id.to_string()));
    }
    Ok(Lease {
        token,
        key,
        id: id.to_string(),
        conn: conn.clone(),
    })
}

impl Lease {
    /// Runs `work` while keeping the lease renewed, then releases it.
    /// The work is abandoned when the lease cannot be confirmed.
    pub(crate) async fn run<T>(self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let result = tokio::select! {
            result = work => result,
            lost = self.keep_renewed() => Err(lost),
        };
        let released = self
            .conn
            .cmd::<i64>(
                "unlock",
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(&self.key)
                    .arg(&self.token),
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(campaign = %self.id, error = %e, "could not release the writer lease; it expires by itself");
        }
        result
    }

    /// Renews the lease until it cannot be confirmed; returns why.
    async fn keep_renewed(&self) -> StoreError {
        let id = self.id.as_str();
        let mut confirmed = Instant::now();
        let mut wait = RENEW_EVERY;
        loop {
            tokio::time::sleep(wait).await;
            let renewed = self
                .conn
                .cmd::<i64>(
                    "lock",
                    redis::cmd("EVAL")
                        .arg(RENEW)
                        .arg(1)
                        .arg(&self.key)
                        .arg(&self.token)
                        .arg(LEASE.as_millis() as u64),
                )
                .await;
            match renewed {
                Ok(1) => {
                    confirmed = Instant::now();
                    wait = RENEW_EVERY;
                }
                Ok(_) => {
                    tracing::error!(
                        campaign = id,
                        "the writer lease was taken over; abandoning the write"
                    );
                    return StoreError::Busy(id.to_string());
                }
                Err(e) if confirmed.elapsed() >= GIVE_UP_AFTER => {
                    tracing::error!(campaign = id, error = %e, "the writer lease could not be confirmed; abandoning the write");
                    return e;
                }
                Err(e) => {
                    tracing::warn!(campaign = id, error = %e, "could not renew the writer lease; retrying");
                    wait = Duration::from_secs(1);
                }
            }
        }
    }
}
