//! The one error type of the API and the portal.
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

/// Every code an error body's `error` field can hold, with its status and
/// what it means. The OpenAPI document lists them from here, and a test
/// holds the source to this list.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_campaign",
        400,
        "a campaign field breaks a rule; `field` names it",
    ),
    (
        "invalid_json",
        400,
        "the body is not the JSON expected; `line` names an upload's line",
    ),
    ("bad_body", 400, "the body could not be read to its end"),
    (
        "invalid_user_id",
        400,
        "a user id is not a decimal integer from 0 to 2^64-1; `line` names an upload's line",
    ),
    (
        "user_id_out_of_range",
        400,
        "an ID is out of the range the campaign's design holds (bitmap: below 2^32)",
    ),
    (
        "line_too_long",
        400,
        "an upload's line is longer than any user id; `line` names it",
    ),
    (
        "invalid_csv",
        400,
        "a CSV upload's layout cannot be read: the column is missing, a row is short, a quote is open",
    ),
    (
        "invalid_csv_options",
        400,
        "the CSV options cannot work together (header, column)",
    ),
    (
        "invalid_query",
        400,
        "an upload's query string has an unknown or repeated parameter",
    ),
    ("invalid_dry_run", 400, "`dry_run` is not `true` or `false`"),
    ("invalid_limit", 400, "`limit` is out of range"),
    (
        "too_many_user_ids",
        400,
        "a batch check holds more user ids than one call may",
    ),
    (
        "empty_audience",
        400,
        "an upload holds no user id (to clear an audience, PUT `[]`)",
    ),
    (
        "bitmap_too_sparse",
        400,
        "the bitmap design would hold these IDs in far more memory than a set",
    ),
    (
        "design_needs_integer_ids",
        400,
        "the bitmap design holds integer user ids only",
    ),
    ("unauthorized", 401, "the token is missing or wrong"),
    (
        "csrf_token_invalid",
        403,
        "a portal form came without its CSRF token",
    ),
    ("campaign_not_found", 404, "no campaign has this id"),
    ("route_not_found", 404, "no endpoint has this path"),
    (
        "version_not_found",
        404,
        "a rollback names an audience version the history does not keep",
    ),
    (
        "method_not_allowed",
        405,
        "the path exists, not with this method (see /openapi.json)",
    ),
    (
        "body_idle_timeout",
        408,
        "an upload's body stopped sending data",
    ),
    ("campaign_exists", 409, "a campaign already has this id"),
    (
        "audience_changed",
        409,
        "a rollback named a live version that is no longer live",
    ),
    (
        "audience_busy",
        409,
        "another write holds the campaign; retry",
    ),
    ("body_too_large", 413, "the body is over its limit"),
    (
        "audience_too_large",
        413,
        "an upload holds more distinct IDs than `--max-audience`",
    ),
    (
        "unsupported_media_type",
        415,
        "the body's content type is not one this endpoint reads",
    ),
    (
        "too_many_failures",
        429,
        "too many wrong tokens from this address; retry after `Retry-After`",
    ),
    (
        "internal",
        500,
        "a bug or corrupt data; the detail is in the server's log",
    ),
    (
        "store_unavailable",
        503,
        "the store cannot answer right now; retry shortly",
    ),
    (
        "cache_stale",
        503,
        "the cached answer is past the staleness bound and the store cannot answer",
    ),
    (
        "replicas_unconfirmed",
        503,
        "fewer replicas than `--min-replicas-ack` confirmed a write",
    ),
    (
        "request_timeout",
        503,
        "the request missed its deadline (`--request-timeout`)",
    ),
    (
        "too_many_uploads",
        503,
        "every upload slot is taken; retry after `Retry-After`",
    ),
    (
        "too_many_exports",
        503,
        "every export slot is taken; retry after `Retry-After`",
    ),
];

/// The error body in the OpenAPI document (`crate::http::openapi` serves it).
pub struct ErrorBody;

impl utoipa::PartialSchema for ErrorBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        error_body()
    }
}

