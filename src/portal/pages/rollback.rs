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
    /// The live version shown, sent back with the form.
    expected_version: Option<u64>,
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
    let Ok(wanted) = version.parse::<u64>() else {
        return Err(ApiError::NotFound {
            code: "version_not_found",
            message: format!("{version:?} is not a version number"),
        }
        .into());
    };
    let Some(found) = kept.iter().find(|v| v.version == wanted) else {
        let not_kept = crate::store::StoreError::VersionNotKept {
            campaign: c.id.clone(),
            version: wanted,
            kept: kept.iter().map(|v| v.version).collect(),
        };
        return Err(ApiError::from(not_kept).into());
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
        expected_version: Some(c.version),
        v,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    #[serde(default)]
    confirm: String,
    /// The live version the page showed.
    #[serde(default)]
    expected_version: Option<u64>,
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
            expected_version: f.expected_version.or(Some(c.version)),
            v,
            error: Some(format!(
                "Type the campaign ID, {}, exactly to confirm. Nothing was changed.",
                c.id
            )),
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let actor = Some(Actor(s.actor.clone()));
    rollback_audience(&state, actor, &c.id, v.version, f.expected_version).await?;
    Ok(Redirect::to(&format!("/admin/campaigns/{}?done=rolled-back", c.id)).into_response())
}
