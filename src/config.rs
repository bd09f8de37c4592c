//! Command-line and environment configuration. Each field's doc comment is its `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "guestlist",
    version,
    about = "Time-boxed campaign audiences, checked at login speed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Options of the admin commands. Global, so they go anywhere on the
    /// line: `guestlist --server U campaign list` and `guestlist campaign
    /// list --server U` mean the same.
    #[command(flatten)]
    pub remote: Remote,
}

/// The subcommands that talk to a running server; they share [`Remote`],
/// [`ADMIN_HELP`] and the exit codes of [`crate::cli::Exit`].
pub const ADMIN_COMMANDS: [&str; 5] = ["campaign", "audience", "check", "user", "audit"];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Replay the login storm against each Redis design and print the comparison table.
    Bench(BenchArgs),
    /// Manage campaigns on a running server.
    Campaign {
        #[command(subcommand)]
        cmd: CampaignCmd,
    },
    /// Upload, change or export a campaign's audience on a running server.
    Audience {
        #[command(subcommand)]
        cmd: AudienceCmd,
    },
    /// Is a user in a campaign's audience? Exits 0 if so, 1 if not.
    Check {
        /// The campaign's id.
        campaign: String,
        /// The user's id (an unsigned integer).
        user: String,
    },
    /// Which active campaigns is a user in?
    User {
        /// The user's id (an unsigned integer).
        user: String,
    },
    /// Show the audit log: who changed what, newest first.
    Audit {
        /// Only this campaign's changes.
        #[arg(long)]
        campaign: Option<String>,
        /// How many events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Where the admin commands send their requests and how they print. The
/// token is not here: it comes from `GUESTLIST_TOKEN` only, because a
/// command line is readable by every user of the machine.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The guestlist server the admin commands talk to, as http://host:port
    /// or https://host:port.
    #[arg(
        long,
        global = true,
        env = "GUESTLIST_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// Print the server's JSON instead of a table (for `audience export`:
    /// the IDs as a JSON array, like --format json).
    #[arg(long, global = true)]
    pub json: bool,
    /// For an https:// server: trust only the CA certificates in this PEM
    /// file instead of the system's roots (a private CA).
    #[arg(long, global = true, env = "GUESTLIST_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CampaignCmd {
    /// Create a campaign.
    Create {
        /// The new campaign's id: letters, digits, '-' and '_'.
        id: String,
        /// A display name; the id if not given.
        #[arg(long)]
        name: Option<String>,
        /// When the campaign starts, RFC 3339, e.g. 2026-12-01T09:00:00Z.
        #[arg(long)]
        starts_at: String,
        /// When the campaign ends, RFC 3339; after starts-at.
        #[arg(long)]
        ends_at: String,
        /// How Redis stores the audience: set, per-user or bitmap.
        #[arg(long, default_value = "set")]
        design: String,
        /// What the user IDs are: integer, string or uuid (fixed for the
        /// campaign's life; bitmap takes integers only).
        #[arg(long, default_value = "integer")]
        user_id_type: String,
    },
    /// List campaigns.
    List,
    /// Show one campaign.
    Show {
        /// The campaign's id.
        id: String,
    },
    /// Rename a campaign or move its window.
    Edit {
        /// The campaign's id.
        id: String,
        /// The new display name.
        #[arg(long)]
        name: Option<String>,
        /// The new start, RFC 3339.
        #[arg(long)]
        starts_at: Option<String>,
        /// The new end, RFC 3339.
        #[arg(long)]
        ends_at: Option<String>,
    },
    /// Delete a campaign and its audience. Asks first on a terminal;
    /// elsewhere it needs --yes.
    Delete {
        /// The campaign's id.
        id: String,
        /// Delete without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AudienceCmd {
    /// Replace the whole audience with the IDs in a file.
    Replace(UploadArgs),
    /// Add the IDs in a file; says how many were already present.
    Add(UploadArgs),
    /// Remove the IDs in a file; says how many were not in the audience.
    Remove(UploadArgs),
    /// List the kept versions of the audience, newest first: size, when,
    /// who and how.
    Versions {
        /// The campaign's id.
        campaign: String,
    },
    /// Publish a kept version's audience again, as a new version (itself
    /// undone by rolling back to the version it replaced).
    Rollback {
        /// The campaign's id.
        campaign: String,
        /// The kept version to restore (see `audience versions`).
        version: u64,
    },
    /// Write the audience to stdout in ascending order.
    Export {
        /// The campaign's id.
        campaign: String,
        /// lines: one ID per line; csv: a user_id header, then one ID per
        /// line; json: one array. Every format can be uploaded again.
        #[arg(long, value_enum)]
        format: Option<ExportFormat>,
    },
}

/// A campaign and a file of IDs to send it.
#[derive(Debug, Clone, Args)]
pub struct UploadArgs {
    /// The campaign's id.
    pub campaign: String,
    /// The file of IDs, streamed to the server; `-` reads stdin.
    pub file: String,
    /// lines: one ID per line, optional header; csv: a CSV export (RFC
    /// 4180), the IDs in one column; json: an array of IDs. Without it, a
    /// file named *.json is read as json and *.csv as csv (said on stderr),
    /// anything else as lines.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// The CSV file's first row is a header (column names). Implies csv.
    #[arg(long)]
    pub header: bool,
    /// The column holding the IDs: its name in the header (with --header)
    /// or its number from 1. Implies csv.
    #[arg(long, value_name = "NAME|N")]
    pub column: Option<String>,
    /// Show what the change would do (IDs added and removed, the new size,
    /// a sample of each side) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    Lines,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Lines,
    Csv,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Designs to compare: json (the original single-key array), set,
    /// per-user, bitmap, and near-cache (a set read through the in-process cache).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "json,set,per-user,bitmap,near-cache"
    )]
    pub designs: Vec<String>,

    /// Audience sizes, in IDs.
    #[arg(long, value_delimiter = ',', default_value = "100,30000,1000000")]
    pub audience: Vec<u64>,

    /// Concurrent virtual users (closed loop: each waits for its answer).
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    pub concurrency: Vec<usize>,

    /// How checks arrive: `closed` (virtual users that each wait for
    /// their answer: capacity) and `open` (a fixed arrival rate whatever the
    /// answers do: queueing, as at a login peak).
    #[arg(long, value_delimiter = ',', default_value = "closed,open")]
    pub mode: Vec<String>,

    /// Open loop: offered checks per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub arrival_rate: Vec<f64>,

    /// Open loop: start at the first --arrival-rate and double it until
    /// each design saturates (timeouts, or p99 past half the deadline).
    #[arg(long)]
    pub sweep: bool,

    /// Paths to measure: `direct` (the library: in-process for near-cache,
    /// Redis from the bench for the others) and `http` (a `guestlist serve`
    /// the bench starts, over keep-alive connections).
    #[arg(long, value_delimiter = ',', default_value = "direct")]
    pub via: Vec<String>,

    /// Open loop: checks in flight at once; later arrivals wait for a slot,
    /// and that wait counts in their latency.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,

    /// How long each run lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Load before each run's window, not measured.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Seed for audiences and workloads; the same seed replays the same checks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Share of checks asking about a member of the audience.
    #[arg(long, default_value_t = 0.1)]
    pub hit_ratio: f64,

    /// IDs are drawn from [0, audience × this).
    #[arg(long, default_value_t = 10)]
    pub id_space_factor: u64,

    /// The campaigns' user ID type: integer, string (IDs like
    /// `u3f2a6c1e8b7d4c2a@ex.com`, 24 bytes) or uuid. Each drawn integer
    /// stands for one ID of that type, so every type sees the same checks.
    #[arg(long, default_value = "integer")]
    pub id_type: String,

    /// Deadline of one check; slower answers count as timeouts.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub check_timeout: Duration,

    /// A running Redis on loopback to measure. Without it, a private
    /// redis-server is started from PATH and stopped afterwards.
    #[arg(long, env = "GUESTLIST_BENCH_REDIS", conflicts_with_all = ["redis_cluster", "cluster"])]
    pub redis: Option<StoreLocation>,

    /// A running Redis Cluster on loopback to measure, as
    /// `redis+cluster://host:port[,host:port…]`. Runs then also report how
    /// commands spread over the masters.
    #[arg(
        long,
        env = "GUESTLIST_BENCH_REDIS_CLUSTER",
        conflicts_with = "cluster"
    )]
    pub redis_cluster: Option<StoreLocation>,

    /// Start a private 3-master Redis Cluster (redis-server and redis-cli
    /// from PATH) to measure, and stop it afterwards.
    #[arg(long)]
    pub cluster: bool,

    /// Measure a --redis or --redis-cluster off loopback (a staging Redis,
    /// on purpose). The bench writes under a private key prefix and removes
    /// it at the end; without this flag only loopback servers are measured.
    #[arg(long)]
    pub allow_remote: bool,

    #[command(flatten)]
    pub redis_tls: RedisTlsArgs,

    /// Directory for results.json, report.md and the SVG charts.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,

    /// After the matrix, compare with Redis's own tools in the same run:
    /// redis-benchmark against the library for one SISMEMBER, and
    /// redis-cli --pipe against a 1,000,000-ID replace (plain redis:// only).
    #[arg(long)]
    pub redis_baselines: bool,

    /// A small matrix (audiences 100 and 30,000; concurrency 1 and 64; 2 s
    /// per run) that finishes in about a minute.
    #[arg(long)]
    pub quick: bool,

    /// What to measure: the design matrix, or checks at a fixed rate while
    /// an audience is replaced through the API (upload-at-peak).
    #[arg(long, value_enum, default_value = "matrix")]
    pub scenario: Scenario,

    #[command(flatten)]
    pub upload: UploadScenarioArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Matrix,
    UploadAtPeak,
}

