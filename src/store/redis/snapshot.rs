//! Audience snapshots: each version's audience as one compact roaring
//! string, moved in [`CHUNK_BYTES`] pieces so no command is big.
//!
//! Export, the add/remove diff, `per-user` clean-up and every near-cache
//! read a snapshot instead of the live data, which is never read whole.

use super::batch::Batch;
use roaring::RoaringTreemap;

use super::conn::{Conn, PIPELINE_DEPTH};
use crate::store::{StoreError, StoreResult};

/// Snapshot bytes per SET/APPEND/GETRANGE command.
const CHUNK_BYTES: usize = 1 << 20;
/// An unpublished snapshot outlives an interrupted write by at most this.
pub(crate) const STAGING_TTL_SECS: i64 = 3_600;

/// Serializes off the async workers: a 30M-ID audience takes a while.
pub(crate) async fn serialize(members: &RoaringTreemap) -> StoreResult<Vec<u8>> {
    let members = members.clone();
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::with_capacity(members.serialized_size());
        members.serialize_into(&mut bytes).map(|()| bytes)
    })
    .await
    .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes `members` under `key` with the staging TTL; the commit that
/// publishes it gives it the campaign's expiry.
pub(crate) async fn write(conn: &Conn, key: &str, members: &RoaringTreemap) -> StoreResult<()> {
    let bytes = serialize(members).await?;
    // One round trip per PIPELINE_DEPTH pieces, built as it goes, so the
    // bytes are never copied whole into commands.
    let mut pipe = Batch::new();
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        if i == 0 {
            pipe.cmd("SET")
                .arg(key)
                .arg(chunk)
                .arg("EX")
                .arg(STAGING_TTL_SECS);
        } else {
            pipe.cmd("APPEND").arg(key).arg(chunk);
        }
        pipe.ignore();
        if (i + 1) % PIPELINE_DEPTH == 0 {
            conn.pipe::<()>("snapshot_write", &pipe).await?;
            pipe = Batch::new();
        }
    }
    if !pipe.is_empty() {
        conn.pipe::<()>("snapshot_write", &pipe).await?;
    }
    Ok(())
}

/// Reads the snapshot at `key`. `Ok(None)` when it is gone or shorter than
/// announced: it expired under the reader because a newer version replaced
/// it, and the caller should read the campaign again.
pub(crate) async fn read(conn: &Conn, key: &str) -> StoreResult<Option<RoaringTreemap>> {
    let len: usize = conn
        .cmd("snapshot_read", redis::cmd("STRLEN").arg(key))
        .await?;
    if len == 0 {
        return Ok(None);
    }
    let mut pipe = Batch::new();
    for start in (0..len).step_by(CHUNK_BYTES) {
        let end = (start + CHUNK_BYTES).min(len) - 1;
        pipe.cmd("GETRANGE").arg(key).arg(start).arg(end);
    }
    let parts: Vec<Vec<u8>> = conn.pipe("snapshot_read", &pipe).await?;
    let bytes = parts.concat();
    if bytes.len() != len {
        return Ok(None);
    }
    let key = key.to_string();
    tokio::task::spawn_blocking(move || RoaringTreemap::deserialize_from(bytes.as_slice()))
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("snapshot {key}: {e}")))
}
