//! Audience writes and export: `/v1/campaigns/{id}/audience[/add|/remove]`.
//!
//! Uploads stream through [`crate::ingest`] into a bitmap; the store is
//! touched only after the whole body parsed cleanly, so a bad line changes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt, stream};
use roaring::RoaringTreemap;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Actor;
use super::{ApiError, AppState, audit, checked_campaign_id, detached};
use crate::ingest::{self, Format, Limits, Parsed};
use crate::store::AuditEvent;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns/{id}/audience", get(export).put(replace))
        .route("/v1/campaigns/{id}/audience/add", post(add))
        .route("/v1/campaigns/{id}/audience/remove", post(remove))
}

/// The default of `--max-concurrent-uploads`. Each upload parses on its own
/// blocking thread and may hold up to `--max-audience` ids in memory; two
/// keep that peak predictable without making a short upload wait behind a
/// long one.
pub const DEFAULT_UPLOAD_SLOTS: usize = 2;

/// What a refused upload is told to wait before retrying. Uploads take
/// seconds to minutes, so retrying sooner would mostly be refused again.
const UPLOAD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Admission for uploads: one slot per upload being parsed or written. An
/// upload that finds none is refused at once (503 with `Retry-After`)
/// rather than queued: a queued upload would hold its connection and body
/// buffers while it waits, which is the cost the cap exists to bound.
#[derive(Clone)]
pub struct UploadSlots(Arc<Semaphore>);

impl UploadSlots {
    pub fn new(slots: usize) -> UploadSlots {
        UploadSlots(Arc::new(Semaphore::new(slots)))
    }

    fn take(&self) -> Result<UploadSlot, ApiError> {
        let permit = self.0.clone().try_acquire_owned().map_err(|_| {
            let retry_after = UPLOAD_RETRY_AFTER.as_secs();
            ApiError::Saturated {
                code: "too_many_uploads",
                message: format!(
                    "every upload slot is in use (--max-concurrent-uploads); nothing was changed, retry in {retry_after} s"
                ),
                retry_after,
            }
        })?;
        metrics::gauge!("guestlist_uploads_in_progress").increment(1.0);
        Ok(UploadSlot { _permit: permit })
    }
}

/// A taken upload slot; dropping it frees the slot.
struct UploadSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!("guestlist_uploads_in_progress").decrement(1.0);
    }
}

/// A parsed upload and the slot it holds until its write is done.
struct Upload {
    parsed: Parsed,
    slot: UploadSlot,
}

/// Checks the campaign exists, then parses the body. The existence check
/// comes first so a typo in the id fails before a long upload is read.
async fn read_upload(state: &AppState, id: &str, request: Request) -> Result<Upload, ApiError> {
    let campaign = state.store.get_campaign(id).await?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "content type {content_type:?} is not accepted; send text/plain or text/csv (one id per line) or application/json (an array of ids)"
        ))
    })?;
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
    let parsed = match ingest::parse_body(body, format, limits).await {
        Err(ingest::IngestError::Body(_)) if stalled.load(std::sync::atomic::Ordering::Acquire) => {
            return Err(ApiError::BodyTimeout(format!(
                "the upload sent no data for {}; nothing was changed",
                humantime::format_duration(state.limits.upload_idle_timeout)
            )));
        }
        parsed => parsed?,
    };
    campaign
        .design
        .check_ids(&parsed.members)
        .map_err(|e| ApiError::BadRequest {
            code: "user_id_out_of_range",
            message: format!("{}; nothing was changed", e.message),
            field: None,
            line: None,
        })?;
    Ok(Upload { parsed, slot })
}

async fn replace(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let Upload { parsed, slot } = read_upload(&state, id, request).await?;
    let (received, duplicates) = (parsed.received, parsed.duplicates);
    let (state, id, actor) = (state.clone(), id.to_string(), actor.map(|Extension(a)| a));
    let change = detached(async move {
        let _slot = slot;
        let change = state.store.replace_audience(&id, parsed.members).await?;
        let summary = format!(
            "audience replaced with {} IDs at version {}",
            change.audience_size, change.version
        );
        let event =
            AuditEvent::new("", &id, "audience_replaced", summary).at_version(change.version);
        audit::record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await?;
    Ok(Json(json!({
        "audience_size": change.audience_size,
        "version": change.version,
        "received": received,
        "duplicates": duplicates,
    }))
    .into_response())
}

async fn add(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let Upload { parsed, slot } = read_upload(&state, id, request).await?;
    let (received, duplicates) = (parsed.received, parsed.duplicates);
    let (state, id, actor) = (state.clone(), id.to_string(), actor.map(|Extension(a)| a));
    let change = detached(async move {
        let _slot = slot;
        let change = state.store.add_members(&id, parsed.members).await?;
        let summary = format!(
            "added {} IDs (size {}) at version {}",
            change.changed, change.audience_size, change.version
        );
        let event = AuditEvent::new("", &id, "audience_added", summary).at_version(change.version);
        audit::record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await?;
    Ok(Json(json!({
        "audience_size": change.audience_size,
        "version": change.version,
        "added": change.changed,
        "received": received,
        "duplicates": duplicates,
    }))
    .into_response())
}

async fn remove(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let Upload { parsed, slot } = read_upload(&state, id, request).await?;
    let (received, duplicates) = (parsed.received, parsed.duplicates);
    let (state, id, actor) = (state.clone(), id.to_string(), actor.map(|Extension(a)| a));
    let change = detached(async move {
        let _slot = slot;
        let change = state.store.remove_members(&id, parsed.members).await?;
        let summary = format!(
            "removed {} IDs (size {}) at version {}",
            change.changed, change.audience_size, change.version
        );
        let event =
            AuditEvent::new("", &id, "audience_removed", summary).at_version(change.version);
        audit::record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await?;
    Ok(Json(json!({
        "audience_size": change.audience_size,
        "version": change.version,
        "removed": change.changed,
        "received": received,
        "duplicates": duplicates,
    }))
    .into_response())
}

/// Bytes of text per streamed chunk.
const EXPORT_CHUNK: usize = 64 * 1024;

/// Streams the audience as text, one ID per line, in ascending order. The
/// text is produced chunk by chunk from the compact bitmap, never whole.
async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let members = state.store.audience(id).await?;
    let body =
        Body::from_stream(stream::iter(ExportChunks::new(members)).map(Ok::<_, std::io::Error>));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// Iterates the text of an audience in chunks of about [`EXPORT_CHUNK`] bytes.
struct ExportChunks {
    members: Arc<RoaringTreemap>,
    /// The next ID to emit is the smallest member ≥ this; `None` when done.
    next: Option<u64>,
}

impl ExportChunks {
    fn new(members: Arc<RoaringTreemap>) -> Self {
        let next = members.min();
        ExportChunks { members, next }
    }
}

impl Iterator for ExportChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let start = self.next?;
        let mut text = String::with_capacity(EXPORT_CHUNK + 24);
        let mut resume = None;
        let mut ids = self.members.iter();
        ids.advance_to(start);
        let mut digits = itoa::Buffer::new();
        for id in ids {
            if text.len() >= EXPORT_CHUNK {
                resume = Some(id);
                break;
            }
            text.push_str(digits.format(id));
            text.push('\n');
        }
        self.next = resume;
        Some(Bytes::from(text))
    }
}
