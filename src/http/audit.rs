//! The audit log: `GET /v1/audit?campaign=…&limit=…`, and the helper every
//! write handler uses to record what it changed.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::auth::Actor;
use super::{ApiError, AppState, checked_campaign_id};
use crate::store::{AuditEvent, MAX_AUDIT_LIMIT};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    campaign: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
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
    Ok(Json(json!({ "events": events })).into_response())
}

/// Records a change that has already happened. Failing to record it must not
/// turn a successful write into an error, so it is logged loudly instead.
pub async fn record(state: &AppState, actor: Option<&Actor>, event: AuditEvent) {
    let actor_name = actor.map_or("unknown", |a| a.0.as_str());
    let event = AuditEvent {
        actor: actor_name.to_string(),
        ..event
    };
    tracing::info!(
        actor = %event.actor,
        campaign = %event.campaign,
        action = %event.action,
        summary = %event.summary,
        "change"
    );
    if let Err(e) = state.store.record(&event).await {
        tracing::error!(error = %e, campaign = %event.campaign, action = %event.action, "could not write the audit log");
    }
}
