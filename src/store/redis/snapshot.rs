//! Audience snapshots: each version's audience as one compact encoding,
//! moved in [`CHUNK_BYTES`] pieces so no command is big, and held as a hash
//! of pieces when a string would near Redis's 512 MB limit (see [`write`]).
//!
//! Export, the add/remove diff, `per-user` clean-up and every near-cache
//! read a snapshot instead of the live data, which is never read whole.
//!
//! An integer audience's snapshot is in one of two encodings, whichever is
//! smaller for the audience (see [`encode`]):
//!
//! - **roaring**: a serialized `RoaringTreemap`, compact for IDs that
//!   cluster (dense or 32-bit ranges);
//! - **deltas**: [`DELTAS_MAGIC`], the count as a little-endian u64, then
//!   the IDs ascending as LEB128 varints of their gaps (the first ID as
//!   itself). Sparse 64-bit IDs such as snowflakes, which roaring stores in
//!   one tiny bitmap each (about 22 bytes per ID), take 5 to 7 here.
//!
//! UUID and string audiences start with their own magic ([`UUIDS_MAGIC`],
//! [`STRINGS_MAGIC`]) followed by [`Audience::to_bytes`]'s form: 16
//! big-endian bytes per UUID, or each string ID and a newline, ascending.
//! The magic says the type, and a reader checks it against the campaign's.
//!
//! Encoding runs on the async worker that writes, yielding to other tasks
//! every 65,536 IDs ([`Pace`]).
//!
//! A roaring treemap's first 8 bytes are its bitmap count, and a count that
//! starts with a magic's bytes is at least 0x3144_4c47 (826,559,559
//! bitmaps, some 10 GB of them), far past any audience guestlist accepts:
//! they cannot be confused.

use std::io::Read;

use super::batch::Batch;
use crate::ids::{Audience, IdType};
use roaring::{RoaringBitmap, RoaringTreemap};

use super::conn::{Conn, PIPELINE_DEPTH};
use crate::store::{StoreError, StoreResult};

/// Snapshot bytes per piece: per HSET or HGET (GETRANGE for snapshots
/// written as one string).
const CHUNK_BYTES: usize = 1 << 20;
/// An unpublished snapshot outlives an interrupted write by at most this.
pub(crate) const STAGING_TTL_SECS: i64 = 3_600;

/// The first bytes of a snapshot in the deltas encoding.
pub(crate) const DELTAS_MAGIC: &[u8; 4] = b"GLD1";
/// The first bytes of a snapshot of UUIDs.
pub(crate) const UUIDS_MAGIC: &[u8; 4] = b"GLU1";
/// The first bytes of a snapshot of string IDs.
pub(crate) const STRINGS_MAGIC: &[u8; 4] = b"GLS1";

/// IDs (or bitmaps) encoded between two yields to the scheduler: about a
/// millisecond of work.
const YIELD_EVERY: u64 = 1 << 16;

/// Counts work and yields to other tasks every [`YIELD_EVERY`] units, so
/// encoding a 100M-ID audience on an async worker never holds up the login
/// checks scheduled behind it, without copying the audience to a blocking
/// thread (a copy would double its memory for the length of the write).
struct Pace(u64);

