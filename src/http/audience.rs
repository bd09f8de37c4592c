//! Audience writes: `/v1/campaigns/{id}/audience[/add|/remove]` (the export
//! is in [`super::export`]).
//!
//! Uploads stream through [`crate::ingest`] into a bitmap; the store is
//! touched only after the whole body parsed cleanly, so a bad line changes
//! nothing. `?dry_run=true` parses and validates the same way, then answers
//! what the change would do ([`crate::preview`]) and writes nothing.

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Access, require};
use crate::app::error::ErrorBody;
use crate::app::export::consistent_audience;
use crate::app::slots::UploadSlot;
use crate::app::writes::publish_change;
use crate::app::{Actor, ApiError, AppState, checked_campaign_id};
use crate::ids::Audience;
use crate::ingest::csv::Column;
use crate::ingest::{self, Format, Limits, Parsed};
use crate::preview::{self, ChangeKind, Preview};

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(replace))
        .routes(routes!(add))
        .routes(routes!(remove));
    let export = OpenApiRouter::new().routes(routes!(super::export::export));
    let mut router = require(Access::Upload, state, uploads)
        .merge(require(Access::Admin, state, export))
        .merge(super::versions::router(state));
    super::openapi::register::<UploadAnswer>(router.get_openapi_mut());
    router
}

/// A parsed upload and the slot it holds until its write is done.
struct Upload {
    parsed: Parsed,
    slot: UploadSlot,
}

/// Checks the campaign exists, then parses the body. The existence check
/// comes first so a typo in the id fails before a long upload is read.
async fn read_upload(
    state: &AppState,
    id: &str,
    query: &UploadQuery,
    request: Request,
) -> Result<Upload, ApiError> {
    let campaign = state.store.get_campaign(id).await?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = upload_format(content_type, query)?;
    let limit = state.max_upload_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ingest::IngestError::TooLarge { limit }.into());
    }
    // Taken after the cheap refusals, so only an upload that will be read
    // can be told to come back later.
    let slot = state.uploads.take()?;
    let limits = Limits {
        max_bytes: limit,
        max_audience: state.max_audience,
    };
    let (body, stalled) =
        super::limits::idle_bounded(request.into_body(), state.limits.upload_idle_timeout);
    let parsed = match ingest::parse_body(body, format, limits, campaign.user_id_type).await {
        Err(ingest::IngestError::Body(_)) if stalled.load(std::sync::atomic::Ordering::Acquire) => {
            return Err(ApiError::BodyTimeout(format!(
                "the upload sent no data for {}; nothing was changed",
                humantime::format_duration(state.limits.upload_idle_timeout)
            )));
        }
        parsed => parsed?,
    };
    let Some(ids) = parsed.members.as_integers() else {
        return Ok(Upload { parsed, slot });
    };
    campaign
        .design
        .check_ids(ids)
        .map_err(|e| ApiError::BadRequest {
            code: "user_id_out_of_range",
            message: format!("{}; nothing was changed", e.message),
            field: None,
            line: None,
        })?;
    Ok(Upload { parsed, slot })
}

/// What a published change did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Changed {
    /// The audience's size after the change.
    audience_size: u64,
    /// The audience's version after the change.
    version: u64,
    /// IDs in the body, repeats included.
    received: u64,
    /// IDs the body held more than once.
    duplicates: u64,
    /// (add) IDs that were not in the audience before.
    #[serde(skip_serializing_if = "Option::is_none")]
    added: Option<u64>,
    /// (remove) IDs that were in the audience and are gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<u64>,
}

/// What the change would do (`?dry_run=true`); nothing was changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DryRun {
    /// Always `true`: this is a preview.
    dry_run: bool,
    /// The audience's version the preview is of.
    version: u64,
    /// IDs in the body, repeats included.
    received: u64,
    /// IDs the body held more than once.
    duplicates: u64,
    #[serde(flatten)]
    preview: Preview,
}

/// An upload's answer: the change made, or with `?dry_run=true` the one
/// that would be.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum UploadAnswer {
    Changed(Changed),
    DryRun(DryRun),
}

