//! Campaign CRUD: `/v1/campaigns` and `/v1/campaigns/{id}`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde_json::json;

use super::{ApiError, ApiJson, AppState, checked_campaign_id};
use crate::domain::{CampaignPatch, NewCampaign};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list).post(create))
        .route("/v1/campaigns/{id}", get(show).patch(update).delete(remove))
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewCampaign>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let campaign = body.validate(now)?;
    let created = state.store.create_campaign(campaign).await?;
    Ok((StatusCode::CREATED, Json(created.view(now))).into_response())
}

async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = Utc::now();
    let campaigns = state.store.list_campaigns().await?;
    let views: Vec<_> = campaigns.iter().map(|c| c.view(now)).collect();
    Ok(Json(json!({ "campaigns": views })).into_response())
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let campaign = state.store.get_campaign(id).await?;
    Ok(Json(campaign.view(Utc::now())).into_response())
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<CampaignPatch>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let campaign = state.store.update_campaign(id, &patch).await?;
    Ok(Json(campaign.view(Utc::now())).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = checked_campaign_id(&id)?;
    state.store.delete_campaign(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