/// `bench --scenario upload-at-peak`: checks through a real `serve` (set
/// design, near-cache off) at a fixed rate while an audience is replaced.
#[derive(Debug, Clone, Args)]
pub struct UploadScenarioArgs {
    /// IDs in the audience uploaded midway (--quick: 300,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub upload_ids: u64,

    /// Checks per second, sent on a fixed schedule whatever the answers do
    /// (--quick: 2,000).
    #[arg(long, default_value_t = 10_000.0)]
    pub upload_check_rate: f64,

    /// Keep-alive connections the checks use; at most this many are in
    /// flight, later ones wait (and their wait counts in their latency).
    #[arg(long, default_value_t = 64)]
    pub upload_connections: usize,

    /// How long checks run before the upload, and after it (--quick: 3 s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub upload_phase: Duration,

    /// Also cap the paced run's writes at this many IDs per second
    /// (`serve --upload-rate`).
    #[arg(long, value_name = "IDS_PER_SEC")]
    pub upload_rate: Option<u64>,
}

/// TLS files for a `rediss://` store. Paths only: none of them is a secret.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisTlsArgs {
    /// PEM file of the CA that signed the Redis server's certificate; it
    /// replaces the system's roots (rediss:// only).
    #[arg(long, env = "GUESTLIST_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// PEM certificate chain to present when Redis requires client
    /// certificates (rediss:// only; with --redis-client-key).
    #[arg(
        long,
        env = "GUESTLIST_REDIS_CLIENT_CERT",
        requires = "redis_client_key"
    )]
    pub redis_client_cert: Option<std::path::PathBuf>,

    /// PEM private key of --redis-client-cert.
    #[arg(
        long,
        env = "GUESTLIST_REDIS_CLIENT_KEY",
        requires = "redis_client_cert"
    )]
    pub redis_client_key: Option<std::path::PathBuf>,
}

