//! One campaign: its facts, the upload form, a member check, its kept
//! audience versions and its history.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaign.html")]
pub(super) struct CampaignPage {
    chrome: Chrome,
    c: Row,
    /// Uploads removing more than this share of the audience ask first.
    confirm_share: f64,
    flash: Option<&'static str>,
    user: String,
    answer: Option<MemberAnswer>,
    lookup_error: Option<String>,
    versions: Vec<VersionRow>,
    events: Vec<EventRow>,
}

pub(super) struct MemberAnswer {
    member: bool,
    active: bool,
    stale: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct CampaignQuery {
    user: Option<String>,
    done: Option<String>,
}

pub(super) async fn campaign_page(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path(id): Path<String>,
    Query(q): Query<CampaignQuery>,
) -> Result<Response, PageError> {
    let c = load(&state, &id).await?;
    let user = q.user.unwrap_or_default();
    let (mut answer, mut lookup_error, mut status) = (None, None, StatusCode::OK);
    if !user.trim().is_empty() {
        match typed_user(&user) {
            Ok(u) => match state.checker.is_member(&c.id, &u).await {
                Ok(m) => {
                    answer = Some(MemberAnswer {
                        member: m.member,
                        active: m.active,
                        stale: m.stale,
                    })
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    e.log();
                    status = e.status();
                    lookup_error = Some(e.public_message());
                }
            },
            Err(e) => {
                status = StatusCode::BAD_REQUEST;
                lookup_error = Some(e);
            }
        }
    }
    let versions = state
        .store
        .versions(&c.id)
        .await?
        .into_iter()
        .map(|v| VersionRow::new(v, c.version))
        .collect();
    let events = state
        .store
        .audit(Some(&c.id), 50)
        .await?
        .into_iter()
        .map(EventRow::new)
        .collect();
    let page = CampaignPage {
        chrome: Chrome::new(&s, "campaigns"),
        c: Row::new(&c, Utc::now()),
        confirm_share: state.portal.confirm_removal_share,
        flash: flash(q.done.as_deref()),
        user,
        answer,
        lookup_error,
        versions,
        events,
    };
    Ok((status, page).into_response())
}

/// The audience as a file, for a one-click backup before a change.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    Ok(crate::app::export::download(&state, &id).await?)
}
