//! Audience history: `GET /v1/campaigns/{id}/versions` lists the kept
//! versions; `POST /v1/campaigns/{id}/rollback` publishes one of them again.
//!
//! A rollback is a write like an upload: it holds an upload slot (it reads a
//! whole audience into memory), runs detached from the connection so a
//! client that leaves cannot cut it in half, and is audited.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Actor;
use super::error::ErrorBody;
use super::{ApiError, ApiJson, AppState, audit, checked_campaign_id, detached};
use crate::domain::AudienceChange;
use crate::numfmt::thousands;
use crate::store::{AudienceVersion, AuditEvent};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(rollback))
}

/// `GET /v1/campaigns/{id}/versions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionList {
    /// Newest first; the first is the live audience once there is one.
    versions: Vec<AudienceVersion>,
}

/// The body of `POST /v1/campaigns/{id}/rollback`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The kept version whose audience to publish again.
    pub version: u64,
}

/// What a rollback did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RolledBack {
    /// The audience's size after the rollback: the restored version's.
    audience_size: u64,
    /// The new version the rollback published.
    version: u64,
    /// The version whose audience it restored.
    restored: u64,
}

/// The kept audience versions: which, how big, when, by whom and how.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/versions",
    operation_id = "list_audience_versions",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id.")),
    responses(
        (status = 200, description = "The last `--keep-versions` versions, newest first.", body = VersionList),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    let id = checked_campaign_id(&id)?;
    let versions = state.store.versions(id).await?;
    Ok(Json(VersionList { versions }))
}

/// Publishes a kept version's audience again, as a new version.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/rollback",
    operation_id = "rollback_audience",
    tag = "audiences",
    params(("id" = String, Path, description = "The campaign's id.")),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Published as a new version.", body = RolledBack),
        (status = 400, description = "The body is not the JSON expected (`invalid_json`).", body = ErrorBody),
        (status = 404, description = "No such campaign (`campaign_not_found`), or the history does not keep that version (`version_not_found`). Nothing was changed.", body = ErrorBody),
        (status = 409, description = "Another write holds the campaign (`audience_busy`).", body = ErrorBody),
        (status = 413, description = "The body is over its limit (`body_too_large`).", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = ErrorBody),
    )
)]
async fn rollback(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RollbackRequest>,
) -> Result<Json<RolledBack>, ApiError> {
    let id = checked_campaign_id(&id)?;
    let change = rollback_audience(&state, actor.map(|Extension(a)| a), id, body.version).await?;
    Ok(Json(RolledBack {
        audience_size: change.audience_size,
        version: change.version,
        restored: body.version,
    }))
}

/// Rolls campaign `id`'s audience back to kept version `version`, then
/// records it; shared with the portal's rollback form.
pub async fn rollback_audience(
    state: &AppState,
    actor: Option<Actor>,
    id: &str,
    version: u64,
) -> Result<AudienceChange, ApiError> {
    let slot = state.uploads.take()?;
    let (state, id) = (state.clone(), id.to_string());
    detached(async move {
        let _slot = slot;
        let by = audit::actor_name(actor.as_ref());
        let change = state.store.rollback(&id, version, by).await?;
        let summary = format!(
            "rolled back to version {version}: {} IDs -> {} at version {}",
            thousands(change.previous_size),
            thousands(change.audience_size),
            change.version
        );
        let event =
            AuditEvent::new("", &id, "audience_rolled_back", summary).at_version(change.version);
        audit::record(&state, actor.as_ref(), event).await;
        Ok(change)
    })
    .await
}
