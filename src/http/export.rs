//! The audience export: `GET /v1/campaigns/{id}/audience` (the text itself
//! is made in [`crate::app::export`]).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::app::error::ErrorBody;
use crate::app::export::text;
use crate::app::{ApiError, AppState, checked_campaign_id};

/// Streams the audience as text, one ID per line, in ascending order. The
/// text is produced chunk by chunk from the compact bitmap, never whole.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/audience",
    operation_id = "export_audience",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id.")),
    responses(
        (status = 200, description = "The audience, one ID per line, ascending, streamed.", content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
        (status = 503, description = "Every export slot is taken (`too_many_exports`, with `Retry-After`), or the store cannot answer.", body = ErrorBody),
    )
)]
pub(super) async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let slot = state.exports.take_export()?;
    let members = state.store.audience(id).await?;
    Ok(text(members, slot).into_response())
}
