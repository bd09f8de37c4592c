//! The portal's pages and forms. Each handler loads what its page shows,
//! renders one template from `templates/portal/`, and for forms calls the
//! same write functions as the API.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::Signed;
use super::session::{self, SESSION_COOKIE, SESSION_TTL, SIGNIN_COOKIE};
use crate::domain::{Campaign, CampaignPatch, NewCampaign, Status, validate_id};
use crate::http::auth::Actor;
use crate::http::campaigns::{create_campaign, delete_campaign, update_campaign};
use crate::http::error::retry_after_secs;
use crate::http::{ApiError, AppState};
use crate::numfmt::thousands;
use crate::store::AuditEvent;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/campaigns") }))
        .route(
            "/admin/",
            get(|| async { Redirect::to("/admin/campaigns") }),
        )
        .route("/admin/signin", get(signin_page).post(signin))
        .route("/admin/signout", axum::routing::post(signout))
        .route("/admin/campaigns", get(campaigns))
        .route("/admin/campaigns/new", get(new_page).post(create))
        .route("/admin/campaigns/{id}", get(campaign_page))
        .route("/admin/campaigns/{id}/edit", get(edit_page).post(edit))
        .route(
            "/admin/campaigns/{id}/delete",
            get(delete_page).post(delete),
        )
        .route("/admin/lookup", get(lookup))
        .route("/admin/audit", get(audit))
        .route("/admin/assets/portal.css", get(css))
        .route("/admin/assets/portal.js", get(js))
}

// ---- shared pieces -------------------------------------------------------

/// What the page frame needs: who is signed in, the sign-out form's token,
/// and which section of the navigation to mark current.
struct Chrome {
    actor: String,
    csrf: String,
    section: &'static str,
}

impl Chrome {
    fn new(session: &session::Session, section: &'static str) -> Chrome {
        Chrome {
            actor: session.actor.clone(),
            csrf: session.csrf.clone(),
            section,
        }
    }
}

/// A campaign as the pages show it: everything pre-formatted.
struct Row {
    id: String,
    name: String,
    status: &'static str,
    starts_at: String,
    starts_label: String,
    ends_at: String,
    ends_label: String,
    design: &'static str,
    size: String,
    version: u64,
    updated_at: String,
    updated_label: String,
}

