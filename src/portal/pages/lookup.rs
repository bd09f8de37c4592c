//! Which campaigns a user is in.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/lookup.html")]
pub(super) struct LookupPage {
    chrome: Chrome,
    user: String,
    campaigns: Option<Vec<String>>,
    stale: bool,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct LookupQuery {
    user: Option<String>,
}

pub(super) async fn lookup(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Query(q): Query<LookupQuery>,
) -> Response {
    let user = q.user.unwrap_or_default();
    let mut page = LookupPage {
        chrome: Chrome::new(&s, "lookup"),
        user: user.clone(),
        campaigns: None,
        stale: false,
        error: None,
    };
    let mut status = StatusCode::OK;
    if !user.trim().is_empty() {
        match typed_user(&user) {
            Ok(u) => match state.checker.campaigns_for(&u).await {
                Ok(answer) => {
                    page.campaigns = Some(answer.campaigns);
                    page.stale = answer.stale;
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    e.log();
                    status = e.status();
                    page.error = Some(e.public_message());
                }
            },
            Err(e) => {
                status = StatusCode::BAD_REQUEST;
                page.error = Some(e);
            }
        }
    }
    (status, page).into_response()
}