impl RedisTlsArgs {
    /// Connection options with these files and the password from
    /// `GUESTLIST_REDIS_PASSWORD` or `GUESTLIST_REDIS_PASSWORD_FILE`.
    pub fn connect_options(&self) -> anyhow::Result<crate::store::redis::ConnectOptions> {
        crate::store::redis::ConnectOptions {
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
            ..Default::default()
        }
        .with_password_from_env()
    }
}

/// Replication policy for a Redis store with replicas.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisReplicaArgs {
    /// On Redis Cluster, send login checks to replicas. Spreads reads over
    /// more nodes; an answer may lag the primary by the replication delay
    /// (usually milliseconds; unbounded while a replica is cut off).
    #[arg(long, env = "GUESTLIST_READ_FROM_REPLICAS")]
    pub read_from_replicas: bool,

    /// Replicas that must confirm an audience publish (Redis WAIT) before
    /// it is acknowledged. 0 acknowledges once the primary has it.
    #[arg(long, env = "GUESTLIST_MIN_REPLICAS_ACK", default_value_t = 0)]
    pub min_replicas_ack: u32,

    /// How long a publish waits for those replicas before failing with 503
    /// replicas_unconfirmed.
    #[arg(long, env = "GUESTLIST_REPLICA_ACK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub replica_ack_timeout: Duration,
}

