//! Deleting a campaign, after typing its id.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/delete.html")]
pub(super) struct DeletePage {
    chrome: Chrome,
    c: Row,
    error: Option<String>,
}

pub(super) async fn delete_page(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let c = load(&state, &id).await?;
    Ok(DeletePage {
        chrome: Chrome::new(&s, "campaigns"),
        c: Row::new(&c, Utc::now()),
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

pub(super) async fn delete(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Result<Response, PageError> {
    let c = load(&state, &id).await?;
    if f.confirm.trim() != c.id {
        let page = DeletePage {
            chrome: Chrome::new(&s, "campaigns"),
            c: Row::new(&c, Utc::now()),
            error: Some(format!(
                "Type the campaign ID, {}, exactly to confirm. Nothing was deleted.",
                c.id
            )),
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    delete_campaign(&state, Some(Actor(s.actor.clone())), &c.id).await?;
    Ok(Redirect::to("/admin/campaigns?done=deleted").into_response())
}
