//! The API's OpenAPI 3.1 description, served at `GET /openapi.json`.
//!
//! Each route group registers its handlers with `utoipa_axum`'s `routes!`,
//! which adds a route and its description together: a route of the API
//! cannot be served without being described. What an annotation would only
//! repeat is filled in here, from the code that decides it:
//!
//! - each operation's security, from the access its route group requires
//!   ([`super::auth::require`] calls [`secure`]);
//! - the error body, whose `error` field lists every code
//!   ([`crate::app::error::ERROR_CODES`]);
//! - the answers any route can give: 401 and 429 where a token is needed,
//!   500, and 503 when the request misses its deadline or the store is down.
//!
//! The portal (`/admin`) is left out on purpose: it is HTML for browsers,
//! with session cookies and CSRF tokens, not an interface to generate
//! clients for.

use axum::extract::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi, Ref, RefOr};

use super::auth::Access;
use crate::app::error::{ERROR_BODY, error_body};
use crate::app::sessions::SESSION_COOKIE;

const ADMIN_TOKEN: &str = "admin_token";
const CHECK_TOKEN: &str = "check_token";
const PORTAL_SESSION: &str = "portal_session";
const CSRF_TOKEN: &str = "csrf_token";

/// The document's fixed parts; the paths come from the route groups.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "guestlist",
        description = "Time-boxed campaign audiences, checked at login speed. \
            Errors share one body (`Error`): a stable `error` code, a `message` saying what to fix, \
            and the `request_id` found in the server's logs. The portal under /admin is HTML for \
            browsers and is not described here."
    ),
    tags(
        (name = "checks", description = "The login path: is a user in a campaign, which active campaigns hold a user."),
        (name = "campaigns", description = "Campaigns and their windows."),
        (name = "audiences", description = "Uploading, changing and exporting audiences."),
        (name = "operations", description = "Health, readiness, the near-cache, metrics, the audit log and this document."),
    )
)]
struct Base;

/// The fixed parts, for the route groups to add their paths to.
pub fn base() -> OpenApi {
    <Base as utoipa::OpenApi>::openapi()
}

/// Completes the document the routes built: security, the error body and
/// the answers every route can give.
pub fn finish(mut api: OpenApi) -> OpenApi {
    let components = api.components.get_or_insert_with(Default::default);
    let bearer = |what: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build(),
        )
    };
    components.add_security_scheme(
        ADMIN_TOKEN,
        bearer("An admin token (`--admin-token`, `--admin-tokens-file`): writes, the audience export, the audit log and the near-cache's state."),
    );
    components.add_security_scheme(
        CHECK_TOKEN,
        bearer("The check token (`--check-token`), needed for checks and campaign reads only when the server sets one; an admin token is accepted too."),
    );
    components.add_security_scheme(
        PORTAL_SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            SESSION_COOKIE,
            "A portal session (sign in at /admin); taken by the audience uploads only, and only with `csrf_token`.",
        ))),
    );
    components.add_security_scheme(
        CSRF_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-CSRF-Token",
            "The portal session's CSRF token, which the portal's pages carry.",
        ))),
    );
    components
        .schemas
        .insert(ERROR_BODY.to_string(), error_body());
    for operation in operations(&mut api) {
        // An operation no group secured is open to anyone.
        let open = operation.security.is_none();
        if open {
            operation.security = Some(vec![SecurityRequirement::default()]);
        }
        add_errors(
            operation,
            &[
                (
                    "500",
                    "A bug or corrupt data (`internal`); the detail is in the server's log.",
                ),
                (
                    "503",
                    "The request missed its deadline (`request_timeout`) or the store cannot answer (`store_unavailable`); retry shortly.",
                ),
            ],
        );
    }
    api
}

/// Every operation of `api`.
fn operations(api: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    api.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// Describes `access` on every operation of a route group's document: who
/// may call it, and the refusals that follow (401, 429; 403 for a portal
/// session without its CSRF token).
pub fn secure(api: &mut OpenApi, access: Access) {
    let anyone = SecurityRequirement::default;
    let admin = || SecurityRequirement::new(ADMIN_TOKEN, Vec::<String>::new());
    let check = || SecurityRequirement::new(CHECK_TOKEN, Vec::<String>::new());
    // The portal's upload form streams to the audience endpoints with its
    // session cookie and CSRF token instead of a bearer token (see `auth`).
    let session = || {
        SecurityRequirement::new(PORTAL_SESSION, Vec::<String>::new())
            .add(CSRF_TOKEN, Vec::<String>::new())
    };
    for operation in operations(api) {
        operation.security = Some(match access {
            Access::Read => vec![anyone(), check(), admin()],
            Access::Admin => vec![admin()],
            Access::Upload => vec![admin(), session()],
        });
        add_errors(
            operation,
            &[
                ("401", "The token is missing or wrong (`unauthorized`)."),
                (
                    "429",
                    "Too many wrong tokens from this address (`too_many_failures`); retry after `Retry-After` seconds.",
                ),
            ],
        );
        if access == Access::Upload {
            add_errors(
                operation,
                &[(
                    "403",
                    "A portal session without its CSRF token (`csrf_token_invalid`).",
                )],
            );
        }
    }
}

/// Adds each (status, description) as an error response, unless the
/// operation describes that status itself.
fn add_errors(operation: &mut Operation, errors: &[(&str, &str)]) {
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    }
}

/// Adds `T`'s schema and those it refers to, for a schema named only by a
/// response type (`IntoResponses`), which the document does not collect.
pub fn register<T: utoipa::ToSchema>(api: &mut OpenApi) {
    let mut schemas = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut schemas);
    let components = api.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas);
}

/// A response carrying the error body.
pub fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ERROR_BODY)))
                    .build(),
            )
            .build(),
    )
}

/// The document as served, rendered once per router: a layer hands it to
/// [`document`], since it is only complete once every route is in.
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    pub fn render(api: &OpenApi) -> Document {
        let mut json = serde_json::to_value(api).expect("the OpenAPI document serializes");
        unsigned_as_ranges(&mut json);
        Document(json.to_string().into())
    }
}

/// utoipa writes `u64` as `format: u-int64`, which no format registry
/// knows, and without it as `int64`, which tells clients an ID above 2^63
/// cannot be. The range says it exactly: 0 to 2^64-1.
fn unsigned_as_ranges(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("format").and_then(|f| f.as_str()) == Some("u-int64") {
                map.remove("format");
                map.insert("minimum".into(), 0.into());
                map.insert("maximum".into(), u64::MAX.into());
            }
            map.values_mut().for_each(unsigned_as_ranges);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unsigned_as_ranges),
        _ => {}
    }
}

/// `GET /openapi.json`: this listener's routes, described.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "operations",
    responses((status = 200, description = "This document: OpenAPI 3.1.", content_type = "application/json"))
)]
pub async fn document(Extension(Document(json)): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}
