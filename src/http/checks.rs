//! The login path: is a user in a campaign, and which active campaigns hold a user.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, AppState, checked_campaign_id, parse_user_id};

/// Most user ids accepted by one `POST /v1/check`.
pub const MAX_BATCH: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns/{id}/members/{user_id}", get(member))
        .route("/v1/users/{user_id}/campaigns", get(campaigns_for))
        .route("/v1/check", post(batch))
}

fn count(kind: &'static str, outcome: &'static str, n: u64) {
    metrics::counter!("guestlist_checks_total", "kind" => kind, "outcome" => outcome).increment(n);
}

fn counted<T>(kind: &'static str, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result {
        count(kind, e.code(), 1);
    }
    result
}

async fn member(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let user = parse_user_id(&user)?;
    let (campaign, member) = counted(
        "member",
        state
            .store
            .is_member(id, user)
            .await
            .map_err(ApiError::from),
    )?;
    count("member", if member { "member" } else { "not_member" }, 1);
    Ok(Json(json!({
        "campaign": campaign.id,
        "user_id": user,
        "member": member,
        "active": campaign.is_active_at(Utc::now()),
    }))
    .into_response())
}

async fn campaigns_for(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = parse_user_id(&user)?;
    let campaigns = counted(
        "campaigns_for",
        state
            .store
            .campaigns_for(user, Utc::now())
            .await
            .map_err(ApiError::from),
    )?;
    count(
        "campaigns_for",
        if campaigns.is_empty() { "none" } else { "some" },
        1,
    );
    Ok(Json(json!({ "user_id": user, "campaigns": campaigns })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    user_ids: Vec<u64>,
    #[serde(default)]
    campaign: Option<String>,
}

async fn batch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    if body.user_ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "too_many_user_ids",
            format!(
                "{} user ids sent; at most {MAX_BATCH} per call, split the batch",
                body.user_ids.len()
            ),
        ));
    }
    let users = &body.user_ids;
    let results: Vec<Value> = match &body.campaign {
        Some(id) => {
            let id = checked_campaign_id(id)?;
            let (_, answers) = counted(
                "batch",
                state
                    .store
                    .are_members(id, users)
                    .await
                    .map_err(ApiError::from),
            )?;
            users
                .iter()
                .zip(answers)
                .map(|(u, member)| json!({ "user_id": u, "member": member }))
                .collect()
        }
        None => {
            let lists = counted(
                "batch",
                state
                    .store
                    .campaigns_for_many(users, Utc::now())
                    .await
                    .map_err(ApiError::from),
            )?;
            users
                .iter()
                .zip(lists)
                .map(|(u, campaigns)| json!({ "user_id": u, "campaigns": campaigns }))
                .collect()
        }
    };
    count("batch", "ok", users.len() as u64);
    Ok(Json(json!({ "results": results })).into_response())
}