impl RedisReplicaArgs {
    /// Adds this policy to `options`.
    pub fn apply(
        &self,
        options: crate::store::redis::ConnectOptions,
    ) -> anyhow::Result<crate::store::redis::ConnectOptions> {
        anyhow::ensure!(
            self.replica_ack_timeout > Duration::ZERO,
            "--replica-ack-timeout must be above zero"
        );
        Ok(crate::store::redis::ConnectOptions {
            read_from_replicas: self.read_from_replicas,
            min_replicas_ack: self.min_replicas_ack,
            replica_ack_timeout: Some(self.replica_ack_timeout),
            ..options
        })
    }
}

/// Refuses a `--store` URL with a password typed on the command line, where
/// every user of the machine can read it; the same URL in `GUESTLIST_STORE`
/// is allowed. `serve` is the `serve` subcommand's matches.
pub fn refuse_store_password_in_argv(serve: &clap::ArgMatches) -> anyhow::Result<()> {
    if serve.value_source("store") != Some(clap::parser::ValueSource::CommandLine) {
        return Ok(());
    }
    let Some(StoreLocation(store)) = serve.get_one::<StoreLocation>("store") else {
        return Ok(());
    };
    let has_password = crate::store::StoreSpec::parse(store).is_ok_and(|s| s.has_password());
    anyhow::ensure!(
        !has_password,
        "--store {} carries a password on the command line, readable by every user of this machine; \
         put the password in GUESTLIST_REDIS_PASSWORD (or a file named by GUESTLIST_REDIS_PASSWORD_FILE)",
        crate::store::redact_url(store)
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; expose it deliberately.
    #[arg(long, env = "GUESTLIST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve the portal (/admin), the admin API (campaigns, audiences, the
    /// audit log, /v1/cache) and /metrics on this address instead; --listen
    /// then serves only checks, /healthz and /readyz. Both listeners get the
    /// same timeouts, connection cap and TLS.
    #[arg(long, env = "GUESTLIST_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Where data lives: a directory for the embedded store, a
    /// redis://[user@]host[:port][/db] URL for Redis (rediss:// for TLS), or
    /// redis+cluster://host:port[,host:port…] for Redis Cluster
    /// (rediss+cluster:// for TLS).
    /// Other URL schemes are refused. The password goes in
    /// GUESTLIST_REDIS_PASSWORD, never in this flag.
    #[arg(long, env = "GUESTLIST_STORE", default_value = "./guestlist-data")]
    pub store: StoreLocation,

    #[command(flatten)]
    pub redis_tls: RedisTlsArgs,

    #[command(flatten)]
    pub redis_replicas: RedisReplicaArgs,

    /// Prefix of every Redis key guestlist writes, so deployments (or a
    /// benchmark) can share one Redis without seeing each other's campaigns.
    #[arg(long, env = "GUESTLIST_REDIS_KEY_PREFIX", default_value = crate::store::redis::PREFIX, value_parser = parse_key_prefix)]
    pub redis_key_prefix: String,

    /// Deadline for one login check against the store (e.g. 50ms). A check
    /// that misses it answers 503 store_unavailable instead of hanging.
    #[arg(long, env = "GUESTLIST_CHECK_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub check_timeout: Duration,

    /// Deadline for one admin call, or one pipelined chunk of a bulk write.
    #[arg(long, env = "GUESTLIST_STORE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,

    /// Pace audience uploads to Redis by the latency Redis shows, so checks
    /// sharing it keep their p99: writes back off when a round trip takes
    /// over 1.5× the fastest recent ones, and speed up again slowly. Uploads
    /// take longer while logins are busy (Redis store only).
    #[arg(
        long,
        env = "GUESTLIST_UPLOAD_PACING",
        value_enum,
        default_value = "on"
    )]
    pub upload_pacing: Toggle,

    /// Most user IDs per second written to Redis by audience uploads, all
    /// together, paced or not; no cap unless given (Redis store only).
    #[arg(long, env = "GUESTLIST_UPLOAD_RATE", value_name = "IDS_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_rate: Option<u64>,

    /// How long Redis keeps a campaign's data after its window ends (e.g. 7d).
    #[arg(long, env = "GUESTLIST_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How many audience versions each campaign keeps for rollback, the
    /// live one included (1 to 50). Each costs one copy of its audience:
    /// on disk for the embedded store, a snapshot in Redis.
    #[arg(long, env = "GUESTLIST_KEEP_VERSIONS", default_value_t = crate::store::history::DEFAULT_KEEP_VERSIONS as u64,
        value_parser = clap::value_parser!(u64).range(1..=crate::store::history::MAX_KEEP_VERSIONS as u64))]
    pub keep_versions: u64,

    /// Largest audience upload accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "GUESTLIST_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Most distinct user ids one upload may hold; a larger upload gets 413
    /// audience_too_large and changes nothing.
    #[arg(
        long,
        env = "GUESTLIST_MAX_AUDIENCE",
        default_value_t = crate::ingest::DEFAULT_MAX_AUDIENCE,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_audience: u64,

    /// Uploads read at once; one more gets 503 too_many_uploads with
    /// Retry-After. Each may hold up to --max-audience ids in memory.
    #[arg(
        long,
        env = "GUESTLIST_MAX_CONCURRENT_UPLOADS",
        default_value_t = crate::app::slots::DEFAULT_UPLOAD_SLOTS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_concurrent_uploads: usize,

    /// Audience exports streamed at once (the API's and the portal's
    /// download); one more gets 503 too_many_exports with Retry-After. Each
    /// holds a whole audience in memory while it streams.
    #[arg(
        long,
        env = "GUESTLIST_MAX_CONCURRENT_EXPORTS",
        default_value_t = crate::app::slots::DEFAULT_EXPORT_SLOTS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_concurrent_exports: usize,

    /// Answer checks from in-process bitmaps of the scheduled and active
    /// audiences, reloaded from Redis on every change (Redis store only).
    #[arg(long, env = "GUESTLIST_NEAR_CACHE", value_enum, default_value = "on")]
    pub near_cache: Toggle,

    /// Most heap the near-cache's audiences may hold, in bytes, counted as
    /// allocated (not as serialized); campaigns that do not fit are answered
    /// by Redis.
    #[arg(long, env = "GUESTLIST_NEAR_CACHE_MAX_BYTES", default_value_t = 1 << 30)]
    pub near_cache_max_bytes: u64,

    /// Age past which a cached audience not confirmed against Redis is stale.
    #[arg(long, env = "GUESTLIST_MAX_STALENESS", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_staleness: Duration,

    /// What a stale cached answer does: serve it flagged "stale": true (login
    /// keeps working through an outage), or error with 503.
    #[arg(long, env = "GUESTLIST_ON_STALE", value_enum, default_value = "serve")]
    pub on_stale: crate::nearcache::StalePolicy,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "GUESTLIST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter: a level (error, warn, info, debug, trace) or directives
    /// such as "info,guestlist::access=off" (no access log). RUST_LOG, when
    /// set and not empty, wins over it.
    #[arg(long, env = "GUESTLIST_LOG_LEVEL", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,

    #[command(flatten)]
    pub listener: ListenerArgs,

    /// Proxies whose X-Forwarded-For names the client, for the limiter on
    /// wrong tokens and the logs: networks (10.0.0.0/8) or addresses. From
    /// any other peer the header is ignored.
    #[arg(long = "trusted-proxy", env = "GUESTLIST_TRUSTED_PROXIES", value_delimiter = ',', num_args = 1.., value_parser = crate::app::peer::parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Serve reads and checks without a token on a non-loopback address.
    /// Without it, such an address needs GUESTLIST_CHECK_TOKEN.
    #[arg(long, env = "GUESTLIST_PUBLIC_READS")]
    pub public_reads: bool,

    /// A portal session ends after this long without a request (it ends
    /// after 8 hours in any case).
    #[arg(long, env = "GUESTLIST_PORTAL_IDLE_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub portal_idle_timeout: Duration,

    /// The portal asks for confirmation before publishing a replace or
    /// remove that would take away more than this share of the audience
    /// (0 asks for every removal, 1 never asks).
    #[arg(long, env = "GUESTLIST_PORTAL_CONFIRM_REMOVAL_SHARE", default_value_t = crate::portal::DEFAULT_CONFIRM_REMOVAL_SHARE, value_parser = share)]
    pub portal_confirm_removal_share: f64,
}

