//! An OpenFeature provider: campaigns as boolean flags.
//!
//! The flag key is the campaign's id and the targeting key the user's id;
//! the value is `true` only while the campaign is active and the user is in
//! its audience. It answers through the library ([`crate::client::Client`],
//! in process, near-cache first) or over HTTP from a running server.
//!
//! Reasons say how the answer was reached, never more:
//!
//! | Answer | Reason | Variant |
//! |---|---|---|
//! | from a near-cache (this process's, or over HTTP the server's) | `CACHED` | `member`, `not_member` or `inactive` |
//! | from the store, the user in the active campaign | `TARGETING_MATCH` | `member` |
//! | from the store, the user not in it | `DEFAULT` (targeting found no match) | `not_member` |
//! | from the store, the campaign outside its window | `STATIC` (false for everyone) | `inactive` |
//! | a cached copy past the staleness bound | `STALE` | as above |
//!
//! Failures are errors with their codes, and the SDK then returns the
//! caller's default: `FLAG_NOT_FOUND` (no such campaign),
//! `PROVIDER_NOT_READY` (guestlist has not been reached yet: the HTTP
//! provider keeps trying on each evaluation, so a server that was down at
//! start-up is picked up when it comes back), `TARGETING_KEY_MISSING`,
//! `INVALID_CONTEXT` (a targeting key that is not a user id),
//! `TYPE_MISMATCH` (a non-boolean evaluation) and `GENERAL` (the store or
//! server failed or was too slow).
//!
//! A login must not wait on a flag: the HTTP provider gives each check
//! 200 ms ([`GuestlistProvider::with_timeout`]); the library answers from
//! memory, or within its `check_timeout`.
//!
//! ```no_run
//! # async fn demo() {
//! use guestlist::openfeature::GuestlistProvider;
//! use open_feature::{EvaluationContext, OpenFeature};
//!
//! let provider = GuestlistProvider::http("http://127.0.0.1:8080", None).unwrap();
//! OpenFeature::singleton_mut().await.set_provider(provider).await;
//! let flags = OpenFeature::singleton().await.create_client();
//! let user = EvaluationContext::default().with_targeting_key("42");
//! let discount = flags.get_bool_value("spring-sale", Some(&user), None).await.unwrap_or(false);
//! # }
//! ```

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult,
    FlagMetadata, StructValue,
};
use serde::Deserialize;

use crate::client::{Client, ClientError};
use crate::lookup::{CheckError, Membership, Source};
use crate::store::StoreError;

/// How long `initialize` waits for the backend.
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// Each HTTP check's deadline by default: a login must not wait on a flag.
const CHECK_TIMEOUT: Duration = Duration::from_millis(200);

/// Where the provider stands: guestlist not tried yet, reached, or not
/// reached when last tried.
const NOT_TRIED: u8 = 0;
const READY: u8 = 1;
const UNREACHED: u8 = 2;

/// A guestlist campaign check as an OpenFeature boolean flag.
pub struct GuestlistProvider {
    backend: Backend,
    metadata: ProviderMetadata,
    /// [`NOT_TRIED`], [`READY`] or [`UNREACHED`].
    state: AtomicU8,
}

enum Backend {
    Library(Client),
    Http(Http),
}

struct Http {
    base: String,
    token: Option<crate::secret::Secret>,
    /// Connects within [`START_TIMEOUT`] (DNS, TCP and TLS to a remote
    /// server can take longer than a check may); each request carries its
    /// own deadline.
    client: reqwest::Client,
    /// Each check's deadline.
    timeout: Duration,
}

/// The part of a member check's answer the provider reads; the library's
/// [`Membership`] and the HTTP API's JSON share these fields.
#[derive(Debug, Deserialize)]
struct Answer {
    member: bool,
    active: bool,
    source: Source,
    stale: bool,
}

impl From<Membership> for Answer {
    fn from(m: Membership) -> Answer {
        Answer {
            member: m.member,
            active: m.active,
            source: m.source,
            stale: m.stale,
        }
    }
}

impl GuestlistProvider {
    /// Answers in process through a library client (near-cache first).
    pub fn library(client: Client) -> GuestlistProvider {
        GuestlistProvider {
            backend: Backend::Library(client),
            metadata: ProviderMetadata::new("guestlist"),
            state: AtomicU8::new(NOT_TRIED),
        }
    }

