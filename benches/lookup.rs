//! The in-process lookup of the near-cache, at audience sizes from 100 to 10
//! million IDs, dense and sparse. The answer should cost at most 20 ns by
//! campaign id and 10 ns through a campaign handle, flat across sizes.
//!
//! - `by_id`: `NearCache::is_member(id, user)`: this thread's copy of the
//!   published state, the campaign by id, the staleness check, the probe.
//! - `handle`: `CampaignHandle::is_member(user)`, the campaign resolved once.
//! - `roaring_only`: the bare roaring `contains` on the same IDs, as a floor.
//!
//! Groups: `dense` (IDs drawn from a space ten times the audience, as in
//! `guestlist bench`), `sparse` (64-bit snowflake-like IDs: a millisecond
//! timestamp over two years above 22 bits of worker and sequence), and
//! `campaigns` (one audience among 100 cached campaigns, so the lookup by id
//! hashes instead of comparing a few ids). `uuid` and `string` hold random
//! UUIDs and random strings of about 20 bytes, probed with users parsed
//! ahead (`NearCache::is_member_named`); their bytes per ID held are
//! printed before their timings.
//!
//! ```sh
//! cargo bench --bench lookup
//! ```

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use guestlist::domain::{Campaign, Design};
use guestlist::ids::{Audience, IdType, Strings, User};
use guestlist::nearcache::NearCache;
use roaring::RoaringTreemap;

const SIZES: [u64; 4] = [100, 10_000, 1_000_000, 10_000_000];

/// xorshift64: cheap, deterministic, good enough to scatter IDs.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn campaign(id: &str, size: u64) -> Campaign {
    let now = Utc::now();
    Campaign {
        id: id.into(),
        name: "bench".into(),
        starts_at: now - chrono::Duration::hours(1),
        ends_at: now + chrono::Duration::hours(1),
        design: Design::Set,
        user_id_type: Default::default(),
        audience_size: size,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// An ID of a shape: dense below `10 * size`, or a snowflake.
#[derive(Clone, Copy)]
enum Shape {
    Dense,
    Snowflake,
}

impl Shape {
    fn draw(self, x: &mut u64, size: u64) -> u64 {
        match self {
            Shape::Dense => next(x) % (size * 10),
            Shape::Snowflake => {
                // 2024-01-01 plus up to two years, in milliseconds.
                let ms = 1_704_067_200_000 + next(x) % (2 * 365 * 86_400_000);
                (ms << 22) | (next(x) & 0x3f_ffff)
            }
        }
    }
}

/// `size` IDs of `shape`, and 4,096 probes of which one in ten is a member,
/// cycled so the probe itself costs nothing.
fn audience(shape: Shape, size: u64) -> (RoaringTreemap, Vec<u64>) {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ size;
    let mut ids = RoaringTreemap::new();
    // Counted here: a treemap's `len` walks every bitmap, one per snowflake.
    let mut len = 0;
    while len < size {
        len += u64::from(ids.insert(shape.draw(&mut x, size)));
    }
    let members: Vec<u64> = ids.iter().step_by((size as usize / 410).max(1)).collect();
    let probes = (0..4096)
        .map(|i| {
            if i % 10 == 0 {
                members[i % members.len()]
            } else {
                shape.draw(&mut x, size)
            }
        })
        .collect();
    (ids, probes)
}

// Each routine returns its answer for criterion to consume (it passes
// outputs through `black_box`); wrapping the answer again here moved the
// 28-byte answer through the stack twice per iteration, with stalls that
// cost more than the lookup.
fn by_id_and_handle(
    group: &mut BenchmarkGroup<'_, WallTime>,
    cache: &NearCache,
    size: u64,
    probes: &[u64],
) {
    group.bench_with_input(BenchmarkId::new("by_id", size), &size, |b, _| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            cache.is_member(black_box("spring-sale"), probes[i])
        })
    });
    let handle = cache.campaign("spring-sale").expect("cached");
    group.bench_with_input(BenchmarkId::new("handle", size), &size, |b, _| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            handle.is_member(black_box(probes[i]))
        })
    });
}