/// A share from 0 to 1, such as 0.1 for 10%.
fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number from 0 to 1 (0.1 is 10%)"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not from 0 to 1 (0.1 is 10%)"))
    }
}

/// `--store` (or `bench --redis`) as given. A Redis URL from the environment
/// may carry a password, so `Debug` shows it masked: the parsed arguments can
/// then be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreLocation(pub String);

impl std::str::FromStr for StoreLocation {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StoreLocation(s.to_string()))
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:?}", crate::store::redact_url(&self.0))
    }
}

/// Refuses a log filter that `tracing-subscriber` cannot parse, where a typo
/// would otherwise be ignored silently.
fn parse_log_filter(raw: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(raw)
        .map(|_| raw.to_string())
        .map_err(|e| format!("not a log level or filter: {e}"))
}

impl ServeArgs {
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            check_timeout: self.check_timeout,
            admin_timeout: self.store_timeout,
            retention: self.retention,
            max_staleness: self.max_staleness,
            keep_versions: self.keep_versions as usize,
            snapshot_string_max_bytes: crate::store::redis::SNAPSHOT_STRING_MAX_BYTES,
            upload_pacing: crate::store::redis::UploadPacing {
                adaptive: self.upload_pacing == Toggle::On,
                max_ids_per_sec: self.upload_rate,
            },
        }
    }
}

