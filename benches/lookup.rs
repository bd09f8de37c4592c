//! The in-process lookup of the near-cache, at audience sizes from 100 to 10
//! million IDs. The answer should cost tens of nanoseconds at every size:
//! a map lookup by campaign id and a roaring bitmap probe.
//!
//! ```sh
//! cargo bench --bench lookup
//! ```

use std::hint::black_box;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
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
        generation: 1,
        created_at: now,
        updated_at: now,
    }
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for size in [100u64, 30_000, 1_000_000, 10_000_000] {
        // IDs drawn from a space ten times the audience, as in `guestlist bench`.
        let space = size * 10;
        let mut x = 0x9e37_79b9_7f4a_7c15 ^ size;
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
        // The floor: the bitmap probe alone, without the cache around it.
        let raw: roaring::RoaringBitmap = ids.iter().map(|id| id as u32).collect();
        let cache = NearCache::from_audiences(vec![(campaign(size), ids)]);
        group.bench_with_input(BenchmarkId::new("near_cache", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(cache.is_member(black_box("spring-sale"), probes[i]))
            })
        });
        group.bench_with_input(BenchmarkId::new("bitmap_only", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(raw.contains(probes[i] as u32))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
