//! The application layer, under both the JSON API ([`crate::http`]) and the
//! portal ([`crate::portal`]), which call it and never each other.
//!
//! - [`writes`]: every campaign and audience change (validation, the
//!   store's fenced write, the audit record), one function per change;
//! - [`export`]: an audience as streamed text, for the API and the
//!   portal's download;
//! - [`error`]: the error every handler returns, and every error code;
//! - [`tokens`], [`sessions`]: who may act (admin and check tokens, portal
//!   sessions with their CSRF tokens), and who did ([`Actor`]);
//! - [`limiter`], [`peer`]: failed tokens per client, and which address is
//!   the client's, for the API and the portal's sign-in alike;
//! - [`slots`]: admission for uploads, rollbacks and exports;
//! - [`meters`], [`request_id`]: request metrics, and the id that ties a
//!   request's logs and error body together.
//!
//! [`AppState`] holds all of it for the handlers of both.

pub mod error;
pub mod export;
pub mod limiter;
pub mod meters;
pub mod peer;
pub mod request_id;
pub mod sessions;
pub mod slots;
pub mod tokens;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::lookup::Checker;
use crate::store::Store;
pub use error::ApiError;
pub use sessions::Portal;
pub use tokens::{Actor, Tokens};

/// Shared by every handler, and cloned several times per request by the
/// middleware and extractors, so it is one pointer: cloning it is one
/// reference-count increment, where a struct of a dozen `Arc`s would bounce
/// a dozen shared counters between the worker threads on every request.
/// Fields read through `Deref`; a test that changes a field before building
/// the router gets its own copy (`DerefMut` copies on write).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What the handlers share; see [`AppState`].
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    /// The login path: near-cache first (when there is one), then the store.
    pub checker: Checker,
    pub tokens: Arc<Tokens>,
    /// Largest audience upload, in bytes.
    pub max_upload_bytes: u64,
    /// Most distinct user ids one upload may hold.
    pub max_audience: u64,
    /// Uploads allowed to parse at once.
    pub uploads: slots::UploadSlots,
    /// Exports streaming now, each holding an audience in memory.
    pub exports: slots::UploadSlots,
    /// Renders `/metrics`; `None` when no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Portal sessions (the API's audience uploads accept them too).
    pub portal: Arc<sessions::Portal>,
    /// Request deadlines and the upload idle limit.
    pub limits: Limits,
    /// Failed tokens per client, from the API and the portal's sign-in.
    pub limiter: Arc<limiter::FailureLimiter>,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: Arc<peer::TrustedProxies>,
    /// Request and check metrics. Every label comes from a closed set,
    /// since each new value is a series kept for the life of the process:
    /// the matched pattern (never the raw path), a known method or `other`,
    /// and the status (a number from 100 to 999).
    pub meters: meters::Meters,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Services> for AppState {
    fn from(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl AppState {
    /// State for `store` with no near-cache, the usual test and embedded set-up.
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, max_upload_bytes: u64) -> AppState {
        AppState::from(Services {
            checker: Checker::new(store.clone(), None),
            store,
            tokens: Arc::new(tokens),
            max_upload_bytes,
            max_audience: crate::ingest::DEFAULT_MAX_AUDIENCE,
            uploads: slots::UploadSlots::new(slots::DEFAULT_UPLOAD_SLOTS),
            exports: slots::UploadSlots::new(slots::DEFAULT_EXPORT_SLOTS),
            metrics: None,
            portal: Arc::default(),
            limits: Limits::default(),
            limiter: Arc::default(),
            proxies: Arc::default(),
            meters: meters::Meters::default(),
        })
    }
}

/// Runs a write to completion even if the client goes away. Hyper drops a
/// handler's future when its connection closes; a write cut off there would
/// skip its announcement, its audit record and its lease release.
pub async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    // The write's log lines name the request, as the handler's do.
    let task = match request_id::current() {
        Some(id) => tokio::spawn(request_id::scope(id, work)),
        None => tokio::spawn(work),
    };
    task.await
        .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
}

/// Campaign ids from paths are checked before they reach a store key: a
/// malformed one cannot name a campaign, so it is simply not found.
pub fn checked_campaign_id(raw: &str) -> Result<&str, ApiError> {
    crate::domain::validate_id(raw).map_err(|_| ApiError::NotFound {
        code: "campaign_not_found",
        message: format!("campaign {raw:?} does not exist"),
    })?;
    Ok(raw)
}

/// The per-request limits of `guestlist serve`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deadline of one request on every route but uploads.
    pub request_timeout: Duration,
    /// Longest silence allowed in an upload's body.
    pub upload_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            upload_idle_timeout: Duration::from_secs(30),
        }
    }
}