impl Row {
    fn new(c: &Campaign, now: DateTime<Utc>) -> Row {
        Row {
            id: c.id.clone(),
            name: c.name.clone(),
            status: status_name(c.status_at(now)),
            starts_at: iso(c.starts_at),
            starts_label: label(c.starts_at),
            ends_at: iso(c.ends_at),
            ends_label: label(c.ends_at),
            design: c.design.as_str(),
            size: thousands(c.audience_size),
            version: c.version,
            updated_at: iso(c.updated_at),
            updated_label: label(c.updated_at),
        }
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Scheduled => "scheduled",
        Status::Active => "active",
        Status::Ended => "ended",
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn label(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `datetime-local` input value, in UTC.
fn input_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// Accepts what a `datetime-local` input sends (taken as UTC) or a full
/// RFC 3339 timestamp; anything else is passed through for the domain
/// validation to reject with its usual message.
fn form_time(raw: &str) -> String {
    let raw = raw.trim();
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return iso(t.and_utc());
        }
    }
    raw.to_string()
}

/// "audience replaced" → "Audience replaced".
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

struct EventRow {
    at: String,
    at_label: String,
    actor: String,
    campaign: String,
    action: String,
    summary: String,
}

impl EventRow {
    fn new(e: AuditEvent) -> EventRow {
        let at_label = DateTime::parse_from_rfc3339(&e.at)
            .map(|t| {
                t.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| e.at.clone());
        EventRow {
            at_label,
            at: e.at,
            actor: e.actor,
            campaign: e.campaign,
            action: sentence(&e.action.replace('_', " ")),
            summary: e.summary,
        }
    }
}

/// A store failure or a missing campaign, as a page.
struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        (
            status,
            error_page(status.as_u16(), &self.0.public_message()),
        )
            .into_response()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/error.html")]
pub struct ErrorPage {
    code: u16,
    title: &'static str,
    message: String,
}

pub fn error_page(code: u16, message: &str) -> ErrorPage {
    let title = match code {
        403 => "Not allowed",
        404 => "Not found",
        429 => "Too many attempts",
        503 => "Store unavailable",
        _ => "Something went wrong",
    };
    ErrorPage {
        code,
        title,
        message: message.to_string(),
    }
}

// ---- sign-in -------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal/signin.html")]
struct SignInPage {
    csrf: String,
    error: Option<String>,
}

fn signin_form(status: StatusCode, error: Option<String>) -> Response {
    let csrf = session::random_token();
    let cookie = session::set_cookie(SIGNIN_COOKIE, &csrf, std::time::Duration::from_secs(3600));
    (
        status,
        [(header::SET_COOKIE, cookie)],
        SignInPage { csrf, error },
    )
        .into_response()
}

async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.portal.sessions.from_headers(&headers).is_some() {
        return Redirect::to("/admin/campaigns").into_response();
    }
    signin_form(StatusCode::OK, None)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn signin(State(state): State<AppState>, request: Request) -> Response {
    let client = state
        .proxies
        .client_of(request.extensions(), request.headers());
    let headers = request.headers().clone();
    let Ok(Form(form)) = Form::<SignInForm>::from_request(request, &()).await else {
        return (
            StatusCode::BAD_REQUEST,
            error_page(400, "the sign-in form was malformed"),
        )
            .into_response();
    };
    // Sign-in has no session yet: its CSRF token is the cookie the sign-in
    // page set, which another site can neither read nor send (SameSite).
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    let csrf_ok = !expected.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            form.csrf.as_bytes(),
        ));
    if !csrf_ok {
        return (
            StatusCode::FORBIDDEN,
            error_page(403, "the sign-in form is missing its security token or it is wrong; reload the sign-in page and try again"),
        )
            .into_response();
    }
    if let Err(wait) = state.limiter.check(client) {
        tracing::warn!(%client, "portal sign-in refused: too many failures");
        let mut response = signin_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed sign-ins from your address. Try again in {} seconds.",
                retry_after_secs(wait)
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        return response;
    }
    let Some(actor) = state.tokens.admin_name(form.token.trim().as_bytes()) else {
        state.limiter.failed(client);
        tracing::warn!(%client, "portal sign-in failed: wrong token");
        return signin_form(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid.".into()),
        );
    };
    state.limiter.succeeded(client);
    // A fresh session every time: one the browser already held (perhaps
    // planted or stolen) ends here.
    if let Some(old) = state.portal.sessions.from_headers(&headers) {
        state.portal.sessions.remove(&old.id);
    }
    let session = state.portal.sessions.create(actor);
    tracing::info!(actor = %session.actor, "portal sign-in");
    let mut response = Redirect::to("/admin/campaigns").into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, &session.id, SESSION_TTL)
            .parse()
            .expect("cookie is ASCII"),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, "", std::time::Duration::ZERO)
            .parse()
            .expect("cookie is ASCII"),
    );
    response
}

async fn signout(State(state): State<AppState>, axum::Extension(s): Signed) -> Response {
    state.portal.sessions.remove(&s.id);
    tracing::info!(actor = %s.actor, "portal sign-out");
    let cookie = session::set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO);
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/admin/signin"),
    )
        .into_response()
}

// ---- campaigns list ------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaigns.html")]
struct CampaignsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    filters: Vec<Filter>,
    columns: Vec<Column>,
    flash: Option<&'static str>,
    total: usize,
}

struct Filter {
    label: &'static str,
    href: String,
    count: usize,
    current: bool,
}

