//! Audience history: `GET /v1/campaigns/{id}/versions` lists the kept
//! versions; `POST /v1/campaigns/{id}/rollback` publishes one of them again.
//!
//! A rollback is a write like an upload ([`crate::app::writes::rollback_audience`]).

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiJson;
use super::auth::{Access, require};
use crate::app::error::ErrorBody;
use crate::app::writes::rollback_audience;
use crate::app::{Actor, ApiError, AppState, checked_campaign_id};
use crate::store::AudienceVersion;

/// Both need an admin token: who changed an audience is the audit log's
/// information, and a rollback is a write.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(rollback));
    require(Access::Admin, state, routes)
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
    /// The live version the caller saw: when given and another version is
    /// live by the time the rollback runs, it is refused (409
    /// `audience_changed`) instead of undoing a change the caller never saw.
    #[serde(default)]
    pub expected_version: Option<u64>,
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
        (status = 409, description = "Another write holds the campaign (`audience_busy`), or `expected_version` is no longer live (`audience_changed`). Nothing was changed.", body = ErrorBody),
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
    let actor = actor.map(|Extension(a)| a);
    let change = rollback_audience(&state, actor, id, body.version, body.expected_version).await?;
    Ok(Json(RolledBack {
        audience_size: change.audience_size,
        version: change.version,
        restored: body.version,
    }))
}