/// How the listener treats connections: HTTPS, timeouts and the cap that keep
/// slow or hostile clients from starving the login path.
#[derive(Debug, Clone, Args)]
pub struct ListenerArgs {
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key), for
    /// deployments without a TLS-terminating proxy.
    #[arg(long, env = "GUESTLIST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "GUESTLIST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Time a client has to send a complete request header, counted from the
    /// header's first byte (from the connection's opening, for its first
    /// request); it bounds the TLS handshake too.
    #[arg(long, env = "GUESTLIST_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// How long a keep-alive connection may sit idle between requests. Keep
    /// it above the idle timeout of any load balancer in front (often 60 s).
    #[arg(long, env = "GUESTLIST_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// A connection whose answer has not moved a byte towards the client for
    /// this long is closed, so clients that never read cannot hold slots.
    /// A slow reader is not cut as long as it keeps reading.
    #[arg(long, env = "GUESTLIST_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// Most connections served at once; further ones wait in the listen
    /// backlog until one closes.
    #[arg(long, env = "GUESTLIST_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Deadline of one request on every route but audience uploads; a
    /// request past it answers 503 request_timeout.
    #[arg(long, env = "GUESTLIST_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// An audience upload whose body sends nothing for this long is cut off
    /// with 408 body_idle_timeout (uploads as such have no deadline).
    #[arg(long, env = "GUESTLIST_UPLOAD_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub upload_idle_timeout: Duration,

    /// After SIGTERM or SIGINT, how long in-flight requests may run before
    /// their connections are closed. Keep it under the orchestrator's grace
    /// period (30 s in Kubernetes by default).
    #[arg(long, env = "GUESTLIST_DRAIN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// The help text for the environment-only secrets, shown after the flags.
pub const SECRETS_HELP: &str = "\
Secrets (environment only, never logged; each also as NAME_FILE, the path of a file holding it):
  GUESTLIST_ADMIN_TOKEN  admin token for writes and exports (named admin in the audit log); generated and printed once if no admin token is set
  GUESTLIST_ADMIN_TOKENS named admin tokens, name:token,name:token (the name is the audit log's actor)
  GUESTLIST_CHECK_TOKEN  if set, reads and checks need it (or an admin token); required on a non-loopback address unless --public-reads
  GUESTLIST_TOKEN        the token the admin commands send (an admin token for changes)
  GUESTLIST_REDIS_PASSWORD  password for the Redis store
Tokens must be at least 16 characters.";

/// Key prefixes are 1–64 letters, digits, `-`, `_`, `.` or `:`. Braces
/// would form a hash tag and move keys to another Redis Cluster slot.
fn parse_key_prefix(raw: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(raw.to_string())
    } else {
        Err("use 1 to 64 letters, digits, '-', '_', '.' or ':'".into())
    }
}

/// Shown after every admin command's options: where the token comes from
/// and what the exit code means.
pub const ADMIN_HELP: &str = "\
Environment:
  GUESTLIST_TOKEN       the token sent to the server (an admin token for changes, exports and the audit log);
                        or GUESTLIST_TOKEN_FILE, the path of a file holding it. There is no flag for it:
                        a command line is readable by every user of the machine.
  GUESTLIST_SERVER      the server, as --server
  GUESTLIST_CA_FILE     a private CA, as --ca-file

