//! The audit log, filtered by campaign.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/audit.html")]
pub(super) struct AuditPage {
    chrome: Chrome,
    campaign: String,
    events: Vec<EventRow>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    campaign: Option<String>,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let campaign = q.campaign.unwrap_or_default().trim().to_string();
    let mut page = AuditPage {
        chrome: Chrome::new(&s, "audit"),
        campaign: campaign.clone(),
        events: Vec::new(),
        error: None,
    };
    let filter = if campaign.is_empty() {
        None
    } else if let Err(e) = validate_id(&campaign) {
        page.error = Some(e.message);
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    } else {
        Some(campaign.as_str())
    };
    page.events = state
        .store
        .audit(filter, 200)
        .await?
        .into_iter()
        .map(EventRow::new)
        .collect();
    Ok(page.into_response())
}