    /// Answers through a running server's API at `base` (such as
    /// `http://127.0.0.1:8080`), sending `check_token` when reads need one.
    /// Each check has a deadline of two seconds; see
    /// [`GuestlistProvider::with_timeout`].
    pub fn http(
        base: &str,
        check_token: Option<crate::secret::Secret>,
    ) -> Result<GuestlistProvider, String> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "{base:?} is not a server URL: give http://host:port or https://host:port"
            ));
        }
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(START_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(GuestlistProvider {
            backend: Backend::Http(Http {
                base: base.to_string(),
                token: check_token,
                client,
                timeout: CHECK_TIMEOUT,
            }),
            metadata: ProviderMetadata::new("guestlist"),
            state: AtomicU8::new(NOT_TRIED),
        })
    }

    /// Sets the deadline of each HTTP check (the library's is its
    /// `check_timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> GuestlistProvider {
        if let Backend::Http(http) = &mut self.backend {
            http.timeout = timeout;
        }
        self
    }

    /// Reaches the backend: the library waits (up to two seconds) for its
    /// near-cache to load, so the first logins are answered from memory,
    /// and is ready either way, since its store answers what the cache
    /// does not hold yet; over HTTP, the server's `/readyz` must say ready.
    /// Until guestlist has been reached, evaluations are
    /// `PROVIDER_NOT_READY`, and each one tries again. The SDK calls this
    /// when the provider is set.
    pub async fn start(&self) -> bool {
        let ready = match &self.backend {
            Backend::Library(client) => {
                client.wait_until_warm(START_TIMEOUT).await;
                true
            }
            Backend::Http(http) => {
                let mut request = http
                    .client
                    .get(format!("{}/readyz", http.base))
                    .timeout(START_TIMEOUT);
                if let Some(token) = &http.token {
                    request = request.bearer_auth(token.expose());
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "guestlist server is not ready");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "guestlist server unreachable");
                        false
                    }
                }
            }
        };
        if ready {
            self.state.store(READY, Ordering::Relaxed);
        } else {
            // An evaluation may have reached the server meanwhile: a failed
            // start must not undo that.
            let _ = self.state.compare_exchange(
                NOT_TRIED,
                UNREACHED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        ready
    }

    fn is_ready(&self) -> bool {
        self.state.load(Ordering::Relaxed) == READY
    }

    async fn check(&self, campaign: &str, user: &crate::ids::User) -> EvaluationResult<Answer> {
        match &self.backend {
            Backend::Library(client) => {
                match client.is_member_named(campaign, &user.text()).await {
                    Ok(m) => Ok(m.into()),
                    Err(ClientError::Check(CheckError::Store(StoreError::NotFound(_)))) => {
                        Err(error(
                            EvaluationErrorCode::FlagNotFound,
                            format!("no campaign {campaign:?}"),
                        ))
                    }
                    Err(ClientError::Check(CheckError::BadUser(message))) => {
                        Err(error(EvaluationErrorCode::InvalidContext, message))
                    }
                    Err(e) => Err(error(
                        EvaluationErrorCode::General(e.to_string()),
                        e.to_string(),
                    )),
                }
            }
            Backend::Http(http) => {
                let (answer, reached) = http.check(campaign, user, self.is_ready()).await;
                if reached {
                    self.state.store(READY, Ordering::Relaxed);
                }
                answer
            }
        }
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

impl Http {
    /// Asks the server; `reached` says whether it has answered before. Also
    /// returns whether guestlist answered now: an answer or one of its JSON
    /// errors (a proxy's HTML page or a wrong URL is not guestlist).
    async fn check(
        &self,
        campaign: &str,
        user: &crate::ids::User,
        reached: bool,
    ) -> (EvaluationResult<Answer>, bool) {
        let general =
            |message: String| error(EvaluationErrorCode::General(message.clone()), message);
        // Never reached yet: not ready, rather than failing.
        let unreached = |message: String| {
            if reached {
                general(message)
            } else {
                error(EvaluationErrorCode::ProviderNotReady, message)
            }
        };
        let mut url = match reqwest::Url::parse(&self.base) {
            Ok(url) => url,
            Err(e) => return (Err(general(e.to_string())), false),
        };
        match url.path_segments_mut() {
            Ok(mut path) => {
                // Each segment is percent-encoded: a string ID may hold `/`.
                path.extend(["v1", "campaigns", campaign, "members", &user.text()]);
            }
            Err(()) => {
                return (
                    Err(general(format!("{} cannot hold a path", self.base))),
                    false,
                );
            }
        }
        let mut request = self.client.get(url).timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return (
                    Err(unreached(format!(
                        "the guestlist server did not answer: {e}"
                    ))),
                    false,
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            return match response.json::<Answer>().await {
                Ok(answer) => (Ok(answer), true),
                Err(e) => (
                    Err(unreached(format!(
                        "the server's answer is not guestlist's: {e}"
                    ))),
                    false,
                ),
            };
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let Some(code) = body["error"].as_str() else {
            return (
                Err(unreached(format!(
                    "the server answered {status}, not as guestlist does"
                ))),
                false,
            );
        };
        let message = body["message"].as_str().unwrap_or("").to_string();
        let e = match (status.as_u16(), code) {
            (404, "campaign_not_found") => error(EvaluationErrorCode::FlagNotFound, message),
            (400, _) => error(EvaluationErrorCode::InvalidContext, message),
            _ => general(format!(
                "the guestlist server answered {status} {code}: {message}"
            )),
        };
        (Err(e), true)
    }
}

/// The resolution of an answer: the value, and the reason and variant that
/// say how it was reached.
fn resolution(answer: &Answer) -> ResolutionDetails<bool> {
    let value = answer.member && answer.active;
    let variant = match (answer.active, answer.member) {
        (false, _) => "inactive",
        (true, true) => "member",
        (true, false) => "not_member",
    };
    let reason = if answer.stale {
        EvaluationReason::Other("STALE".into())
    } else if answer.source == Source::Cache {
        EvaluationReason::Cached
    } else if !answer.active {
        EvaluationReason::Static
    } else if answer.member {
        EvaluationReason::TargetingMatch
    } else {
        EvaluationReason::Default
    };
    let source = match answer.source {
        Source::Cache => "cache",
        Source::Store => "store",
        Source::Replica => "replica",
    };
    ResolutionDetails {
        value,
        variant: Some(variant.into()),
        reason: Some(reason),
        flag_metadata: Some(FlagMetadata::default().with_value("source", source)),
    }
}

fn mismatch<T>() -> EvaluationResult<ResolutionDetails<T>> {
    Err(error(
        EvaluationErrorCode::TypeMismatch,
        "guestlist flags are booleans: evaluate them with get_bool_value",
    ))
}

#[async_trait]
impl FeatureProvider for GuestlistProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        self.start().await;
    }

    fn status(&self) -> ProviderStatus {
        match self.state.load(Ordering::Relaxed) {
            READY => ProviderStatus::Ready,
            UNREACHED => ProviderStatus::Error,
            _ => ProviderStatus::NotReady,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        // The library is ready once started; over HTTP, every evaluation
        // is also a new try at reaching the server.
        if matches!(self.backend, Backend::Library(_)) && !self.is_ready() {
            return Err(error(
                EvaluationErrorCode::ProviderNotReady,
                "the provider has not been started (set it with OpenFeature's set_provider)",
            ));
        }
        let key = context.targeting_key.as_deref().ok_or_else(|| {
            error(
                EvaluationErrorCode::TargetingKeyMissing,
                "the targeting key is the user's id",
            )
        })?;
        // Read as the campaign's ID type: an integer, a string or a UUID.
        let user = crate::ids::User::parse(key).map_err(|why| {
            error(
                EvaluationErrorCode::InvalidContext,
                why.message(key.trim().as_bytes()),
            )
        })?;
        let answer = self.check(flag_key, &user).await?;
        Ok(resolution(&answer))
    }

    async fn resolve_int_value(
        &self,
        _flag_key: &str,
        _context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        mismatch()
    }

    async fn resolve_float_value(
        &self,
        _flag_key: &str,
        _context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        mismatch()
    }

    async fn resolve_string_value(
        &self,
        _flag_key: &str,
        _context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        mismatch()
    }

    async fn resolve_struct_value(
        &self,
        _flag_key: &str,
        _context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        mismatch()
    }
}
