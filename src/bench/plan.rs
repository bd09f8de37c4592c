//! What to measure: the designs, the paths a check takes, how checks
//! arrive, and the audiences they are drawn from.

use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaring::RoaringTreemap;

use crate::config::BenchArgs;
use crate::domain::Design;
use crate::ids::IdType;

/// A design as the bench knows it: the store designs plus the story's JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDesign {
    Json,
    Store(Design),
    /// The `set` design read through an in-process near-cache, as `serve`
    /// and the library client do.
    NearCache,
}

impl BenchDesign {
    pub fn parse(s: &str) -> anyhow::Result<BenchDesign> {
        match s {
            "json" => Ok(BenchDesign::Json),
            "near-cache" => Ok(BenchDesign::NearCache),
            other => Design::parse(other)
                .map(BenchDesign::Store)
                .with_context(|| {
                    format!(
                    "unknown design {other:?}; choose from json, set, per-user, bitmap, near-cache"
                )
                }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BenchDesign::Json => "json",
            BenchDesign::Store(d) => d.as_str(),
            BenchDesign::NearCache => "near-cache",
        }
    }
}

/// How checks arrive during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fixed number of virtual users, each waiting for its answer before
    /// asking again: measures capacity, hides queueing.
    Closed,
    /// Checks arrive on a fixed schedule whatever the answers do, as logins
    /// do; latency runs from each check's intended start, so a queue shows.
    Open,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
        }
    }
}

/// The path a check takes to its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The library: `near-cache` answers in process ("in-process"); the
    /// other designs call Redis from the bench ("redis-direct").
    Direct,
    /// `GET /v1/campaigns/{id}/members/{user}` on a `guestlist serve` the
    /// bench starts, over keep-alive connections.
    Http,
}

impl Via {
    pub fn parse(s: &str) -> anyhow::Result<Via> {
        match s {
            "direct" => Ok(Via::Direct),
            "http" => Ok(Via::Http),
            other => anyhow::bail!("unknown --via {other:?}; choose from direct, http"),
        }
    }

    /// The name a run records: what the check actually went through.
    pub fn label(self, design: BenchDesign) -> &'static str {
        match (self, design) {
            (Via::Http, _) => "http",
            (Via::Direct, BenchDesign::NearCache) => "in-process",
            (Via::Direct, _) => "redis-direct",
        }
    }
}

/// The matrix to run, after `--quick` and defaults are applied.
#[derive(Debug, Clone)]
pub struct Plan {
    pub designs: Vec<BenchDesign>,
    pub audiences: Vec<u64>,
    pub concurrency: Vec<usize>,
    pub modes: Vec<Mode>,
    /// Offered rates (checks/s) for open-loop runs.
    pub arrival_rates: Vec<f64>,
    /// Double the first arrival rate until each design saturates.
    pub sweep: bool,
    pub via: Vec<Via>,
    /// Open loop: checks in flight at once, like a login service's pool;
    /// later arrivals wait (their wait counts) or time out.
    pub max_in_flight: usize,
    pub duration: Duration,
    /// Load before each measured window, not counted: connections, caches
    /// and the allocator reach their steady state first.
    pub warmup: Duration,
    pub seed: u64,
    pub hit_ratio: f64,
    pub id_space_factor: u64,
    /// `--id-type`: what the drawn integers stand for.
    pub id_type: IdType,
    pub deadline: Duration,
    /// Compare with redis-benchmark and redis-cli --pipe after the matrix.
    pub redis_baselines: bool,
    /// `--allow-remote`: the target may be off loopback.
    pub allow_remote: bool,
}

