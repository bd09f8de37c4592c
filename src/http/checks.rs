//! The login path: is a user in a campaign, and which active campaigns hold a user.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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

fn counted<T>(
    state: &AppState,
    kind: &'static str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result {
        state.meters.checks(kind, e.code(), 1);
    }
    result
}

async fn member(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let user = parse_user_id(&user)?;
    let answer = counted(
        &state,
        "member",
        state
            .checker
            .is_member(id, user)
            .await
            .map_err(ApiError::from),
    )?;
    state.meters.checks(
        "member",
        if answer.member {
            "member"
        } else {
            "not_member"
        },
        1,
    );
    Ok(Json(answer).into_response())
}

async fn campaigns_for(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = parse_user_id(&user)?;
    let answer = counted(
        &state,
        "campaigns_for",
        state
            .checker
            .campaigns_for(user)
            .await
            .map_err(ApiError::from),
    )?;
    state.meters.checks(
        "campaigns_for",
        if answer.campaigns.is_empty() {
            "none"
        } else {
            "some"
        },
        1,
    );
    Ok(Json(answer).into_response())
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
    let (results, source, stale): (Vec<Value>, _, _) = match &body.campaign {
        Some(id) => {
            let id = checked_campaign_id(id)?;
            let (answers, source, stale) = counted(
                &state,
                "batch",
                state
                    .checker
                    .are_members(id, users)
                    .await
                    .map_err(ApiError::from),
            )?;
            let results = users
                .iter()
                .zip(answers)
                .map(|(u, member)| json!({ "user_id": u, "member": member }))
                .collect();
            (results, source, stale)
        }
        None => {
            let (lists, source, stale) = counted(
                &state,
                "batch",
                state
                    .checker
                    .campaigns_for_many(users)
                    .await
                    .map_err(ApiError::from),
            )?;
            let results = users
                .iter()
                .zip(lists)
                .map(|(u, campaigns)| json!({ "user_id": u, "campaigns": campaigns }))
                .collect();
            (results, source, stale)
        }
    };
    state.meters.checks("batch", "ok", users.len() as u64);
    Ok(Json(json!({ "results": results, "source": source, "stale": stale })).into_response())
}
