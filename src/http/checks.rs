//! The login path: is a user in a campaign, and which active campaigns hold a user.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Access, require};
use super::{ApiJson, parse_user};
use crate::app::error::ErrorBody;
use crate::app::{ApiError, AppState, checked_campaign_id};
use crate::ids::{User, UserIdValue};
use crate::lookup::{Membership, Source, UserCampaigns};

/// Most user ids accepted by one `POST /v1/check`.
pub const MAX_BATCH: usize = 10_000;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let checks = OpenApiRouter::new()
        .routes(routes!(member))
        .routes(routes!(campaigns_for))
        .routes(routes!(batch));
    require(Access::Read, state, checks)
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

/// Is this user in this campaign? `active` says whether the campaign's
/// window holds now; the answer is exact whatever the audience's size.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/members/{user_id}",
    operation_id = "check_member",
    tag = "checks",
    params(
        ("id" = String, Path, description = "The campaign's id."),
        ("user_id" = String, Path, description = "A user id of the campaign's type (percent-encoded): a decimal integer from 0 to 2^64-1, a string of 1 to 256 bytes, or a UUID in any standard form."),
    ),
    responses(
        (status = 200, description = "The answer.", body = Membership),
        (status = 400, description = "The user id is not one (`invalid_user_id`).", body = ErrorBody),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
        (status = 503, description = "The store cannot answer and no cached answer may be served (`store_unavailable`, `cache_stale`, `request_timeout`).", body = ErrorBody),
    )
)]
async fn member(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = checked_campaign_id(&id)?;
    let user = parse_user(&user)?;
    let answer = counted(
        &state,
        "member",
        state
            .checker
            .is_member(id, &user)
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

/// Which active campaigns hold this user?
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/campaigns",
    operation_id = "user_campaigns",
    tag = "checks",
    params(("user_id" = String, Path, description = "A user id (percent-encoded), read by each campaign as its own type: `42` is the integer 42 to integer campaigns and the string \"42\" to string ones.")),
    responses(
        (status = 200, description = "The active campaigns holding the user, by id.", body = UserCampaigns),
        (status = 400, description = "The user id is not one (`invalid_user_id`).", body = ErrorBody),
        (status = 503, description = "The store cannot answer and no cached answer may be served (`store_unavailable`, `cache_stale`, `request_timeout`).", body = ErrorBody),
    )
)]
async fn campaigns_for(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = parse_user(&user)?;
    let answer = counted(
        &state,
        "campaigns_for",
        state
            .checker
            .campaigns_for(&user)
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

/// The body of `POST /v1/check`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// At most 10,000: integers, or strings read by each campaign as its
    /// own ID type.
    #[schema(max_items = 10000)]
    user_ids: Vec<UserIdValue>,
    /// A campaign to check the users in; without it, each user's active
    /// campaigns are listed.
    #[serde(default)]
    campaign: Option<String>,
}

/// The answer of `POST /v1/check`: one result per user, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BatchAnswer {
    results: Vec<BatchResult>,
    source: Source,
    stale: bool,
}

/// One user's result: membership when a campaign was named, else the
/// active campaigns holding the user. A membership names the user as the
/// campaign reads it (a UUID in canonical form); a list of campaigns, which
/// reads the user as each campaign's own type, names it as sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum BatchResult {
    Member {
        user_id: UserIdValue,
        member: bool,
    },
    Campaigns {
        user_id: UserIdValue,
        campaigns: Vec<String>,
    },
}

/// Many users at once: membership in one campaign, or each user's active
/// campaigns.
#[utoipa::path(
    post,
    path = "/v1/check",
    operation_id = "check_many",
    tag = "checks",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per user, in order.", body = BatchAnswer),
        (status = 400, description = "More than 10,000 ids (`too_many_user_ids`) or not the JSON expected (`invalid_json`).", body = ErrorBody),
        (status = 404, description = "No such campaign (`campaign_not_found`).", body = ErrorBody),
        (status = 413, description = "The body is over its limit (`body_too_large`).", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = ErrorBody),
        (status = 503, description = "The store cannot answer and no cached answer may be served (`store_unavailable`, `cache_stale`, `request_timeout`).", body = ErrorBody),
    )
)]
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
    let users = &body
        .user_ids
        .iter()
        .enumerate()
        .map(|(i, value)| match value {
            UserIdValue::Int(id) => Ok(User::from_int(*id)),
            UserIdValue::Text(text) => User::parse(text).map_err(|why| {
                ApiError::bad_request(
                    "invalid_user_id",
                    format!("user_ids[{i}]: {}", why.message(text.as_bytes())),
                )
            }),
        })
        .collect::<Result<Vec<User>, ApiError>>()?;
    let (results, source, stale): (Vec<BatchResult>, _, _) = match &body.campaign {
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
            let results = answers
                .into_iter()
                .map(|(user_id, member)| BatchResult::Member { user_id, member })
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
                .map(|(user, campaigns)| BatchResult::Campaigns {
                    user_id: user.value(),
                    campaigns,
                })
                .collect();
            (results, source, stale)
        }
    };
    state.meters.checks("batch", "ok", users.len() as u64);
    Ok(Json(BatchAnswer {
        results,
        source,
        stale,
    })
    .into_response())
}