/// The command line's defaults.
impl Default for Plan {
    fn default() -> Plan {
        Plan {
            designs: vec![
                BenchDesign::Json,
                BenchDesign::Store(Design::Set),
                BenchDesign::Store(Design::PerUser),
                BenchDesign::Store(Design::Bitmap),
                BenchDesign::NearCache,
            ],
            audiences: vec![100, 30_000, 1_000_000],
            concurrency: vec![1, 64, 256],
            modes: vec![Mode::Closed, Mode::Open],
            arrival_rates: vec![10_000.0],
            sweep: false,
            via: vec![Via::Direct],
            max_in_flight: 256,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            seed: 42,
            hit_ratio: 0.1,
            id_space_factor: 10,
            id_type: IdType::Integer,
            deadline: Duration::from_secs(1),
            redis_baselines: false,
            allow_remote: false,
        }
    }
}

/// The most open-loop steps a sweep takes (first rate × 2^11).
pub const MAX_SWEEP_STEPS: usize = 12;

impl Plan {
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        let designs = args
            .designs
            .iter()
            .map(|d| BenchDesign::parse(d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let via = args
            .via
            .iter()
            .map(|v| Via::parse(v))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let modes = args
            .mode
            .iter()
            .map(|m| match m.as_str() {
                "open" => Ok(Mode::Open),
                "closed" => Ok(Mode::Closed),
                other => anyhow::bail!("unknown --mode {other:?}; choose from open, closed"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The quick matrix still covers the incident: 30,000 IDs at 64
        // concurrent logins, and at an arrival rate json cannot hold.
        let (audiences, concurrency, duration, warmup) = if args.quick {
            (
                vec![100, 30_000],
                vec![1, 64],
                Duration::from_secs(2),
                Duration::from_millis(500),
            )
        } else {
            (
                args.audience.clone(),
                args.concurrency.clone(),
                args.duration,
                args.warmup,
            )
        };
        anyhow::ensure!(!designs.is_empty(), "--designs is empty");
        anyhow::ensure!(!via.is_empty(), "--via is empty");
        anyhow::ensure!(!modes.is_empty(), "--mode is empty");
        anyhow::ensure!(
            audiences.iter().all(|a| *a > 0),
            "--audience sizes must be positive"
        );
        anyhow::ensure!(
            concurrency.iter().all(|c| (1..=4096).contains(c)),
            "--concurrency levels must be between 1 and 4096"
        );
        anyhow::ensure!(
            !args.arrival_rate.is_empty()
                && args
                    .arrival_rate
                    .iter()
                    .all(|r| r.is_finite() && (1.0..=10_000_000.0).contains(r)),
            "--arrival-rate must be between 1 and 10,000,000 checks/s"
        );
        anyhow::ensure!(
            (1..=65_536).contains(&args.max_in_flight),
            "--max-in-flight must be between 1 and 65,536"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&args.hit_ratio),
            "--hit-ratio must be between 0 and 1"
        );
        anyhow::ensure!(
            args.id_space_factor >= 1,
            "--id-space-factor must be at least 1"
        );
        anyhow::ensure!(!duration.is_zero(), "--duration must be longer than zero");
        let id_type = IdType::parse(&args.id_type).with_context(|| {
            format!(
                "unknown --id-type {:?}; choose from integer, string, uuid",
                args.id_type
            )
        })?;
        anyhow::ensure!(
            id_type == IdType::Integer || !designs.contains(&BenchDesign::Store(Design::Bitmap)),
            "the bitmap design holds integer IDs only; leave it out of --designs for --id-type {id_type}"
        );
        if designs.contains(&BenchDesign::Store(Design::Bitmap)) {
            let largest = audiences.iter().max().copied().unwrap_or(0);
            anyhow::ensure!(
                largest.saturating_mul(args.id_space_factor) <= u32::MAX as u64 + 1,
                "the bitmap design holds ids below 2^32; lower --audience or --id-space-factor"
            );
        }
        Ok(Plan {
            designs,
            audiences,
            concurrency,
            modes,
            arrival_rates: args.arrival_rate.clone(),
            sweep: args.sweep,
            via,
            max_in_flight: args.max_in_flight,
            duration,
            warmup,
            seed: args.seed,
            hit_ratio: args.hit_ratio,
            id_space_factor: args.id_space_factor,
            id_type,
            deadline: args.check_timeout,
            redis_baselines: args.redis_baselines,
            allow_remote: args.allow_remote,
        })
    }

    /// The runs one design × audience × path takes, a sweep counted at its
    /// longest.
    fn runs_per_path(&self) -> usize {
        let mut n = 0;
        if self.modes.contains(&Mode::Closed) {
            n += self.concurrency.len();
        }
        if self.modes.contains(&Mode::Open) {
            n += if self.sweep {
                MAX_SWEEP_STEPS
            } else {
                self.arrival_rates.len()
            };
        }
        n
    }

    /// Runs in the whole matrix (an upper bound when sweeping).
    pub fn runs(&self) -> usize {
        let paths: usize = self
            .designs
            .iter()
            .map(|d| self.via.iter().filter(|v| v.applies_to(*d)).count())
            .sum();
        paths * self.audiences.len() * self.runs_per_path()
    }
}

impl Via {
    /// `json` never was a service design: `serve` cannot answer it over HTTP.
    pub fn applies_to(self, design: BenchDesign) -> bool {
        !(self == Via::Http && design == BenchDesign::Json)
    }
}

/// The audience of one size: members, and a way to draw users at a hit ratio.
pub(super) struct Audience {
    pub(super) members: RoaringTreemap,
    /// The same IDs in a vector, to draw a random member in O(1).
    pub(super) list: Vec<u64>,
    space: u64,
    pub(super) seed: u64,
}

impl Audience {
    /// `size` distinct IDs drawn uniformly from `[0, size × factor)`, the same
    /// for a given seed whatever else the matrix holds.
    pub(super) fn generate(plan: &Plan, size: u64) -> Audience {
        let space = size.saturating_mul(plan.id_space_factor).max(size);
        let seed = plan.seed ^ size.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members = RoaringTreemap::new();
        while members.len() < size {
            members.insert(rng.random_range(0..space));
        }
        let list = members.iter().collect();
        Audience {
            members,
            list,
            space,
            seed,
        }
    }

    /// 1,000 IDs for warming up, outside any measured matrix.
    pub(super) fn small() -> Audience {
        let members: RoaringTreemap = (0..1_000).map(|i| i * 7).collect();
        Audience {
            list: members.iter().collect(),
            members,
            space: 7_000,
            seed: 1,
        }
    }

    /// The members as IDs of `id_type` (see [`typed_text`]).
    pub(super) fn typed(&self, id_type: IdType) -> crate::ids::Audience {
        if id_type == IdType::Integer {
            return self.members.clone().into();
        }
        let keys = self.list.iter().map(|&id| {
            let text = typed_text(id_type, id).expect("not an integer type");
            id_type.read(text.as_bytes()).expect("a valid ID")
        });
        crate::ids::Audience::from_keys(id_type, keys).expect("one type")
    }

    pub(super) fn draw(&self, rng: &mut StdRng, hit_ratio: f64) -> u64 {
        if rng.random_bool(hit_ratio) {
            self.list[rng.random_range(0..self.list.len())]
        } else {
            rng.random_range(0..self.space)
        }
    }
}

/// The ID of `id_type` that drawn integer `id` stands for; `None` for
/// integers, which stand for themselves. One-to-one, so the answer a check
/// should get is still whether the integer is a member. UUIDs are spread
/// over all 128 bits (a multiplication by an odd constant is invertible),
/// strings are 24 bytes like an email.
pub(super) fn typed_text(id_type: IdType, id: u64) -> Option<String> {
    match id_type {
        IdType::Integer => None,
        IdType::Uuid => {
            let spread = u128::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            Some(uuid::Uuid::from_u128(spread).to_string())
        }
        IdType::String => Some(format!(
            "u{:016x}@ex.com",
            id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
    }
}
