//! The API's OpenAPI 3.1 description, served at `GET /openapi.json`.
//!
//! Each route group registers its handlers with `utoipa_axum`'s `routes!`,
//! which adds a route and its description together: a route of the API
//! cannot be served without being described. What an annotation would only
//! repeat is filled in here, from the code that decides it:
//!
//! - each operation's security, from the access policy
//!   ([`super::auth::required_access`]);
//! - the error body, whose `error` field lists every code
//!   ([`super::error::ERROR_CODES`]);
//! - the answers any route can give: 401 and 429 where a token is needed,
//!   500, and 503 when the request misses its deadline or the store is down.
//!
//! The portal (`/admin`) is left out on purpose: it is HTML for browsers,
//! with session cookies and CSRF tokens, not an interface to generate
//! clients for.

use axum::extract::Extension;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi, Ref, RefOr, Schema};

use super::auth::{Access, is_audience_upload, required_access};
use super::error::ERROR_CODES;
use crate::portal::session::SESSION_COOKIE;

/// The name of the error body's schema.
pub const ERROR_BODY: &str = "Error";
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
    for (path, item) in api.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                complete(operation, required_access(&method, path));
                if is_audience_upload(&method, path) {
                    by_portal_session(operation);
                }
            }
        }
    }
    api
}

/// Adds what `access` implies to one operation.
fn complete(operation: &mut Operation, access: Access) {
    let anyone = SecurityRequirement::default();
    let admin = || SecurityRequirement::new(ADMIN_TOKEN, Vec::<String>::new());
    let check = SecurityRequirement::new(CHECK_TOKEN, Vec::<String>::new());
    operation.security = Some(match access {
        Access::Open => vec![anyone],
        Access::Read => vec![anyone, check, admin()],
        Access::Admin => vec![admin()],
    });
    let mut common = vec![
        (
            "500",
            "A bug or corrupt data (`internal`); the detail is in the server's log.",
        ),
        (
            "503",
            "The request missed its deadline (`request_timeout`) or the store cannot answer (`store_unavailable`); retry shortly.",
        ),
    ];
    if access != Access::Open {
        common.push(("401", "The token is missing or wrong (`unauthorized`)."));
        common.push((
            "429",
            "Too many wrong tokens from this address (`too_many_failures`); retry after `Retry-After` seconds.",
        ));
    }
    for (status, description) in common {
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

/// The portal's upload form streams to the audience endpoints with its
/// session cookie and CSRF token instead of a bearer token (see `auth`).
fn by_portal_session(operation: &mut Operation) {
    let session = SecurityRequirement::new(PORTAL_SESSION, Vec::<String>::new())
        .add(CSRF_TOKEN, Vec::<String>::new());
    operation
        .security
        .get_or_insert_with(Vec::new)
        .push(session);
    operation.responses.responses.insert(
        "403".to_string(),
        error_response("A portal session without its CSRF token (`csrf_token_invalid`)."),
    );
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

/// The error body every route shares (see `super::error`).
pub fn error_body() -> RefOr<Schema> {
    let codes = ERROR_CODES
        .iter()
        .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}"))
        .collect::<Vec<_>>()
        .join("\n");
    let string = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .description(Some("Every error's body."))
        .property(
            "error",
            string(&format!("A stable code for programs:\n{codes}"))
                .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code))),
        )
        .required("error")
        .property(
            "message",
            string("What went wrong and how to fix it, for people."),
        )
        .required("message")
        .property(
            "request_id",
            string("The request's id, as in the server's logs and the `x-request-id` header."),
        )
        .property("field", string("The JSON field at fault, when one is."))
        .property(
            "line",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .description(Some("The line of an upload at fault, counted from 1.")),
        )
        .into()
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