/// The answers of replace, add and remove.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "described, never built: the handlers answer `UploadAnswer` or `ApiError`"
)]
enum UploadResponses {
    /// The change made (`added` and `removed` say by how much for add and
    /// remove), or with `?dry_run=true` the one that would be.
    #[response(status = 200)]
    Done(UploadAnswer),
    /// A line is bad (`invalid_user_id`, `invalid_json`, `line_too_long`,
    /// `invalid_csv`, with `line`), the body holds no ID (`empty_audience`),
    /// the IDs do not suit the design (`user_id_out_of_range`,
    /// `bitmap_too_sparse`), or the query is wrong (`invalid_query`,
    /// `invalid_dry_run`, `invalid_csv_options`). Nothing was changed.
    #[response(status = 400)]
    Refused(ErrorBody),
    /// No such campaign (`campaign_not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body stopped sending data (`body_idle_timeout`).
    #[response(status = 408)]
    Stalled(ErrorBody),
    /// Another write holds the campaign (`audience_busy`).
    #[response(status = 409)]
    Busy(ErrorBody),
    /// Over `--max-upload-bytes` (`body_too_large`) or `--max-audience`
    /// (`audience_too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not JSON, text or CSV (`unsupported_media_type`).
    #[response(status = 415)]
    Unsupported(ErrorBody),
    /// Every upload slot is taken (`too_many_uploads`, with `Retry-After`),
    /// fewer replicas than required confirmed (`replicas_unconfirmed`), or
    /// the store cannot answer.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Replaces the audience with the body's IDs, as a new version.
#[utoipa::path(
    put,
    path = "/v1/campaigns/{id}/audience",
    operation_id = "replace_audience",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id."), UploadParams),
    request_body(
        description = "The IDs, each a decimal integer from 0 to 2^64-1: a JSON array, one per line, or a CSV export (`?column=` picks the column). Streamed; bounded by `--max-upload-bytes` and `--max-audience`.",
        content(
            (Vec<u64> = "application/json"),
            (String = "text/plain"),
            (String = "text/csv"),
        )
    ),
    responses(UploadResponses)
)]
async fn replace(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    change(state, actor, &id, ChangeKind::Replace, request).await
}

/// Adds the body's IDs to the audience, as a new version.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/audience/add",
    operation_id = "add_to_audience",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id."), UploadParams),
    request_body(
        description = "As for PUT `/v1/campaigns/{id}/audience`.",
        content(
            (Vec<u64> = "application/json"),
            (String = "text/plain"),
            (String = "text/csv"),
        )
    ),
    responses(UploadResponses)
)]
async fn add(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    change(state, actor, &id, ChangeKind::Add, request).await
}

/// Removes the body's IDs from the audience, as a new version.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/audience/remove",
    operation_id = "remove_from_audience",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id."), UploadParams),
    request_body(
        description = "As for PUT `/v1/campaigns/{id}/audience`.",
        content(
            (Vec<u64> = "application/json"),
            (String = "text/plain"),
            (String = "text/csv"),
        )
    ),
    responses(UploadResponses)
)]
async fn remove(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    change(state, actor, &id, ChangeKind::Remove, request).await
}

/// Replace, add or remove: parse the whole body, then either publish the
/// change and audit it, or, with `?dry_run=true`, answer what it would do
/// and change nothing.
async fn change(
    state: AppState,
    actor: Option<Extension<Actor>>,
    id: &str,
    kind: ChangeKind,
    request: Request,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(id)?;
    let query = upload_query(&request)?;
    let dry_run = query.dry_run;
    let Upload { parsed, slot } = read_upload(&state, id, &query, request).await?;
    let (received, duplicates) = (parsed.received, parsed.duplicates);
    if dry_run {
        let _slot = slot;
        let answer = dry_run_answer(&state, id, kind, parsed.members, received, duplicates).await?;
        return Ok(Json(UploadAnswer::DryRun(answer)).into_response());
    }
    let actor = actor.map(|Extension(a)| a);
    let change = publish_change(&state, actor, id, kind, parsed.members, slot).await?;
    let answer = Changed {
        audience_size: change.audience_size,
        version: change.version,
        received,
        duplicates,
        added: (kind == ChangeKind::Add).then_some(change.changed),
        removed: (kind == ChangeKind::Remove).then_some(change.changed),
    };
    Ok(Json(UploadAnswer::Changed(answer)).into_response())
}

/// What an upload's query string asks: `dry_run=true|false`, and for
/// `text/csv` bodies `header=true|false` and `column=NAME|N`. Any other
/// parameter, a repeated one, or a value out of these is refused before
/// the body is read, so a typo (`?dry-run=true`) never publishes what was
/// meant as a preview, and a mistyped column never reads the wrong one.
#[derive(Debug, Default)]
struct UploadQuery {
    dry_run: bool,
    header: Option<bool>,
    column: Option<Column>,
}

