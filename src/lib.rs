//! guestlist: time-boxed campaign audiences, checked at login speed.
//!
//! # Map
//!
//! ```text
//!   HTTP request
//!       │
//!   http::listener ── TLS, connection cap, header/idle timeouts, drain
//!       │
//!   http::router ── envelope (request id, metrics, access log) ── auth (tokens,
//!       │             or portal session + CSRF; failed-token limiter, client
//!       │             address through trusted proxies)
//!       │                    └── portal: /admin pages (templates/portal/)
//!   http::{campaigns, audience, checks, ops, audit}   one file per route group
//!       │         │
//!       │     ingest ── streams an upload into a RoaringTreemap (blocking thread)
//!       │         ├── preview ── `?dry_run=true`: what a change would do
//!       │         │
//!       ▼         ▼
//!   Arc<dyn store::Store>                        chosen once at start-up
//!       ├── store::embedded   roaring in memory + redb on disk (the default)
//!       └── store::redis      shared by every instance; see its module map
//!              ├── catalog     campaign list, reconciled every second
//!              ├── checks      the login path: one campaign, a user's campaigns
//!              ├── lease, publish, replicas   one writer per campaign; fenced
//!              │                  commits; replica acknowledgements
//!              ├── snapshot, meta, keys, audit, conn, batch, scripts/*.lua
//!              ├── connect, settings   URL (or cluster nodes), password, TLS;
//!              │                  start-up checks
//!              └── design/{set, per_user, bitmap}   how each lays out an audience
//! ```
//!
//! - [`domain`]: campaigns, validation and status; no I/O.
//! - [`ingest`]: audience body parsing, bounded by the audience, not the body.
//! - [`preview`]: what an audience change would do, for dry runs.
//! - [`store`]: the [`store::Store`] trait and its backends.
//! - [`http`]: the JSON API, its error type and auth policy.
//! - [`portal`]: the admin portal at `/admin`, server-rendered, with sessions
//!   and CSRF tokens; its writes go through the same functions as the API.
//! - [`config`]: the command line; [`secret`]: secrets from the environment
//!   or mounted files, never flags; [`telemetry`]: logs and metrics set-up;
//!   [`tls`]: certificates for the HTTPS listener and the CLI, and the one
//!   rustls provider every TLS user (Redis included) shares.
//! - [`cli`]: the admin commands (`campaign`, `audience`, `check`, `user`,
//!   `audit`), an HTTP client of a running server.
//! - [`nearcache`]: in-process audience replicas; [`lookup`]: the login path
//!   (near-cache, then store); [`client`]: the same as a library API;
//!   [`openfeature`]: campaigns as OpenFeature boolean flags, in process
//!   or over HTTP.
//! - [`server`]: wires config, store and router into a running service.
//! - [`numfmt`]: numbers as people read them, for the portal and reports.
//! - [`bench`]: `guestlist bench`, the incident replayed against every design;
//!   [`redis_server`]: the private `redis-server` it (and the tests) start;
//!   [`redis_cluster`]: a private Redis Cluster of such servers, whose nodes
//!   can be killed, paused and restarted.

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod lookup;
pub mod nearcache;
pub mod numfmt;
#[cfg(feature = "openfeature")]
pub mod openfeature;
pub mod portal;
pub mod preview;
pub mod redis_cluster;
pub mod redis_server;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
