//! Large read-only arrays on transparent huge pages.
//!
//! A probe of a 10,000,000-ID UUID audience makes two dependent reads at
//! random places in 164 MB. On 4 KiB pages each one is also a TLB miss,
//! whose page walk adds to the read: on 2 MiB pages the lookup took about
//! 0.9× the time (`docs/bench/lookup/huge_pages.txt`).
//! Linux hands out huge pages only where asked when THP is in its default
//! `madvise` mode, so arrays past [`HUGE_MIN`] are built in an anonymous
//! mapping marked `MADV_HUGEPAGE` before it is first written (the kernel
//! backs the pages as they fault in), starting on a 2 MiB boundary, since
//! only whole aligned 2 MiB ranges can be huge pages. Smaller arrays, other
//! systems and a mapping that fails all fall back to the heap: huge pages
//! are a hint, never a requirement.

use std::ops::Deref;

use bytemuck::Pod;

/// Arrays smaller than this stay on the heap: the TLB already covers most of
/// a few megabytes, and a mapping of its own costs system calls.
const HUGE_MIN: usize = 4 << 20;

/// The size and alignment of a transparent huge page on x86-64 and most
/// arm64 kernels; elsewhere the alignment is merely harmless.
const HUGE_PAGE: usize = 2 << 20;

/// A read-only `[T]`, on huge pages when it is big.
pub(super) struct Pages<T: Pod> {
    storage: Storage<T>,
}

enum Storage<T> {
    Heap(Box<[T]>),
    /// The elements are `map[start..start + bytes]`: `start` is on a 2 MiB
    /// boundary (so any `Pod` is aligned). Written once, while built, and
    /// only read after.
    Mapped {
        map: memmap2::MmapMut,
        start: usize,
        bytes: usize,
    },
}

impl<T: Pod> Pages<T> {
    /// The first `len` values of `values`, in order; panics if it yields
    /// fewer.
    pub(super) fn collect(len: usize, values: impl Iterator<Item = T>) -> Pages<T> {
        let bytes = len.checked_mul(size_of::<T>());
        if let Some(bytes) = bytes.filter(|&b| b >= HUGE_MIN)
            && let Some((mut map, start)) = huge_mapping(bytes)
        {
            let slots: &mut [T] = bytemuck::cast_slice_mut(&mut map[start..start + bytes]);
            let mut filled = 0;
            for (slot, value) in slots.iter_mut().zip(values) {
                *slot = value;
                filled += 1;
            }
            assert_eq!(filled, len, "the iterator yields the length given");
            return Pages {
                storage: Storage::Mapped { map, start, bytes },
            };
        }
        let heap: Box<[T]> = values.take(len).collect();
        assert_eq!(heap.len(), len, "the iterator yields the length given");
        Pages {
            storage: Storage::Heap(heap),
        }
    }

    /// Whether the values live in a mapping advised onto huge pages.
    #[cfg(test)]
    pub(super) fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}

/// An anonymous read-write mapping, and where in it `bytes` start on a
/// 2 MiB boundary; `None` when the system cannot provide one.
///
/// Only the whole 2 MiB pages of the array are advised onto huge pages. Its
/// last partial one stays on small pages, and the mapping's unused head and
/// tail are never touched: the memory the array takes is its own size,
/// rounded to 4 KiB, as the cache's budget counts it. (Advising the whole
/// mapping could back the tail with a huge page of which the array uses a
/// sliver.)
fn huge_mapping(bytes: usize) -> Option<(memmap2::MmapMut, usize)> {
    let map = memmap2::MmapMut::map_anon(bytes.checked_add(HUGE_PAGE)?).ok()?;
    let start = (map.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - map.as_ptr() as usize;
    #[cfg(target_os = "linux")]
    {
        // Best effort: a kernel without THP refuses the advice, and the
        // mapping still works on small pages.
        let whole = bytes - bytes % HUGE_PAGE;
        if let Err(e) = map.advise_range(memmap2::Advice::HugePage, start, whole) {
            tracing::debug!(error = %e, "huge pages not available for a near-cache array");
        }
    }
    Some((map, start))
}

impl<T: Pod> Deref for Pages<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Heap(values) => values,
            Storage::Mapped { map, start, bytes } => {
                bytemuck::cast_slice(&map[*start..*start + *bytes])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_arrays_stay_on_the_heap_and_big_ones_are_mapped() {
        let small = Pages::collect(1_000, 0..1_000u64);
        assert!(!small.is_mapped());
        assert_eq!(small.len(), 1_000);
        assert_eq!(small[999], 999);

        let len = HUGE_MIN / 8 + 3;
        let big = Pages::collect(len, (0..len as u64).map(|i| i * 3));
        assert!(big.is_mapped(), "an anonymous mapping works on this system");
        assert_eq!(
            big.as_ptr() as usize % HUGE_PAGE,
            0,
            "starts on a huge page"
        );
        assert_eq!(big.len(), len);
        assert_eq!((big[0], big[len - 1]), (0, (len as u64 - 1) * 3));
        assert!(big.windows(2).all(|w| w[1] == w[0] + 3));

        let words = Pages::collect(HUGE_MIN / 4, (0..).map(|i: u32| i ^ 5));
        assert!(words.is_mapped());
        assert_eq!(words[7], 2);
    }

    #[test]
    #[should_panic(expected = "the iterator yields the length given")]
    fn a_short_iterator_is_a_bug_not_a_zero_filled_array() {
        Pages::collect(HUGE_MIN, 0..10u64);
    }
}
