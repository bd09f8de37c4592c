//! The portal's pages and forms, one file per page: its template struct,
//! its forms and its handlers. Each handler loads what its page shows,
//! renders one template from `templates/portal/`, and for forms calls the
//! same write functions as the API. What every page shares (the frame,
//! campaign rows, times, errors) is here.

mod audit;
mod campaign;
mod delete;
mod form;
mod list;
mod lookup;
mod rollback;
mod signin;

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
use crate::app::error::retry_after_secs;
use crate::app::sessions::{self as session, SESSION_COOKIE, SESSION_TTL, SIGNIN_COOKIE};
use crate::app::writes::{create_campaign, delete_campaign, update_campaign};
use crate::app::{Actor, ApiError, AppState};
use crate::domain::{Campaign, CampaignPatch, NewCampaign, Status, validate_id};
use crate::numfmt::thousands;
use crate::store::AuditEvent;

/// The pages, by path under `/admin` (see [`super::router`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin/campaigns") }))
        .route("/signin", get(signin::signin_page).post(signin::signin))
        .route("/signout", axum::routing::post(signin::signout))
        .route("/campaigns", get(list::campaigns))
        .route("/campaigns/new", get(form::new_page).post(form::create))
        .route("/campaigns/{id}", get(campaign::campaign_page))
        .route("/campaigns/{id}/audience.txt", get(campaign::download))
        .route(
            "/campaigns/{id}/edit",
            get(form::edit_page).post(form::edit),
        )
        .route(
            "/campaigns/{id}/delete",
            get(delete::delete_page).post(delete::delete),
        )
        .route(
            "/campaigns/{id}/rollback/{version}",
            get(rollback::rollback_page),
        )
        .route("/lookup", get(lookup::lookup))
        .route("/audit", get(audit::audit))
        .route("/assets/portal.css", get(css))
        .route("/assets/portal.js", get(js))
}

/// The forms whose write can take minutes (a rollback rebuilds a whole
/// audience): served outside the request deadline, as the API's uploads.
pub fn long_router() -> Router<AppState> {
    Router::new().route(
        "/campaigns/{id}/rollback/{version}",
        axum::routing::post(rollback::rollback),
    )
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
    user_id_type: &'static str,
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
            user_id_type: c.user_id_type.as_str(),
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
        let at_label = time_label(&e.at);
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

/// A kept audience version as the pages show it.
struct VersionRow {
    version: u64,
    size: String,
    at: String,
    at_label: String,
    by: String,
    how: String,
    /// The live audience: nothing to roll back to.
    live: bool,
}

impl VersionRow {
    fn new(v: crate::store::AudienceVersion, live_version: u64) -> VersionRow {
        let how = match (v.action, v.restored) {
            (crate::store::VersionAction::RolledBack, Some(r)) => {
                format!("Rolled back to version {r}")
            }
            (action, _) => sentence(action.describe()),
        };
        VersionRow {
            version: v.version,
            size: thousands(v.audience_size),
            at_label: time_label(&v.at),
            at: v.at,
            by: v.by,
            how,
            live: v.version == live_version,
        }
    }
}

/// An RFC 3339 time as the tables show it, to the second in UTC.
fn time_label(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string())
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
        let mut page = error_page(status.as_u16(), &self.0.public_message());
        if let ApiError::Saturated { retry_after, .. } = &self.0 {
            // Busy, not broken: say so, and when to come back.
            page.title = "Busy, retry shortly";
            let mut r = (status, page).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
            r
        } else {
            (status, page).into_response()
        }
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

/// Messages for `?done=` after a redirect. Fixed strings: the query never
/// reaches the page as text.
fn flash(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("Campaign created."),
        "updated" => Some("Campaign updated."),
        "deleted" => Some("Campaign deleted."),
        "rolled-back" => Some("Audience rolled back, as a new version."),
        _ => None,
    }
}

/// Parses a user id typed into a lookup form.
fn typed_user(raw: &str) -> Result<crate::ids::User, String> {
    crate::ids::User::parse(raw).map_err(|why| why.message(raw.trim().as_bytes()))
}

/// Looks a campaign up by a path id; a malformed id is simply not found.
async fn load(state: &AppState, id: &str) -> Result<Campaign, PageError> {
    crate::app::checked_campaign_id(id)?;
    Ok(state.store.get_campaign(id).await?)
}

// ---- assets --------------------------------------------------------------

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../assets/portal.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../assets/portal.js"),
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
