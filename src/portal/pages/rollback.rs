//! Rolling an audience back to a kept version, after typing the campaign's id.

use super::*;
use crate::app::writes::rollback_audience;

#[derive(Template, WebTemplate)]
#[template(path = "portal/rollback.html")]
pub(super) struct RollbackPage {
    chrome: Chrome,
    c: Row,
    v: VersionRow,
    error: Option<String>,
    /// The confirming button's words.
    act: String,
}

/// The campaign and the kept version the path names; a version the
/// history does not keep (or that is not a number) is a 404 page.
async fn target(
    state: &AppState,
    id: &str,
    version: &str,
) -> Result<(Campaign, VersionRow), PageError> {
    let c = load(state, id).await?;
    let kept = state.store.versions(&c.id).await?;
    let wanted: Option<u64> = version.parse().ok();
    let not_kept = || crate::store::StoreError::VersionNotKept {
        campaign: c.id.clone(),
        version: wanted.unwrap_or(0),
        kept: kept.iter().map(|v| v.version).collect(),
    };
    let Some(found) = wanted.and_then(|w| kept.iter().find(|v| v.version == w)) else {
        return Err(ApiError::from(not_kept()).into());
    };
    let row = VersionRow::new(found.clone(), c.version);
    Ok((c, row))
}

pub(super) async fn rollback_page(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (c, v) = target(&state, &id, &version).await?;
    Ok(RollbackPage {
        chrome: Chrome::new(&s, "campaigns"),
        c: Row::new(&c, Utc::now()),
        act: format!("Roll back to version {}", v.version),
        v,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    #[serde(default)]
    confirm: String,
}

pub(super) async fn rollback(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path((id, version)): Path<(String, String)>,
    Form(f): Form<RollbackForm>,
) -> Result<Response, PageError> {
    let (c, v) = target(&state, &id, &version).await?;
    if f.confirm.trim() != c.id {
        let page = RollbackPage {
            chrome: Chrome::new(&s, "campaigns"),
            c: Row::new(&c, Utc::now()),
            act: format!("Roll back to version {}", v.version),
            v,
            error: Some(format!(
                "Type the campaign ID, {}, exactly to confirm. Nothing was changed.",
                c.id
            )),
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    rollback_audience(&state, Some(Actor(s.actor.clone())), &c.id, v.version).await?;
    Ok(Redirect::to(&format!("/admin/campaigns/{}?done=rolled-back", c.id)).into_response())
}
