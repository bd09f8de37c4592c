//! The one error type of the HTTP layer.
//!
//! Every error leaves as `{"error": "<code>", "message": "<what and how to fix>",
//! "request_id": "<the id in the logs>"}` plus context fields (`field`,
//! `line`) where they help. Internal details are
//! logged here and never sent to the client.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or breaks a rule. `field` and `line`
    /// locate the problem when known.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
        line: Option<u64>,
    },
    /// 401: missing or wrong token. Says nothing about what exists.
    #[error("{0}")]
    Unauthorized(String),
    /// 429: this client sent too many wrong tokens; retry after the wait.
    #[error("too many wrong tokens from your address; retry in {} s", retry_after_secs(*.0))]
    TooManyFailures(std::time::Duration),
    /// 403: a portal session without its CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such campaign (or route).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 409: the id exists, or another write holds the campaign.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the body is over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// 413: an upload holds more distinct ids than `--max-audience`.
    #[error("{0}")]
    AudienceTooLarge(String),
    /// 415: a content type we do not parse.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: an upload's body stopped sending data.
    #[error("{0}")]
    BodyTimeout(String),
    /// 503: the request missed its deadline (`--request-timeout`).
    #[error("{0}")]
    Timeout(String),
    /// 503: the store did not answer (in time).
    #[error("{0}")]
    Unavailable(String),
    /// 503: the near-cache's answer is too old and the policy refuses it.
    #[error("{0}")]
    Stale(String),
    /// 503: fewer replicas than `--min-replicas-ack` confirmed a publish.
    #[error("{0}")]
    Unreplicated(String),
    /// 503 with `Retry-After` (seconds): every slot for this kind of work
    /// is taken; the same request later will be served.
    #[error("{message}")]
    Saturated {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// 500: a bug or corrupt data; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: None,
            line: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) | ApiError::AudienceTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_)
            | ApiError::Stale(_)
            | ApiError::Unreplicated(_)
            | ApiError::Timeout(_)
            | ApiError::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Saturated { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::TooManyFailures(_) => "too_many_failures",
            ApiError::Forbidden(_) => "csrf_token_invalid",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::AudienceTooLarge(_) => "audience_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTimeout(_) => "body_idle_timeout",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::Unavailable(_) => "store_unavailable",
            ApiError::Stale(_) => "cache_stale",
            ApiError::Unreplicated(_) => "replicas_unconfirmed",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the caller may read: an internal error's detail stays in the log.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            other => other.to_string(),
        }
    }

    /// Logs the detail of errors that are ours, not the caller's, once, as
    /// the response is built (JSON here, an HTML page in the portal).
    pub fn log(&self) {
        match self {
            ApiError::Internal(detail) => tracing::error!(detail = %detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(detail = %detail, "store unavailable"),
            ApiError::Timeout(_) => tracing::warn!("request timed out"),
            ApiError::Stale(detail) => tracing::warn!(detail = %detail, "refused a stale answer"),
            ApiError::Unreplicated(detail) => {
                tracing::warn!(detail = %detail, "a publish was not confirmed by enough replicas")
            }
            ApiError::Saturated { code, .. } => tracing::info!(code, "refused: at capacity"),
            _ => {}
        }
    }

    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.code()));
        body.insert("message".into(), json!(self.public_message()));
        if let ApiError::BadRequest { field, line, .. } = self {
            if let Some(field) = field {
                body.insert("field".into(), json!(field));
            }
            if let Some(line) = line {
                body.insert("line".into(), json!(line));
            }
        }
        if let Some(id) = super::request_id::current()
            && let Ok(id) = id.to_str()
        {
            body.insert("request_id".into(), json!(id));
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::TooManyFailures(wait) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        }
        if let ApiError::Saturated { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client that waits that
/// long is not refused again.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound {
                code: "campaign_not_found",
                message: e.to_string(),
            },
            StoreError::AlreadyExists(_) => ApiError::Conflict {
                code: "campaign_exists",
                message: format!("{e}; choose another id or update it with PATCH"),
            },
            StoreError::Busy(_) | StoreError::Fenced(_) => ApiError::Conflict {
                code: "audience_busy",
                message: e.to_string(),
            },
            StoreError::Invalid(invalid) => ApiError::BadRequest {
                code: "invalid_campaign",
                message: invalid.message,
                field: Some(invalid.field),
                line: None,
            },
            StoreError::Timeout(_) | StoreError::Unavailable(_) => {
                // The detail (addresses, driver errors) goes to the log only.
                tracing::warn!(error = %e, "store call failed");
                ApiError::Unavailable(
                    "the store is unavailable or too slow right now; retry shortly".into(),
                )
            }
            StoreError::Unsuitable { code, message } => ApiError::BadRequest {
                code,
                message: format!("{message}; nothing was changed"),
                field: Some("design"),
                line: None,
            },
            StoreError::Corrupt(detail) => ApiError::Internal(detail),
            StoreError::Unreplicated(_) => ApiError::Unreplicated(e.to_string()),
        }
    }
}

impl From<crate::lookup::CheckError> for ApiError {
    fn from(e: crate::lookup::CheckError) -> ApiError {
        match e {
            crate::lookup::CheckError::Store(e) => e.into(),
            stale
            @ (crate::lookup::CheckError::Stale(_) | crate::lookup::CheckError::StaleList) => {
                ApiError::Stale(stale.to_string())
            }
        }
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(invalid: crate::domain::Invalid) -> ApiError {
        StoreError::Invalid(invalid).into()
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        match e {
            IngestError::Invalid { line, .. } => ApiError::BadRequest {
                code: "invalid_user_id",
                message: format!("{e}; nothing was changed"),
                field: None,
                line: Some(line),
            },
            IngestError::Malformed { line, .. } => ApiError::BadRequest {
                code: "invalid_json",
                message: format!("{e}; nothing was changed"),
                field: None,
                line: Some(line),
            },
            IngestError::Layout { line, .. } => ApiError::BadRequest {
                code: "invalid_csv",
                message: format!("{e}; nothing was changed"),
                field: None,
                line: Some(line),
            },
            IngestError::LineTooLong { line, .. } => ApiError::BadRequest {
                code: "line_too_long",
                message: format!("{e}; nothing was changed"),
                field: None,
                line: Some(line),
            },
            IngestError::TooManyIds { .. } => ApiError::AudienceTooLarge(format!(
                "{e}; nothing was changed (raise --max-audience or split the list with audience/add)"
            )),
            IngestError::Empty => ApiError::bad_request(
                "empty_audience",
                "the body holds no user ids; nothing was changed (to clear an audience, PUT the JSON array [])",
            ),
            IngestError::TooLarge { .. } => ApiError::TooLarge(format!(
                "{e}; nothing was changed (raise --max-upload-bytes or split the list with audience/add)"
            )),
            IngestError::Body(_) => ApiError::bad_request("bad_body", e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("send the body as application/json".into())
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("the JSON body is larger than this endpoint accepts".into())
            }
            _ => ApiError::bad_request("invalid_json", rejection.body_text()),
        }
    }
}
