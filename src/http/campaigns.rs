//! Campaign CRUD: `/v1/campaigns` and `/v1/campaigns/{id}`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiJson;
use super::auth::{Access, require};
use crate::app::error::ErrorBody;
use crate::app::writes::{create_campaign, delete_campaign, update_campaign};
use crate::app::{Actor, ApiError, AppState, checked_campaign_id};
use crate::domain::{CampaignPatch, CampaignView, NewCampaign};

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let reads = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show));
    let writes = OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update, remove));
    require(Access::Read, state, reads).merge(require(Access::Admin, state, writes))
}

/// `GET /v1/campaigns`.
#[derive(Serialize, utoipa::ToSchema)]
struct CampaignList<'a> {
    campaigns: Vec<CampaignView<'a>>,
}

/// Creates a campaign; its audience starts empty, at version 0.
#[utoipa::path(
    post,
    path = "/v1/campaigns",
    operation_id = "create_campaign",
    tag = "campaigns",
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created.", body = CampaignView),
        (status = 400, description = "A field breaks a rule (`invalid_campaign`, with `field`) or the body is not the JSON expected (`invalid_json`).", body = ErrorBody),
        (status = 409, description = "A campaign has this id (`campaign_exists`).", body = ErrorBody),
        (status = 413, description = "The body is over its limit (`body_too_large`).", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    ApiJson(body): ApiJson<NewCampaign>,
) -> Result<Response, ApiError> {
    let created = create_campaign(&state, actor.map(|Extension(a)| a), body).await?;
    Ok((StatusCode::CREATED, Json(created.view(Utc::now()))).into_response())
}

/// Every campaign, whatever its status.
#[utoipa::path(
    get,
    path = "/v1/campaigns",
    operation_id = "list_campaigns",
    tag = "campaigns",
    responses((status = 200, description = "Every campaign, by id.", body = CampaignList))
)]
async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = Utc::now();
    let campaigns = state.store.list_campaigns().await?;
    let campaigns = campaigns.iter().map(|c| c.view(now)).collect();
    Ok(Json(CampaignList { campaigns }).into_response())
}

/// One campaign.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    operation_id = "get_campaign",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id.")),
    responses(
        (status = 200, description = "The campaign.", body = CampaignView),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
    )
)]
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let campaign = state.store.get_campaign(id).await?;
    Ok(Json(campaign.view(Utc::now())).into_response())
}

/// Renames a campaign or moves its window; the audience is untouched.
#[utoipa::path(
    patch,
    path = "/v1/campaigns/{id}",
    operation_id = "update_campaign",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id.")),
    request_body = CampaignPatch,
    responses(
        (status = 200, description = "The campaign as changed.", body = CampaignView),
        (status = 400, description = "A field breaks a rule (`invalid_campaign`) or the body is not the JSON expected (`invalid_json`).", body = ErrorBody),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
        (status = 409, description = "Another write holds the campaign (`audience_busy`).", body = ErrorBody),
        (status = 413, description = "The body is over its limit (`body_too_large`).", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<CampaignPatch>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let campaign = update_campaign(&state, actor.map(|Extension(a)| a), id, patch).await?;
    Ok(Json(campaign.view(Utc::now())).into_response())
}

/// Deletes a campaign and its audience.
#[utoipa::path(
    delete,
    path = "/v1/campaigns/{id}",
    operation_id = "delete_campaign",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
        (status = 409, description = "Another write holds the campaign (`audience_busy`).", body = ErrorBody),
    )
)]
async fn remove(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = checked_campaign_id(&id)?;
    delete_campaign(&state, actor.map(|Extension(a)| a), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