Exit codes:
  0  success (check: the user is in the audience)
  1  check: the user is not in the audience
  2  usage: a bad command line or --server, or a delete not confirmed (--yes)
  3  no usable answer: the server is unreachable, slow, failing (5xx), or not guestlist
  4  refused: the server rejected the request (bad input, unknown campaign, conflict,
     missing or wrong token), or a local file cannot be read";

/// The command line, with the help texts that derive cannot attach: the
/// secrets after `--help` and `serve --help`, [`ADMIN_HELP`] after every
/// admin command and its subcommands; the admin options hidden where they
/// mean nothing (`serve`, `bench`).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command()
        .after_help(SECRETS_HELP)
        .mut_subcommand("serve", |serve| serve.after_help(SECRETS_HELP));
    for name in ADMIN_COMMANDS {
        cmd = cmd.mut_subcommand(name, with_admin_help);
    }
    // A subcommand that already has an argument of a global's id does not
    // receive the global: hidden copies keep them out of these helps.
    let hidden: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    for name in ["serve", "bench"] {
        cmd = cmd.mut_subcommand(name, |sub| sub.args(hidden.clone()));
    }
    cmd
}

fn with_admin_help(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .into_iter()
        .fold(cmd.after_help(ADMIN_HELP), |cmd, name| {
            cmd.mut_subcommand(name, with_admin_help)
        })
}

/// The admin options given on the command line of `serve` or `bench`, where
/// they would be silently ignored.
pub fn misplaced_admin_options(matches: &clap::ArgMatches) -> Option<&'static str> {
    let serving = matches.subcommand_matches("serve").is_some()
        || matches.subcommand_matches("bench").is_some();
    if !serving {
        return None;
    }
    [
        ("server", "--server"),
        ("json", "--json"),
        ("ca_file", "--ca-file"),
    ]
    .into_iter()
    .find(|(id, _)| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
    .map(|(_, flag)| flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_are_short_plain_and_never_hash_tags() {
        assert_eq!(
            parse_key_prefix("team-a:guestlist").unwrap(),
            "team-a:guestlist"
        );
        for bad in ["", "{x}", "a b", "pre\nfix", &"x".repeat(65)] {
            assert!(parse_key_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_secret_is_a_flag_so_the_parsed_config_holds_none() {
        let secret = "0123456789abcdef-secret";
        for flag in ["--admin-token", "--admin-tokens", "--check-token"] {
            let parsed = Cli::try_parse_from(["guestlist", "serve", flag, secret]);
            assert!(parsed.is_err(), "{flag} is accepted");
        }
        let parsed = Cli::try_parse_from(["guestlist", "check", "c", "1", "--token", secret]);
        assert!(parsed.is_err(), "--token is accepted");
        let cli = Cli::try_parse_from([
            "guestlist",
            "serve",
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.1",
        ])
        .unwrap();
        let Command::Serve(args) = &cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.trusted_proxies.len(), 2);
        assert_eq!(args.portal_idle_timeout, Duration::from_secs(1800));
        assert_eq!(args.portal_confirm_removal_share, 0.1);
    }

    #[test]
    fn every_argument_of_the_admin_commands_has_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.is_hide_set(),
                    "{path} {} has no help",
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = command();
        cmd.build();
        for name in ADMIN_COMMANDS {
            let sub = cmd.find_subcommand(name).unwrap();
            assert!(sub.get_arguments().any(|a| a.get_id() == "server"));
            walk(sub, name);
        }
    }

    #[test]
    fn a_redis_password_in_the_store_url_is_masked_in_debug_output() {
        let cli = Cli::try_parse_from([
            "guestlist",
            "serve",
            "--store",
            "redis://app:hunter2-0123456789@10.0.0.1:6379/0",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://app:***@10.0.0.1:6379/0"), "{shown}");
    }

    #[test]
    fn the_confirmation_share_is_from_zero_to_one() {
        assert_eq!(share("0.25"), Ok(0.25));
        assert_eq!(share("0"), Ok(0.0));
        assert_eq!(share("1"), Ok(1.0));
        for bad in ["10%", "1.5", "-0.1", "NaN", ""] {
            assert!(share(bad).is_err(), "{bad}");
        }
    }
}
