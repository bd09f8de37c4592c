//! The audit log: `GET /v1/audit?campaign=…&limit=…` (what writes record
//! it with is in [`crate::app::writes`]).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Access, require};
use crate::app::error::ErrorBody;
use crate::app::{ApiError, AppState, checked_campaign_id};
use crate::store::{AuditEvent, MAX_AUDIT_LIMIT};

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    require(
        Access::Admin,
        state,
        OpenApiRouter::new().routes(routes!(list)),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only this campaign's events (deleted campaigns' too).
    campaign: Option<String>,
    /// How many events, newest first: 1 to 1,000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /v1/audit`.
#[derive(Serialize, utoipa::ToSchema)]
struct AuditList {
    /// Newest first.
    events: Vec<AuditEvent>,
}

/// The audit log: every change, who made it and when, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "audit_log",
    tag = "operations",
    params(AuditQuery),
    responses(
        (status = 200, description = "The newest events.", body = AuditList),
        (status = 400, description = "`limit` is out of range (`invalid_limit`), or a parameter is unknown (`invalid_query`).", body = ErrorBody),
        (status = 404, description = "`campaign` is not a well-formed campaign id (`campaign_not_found`).", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // Parsed here rather than by axum's `Query`, whose refusal is plain
    // text: every error leaves with the one JSON body.
    let query: AuditQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|e| {
            ApiError::bad_request(
                "invalid_query",
                format!("{e}; the parameters are campaign and limit (1 to {MAX_AUDIT_LIMIT})"),
            )
        })?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_AUDIT_LIMIT}"),
        ));
    }
    let campaign = match &query.campaign {
        // The log outlives deleted campaigns, so the id only has to be well formed.
        Some(id) => Some(checked_campaign_id(id)?),
        None => None,
    };
    let events = state.store.audit(campaign, limit).await?;
    Ok(Json(AuditList { events }).into_response())
}