struct Column {
    label: &'static str,
    href: String,
    /// `ascending`, `descending` or `none`, for `aria-sort`.
    sort: &'static str,
    numeric: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    done: Option<String>,
}

/// Messages for `?done=` after a redirect. Fixed strings: the query never
/// reaches the page as text.
fn flash(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("Campaign created."),
        "updated" => Some("Campaign updated."),
        "deleted" => Some("Campaign deleted."),
        _ => None,
    }
}

const SORTS: [(&str, &str, bool); 8] = [
    ("id", "ID", false),
    ("name", "Name", false),
    ("status", "Status", false),
    ("starts", "Window (UTC)", false),
    ("design", "Design", false),
    ("size", "Audience", true),
    ("version", "Version", true),
    ("updated", "Last change", false),
];

async fn campaigns(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let mut all = state.store.list_campaigns().await?;
    let status_of = |c: &Campaign| status_name(c.status_at(now));
    let filter = q
        .status
        .as_deref()
        .filter(|f| ["scheduled", "active", "ended"].contains(f));
    let sort = q
        .sort
        .as_deref()
        .filter(|k| SORTS.iter().any(|(key, _, _)| key == k))
        .unwrap_or("starts");
    let descending = q.dir.as_deref() == Some("desc");
    let link = |status: Option<&str>, sort: &str, desc: bool| {
        let mut href = format!(
            "/admin/campaigns?sort={sort}&dir={}",
            if desc { "desc" } else { "asc" }
        );
        if let Some(st) = status {
            href.push_str("&status=");
            href.push_str(st);
        }
        href
    };
    let filters = [
        (None, "All"),
        (Some("active"), "Active"),
        (Some("scheduled"), "Scheduled"),
        (Some("ended"), "Ended"),
    ]
    .into_iter()
    .map(|(key, label)| Filter {
        label,
        href: link(key, sort, descending),
        count: all
            .iter()
            .filter(|c| key.is_none_or(|k| status_of(c) == k))
            .count(),
        current: key == filter,
    })
    .collect();
    all.retain(|c| filter.is_none_or(|f| status_of(c) == f));
    all.sort_by(|a, b| {
        let order = match sort {
            "id" => a.id.cmp(&b.id),
            "name" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            "status" => status_of(a).cmp(status_of(b)),
            "design" => a.design.as_str().cmp(b.design.as_str()),
            "size" => a.audience_size.cmp(&b.audience_size),
            "version" => a.version.cmp(&b.version),
            "updated" => a.updated_at.cmp(&b.updated_at),
            _ => a.starts_at.cmp(&b.starts_at),
        };
        let order = order.then_with(|| a.id.cmp(&b.id));
        if descending { order.reverse() } else { order }
    });
    let columns = SORTS
        .iter()
        .map(|(key, label, numeric)| {
            let current = *key == sort;
            Column {
                label,
                // A second click on the current column flips the order.
                href: link(filter, key, current && !descending),
                sort: match (current, descending) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
                numeric: *numeric,
            }
        })
        .collect();
    Ok(CampaignsPage {
        chrome: Chrome::new(&s, "campaigns"),
        total: all.len(),
        rows: all.iter().map(|c| Row::new(c, now)).collect(),
        filters,
        columns,
        flash: flash(q.done.as_deref()),
    }
    .into_response())
}

// ---- create and edit -----------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaign_form.html")]
struct CampaignForm {
    chrome: Chrome,
    /// `None` for a new campaign.
    editing: Option<String>,
    id: String,
    name: String,
    starts_at: String,
    ends_at: String,
    design: String,
    errors: HashMap<&'static str, String>,
}

impl CampaignForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

#[derive(Deserialize, Default)]
struct CampaignFields {
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
}