impl Pace {
    async fn step(&mut self, units: u64) {
        self.0 += units;
        if self.0 >= YIELD_EVERY {
            self.0 = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Encodes `members`: integers in whichever encoding is smaller, UUIDs and
/// strings behind their magic.
pub(crate) async fn encode(members: &Audience) -> Vec<u8> {
    let mut pace = Pace(0);
    match members {
        Audience::Integers(ids) => encode_integers(ids).await,
        Audience::Uuids(ids) => {
            let mut out = Vec::with_capacity(UUIDS_MAGIC.len() + 16 * ids.len());
            out.extend_from_slice(UUIDS_MAGIC);
            for id in ids {
                out.extend_from_slice(&id.to_be_bytes());
                pace.step(1).await;
            }
            out
        }
        Audience::Strings(ids) => {
            let body: usize = ids.iter().map(|s| s.len() + 1).sum();
            let mut out = Vec::with_capacity(STRINGS_MAGIC.len() + body);
            out.extend_from_slice(STRINGS_MAGIC);
            for id in ids.iter() {
                out.extend_from_slice(id.as_bytes());
                out.push(b'\n');
                pace.step(1).await;
            }
            out
        }
    }
}

async fn encode_integers(members: &RoaringTreemap) -> Vec<u8> {
    let mut pace = Pace(0);
    // Roaring's size, bitmap by bitmap (`serialized_size` walks them all
    // at once), and the deltas' size.
    let mut roaring = 8;
    for (_, bitmap) in members.bitmaps() {
        roaring += 4 + bitmap.serialized_size();
        pace.step(1).await;
    }
    let mut deltas = DELTAS_MAGIC.len() + 8;
    let mut previous = None;
    for id in members.iter() {
        deltas += varint_len(previous.map_or(id, |p| id - p));
        previous = Some(id);
        if deltas >= roaring {
            break;
        }
        pace.step(1).await;
    }
    if deltas < roaring {
        let mut out = Vec::with_capacity(deltas);
        out.extend_from_slice(DELTAS_MAGIC);
        out.extend_from_slice(&members.len().to_le_bytes());
        let mut previous = None;
        for id in members.iter() {
            push_varint(&mut out, previous.map_or(id, |p| id - p));
            previous = Some(id);
            pace.step(1).await;
        }
        out
    } else {
        // Roaring's own treemap layout, written one bitmap at a time.
        let mut out = Vec::with_capacity(roaring);
        out.extend_from_slice(&(members.bitmaps().count() as u64).to_le_bytes());
        for (key, bitmap) in members.bitmaps() {
            out.extend_from_slice(&key.to_le_bytes());
            bitmap
                .serialize_into(&mut out)
                .expect("writing to a Vec cannot fail");
            pace.step(bitmap.len().max(1)).await;
        }
        out
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one varint at the front of `bytes`, advancing past it.
fn take_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("a varint is cut short")?;
        *bytes = rest;
        let part = u64::from(b & 0x7f);
        if shift == 63 && part > 1 {
            return Err("a varint overflows 64 bits".into());
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint is longer than 10 bytes".into())
}

/// Calls `each` with every ID of a snapshot, ascending, without building a
/// treemap: a roaring snapshot is read one 32-bit bitmap at a time, so a
/// sparse audience never costs roaring's per-bitmap heap all at once.
pub(crate) fn decode_each(bytes: &[u8], each: impl FnMut(u64)) -> Result<u64, String> {
    decode_counted(bytes, |_| {}, each)
}

/// [`decode_each`], telling `coming` how many IDs follow before each run
/// of them (the whole count for deltas, each bitmap's for roaring), so a
/// collector can reserve room instead of growing by doubling.
fn decode_counted(
    bytes: &[u8],
    mut coming: impl FnMut(u64),
    mut each: impl FnMut(u64),
) -> Result<u64, String> {
    if let Some(mut rest) = bytes.strip_prefix(DELTAS_MAGIC) {
        let (count, tail) = rest
            .split_first_chunk::<8>()
            .ok_or("the count is cut short")?;
        let count = u64::from_le_bytes(*count);
        rest = tail;
        // Every ID takes at least a byte: a hostile count reserves no more
        // than the bytes allow.
        coming(count.min(tail.len() as u64));
        let mut previous: Option<u64> = None;
        for _ in 0..count {
            let gap = take_varint(&mut rest)?;
            let id = match previous {
                None => gap,
                Some(_) if gap == 0 => return Err("an ID repeats".into()),
                Some(p) => p.checked_add(gap).ok_or("an ID overflows 64 bits")?,
            };
            each(id);
            previous = Some(id);
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes follow the last ID", rest.len()));
        }
        return Ok(count);
    }
    let mut reader = bytes;
    let mut count_bytes = [0u8; 8];
    reader
        .read_exact(&mut count_bytes)
        .map_err(|e| e.to_string())?;
    let mut previous_key: Option<u32> = None;
    let mut count = 0;
    for _ in 0..u64::from_le_bytes(count_bytes) {
        let mut key = [0u8; 4];
        reader.read_exact(&mut key).map_err(|e| e.to_string())?;
        let key = u32::from_le_bytes(key);
        if previous_key.is_some_and(|p| p >= key) {
            return Err("bitmaps are out of order".into());
        }
        previous_key = Some(key);
        let bitmap = RoaringBitmap::deserialize_from(&mut reader).map_err(|e| e.to_string())?;
        coming(bitmap.len());
        let high = u64::from(key) << 32;
        for low in &bitmap {
            each(high | u64::from(low));
        }
        count += bitmap.len();
    }
    if !reader.is_empty() {
        return Err(format!("{} bytes follow the last bitmap", reader.len()));
    }
    Ok(count)
}

/// Decodes a snapshot into an audience of the type its magic says
/// (export, diffs, clean-up).
pub(crate) fn decode(bytes: &[u8]) -> Result<Audience, String> {
    if let Some(body) = bytes.strip_prefix(UUIDS_MAGIC) {
        return Audience::from_bytes(IdType::Uuid, body);
    }
    if let Some(body) = bytes.strip_prefix(STRINGS_MAGIC) {
        return Audience::from_bytes(IdType::String, body);
    }
    if !bytes.starts_with(DELTAS_MAGIC) {
        return RoaringTreemap::deserialize_from(bytes)
            .map(Audience::Integers)
            .map_err(|e| e.to_string());
    }
    let mut ids = Vec::new();
    decode_each(bytes, |id| ids.push(id))?;
    RoaringTreemap::from_sorted_iter(ids)
        .map(Audience::Integers)
        .map_err(|e| e.to_string())
}

/// Decodes a snapshot into its IDs, ascending: 8 bytes per ID, whatever
/// their spread (the near-cache builds its own form from this).
pub(crate) fn decode_sorted(bytes: &[u8]) -> Result<Vec<u64>, String> {
    if bytes.starts_with(UUIDS_MAGIC) || bytes.starts_with(STRINGS_MAGIC) {
        return Err("the snapshot holds UUIDs or strings, not integers".into());
    }
    // Room is reserved for each run of IDs as it is announced: growing by
    // doubling alone could hold up to twice the list for a moment. (`reserve`,
    // not `reserve_exact`: a snowflake audience in roaring announces a run
    // of one ID per bitmap, and exact growth would copy the list each time.)
    let ids = std::cell::RefCell::new(Vec::new());
    decode_counted(
        bytes,
        |n| ids.borrow_mut().reserve(n as usize),
        |id| ids.borrow_mut().push(id),
    )?;
    Ok(ids.into_inner())
}

/// Field of a snapshot's hash holding how many pieces it has.
pub(crate) const FIELD_PIECES: &str = "pieces";
/// Field of a snapshot's hash holding its length in bytes.
pub(crate) const FIELD_BYTES: &str = "bytes";

/// Snapshots up to this size are one string (the default of
/// `StoreOptions::snapshot_string_max_bytes`): half of Redis's 512 MB limit.
pub const SNAPSHOT_STRING_MAX_BYTES: usize = 256 << 20;

/// Writes `members` under `key` with the staging TTL; the commit that
/// publishes it gives it the campaign's expiry.
///
/// Up to `string_max` bytes the snapshot is one string, written in
/// [`CHUNK_BYTES`] pieces (`SET`, then `APPEND`), which every earlier
/// version reads too. A bigger one is a HASH of [`CHUNK_BYTES`] pieces
/// (fields `0`, `1`, …) plus [`FIELD_PIECES`] and [`FIELD_BYTES`]: a Redis
/// string stops at 512 MB, which 100,000,000 sparse IDs, 33,000,000 UUIDs
/// or a few million long strings would pass. Either way it is one key, so
/// every expiry, rename and unlink of a snapshot stays one command.
pub(crate) async fn write(
    conn: &Conn,
    key: &str,
    members: &Audience,
    string_max: usize,
) -> StoreResult<()> {
    let bytes = encode(members).await;
    let as_string = bytes.len() <= string_max;
    // One round trip per PIPELINE_DEPTH pieces, built as it goes, so the
    // bytes are never copied whole into commands.
    let mut pipe = Batch::new();
    if !as_string {
        pipe.cmd("HSET")
            .arg(key)
            .arg(FIELD_PIECES)
            .arg(bytes.len().div_ceil(CHUNK_BYTES))
            .arg(FIELD_BYTES)
            .arg(bytes.len())
            .ignore();
        pipe.cmd("EXPIRE").arg(key).arg(STAGING_TTL_SECS).ignore();
    }
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        match (as_string, i) {
            (true, 0) => pipe
                .cmd("SET")
                .arg(key)
                .arg(chunk)
                .arg("EX")
                .arg(STAGING_TTL_SECS),
            (true, _) => pipe.cmd("APPEND").arg(key).arg(chunk),
            (false, _) => pipe.cmd("HSET").arg(key).arg(i).arg(chunk),
        }
        .ignore();
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

/// Reads the snapshot at `key` and decodes it with `decode` off the async
/// workers. `Ok(None)` when it is gone or shorter than announced: it
/// expired under the reader because a newer version replaced it, and the
/// caller should read the campaign again.
pub(crate) async fn read<T: Send + 'static>(
    conn: &Conn,
    key: &str,
    decode: fn(&[u8]) -> Result<T, String>,
) -> StoreResult<Option<T>> {
    let kind: String = conn
        .cmd("snapshot_read", redis::cmd("TYPE").arg(key))
        .await?;
    let bytes = match kind.as_str() {
        "none" => return Ok(None),
        "string" => read_string(conn, key).await?,
        "hash" => read_pieces(conn, key).await?,
        other => {
            return Err(StoreError::Corrupt(format!(
                "snapshot {key} is a {other}, not a hash"
            )));
        }
    };
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let key = key.to_string();
    tokio::task::spawn_blocking(move || decode(&bytes))
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("snapshot {key}: {e}")))
}

/// The bytes of a snapshot written by [`write`], or `None` if a piece is
/// missing (the key expired or was replaced while it was read).
async fn read_pieces(conn: &Conn, key: &str) -> StoreResult<Option<Vec<u8>>> {
    let (pieces, len): (Option<usize>, Option<usize>) = conn
        .cmd(
            "snapshot_read",
            redis::cmd("HMGET")
                .arg(key)
                .arg(FIELD_PIECES)
                .arg(FIELD_BYTES),
        )
        .await?;
    let (Some(pieces), Some(len)) = (pieces, len) else {
        return Ok(None);
    };
    if pieces != len.div_ceil(CHUNK_BYTES) {
        return Err(StoreError::Corrupt(format!(
            "snapshot {key} announces {pieces} pieces for {len} bytes"
        )));
    }
    // Grown as pieces arrive past the first few: `bytes` is only a claim.
    let mut bytes = Vec::with_capacity(len.min(PIPELINE_DEPTH * CHUNK_BYTES));
    for first in (0..pieces).step_by(PIPELINE_DEPTH) {
        let mut pipe = Batch::new();
        for i in first..(first + PIPELINE_DEPTH).min(pieces) {
            pipe.cmd("HGET").arg(key).arg(i);
        }
        let parts: Vec<Option<Vec<u8>>> = conn.pipe("snapshot_read", &pipe).await?;
        for part in parts {
            let Some(part) = part else {
                return Ok(None);
            };
            bytes.extend_from_slice(&part);
        }
    }
    Ok((bytes.len() == len).then_some(bytes))
}

/// The bytes of a snapshot held as one string, or `None` if it is shorter
/// than it was (it expired or was replaced while it was read).
async fn read_string(conn: &Conn, key: &str) -> StoreResult<Option<Vec<u8>>> {
    let len: usize = conn
        .cmd("snapshot_read", redis::cmd("STRLEN").arg(key))
        .await?;
    if len == 0 {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len);
    let starts: Vec<usize> = (0..len).step_by(CHUNK_BYTES).collect();
    // PIPELINE_DEPTH pieces per round trip, so a reply is never the whole
    // snapshot at once.
    for batch in starts.chunks(PIPELINE_DEPTH) {
        let mut pipe = Batch::new();
        for &start in batch {
            let end = (start + CHUNK_BYTES).min(len) - 1;
            pipe.cmd("GETRANGE").arg(key).arg(start).arg(end);
        }
        let parts: Vec<Vec<u8>> = conn.pipe("snapshot_read", &pipe).await?;
        for part in parts {
            bytes.extend_from_slice(&part);
        }
    }
    Ok((bytes.len() == len).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode_now(ids: &RoaringTreemap) -> Vec<u8> {
        encode_audience(&Audience::Integers(ids.clone()))
    }

    fn encode_audience(members: &Audience) -> Vec<u8> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(encode(members))
    }

    #[test]
    fn uuid_and_string_snapshots_say_their_type_and_read_back_exactly() {
        let uuids = Audience::Uuids(vec![1, 2 << 64, u128::MAX]);
        let strings = Audience::Strings(crate::ids::Strings::from_unsorted(vec![
            "b@example.com",
            "a+b@example.com",
            "Élodie/ü?#%",
        ]));
        for (audience, magic) in [(&uuids, UUIDS_MAGIC), (&strings, STRINGS_MAGIC)] {
            let bytes = encode_audience(audience);
            assert_eq!(&bytes[..4], magic);
            assert_eq!(bytes[4..], audience.to_bytes()[..]);
            assert_eq!(&decode(&bytes).unwrap(), audience);
            assert!(decode_sorted(&bytes).unwrap_err().contains("not integers"));
        }
        for empty in [IdType::Uuid, IdType::String] {
            let bytes = encode_audience(&Audience::empty(empty));
            assert_eq!(bytes.len(), 4, "the magic alone: never an empty key");
            assert_eq!(decode(&bytes).unwrap(), Audience::empty(empty));
        }
        let mut unordered = STRINGS_MAGIC.to_vec();
        unordered.extend(b"b\na\n");
        assert!(decode(&unordered).is_err());
        let mut ragged = UUIDS_MAGIC.to_vec();
        ragged.extend([0; 17]);
        assert!(decode(&ragged).is_err());
    }

    fn round_trip(ids: &RoaringTreemap) -> Vec<u8> {
        let bytes = encode_now(ids);
        assert_eq!(&decode(&bytes).unwrap(), ids);
        let sorted = decode_sorted(&bytes).unwrap();
        assert_eq!(sorted, ids.iter().collect::<Vec<_>>());
        bytes
    }

    #[test]
    fn each_audience_gets_the_smaller_encoding() {
        let dense: RoaringTreemap = (0..100_000u64).map(|i| i * 3).collect();
        let bytes = round_trip(&dense);
        assert!(!bytes.starts_with(DELTAS_MAGIC));
        assert_eq!(bytes.len(), dense.serialized_size());

        let snowflakes: RoaringTreemap = (0..10_000u64)
            .map(|i| ((1_700_000_000_000 + i * 3_153_600) << 22) | (i * 7919 % (1 << 22)))
            .collect();
        let bytes = round_trip(&snowflakes);
        assert!(bytes.starts_with(DELTAS_MAGIC));
        // The header, the first ID whole (63 bits: nine bytes), then gaps
        // of about 2^43.5 (a year's milliseconds over 10,000 IDs, above 22
        // bits): seven bytes each.
        assert_eq!(bytes.len(), 12 + 9 + 7 * 9_999);
        assert!(snowflakes.serialized_size() > 3 * bytes.len());

        round_trip(&RoaringTreemap::new());
        round_trip(&[0, u64::MAX].into_iter().collect());
    }

    #[test]
    fn damaged_snapshots_are_refused_not_misread() {
        let ids: RoaringTreemap = [5, 1 << 40, u64::MAX].into_iter().collect();
        let bytes = encode_now(&ids);
        assert!(bytes.starts_with(DELTAS_MAGIC));
        for cut in 0..bytes.len() {
            assert!(decode_sorted(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(
            decode_sorted(&trailing)
                .unwrap_err()
                .contains("follow the last ID")
        );
        let mut repeat = DELTAS_MAGIC.to_vec();
        repeat.extend(2u64.to_le_bytes());
        repeat.extend([7, 0]);
        assert_eq!(decode_sorted(&repeat).unwrap_err(), "an ID repeats");
        let mut overflow = DELTAS_MAGIC.to_vec();
        overflow.extend(2u64.to_le_bytes());
        overflow.extend([0xff; 9]);
        overflow.push(0x01);
        overflow.push(1);
        assert_eq!(
            decode_sorted(&overflow).unwrap_err(),
            "an ID overflows 64 bits"
        );
        let mut too_long = DELTAS_MAGIC.to_vec();
        too_long.extend(1u64.to_le_bytes());
        too_long.extend([0xff; 9]);
        too_long.push(0x02);
        assert_eq!(
            decode_sorted(&too_long).unwrap_err(),
            "a varint overflows 64 bits"
        );
        let roaring = encode_now(&(0..10u64).collect());
        for cut in 0..roaring.len() {
            assert!(
                decode_sorted(&roaring[..cut]).is_err(),
                "roaring cut at {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_audience_reads_back_exactly(
            ids in proptest::collection::btree_set(
                prop_oneof![0u64..1000, any::<u64>(), (0u64..1000).prop_map(|i| i << 40)],
                0..300,
            )
        ) {
            let ids: RoaringTreemap = ids.into_iter().collect();
            let bytes = encode_now(&ids);
            prop_assert!(bytes.len() <= ids.serialized_size());
            prop_assert_eq!(decode(&bytes).unwrap(), ids.clone());
            prop_assert_eq!(decode_sorted(&bytes).unwrap(), ids.iter().collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), magic in any::<bool>()) {
            let mut input = if magic { DELTAS_MAGIC.to_vec() } else { Vec::new() };
            input.extend(bytes);
            if let Ok(ids) = decode_sorted(&input) {
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
