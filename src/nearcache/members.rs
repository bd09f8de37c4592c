//! How one audience is held in memory: the form that probes fastest without
//! costing more than roaring's compact form (or three bytes per ID, for
//! sparse audiences below 2^32).
//!
//! Every form answers exactly like the `RoaringTreemap` it was built from;
//! the test below holds them to it.

use roaring::{RoaringBitmap, RoaringTreemap};

use super::keys128::Keys128;
use crate::domain::UserId;
use crate::ids::{Audience, User};

/// An audience as the cache holds it, in whichever form answers fastest
/// without costing more memory than roaring's compact form.
pub(super) enum Members {
    /// A flat bitset over `0..=max`, one bit per possible ID. Chosen when the
    /// audience is dense enough that it is no bigger than the roaring form
    /// (roaring then holds mostly 8 KiB bitmap containers anyway). A probe is
    /// one shift and one load, with no search for the container, so the cost
    /// stays flat from a hundred IDs to tens of millions.
    Dense {
        bits: Box<[u64]>,
        len: u64,
    },
    /// Sparse audiences: IDs grouped into small blocks found through a
    /// directory indexed by their high bits above the smallest ID. With
    /// 16-bit remainders, at most three bytes per ID; a probe reads one
    /// directory slot and scans a few neighbours, instead of binary-searching
    /// first roaring's container keys and then a container of hundreds of IDs.
    Sorted16(SortedBlocks<u16>),
    /// The same for IDs spread wider, such as 64-bit snowflake IDs, where
    /// roaring's treemap would hold one tiny bitmap per ID behind a B-tree
    /// (a chain of dependent loads per probe). Only chosen when no bigger than
    /// roaring's compact form.
    Sorted32(SortedBlocks<u32>),
    Sorted64(SortedBlocks<u64>),
    /// Every ID fits in 32 bits but the directory would cost more than the
    /// IDs themselves (a few IDs spread very wide): a plain `RoaringBitmap`,
    /// which saves the treemap's extra tree lookup on every probe.
    Narrow(RoaringBitmap),
    Wide(RoaringTreemap),
    /// UUIDs exactly, or strings as keyed 128-bit fingerprints (see
    /// `keys128`).
    Keys128(Keys128),
}

impl Members {
    /// Picks the form for `ids` and returns it with the bytes it holds.
    #[cfg(any(test, feature = "test-util"))]
    pub(super) fn new(ids: RoaringTreemap) -> (Members, u64) {
        Members::from_sorted(ids.iter().collect())
    }

    /// Picks the form for `ids` (ascending, distinct) and returns it with
    /// the heap bytes it holds: what the cache budget counts.
    pub(super) fn from_sorted(ids: Vec<u64>) -> (Members, u64) {
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let compact = roaring_size(&ids);
        let (min, max) = match (ids.first(), ids.last()) {
            (Some(&min), Some(&max)) => (min, max),
            _ => {
                return (
                    Members::Dense {
                        bits: Box::new([]),
                        len: 0,
                    },
                    0,
                );
            }
        };
        let len = ids.len() as u64;
        // Words needed for a flat bitset over 0..=max.
        let words = max / 64 + 1;
        if words * 8 <= compact {
            let mut bits = vec![0u64; words as usize].into_boxed_slice();
            for &id in &ids {
                bits[(id / 64) as usize] |= 1 << (id % 64);
            }
            return (Members::Dense { bits, len }, words * 8);
        }
        let span = max - min;
        match block_shift(span, len) {
            Some(shift) if shift <= 16 => {
                let sorted = SortedBlocks::new(&ids, shift);
                let bytes = sorted.bytes();
                return (Members::Sorted16(sorted), bytes);
            }
            Some(shift)
                if shift <= 32 && SortedBlocks::<u32>::size(span, len, shift) <= compact =>
            {
                let sorted = SortedBlocks::new(&ids, shift);
                let bytes = sorted.bytes();
                return (Members::Sorted32(sorted), bytes);
            }
            Some(shift) if shift > 32 && SortedBlocks::<u64>::size(span, len, shift) <= compact => {
                let sorted = SortedBlocks::new(&ids, shift);
                let bytes = sorted.bytes();
                return (Members::Sorted64(sorted), bytes);
            }
            _ => {}
        }
        let heap = roaring_heap(&ids);
        if max <= u64::from(u32::MAX) {
            let narrow = RoaringBitmap::from_sorted_iter(ids.into_iter().map(|id| id as u32))
                .expect("ascending IDs");
            (Members::Narrow(narrow), heap)
        } else {
            let wide = RoaringTreemap::from_sorted_iter(ids).expect("ascending IDs");
            (Members::Wide(wide), heap)
        }
    }

