//! guestlist: time-boxed campaign audiences, checked at login speed.
//!
//! # Map
//!
//! ```text
//!   HTTP request
//!       │
//!   http::listener ── TLS, connection cap, header/idle timeouts, drain
//!       │
//!   routes ── envelope (request id, metrics, access log), deadlines, one
//!       │      fallback; composes the API and the portal, which never
//!       │      import each other
//!       ├── http::{campaigns, audience, export, versions, checks, ops, audit}
//!       │      the JSON API, one file per route group; each states the
//!       │      access its routes need (http::auth::require: token, or for
//!       │      uploads a portal session + CSRF) and registers them with
//!       │      their OpenAPI description (http::openapi, /openapi.json);
//!       │      uploads stream through ingest into a RoaringTreemap, and
//!       │      `?dry_run=true` answers with preview
//!       └── portal: /admin pages (templates/portal/) behind a session and
//!       │      CSRF guard
//!       │
//!   app ── what both call: AppState; writes (validation, the fenced store
//!       │   write, the audit record); errors (every code in one table);
//!       │   tokens, sessions, the failed-token limiter, upload slots
//!       ▼
//!   Arc<dyn store::Store>                        chosen once at start-up
//!       ├── store::history    the last --keep-versions audiences, for rollback
//!       ├── store::embedded   roaring in memory + redb on disk (the default)
//!       └── store::redis      shared by every instance; see its module map
//!              ├── catalog     campaign list, reconciled every second
//!              ├── checks      the login path: one campaign, a user's campaigns
//!              ├── lease, publish, replicas   one writer per campaign; fenced
//!              │                  commits; replica acknowledgements
//!              ├── snapshot, history, meta, keys, audit, conn, batch,
//!              │                  scripts/*.lua
//!              ├── connect, settings   URL (or cluster nodes), password, TLS;
//!              │                  start-up checks
//!              └── design/{set, per_user, bitmap}   how each lays out an audience
//! ```
//!
//! # Features
//!
//! - `server` (default): the service and its tools: [`http`], [`portal`],
//!   [`server`], [`cli`], [`bench`], the embedded store, and what they need.
//! - `openfeature` (default): the OpenFeature provider.
//! - `test-util` (part of `server`): [`redis_server`], [`redis_cluster`] and
//!   `NearCache::from_audiences`, for tests and demos.
//!
//! Without `server` the crate is the login-path library a service embeds:
//! [`client`], [`nearcache`], [`lookup`], the Redis [`store`] and [`domain`].
//! What it names most is also at the root: [`Client`], [`ClientOptions`],
//! [`Membership`], [`UserCampaigns`], [`Campaign`]. Those modules are held
//! to `missing_docs`.
//!
//! # Modules
//!
//! - [`domain`]: campaigns, validation and status; no I/O.
//! - [`ingest`]: audience body parsing, bounded by the audience, not the body.
//! - [`preview`]: what an audience change would do, for dry runs.
//! - [`store`]: the [`store::Store`] trait and its backends.
//! - [`app`]: the application layer under the API and the portal: their
//!   shared state, every campaign and audience write, the error type (every
//!   code in one table), tokens and sessions.
//! - [`http`]: the JSON API, its OpenAPI document and its auth policy.
//! - [`portal`]: the admin portal at `/admin`, server-rendered; its writes
//!   go through [`app`], as the API's do.
//! - [`routes`]: the API and the portal composed into one router per
//!   listener, under the layers every request passes.
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

// The login-path library: what a service needs to check in process.
pub mod client;
pub mod domain;
pub mod ids;
pub mod lookup;
pub mod nearcache;
#[cfg(feature = "openfeature")]
pub mod openfeature;
pub mod secret;
pub mod store;
pub mod tls;

// What a login service names most, at the crate's root: the client and its
// options, its answers and errors, and the campaign they are about.
pub use client::{Client, ClientError, ClientOptions};
pub use domain::{Campaign, Design, Status, UserId};
pub use ids::{Audience, IdType, User, UserKey};
pub use lookup::{CheckError, Membership, Source, UserCampaigns};
pub use nearcache::{NearCacheOptions, StalePolicy};
#[cfg(feature = "openfeature")]
pub use openfeature::GuestlistProvider;

// Helpers for tests and demos (`test-util`, part of `server`).
#[cfg(feature = "test-util")]
pub mod redis_cluster;
#[cfg(feature = "test-util")]
pub mod redis_server;

// The service (`server`, on by default).
#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod bench;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod ingest;
#[cfg(feature = "server")]
pub mod numfmt;
#[cfg(feature = "server")]
pub mod portal;
#[cfg(feature = "server")]
pub mod preview;
#[cfg(feature = "server")]
pub mod routes;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod telemetry;