impl utoipa::ToSchema for ErrorBody {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(ERROR_BODY)
    }
}

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
    /// 405: the path exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
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
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
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
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
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
                code: invalid.code,
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
            StoreError::Unsuitable {
                code,
                field,
                message,
            } => ApiError::BadRequest {
                code,
                message: format!("{message}; nothing was changed"),
                field: Some(field),
                line: None,
            },
            StoreError::Moved { .. } => ApiError::Conflict {
                code: "audience_changed",
                message: format!("{e}; nothing was changed"),
            },
            StoreError::VersionNotKept { .. } => ApiError::NotFound {
                code: "version_not_found",
                message: format!("{e}; nothing was changed"),
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
            crate::lookup::CheckError::BadUser(message) => {
                ApiError::bad_request("invalid_user_id", message)
            }
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

/// The name of the error body's schema.
pub const ERROR_BODY: &str = "Error";

/// The error body's schema for the OpenAPI document: every code in it,
/// from [`ERROR_CODES`].
pub fn error_body() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    let codes = ERROR_CODES
        .iter()
        .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}"))
        .collect::<Vec<_>>()
        .join("\n");
    let string = |description: &str| {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(description))
    };
    utoipa::openapi::schema::ObjectBuilder::new()
        .description(Some("Every error's body."))
        .property(
            "error",
            string(&format!("A stable code for programs:\n{codes}"))
                .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code))),
        )
        .required("error")
        .property(
            "message",
            string("What went wrong and how to fix it, for people."),
        )
        .required("message")
        .property(
            "request_id",
            string("The request's id, as in the server's logs and the `x-request-id` header."),
        )
        .property("field", string("The JSON field at fault, when one is."))
        .property(
            "line",
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Integer)
                .minimum(Some(1))
                .description(Some("The line of an upload at fault, counted from 1.")),
        )
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the source can put in an error body is listed, with the
    /// status it goes out with. Codes are string literals handed to a few
    /// constructors; this finds them where they are written.
    #[test]
    fn every_code_in_the_source_is_listed_with_its_status() {
        let listed: std::collections::HashMap<&str, u16> =
            ERROR_CODES.iter().map(|(c, s, _)| (*c, *s)).collect();
        assert_eq!(listed.len(), ERROR_CODES.len(), "a code is listed twice");
        let mut found = std::collections::BTreeSet::new();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut dirs = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // The literal after `code:`, `bad_request(`, `refuse(`,
                // `boolean(` or a slot's gauge name, across line breaks.
                let squeezed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                for marker in [
                    "code: \"",
                    "bad_request( \"",
                    "bad_request(\"",
                    "refuse( \"",
                    "refuse(\"",
                    "boolean(\"",
                    "_in_progress\", \"",
                ] {
                    for (at, _) in squeezed.match_indices(marker) {
                        let rest = &squeezed[at + marker.len()..];
                        let code: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        if !code.is_empty() && rest[code.len()..].starts_with('"') {
                            found.insert(code);
                        }
                    }
                }
            }
        }
        let unlisted: Vec<_> = found
            .iter()
            .filter(|c| !listed.contains_key(c.as_str()))
            .collect();
        assert!(
            unlisted.is_empty(),
            "codes missing from ERROR_CODES: {unlisted:?}"
        );
        assert!(found.len() >= 20, "the scan found only {found:?}");
        // The fixed codes, with the status each goes out with.
        let fixed = [
            ApiError::Unauthorized(String::new()),
            ApiError::TooManyFailures(std::time::Duration::ZERO),
            ApiError::Forbidden(String::new()),
            ApiError::MethodNotAllowed(String::new()),
            ApiError::TooLarge(String::new()),
            ApiError::AudienceTooLarge(String::new()),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::BodyTimeout(String::new()),
            ApiError::Timeout(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::Stale(String::new()),
            ApiError::Unreplicated(String::new()),
            ApiError::Internal(String::new()),
        ];
        for e in fixed {
            assert_eq!(listed.get(e.code()), Some(&e.status().as_u16()), "{e:?}");
        }
    }
}