    /// The form for a UUID or string audience, and its heap bytes; `None`
    /// for integers (see [`Members::from_sorted`]).
    pub(super) fn of_keys(audience: Audience) -> Option<(Members, u64)> {
        Keys128::new(audience).map(|(keys, bytes)| (Members::Keys128(keys), bytes))
    }

    /// Whether `user`, read as the audience's ID type, is held; `None` when
    /// it cannot be an ID of that type.
    #[inline]
    pub(super) fn contains_user(&self, user: &User) -> Option<bool> {
        match self {
            Members::Keys128(keys) => keys.contains_user(user),
            integers => user.as_int().map(|id| integers.contains(id)),
        }
    }

    /// Whether the user named by integer `user` is held (for a string
    /// audience, its decimal text).
    #[inline]
    pub(super) fn contains(&self, user: UserId) -> bool {
        match self {
            Members::Keys128(keys) => keys.contains_int(user),
            Members::Dense { bits, .. } => usize::try_from(user / 64)
                .ok()
                .and_then(|word| bits.get(word))
                .is_some_and(|w| (w >> (user % 64)) & 1 == 1),
            Members::Sorted16(sorted) => sorted.contains(user),
            Members::Sorted32(sorted) => sorted.contains(user),
            Members::Sorted64(sorted) => sorted.contains(user),
            Members::Narrow(ids) => u32::try_from(user).is_ok_and(|u| ids.contains(u)),
            Members::Wide(ids) => ids.contains(user),
        }
    }

    pub(super) fn len(&self) -> u64 {
        match self {
            Members::Dense { len, .. } => *len,
            Members::Sorted16(sorted) => sorted.lows.len() as u64,
            Members::Sorted32(sorted) => sorted.lows.len() as u64,
            Members::Sorted64(sorted) => sorted.lows.len() as u64,
            Members::Narrow(ids) => ids.len(),
            Members::Wide(ids) => ids.len(),
            Members::Keys128(keys) => keys.len(),
        }
    }

    #[cfg(test)]
    pub(super) fn form(&self) -> &'static str {
        match self {
            Members::Dense { .. } => "dense",
            Members::Sorted16(_) => "sorted16",
            Members::Sorted32(_) => "sorted32",
            Members::Sorted64(_) => "sorted64",
            Members::Narrow(_) => "narrow",
            Members::Wide(_) => "wide",
            Members::Keys128(_) => "keys128",
        }
    }
}

/// The finest grouping whose directory costs at most one byte per ID (one
/// four-byte offset per four IDs or more) for `len` IDs over `span`.
/// `None` when no grouping is that cheap: too few IDs spread too wide.
fn block_shift(span: u64, len: u64) -> Option<u32> {
    // Blocks are counted in u32 offsets, and a shift of 64 would overflow.
    if len > u64::from(u32::MAX) {
        return None;
    }
    (0..64).find(|s| (span >> s).saturating_add(2).saturating_mul(4) <= len)
}

/// Calls `each` with the number of IDs in every roaring container (IDs
/// sharing their high 48 bits) and whether it opens a new 32-bit bitmap.
fn containers(ids: &[u64], mut each: impl FnMut(u64, bool)) {
    let mut i = 0;
    let mut previous_high: Option<u64> = None;
    while i < ids.len() {
        let key = ids[i] >> 16;
        let n = ids[i..].iter().take_while(|&&id| id >> 16 == key).count();
        let high = ids[i] >> 32;
        each(n as u64, previous_high != Some(high));
        previous_high = Some(high);
        i += n;
    }
}

