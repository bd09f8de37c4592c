//! The in-process lookup of the near-cache, at audience sizes from 100 to 10
//! million IDs. The answer should cost tens of nanoseconds at every size:
//! a map lookup by campaign id and a probe of the audience's bitset, flat
//! for dense audiences and roaring for sparse ones.
//!
//! ```sh
//! cargo bench --bench lookup
//! ```

use std::hint::black_box;

use chrono::Utc;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use guestlist::domain::{Campaign, Design};
use guestlist::nearcache::NearCache;
use roaring::RoaringTreemap;

/// xorshift64: cheap, deterministic, good enough to scatter IDs.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn campaign(size: u64) -> Campaign {
    let now = Utc::now();
    Campaign {
        id: "spring-sale".into(),
        name: "bench".into(),
        starts_at: now - chrono::Duration::hours(1),
        ends_at: now + chrono::Duration::hours(1),
        design: Design::Set,
        audience_size: size,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// Benchmarks one audience of `size` random IDs below `space`.
fn case(group: &mut BenchmarkGroup<'_, WallTime>, size: u64, space: u64) {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ size ^ space;
    let mut ids = RoaringTreemap::new();
    while ids.len() < size {
        ids.insert(next(&mut x) % space);
    }
    // 4,096 probes, one in ten a member, cycled so the probe itself is free.
    let members: Vec<u64> = ids.iter().step_by((size as usize / 410).max(1)).collect();
    let probes: Vec<u64> = (0..4096)
        .map(|i| {
            if i % 10 == 0 {
                members[i % members.len()]
            } else {
                next(&mut x) % space
            }
        })
        .collect();
    // The floor: the roaring probe alone, without the cache around it.
    let raw: roaring::RoaringBitmap = ids.iter().map(|id| id as u32).collect();
    let cache = NearCache::from_audiences(vec![(campaign(size), ids)]);
    group.bench_with_input(BenchmarkId::new("near_cache", size), &size, |b, _| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(cache.is_member(black_box("spring-sale"), probes[i]))
        })
    });
    group.bench_with_input(BenchmarkId::new("roaring_only", size), &size, |b, _| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(raw.contains(probes[i] as u32))
        })
    });
}

fn lookup(c: &mut Criterion) {
    // IDs drawn from a space ten times the audience, as in `guestlist bench`:
    // dense enough that the cache holds a flat bitset.
    let mut group = c.benchmark_group("lookup");
    for size in [100u64, 30_000, 1_000_000, 10_000_000] {
        case(&mut group, size, size * 10);
    }
    group.finish();
    // IDs scattered below 100,000,000: sparse audiences stay in roaring form.
    let mut group = c.benchmark_group("lookup_sparse");
    for size in [30_000u64, 1_000_000] {
        case(&mut group, size, 100_000_000);
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
