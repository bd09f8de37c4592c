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
}

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
        #[command(flatten)]
        remote: Remote,
    },
    /// Upload, change or export a campaign's audience on a running server.
    Audience {
        #[command(subcommand)]
        cmd: AudienceCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Is a user in a campaign?
    Check {
        campaign: String,
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Which active campaigns is a user in?
    User {
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show the audit log: who changed what, newest first.
    Audit {
        /// Only this campaign's changes.
        #[arg(long)]
        campaign: Option<String>,
        /// How many events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Where the admin commands send their requests.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The guestlist server.
    #[arg(
        long,
        env = "GUESTLIST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Token sent as a bearer token (an admin token for changes).
    #[arg(
        long,
        global = true,
        env = "GUESTLIST_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CampaignCmd {
    /// Create a campaign.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// RFC 3339, e.g. 2026-12-01T09:00:00Z.
        #[arg(long)]
        starts_at: String,
        #[arg(long)]
        ends_at: String,
        /// set, per-user or bitmap.
        #[arg(long, default_value = "set")]
        design: String,
    },
    /// List campaigns.
    List,
    /// Show one campaign.
    Show { id: String },
    /// Rename a campaign or move its window.
    Edit {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        starts_at: Option<String>,
        #[arg(long)]
        ends_at: Option<String>,
    },
    /// Delete a campaign and its audience.
    Delete { id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AudienceCmd {
    /// Replace the whole audience with a file of IDs (one per line; `-` for stdin).
    Replace { campaign: String, file: String },
    /// Add the IDs in a file.
    Add { campaign: String, file: String },
    /// Remove the IDs in a file.
    Remove { campaign: String, file: String },
    /// Write the audience to stdout, one ID per line.
    Export { campaign: String },
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

    /// How long each design × audience × concurrency run lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Seed for audiences and workloads; the same seed replays the same checks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Share of checks asking about a member of the audience.
    #[arg(long, default_value_t = 0.1)]
    pub hit_ratio: f64,

    /// IDs are drawn from [0, audience × this).
    #[arg(long, default_value_t = 10)]
    pub id_space_factor: u64,

    /// Deadline of one check; slower answers count as timeouts.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub check_timeout: Duration,

    /// A running Redis on loopback to measure. Without it, a private
    /// redis-server is started from PATH and stopped afterwards.
    #[arg(long, env = "GUESTLIST_BENCH_REDIS")]
    pub redis: Option<String>,

    /// Directory for results.json, report.md and the SVG charts.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,

    /// A small matrix (audiences 100 and 30,000; concurrency 1 and 64; 2 s
    /// per run) that finishes in about a minute.
    #[arg(long)]
    pub quick: bool,
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

    /// Where data lives: a directory for the embedded store, or a
    /// redis://host:port[/db] URL for Redis.
    #[arg(long, env = "GUESTLIST_STORE", default_value = "./guestlist-data")]
    pub store: String,

    /// Deadline for one login check against the store (e.g. 50ms). A check
    /// that misses it answers 503 store_unavailable instead of hanging.
    #[arg(long, env = "GUESTLIST_CHECK_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub check_timeout: Duration,

    /// Deadline for one admin call, or one pipelined chunk of a bulk write.
    #[arg(long, env = "GUESTLIST_STORE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,

    /// How long Redis keeps a campaign's data after its window ends (e.g. 7d).
    #[arg(long, env = "GUESTLIST_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,

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
        default_value_t = crate::http::audience::DEFAULT_UPLOAD_SLOTS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_concurrent_uploads: usize,

    /// Answer checks from in-process bitmaps of the scheduled and active
    /// audiences, reloaded from Redis on every change (Redis store only).
    #[arg(long, env = "GUESTLIST_NEAR_CACHE", value_enum, default_value = "on")]
    pub near_cache: Toggle,

    /// Largest total size of the near-cache's bitmaps, in bytes; campaigns
    /// that do not fit are answered by Redis.
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

    /// Admin token for writes and exports. If unset, a random one is generated
    /// at start and printed once to stderr. Never logged.
    #[arg(
        long = "admin-token",
        env = "GUESTLIST_ADMIN_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub admin_token: Option<String>,

    /// Named admin tokens, `name:token,name:token`; the name goes in the audit log.
    #[arg(
        long = "admin-tokens",
        env = "GUESTLIST_ADMIN_TOKENS",
        hide_env_values = true,
        hide = true
    )]
    pub admin_tokens: Option<String>,

    /// Optional token required for reads and checks (the admin token also works).
    #[arg(
        long = "check-token",
        env = "GUESTLIST_CHECK_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub check_token: Option<String>,
}

impl ServeArgs {
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            check_timeout: self.check_timeout,
            admin_timeout: self.store_timeout,
            retention: self.retention,
            max_staleness: self.max_staleness,
        }
    }
}

/// The help text for the environment-only secrets, shown after the flags.
pub const SECRETS_HELP: &str = "\
Secrets (environment only, never logged):
  GUESTLIST_ADMIN_TOKEN  admin token for writes and exports (named admin in the audit log); generated and printed once if no admin token is set
  GUESTLIST_ADMIN_TOKENS named admin tokens, name:token,name:token (the name is the audit log's actor)
  GUESTLIST_CHECK_TOKEN  if set, reads and checks need it (or the admin token)";