/// Roaring's serialized size for `ids` (a treemap of bitmaps without run
/// containers, which is what a snapshot holds): the yardstick every other
/// form must beat.
fn roaring_size(ids: &[u64]) -> u64 {
    let mut size = 8;
    containers(ids, |n, new_bitmap| {
        if new_bitmap {
            // The bitmap's key, cookie and container count.
            size += 4 + 8;
        }
        // The container's key, cardinality and offset, then its data.
        size += 8 + (2 * n).min(8192);
    });
    size
}

/// Heap bytes of roaring's in-memory form for `ids`: each container's data
/// and descriptor, and each 32-bit bitmap's vector and its slot in the
/// treemap's B-tree (nodes run about two-thirds full). Several times
/// [`roaring_size`] for IDs spread one per bitmap, which is why the budget
/// counts this and not the serialized size.
fn roaring_heap(ids: &[u64]) -> u64 {
    const CONTAINER: u64 = 32;
    const BITMAP_SLOT: u64 = (4 + size_of::<RoaringBitmap>() as u64) * 3 / 2;
    let mut heap = 0;
    containers(ids, |n, new_bitmap| {
        if new_bitmap {
            heap += BITMAP_SLOT;
        }
        heap += CONTAINER + (2 * n).min(8192);
    });
    heap
}

/// The remainder type of [`SortedBlocks`]: as narrow as the block width allows.
pub(super) trait Low: Copy + Ord {
    fn from_low_bits(bits: u64) -> Self;
}

impl Low for u16 {
    #[inline]
    fn from_low_bits(bits: u64) -> u16 {
        bits as u16
    }
}

impl Low for u32 {
    #[inline]
    fn from_low_bits(bits: u64) -> u32 {
        bits as u32
    }
}

impl Low for u64 {
    #[inline]
    fn from_low_bits(bits: u64) -> u64 {
        bits
    }
}

/// See [`Members::Sorted16`].
pub(super) struct SortedBlocks<L> {
    /// The smallest ID: blocks cover the span above it, not the space
    /// from zero, so IDs that all share high bits (snowflakes of the same
    /// era) do not pay for empty directory slots.
    base: u64,
    /// IDs are grouped by `(id - base) >> shift`; the shift is chosen per
    /// audience so blocks hold a handful of IDs each.
    shift: u32,
    /// `offsets[h]..offsets[h + 1]` is the block of IDs whose high bits are `h`.
    offsets: Box<[u32]>,
    /// The low `shift` bits of each `id - base`, sorted within each block.
    lows: Box<[L]>,
}

/// Blocks up to this many IDs are scanned; bigger ones (clustered IDs) are
/// binary-searched, so a skewed audience costs no more than roaring would.
const SCAN: usize = 16;

impl<L: Low> SortedBlocks<L> {
    /// Bytes the form would take for `len` IDs over `span` grouped by `shift`.
    fn size(span: u64, len: u64, shift: u32) -> u64 {
        ((span >> shift) + 2) * 4 + len * size_of::<L>() as u64
    }

    /// Groups `ids` (ascending, not empty).
    fn new(ids: &[u64], shift: u32) -> SortedBlocks<L> {
        let base = ids[0];
        let span = ids[ids.len() - 1] - base;
        let blocks = (span >> shift) as usize + 1;
        let mask = (1u64 << shift) - 1;
        let mut offsets = Vec::with_capacity(blocks + 1);
        let mut lows = Vec::with_capacity(ids.len());
        offsets.push(0);
        for &id in ids {
            let block = ((id - base) >> shift) as usize;
            while offsets.len() <= block {
                offsets.push(lows.len() as u32);
            }
            lows.push(L::from_low_bits((id - base) & mask));
        }
        offsets.push(lows.len() as u32);
        SortedBlocks {
            base,
            shift,
            offsets: offsets.into_boxed_slice(),
            lows: lows.into_boxed_slice(),
        }
    }

    fn bytes(&self) -> u64 {
        (self.offsets.len() * 4 + self.lows.len() * size_of::<L>()) as u64
    }