fn upload_query(request: &Request) -> Result<UploadQuery, ApiError> {
    let refuse = |code: &'static str, field: &'static str, message: String| ApiError::BadRequest {
        code,
        message: format!("{message}; nothing was changed"),
        field: Some(field),
        line: None,
    };
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        refuse(
            "invalid_query",
            "query",
            format!("the query string cannot be read: {e}"),
        )
    })?;
    let mut seen: Vec<&'static str> = Vec::new();
    let mut out = UploadQuery::default();
    for (key, value) in pairs {
        let name = match key.as_str() {
            "dry_run" => "dry_run",
            "header" => "header",
            "column" => "column",
            _ => {
                return Err(refuse(
                    "invalid_query",
                    "query",
                    format!(
                        "unknown query parameter {}: the ones here are dry_run=true, and for text/csv header=true and column=NAME or a number from 1",
                        crate::domain::quoted(key.as_bytes())
                    ),
                ));
            }
        };
        if seen.contains(&name) {
            return Err(refuse(
                "invalid_query",
                name,
                format!("{name} is given more than once"),
            ));
        }
        seen.push(name);
        let boolean = |code| match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(refuse(
                code,
                name,
                format!(
                    "{name} must be true or false, not {}",
                    crate::domain::quoted(other.as_bytes())
                ),
            )),
        };
        match name {
            "dry_run" => out.dry_run = boolean("invalid_dry_run")?,
            "header" => out.header = Some(boolean("invalid_csv_options")?),
            _ => {
                out.column = Some(
                    Column::parse(&value)
                        .map_err(|why| refuse("invalid_csv_options", "column", why))?,
                )
            }
        }
    }
    Ok(out)
}

/// The body's format, from its content type and the query's CSV options.
fn upload_format(content_type: &str, query: &UploadQuery) -> Result<Format, ApiError> {
    let refuse = |message: String| ApiError::BadRequest {
        code: "invalid_csv_options",
        message: format!("{message}; nothing was changed"),
        field: Some("header"),
        line: None,
    };
    let format = Format::from_content_type(content_type)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "content type {content_type:?} is not accepted; send text/plain (one id per line), text/csv (a CSV export; choose the column with ?column=) or application/json (an array of ids)"
            ))
        })?
        .map_err(refuse)?;
    match format {
        Format::Csv(mut options) => {
            if let Some(header) = query.header {
                if options.header.is_some_and(|h| h != header) {
                    return Err(refuse(format!(
                        "header={header} contradicts the content type's header parameter"
                    )));
                }
                options.header = Some(header);
            }
            options.column = query.column.clone();
            options.check().map_err(|why| ApiError::BadRequest {
                code: "invalid_csv_options",
                message: format!("{why}; nothing was changed"),
                field: Some("column"),
                line: None,
            })?;
            Ok(Format::Csv(options))
        }
        _ if query.header.is_some() || query.column.is_some() => Err(refuse(format!(
            "header= and column= read CSV exports: send the body as Content-Type: text/csv, not {content_type:?}"
        ))),
        other => Ok(other),
    }
}

/// A dry run's answer: what the change would do to the audience now, and
/// the version that audience is. The audience it would leave is checked as
/// the change itself would check it, so a preview never promises what the
/// publish refuses. Writes nothing and audits nothing.
async fn dry_run_answer(
    state: &AppState,
    id: &str,
    kind: ChangeKind,
    upload: Audience,
    received: u64,
    duplicates: u64,
) -> Result<DryRun, ApiError> {
    let (campaign, current) = consistent_audience(state, id).await?;
    let store = state.store.clone();
    // Set arithmetic over up to --max-audience IDs: off the async threads.
    let preview = tokio::task::spawn_blocking(move || {
        match kind {
            ChangeKind::Replace => store.check_audience(campaign.design, &upload)?,
            // Only integer audiences meet a design's limits; the union is
            // not built for the others.
            ChangeKind::Add if upload.as_integers().is_some() => {
                store.check_audience(campaign.design, &current.union(&upload))?
            }
            ChangeKind::Add => {}
            // Removing can only shrink what the store already holds.
            ChangeKind::Remove => {}
        }
        Ok::<_, crate::store::StoreError>(preview::preview_audience(kind, &current, &upload))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the preview failed: {e}")))??;
    Ok(DryRun {
        dry_run: true,
        version: campaign.version,
        received,
        duplicates,
        preview,
    })
}

/// The query parameters of uploads, as the OpenAPI document shows them;
/// `upload_query` parses them (strictly: an unknown one is refused).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "described, never built: `upload_query` reads the query"
)]
struct UploadParams {
    /// `true`: answer what the change would do and change nothing.
    dry_run: Option<bool>,
    /// CSV only: whether the first row is a header (also
    /// `Content-Type: text/csv; header=present|absent`).
    header: Option<bool>,
    /// CSV only: the ID column, by header name or by number from 1.
    column: Option<String>,
}