async fn new_page(axum::Extension(s): Signed) -> Response {
    let now = Utc::now();
    CampaignForm {
        chrome: Chrome::new(&s, "new"),
        editing: None,
        id: String::new(),
        name: String::new(),
        starts_at: input_time(now),
        ends_at: input_time(now + chrono::Duration::days(7)),
        design: "set".into(),
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

async fn create(
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
    };
    let form = CampaignForm {
        chrome: Chrome::new(&s, "new"),
        editing: None,
        id: f.id,
        name: f.name,
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        design: f.design,
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

/// Looks a campaign up by a path id; a malformed id is simply not found.
async fn load(state: &AppState, id: &str) -> Result<Campaign, PageError> {
    crate::http::checked_campaign_id(id)?;
    Ok(state.store.get_campaign(id).await?)
}

async fn edit_page(
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
        errors: HashMap::new(),
    }
    .into_response())
}

async fn edit(
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
        errors: HashMap::new(),
    };
    let problems = patch.problems(&current);
    if !problems.is_empty() {
        return Ok(invalid_form(form, problems));
    }
    update_campaign(&state, Some(Actor(s.actor.clone())), &current.id, patch).await?;
    Ok(Redirect::to(&format!("/admin/campaigns/{}?done=updated", current.id)).into_response())
}

// ---- one campaign --------------------------------------------------------

/// A replace or remove that would take away more than this share of a
/// campaign's audience is previewed and published only once confirmed: the
/// story's mistaken paste replaced a whole audience with a fragment.
const CONFIRM_REMOVAL_SHARE: f64 = 0.10;

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaign.html")]
struct CampaignPage {
    chrome: Chrome,
    c: Row,
    /// Uploads removing more than this share of the audience ask first.
    confirm_share: f64,
    flash: Option<&'static str>,
    user: String,
    answer: Option<MemberAnswer>,
    lookup_error: Option<String>,
    events: Vec<EventRow>,
}

struct MemberAnswer {
    member: bool,
    active: bool,
    stale: bool,
}

#[derive(Deserialize, Default)]
struct CampaignQuery {
    user: Option<String>,
    done: Option<String>,
}

/// Parses a user id typed into a lookup form.
fn typed_user(raw: &str) -> Result<u64, String> {
    raw.trim().parse().map_err(|_| {
        format!(
            "{:?} is not a user ID (a whole number from 0 to 2^64-1)",
            raw.trim()
        )
    })
}

async fn campaign_page(
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
            Ok(u) => match state.checker.is_member(&c.id, u).await {
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
        confirm_share: CONFIRM_REMOVAL_SHARE,
        flash: flash(q.done.as_deref()),
        user,
        answer,
        lookup_error,
        events,
    };
    Ok((status, page).into_response())
}

// ---- delete --------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal/delete.html")]
struct DeletePage {
    chrome: Chrome,
    c: Row,
    error: Option<String>,
}

async fn delete_page(
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
struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

async fn delete(
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

// ---- lookup and audit ----------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal/lookup.html")]
struct LookupPage {
    chrome: Chrome,
    user: String,
    campaigns: Option<Vec<String>>,
    stale: bool,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct LookupQuery {
    user: Option<String>,
}

async fn lookup(
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
            Ok(u) => match state.checker.campaigns_for(u).await {
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

#[derive(Template, WebTemplate)]
#[template(path = "portal/audit.html")]
struct AuditPage {
    chrome: Chrome,
    campaign: String,
    events: Vec<EventRow>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    campaign: Option<String>,
}

async fn audit(
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

// ---- assets --------------------------------------------------------------

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/portal.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/portal.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc() {
        assert_eq!(form_time("2026-12-01T09:30"), "2026-12-01T09:30:00Z");
        assert_eq!(form_time(" 2026-12-01T09:30:15 "), "2026-12-01T09:30:15Z");
        assert_eq!(
            form_time("2026-12-01T09:30:00+02:00"),
            "2026-12-01T09:30:00+02:00"
        );
        assert_eq!(form_time("soon"), "soon");
    }
}