    #[inline]
    fn contains(&self, id: u64) -> bool {
        let Some(offset) = id.checked_sub(self.base) else {
            return false;
        };
        let Ok(high) = usize::try_from(offset >> self.shift) else {
            return false;
        };
        let (Some(&start), Some(&end)) = (self.offsets.get(high), self.offsets.get(high + 1))
        else {
            return false;
        };
        let block = &self.lows[start as usize..end as usize];
        let low = L::from_low_bits(offset & ((1 << self.shift) - 1));
        if block.len() <= SCAN {
            block.contains(&low)
        } else {
            block.binary_search(&low).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form must answer exactly like the treemap it was built from,
    /// for members, their neighbours, block edges and IDs past the end.
    #[test]
    fn every_form_answers_like_the_treemap() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |bound: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % bound
        };
        let dense: RoaringTreemap = (0..20_000).map(|_| rand(100_000)).collect();
        let sparse: RoaringTreemap = (0..50_000).map(|_| rand(100_000_000)).collect();
        // Skewed within blocks, so interpolation guesses badly and the
        // fallback search has to find the answer.
        let skewed: RoaringTreemap = (0..30_000)
            .map(|i| (rand(40) << 16) | if i % 7 == 0 { rand(65_536) } else { rand(300) })
            .collect();
        // Snowflake-like: a millisecond timestamp over a year above 22 bits
        // of worker and sequence.
        let snowflake: RoaringTreemap = (0..40_000)
            .map(|_| ((1_700_000_000_000 + rand(31_536_000_000)) << 22) | rand(1 << 22))
            .collect();
        // 64-bit IDs that share their high bits: one 2^40-wide era.
        let era: RoaringTreemap = (0..40_000)
            .map(|_| (0x5a5a << 40) | rand(1 << 40))
            .collect();
        let spread: RoaringTreemap = [3, 70_000, u64::from(u32::MAX)].into_iter().collect();
        let wide: RoaringTreemap = [1, 5_000_000_000, u64::MAX - 1].into_iter().collect();
        let cases = [
            ("dense", dense, "dense"),
            ("sparse", sparse, "sorted16"),
            ("skewed", skewed, "sorted16"),
            ("era", era, "sorted32"),
            ("snowflake", snowflake, "sorted64"),
            ("spread", spread, "narrow"),
            ("wide", wide, "wide"),
            // One ID per 32-bit bitmap, clustered in a narrow era: the
            // directory would cost more than roaring's serialized form, but
            // roaring's heap for it is several times that.
            (
                "one_per_bitmap",
                (0..2_000u64).map(|i| (i << 32) | rand(1 << 32)).collect(),
                "sorted64",
            ),
            ("empty", RoaringTreemap::new(), "dense"),
        ];
        for (name, ids, form) in cases {
            let sorted: Vec<u64> = ids.iter().collect();
            assert_eq!(
                roaring_size(&sorted),
                ids.serialized_size() as u64,
                "{name}: roaring's size, computed from the IDs"
            );
            let (members, bytes) = Members::new(ids.clone());
            assert_eq!(members.form(), form, "{name}: form");
            assert_eq!(members.len(), ids.len(), "{name}: len");
            let bound = match form {
                // Roaring's own forms hold what roaring holds in memory.
                "narrow" | "wide" => roaring_heap(&sorted),
                // Sparse 64-bit IDs: at most 10 bytes each, where roaring
                // would hold one bitmap per ID, several times that.
                "sorted64" => {
                    assert!(
                        roaring_heap(&sorted) > 5 * bytes,
                        "{name}: roaring is no bigger"
                    );
                    10 * ids.len()
                }
                _ => (ids.serialized_size() as u64).max(3 * ids.len()) + 16,
            };
            assert!(bytes <= bound, "{name}: {bytes} bytes");
            let max = ids.max().unwrap_or(10);
            let min = ids.min().unwrap_or(0);
            let mut probes: Vec<u64> = vec![0, 1, 65_535, 65_536, u64::from(u32::MAX)];
            probes.extend([u64::from(u32::MAX) + 1, u64::MAX, min.saturating_sub(1)]);
            for id in ids.iter() {
                probes.extend([id.saturating_sub(1), id, id.saturating_add(1)]);
            }
            probes.extend((0..10_000).map(|_| rand(max.saturating_add(10))));
            probes.extend((0..10_000).map(|_| min + rand((max - min).saturating_add(10))));
            for p in probes {
                assert_eq!(members.contains(p), ids.contains(p), "{name}: probe {p}");
            }
        }
    }
}