/// Benchmarks one audience of `size` IDs of `shape`.
fn case(group: &mut BenchmarkGroup<'_, WallTime>, shape: Shape, size: u64) {
    let (ids, probes) = audience(shape, size);
    match shape {
        // IDs below 2^32: the floor is a `RoaringBitmap`.
        Shape::Dense => {
            let raw: roaring::RoaringBitmap = ids.iter().map(|id| id as u32).collect();
            let cache = NearCache::from_audiences(vec![(campaign("spring-sale", size), ids)]);
            by_id_and_handle(group, &cache, size, &probes);
            floor(group, size, |id| raw.contains(id as u32), &probes);
        }
        Shape::Snowflake => {
            let cache =
                NearCache::from_audiences(vec![(campaign("spring-sale", size), ids.clone())]);
            by_id_and_handle(group, &cache, size, &probes);
            drop(cache);
            floor(group, size, |id| ids.contains(id), &probes);
        }
    }
}

fn floor(
    group: &mut BenchmarkGroup<'_, WallTime>,
    size: u64,
    contains: impl Fn(u64) -> bool,
    probes: &[u64],
) {
    group.bench_with_input(BenchmarkId::new("roaring_only", size), &size, |b, _| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            contains(black_box(probes[i]))
        })
    });
}

/// `size` random UUIDs or strings of about 20 bytes, and 4,096 probes of
/// which one in ten is a member.
fn typed_audience(id_type: IdType, size: u64) -> (Audience, Vec<User>) {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ size;
    let mut uuid = || (u128::from(next(&mut x)) << 64) | u128::from(next(&mut x));
    let texts: Vec<String> = (0..size)
        .map(|_| match id_type {
            IdType::Uuid => uuid::Uuid::from_u128(uuid()).to_string(),
            _ => format!("{:016x}@ex.com", uuid() as u64),
        })
        .collect();
    let members: Vec<&String> = texts.iter().step_by((size as usize / 410).max(1)).collect();
    let probes = (0..4096)
        .map(|i| {
            let text = if i % 10 == 0 {
                members[i % members.len()].clone()
            } else {
                match id_type {
                    IdType::Uuid => uuid::Uuid::from_u128(uuid()).to_string(),
                    _ => format!("{:016x}@ex.org", uuid() as u64),
                }
            };
            User::parse(&text).expect("a valid ID")
        })
        .collect();
    let audience = match id_type {
        IdType::Uuid => {
            let mut ids: Vec<u128> = texts
                .iter()
                .map(|t| uuid::Uuid::parse_str(t).expect("a UUID").as_u128())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            Audience::Uuids(ids)
        }
        _ => Audience::Strings(Strings::from_unsorted(texts)),
    };
    (audience, probes)
}

/// UUID and string audiences: bytes held per ID, then `by_id` and `handle`.
fn typed(c: &mut Criterion, id_type: IdType) {
    let mut group = c.benchmark_group(id_type.as_str());
    for size in [10_000, 1_000_000, 10_000_000] {
        let (audience, probes) = typed_audience(id_type, size);
        let mut spring = campaign("spring-sale", size);
        spring.user_id_type = id_type;
        let cache = NearCache::from_audiences(vec![(spring, audience)]);
        let bytes = cache.status().bytes;
        println!(
            "{}/{size}: {bytes} bytes held, {:.2} bytes per ID",
            id_type.as_str(),
            bytes as f64 / size as f64
        );
        group.bench_with_input(BenchmarkId::new("by_id", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                cache.is_member_named(black_box("spring-sale"), &probes[i])
            })
        });
        let handle = cache.campaign("spring-sale").expect("cached");
        group.bench_with_input(BenchmarkId::new("handle", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                handle.is_member_named(black_box(&probes[i]))
            })
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    typed(c, IdType::Uuid);
    typed(c, IdType::String);
    for (name, shape) in [("dense", Shape::Dense), ("sparse", Shape::Snowflake)] {
        let mut group = c.benchmark_group(name);
        for size in SIZES {
            case(&mut group, shape, size);
        }
        group.finish();
    }
    // 100 campaigns cached: past the few that are compared one by one.
    let mut group = c.benchmark_group("campaigns");
    let size = 1_000_000;
    let (ids, probes) = audience(Shape::Dense, size);
    let mut audiences = vec![(campaign("spring-sale", size), ids)];
    for n in 0..99 {
        let (other, _) = audience(Shape::Dense, 1_000 + n);
        audiences.push((campaign(&format!("campaign-{n}"), 1_000), other));
    }
    let cache = NearCache::from_audiences(audiences);
    by_id_and_handle(&mut group, &cache, 100, &probes);
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the whole matrix takes a few minutes on two shared cores.
    Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup
}
criterion_main!(benches);
