//! Creating and editing a campaign: one form, each error next to its field.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaign_form.html")]
pub(super) struct CampaignForm {
    chrome: Chrome,
    /// `None` for a new campaign.
    editing: Option<String>,
    id: String,
    name: String,
    starts_at: String,
    ends_at: String,
    design: String,
    user_id_type: String,
    errors: HashMap<&'static str, String>,
}

impl CampaignForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

#[derive(Deserialize, Default)]
pub(super) struct CampaignFields {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default)]
    design: String,
    #[serde(default)]
    user_id_type: String,
}

pub(super) async fn new_page(axum::Extension(s): Signed) -> Response {
    let now = Utc::now();
    CampaignForm {
        chrome: Chrome::new(&s, "new"),
        editing: None,
        id: String::new(),
        name: String::new(),
        starts_at: input_time(now),
        ends_at: input_time(now + chrono::Duration::days(7)),
        design: "set".into(),
        user_id_type: "integer".into(),
        errors: HashMap::new(),
    }
    .into_response()
}

/// Re-renders a form with its values kept and each error by its field.
fn invalid_form(mut form: CampaignForm, problems: Vec<crate::domain::Invalid>) -> Response {
    for p in problems {
        form.errors.entry(p.field).or_insert(p.message);
    }
    (StatusCode::UNPROCESSABLE_ENTITY, form).into_response()
}

pub(super) async fn create(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Form(f): Form<CampaignFields>,
) -> Result<Response, PageError> {
    let body = NewCampaign {
        id: f.id.trim().to_string(),
        name: f.name.clone(),
        starts_at: form_time(&f.starts_at),
        ends_at: form_time(&f.ends_at),
        design: Some(f.design.clone()),
        // An old form without the field creates an integer campaign.
        user_id_type: Some(f.user_id_type.clone()).filter(|t| !t.is_empty()),
    };
    let form = CampaignForm {
        chrome: Chrome::new(&s, "new"),
        editing: None,
        id: f.id,
        name: f.name,
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        design: f.design,
        user_id_type: f.user_id_type,
        errors: HashMap::new(),
    };
    let problems = body.problems();
    if !problems.is_empty() {
        return Ok(invalid_form(form, problems));
    }
    let id = body.id.clone();
    match create_campaign(&state, Some(Actor(s.actor.clone())), body).await {
        Ok(_) => Ok(Redirect::to(&format!("/admin/campaigns/{id}?done=created")).into_response()),
        Err(ApiError::Conflict { message, .. }) => {
            let mut form = form;
            form.errors.insert("id", message);
            Ok((StatusCode::CONFLICT, form).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn edit_page(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let c = load(&state, &id).await?;
    Ok(CampaignForm {
        chrome: Chrome::new(&s, "campaigns"),
        editing: Some(c.id.clone()),
        id: c.id.clone(),
        name: c.name.clone(),
        starts_at: input_time(c.starts_at),
        ends_at: input_time(c.ends_at),
        design: c.design.as_str().into(),
        user_id_type: c.user_id_type.as_str().into(),
        errors: HashMap::new(),
    }
    .into_response())
}

pub(super) async fn edit(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Path(id): Path<String>,
    Form(f): Form<CampaignFields>,
) -> Result<Response, PageError> {
    let current = load(&state, &id).await?;
    let (starts_at, ends_at) = (form_time(&f.starts_at), form_time(&f.ends_at));
    // Only what changed goes into the patch, so the audit log says exactly
    // what was edited.
    // A stored time shows in the form cut to the minute; a field sent back
    // exactly as shown is unchanged, and must not overwrite the precise time.
    let changed_time = |raw: &str, current: DateTime<Utc>| raw.trim() != input_time(current);
    let patch = CampaignPatch {
        name: (f.name.trim() != current.name).then(|| f.name.clone()),
        starts_at: changed_time(&f.starts_at, current.starts_at).then_some(starts_at),
        ends_at: changed_time(&f.ends_at, current.ends_at).then_some(ends_at),
    };
    let form = CampaignForm {
        chrome: Chrome::new(&s, "campaigns"),
        editing: Some(current.id.clone()),
        id: current.id.clone(),
        name: f.name,
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        design: current.design.as_str().into(),
        user_id_type: current.user_id_type.as_str().into(),
        errors: HashMap::new(),
    };
    let problems = patch.problems(&current);
    if !problems.is_empty() {
        return Ok(invalid_form(form, problems));
    }
    update_campaign(&state, Some(Actor(s.actor.clone())), &current.id, patch).await?;
    Ok(Redirect::to(&format!("/admin/campaigns/{}?done=updated", current.id)).into_response())
}
