//! The OpenAPI document at `/openapi.json`: an external validator accepts it
//! as OpenAPI 3.1, it describes exactly the routes each listener serves, and
//! real answers of every route (successes and errors) match the schemas it
//! gives for them.
//!
//! The validator is PyPI's `openapi-spec-validator` (with `jsonschema` for
//! the answers), installed by the test into a temporary virtualenv.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::serve::Serve;
use common::{ADMIN, RedisServer};
use guestlist::app::{AppState, Tokens};
use guestlist::routes::{Surface, router_for};
use guestlist::store::embedded::EmbeddedStore;
use http_body_util::BodyExt;
use reqwest::Method;
use serde_json::{Value, json};
use tower::ServiceExt;

/// One real exchange, as the validator reads it.
struct Exchange {
    method: Method,
    /// The route's template, as the document names it.
    template: &'static str,
    status: u16,
    content_type: String,
    body: String,
}

/// Sends requests to a real server and records what came back.
struct Recorder {
    http: reqwest::Client,
    base: String,
    seen: Vec<Exchange>,
}

/// What a request carries besides its method and path.
enum Send {
    Nothing,
    Json(Value),
    Text(&'static str, String),
}

impl Recorder {
    async fn call(
        &mut self,
        method: Method,
        template: &'static str,
        path: &str,
        token: Option<&str>,
        send: Send,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match send {
            Send::Nothing => request,
            Send::Json(value) => request.json(&value),
            Send::Text(content_type, text) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(text),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.text().await.unwrap();
        self.seen.push(Exchange {
            method,
            template,
            status,
            content_type,
            body: body.clone(),
        });
        (status, body)
    }

    /// `call` with the admin token, expecting `want`.
    async fn admin(
        &mut self,
        method: Method,
        template: &'static str,
        path: &str,
        send: Send,
        want: u16,
    ) -> String {
        let (status, body) = self
            .call(method.clone(), template, path, Some(ADMIN), send)
            .await;
        assert_eq!(status, want, "{method} {path}: {body}");
        body
    }
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A virtualenv with the validator, made once per run in a temp directory.
fn validator() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed to validate the OpenAPI document");
    assert!(made.success(), "python3 -m venv failed");
    let python = venv.join("bin").join("python");
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openapi-spec-validator==0.7.*",
            "jsonschema==4.*",
        ])
        .status()
        .unwrap();
    assert!(installed.success(), "pip could not install the validator");
    (dir, python)
}

/// Every operation of the document, as (METHOD, template).
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            all.insert((method.to_uppercase(), path.clone()));
        }
    }
    all
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_real_answers_of_every_route_match_it() {
    let (venv_dir, python) = validator();
    let redis = RedisServer::start();
    let mut server = Serve::start("openapi", &redis.url(), &[]);
    server.wait_ready().await;
    let mut r = Recorder {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        seen: Vec::new(),
    };
    use Method as M;

    let (status, spec) = r
        .call(
            M::GET,
            "/openapi.json",
            "/openapi.json",
            None,
            Send::Nothing,
        )
        .await;
    assert_eq!(status, 200, "the document is public: {spec}");
    let spec: Value = serde_json::from_str(&spec).unwrap();
    // User ids are unsigned 64-bit: the whole range, said in standard terms.
    assert!(!spec.to_string().contains("u-int64"));
    let user_id = &spec["components"]["schemas"]["Membership"]["properties"]["user_id"];
    let user_id = match user_id.get("$ref").and_then(Value::as_str) {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => user_id,
    };
    // Integers or strings; the integer form is the whole unsigned range.
    let integer = user_id["oneOf"]
        .as_array()
        .and_then(|forms| forms.iter().find(|f| f["type"] == "integer"))
        .unwrap_or_else(|| panic!("an integer form: {user_id}"));
    assert_eq!(integer["maximum"], json!(u64::MAX), "{user_id}");

    r.call(M::GET, "/healthz", "/healthz", None, Send::Nothing)
        .await;
    r.call(M::GET, "/readyz", "/readyz", None, Send::Nothing)
        .await;
    r.call(M::GET, "/metrics", "/metrics", None, Send::Nothing)
        .await;

    // Campaigns.
    let now = chrono::Utc::now();
    let campaign = json!({
        "id": "spring-sale",
        "name": "Spring sale",
        "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let created = "/v1/campaigns";
    r.admin(M::POST, created, created, Send::Json(campaign.clone()), 201)
        .await;
    let body = r
        .admin(M::POST, created, created, Send::Json(campaign.clone()), 409)
        .await;
    assert_eq!(code_of(&body), "campaign_exists");
    let mut bad = campaign.clone();
    bad["id"] = json!("Not An Id");
    let body = r
        .admin(M::POST, created, created, Send::Json(bad), 400)
        .await;
    assert_eq!(code_of(&body), "invalid_campaign");
    let text = Send::Text("text/plain", "hello".into());
    r.admin(M::POST, created, created, text, 415).await;
    let (status, body) = r
        .call(M::POST, created, created, None, Send::Json(campaign))
        .await;
    assert_eq!((status, code_of(&body).as_str()), (401, "unauthorized"));
    r.admin(M::GET, created, created, Send::Nothing, 200).await;

    let one = "/v1/campaigns/{id}";
    r.admin(M::GET, one, "/v1/campaigns/spring-sale", Send::Nothing, 200)
        .await;
    let body = r
        .admin(M::GET, one, "/v1/campaigns/missing", Send::Nothing, 404)
        .await;
    assert_eq!(code_of(&body), "campaign_not_found");
    let rename = Send::Json(json!({ "name": "Spring sale 2" }));
    r.admin(M::PATCH, one, "/v1/campaigns/spring-sale", rename, 200)
        .await;
    let unknown = Send::Json(json!({ "colour": "red" }));
    r.admin(M::PATCH, one, "/v1/campaigns/spring-sale", unknown, 400)
        .await;

    // Audiences: JSON, text and CSV bodies, a dry run, refusals.
    let audience = "/v1/campaigns/{id}/audience";
    let path = "/v1/campaigns/spring-sale/audience";
    r.admin(
        M::PUT,
        audience,
        path,
        Send::Json(json!([1, 2, 3, 42])),
        200,
    )
    .await;
    let dry = format!("{path}?dry_run=true");
    let body = r
        .admin(M::PUT, audience, &dry, Send::Json(json!([42, 7])), 200)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["would_remove"],
        3
    );
    let bad_line = Send::Text("text/plain", "1\nnot-an-id\n".into());
    let body = r.admin(M::PUT, audience, path, bad_line, 400).await;
    assert_eq!(code_of(&body), "invalid_user_id");
    let typo = format!("{path}?dry-run=true");
    let body = r
        .admin(M::PUT, audience, &typo, Send::Json(json!([1])), 400)
        .await;
    assert_eq!(code_of(&body), "invalid_query");
    let csv = Send::Text("text/csv", "email,id\na@example.com,9\n".into());
    let by_name_without_header = format!("{path}?header=false&column=id");
    let body = r
        .admin(M::PUT, audience, &by_name_without_header, csv, 400)
        .await;
    assert_eq!(code_of(&body), "invalid_csv_options");
    let xml = Send::Text("application/xml", "<ids/>".into());
    r.admin(M::PUT, audience, path, xml, 415).await;
    let body = r
        .admin(
            M::PUT,
            audience,
            "/v1/campaigns/missing/audience",
            Send::Json(json!([1])),
            404,
        )
        .await;
    assert_eq!(code_of(&body), "campaign_not_found");
    let csv = Send::Text(
        "text/csv; header=present",
        "email,id\na@example.com,9\n".into(),
    );
    let add = "/v1/campaigns/{id}/audience/add";
    let with_column = "/v1/campaigns/spring-sale/audience/add?column=id";
    r.admin(M::POST, add, with_column, csv, 200).await;
    let remove = "/v1/campaigns/{id}/audience/remove";
    let text = Send::Text("text/plain", "2\n3\n".into());
    r.admin(
        M::POST,
        remove,
        "/v1/campaigns/spring-sale/audience/remove",
        text,
        200,
    )
    .await;
    let body = r.admin(M::GET, audience, path, Send::Nothing, 200).await;
    assert_eq!(body, "1\n9\n42\n");

    // History: the versions, a rollback, refusals.
    let versions = "/v1/campaigns/{id}/versions";
    let body = r
        .admin(
            M::GET,
            versions,
            "/v1/campaigns/spring-sale/versions",
            Send::Nothing,
            200,
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["versions"][0]["version"],
        3
    );
    r.admin(
        M::GET,
        versions,
        "/v1/campaigns/missing/versions",
        Send::Nothing,
        404,
    )
    .await;
    let rollback = "/v1/campaigns/{id}/rollback";
    let back = "/v1/campaigns/spring-sale/rollback";
    let body = r
        .admin(
            M::POST,
            rollback,
            back,
            Send::Json(json!({"version": 1})),
            200,
        )
        .await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["restored"], 1);
    let body = r
        .admin(
            M::POST,
            rollback,
            back,
            Send::Json(json!({"version": 99})),
            404,
        )
        .await;
    assert_eq!(code_of(&body), "version_not_found");
    let body = r
        .admin(
            M::POST,
            rollback,
            back,
            Send::Json(json!({"version": -1})),
            400,
        )
        .await;
    assert_eq!(code_of(&body), "invalid_json");
    r.admin(
        M::POST,
        rollback,
        back,
        Send::Text("text/plain", "1".into()),
        415,
    )
    .await;
    let body = r.admin(M::GET, audience, path, Send::Nothing, 200).await;
    assert_eq!(body, "1\n2\n3\n42\n");

    // Checks.
    let member = "/v1/campaigns/{id}/members/{user_id}";
    let (status, body) = r
        .call(
            M::GET,
            member,
            "/v1/campaigns/spring-sale/members/42",
            None,
            Send::Nothing,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = r
        .call(
            M::GET,
            member,
            "/v1/campaigns/spring-sale/members/x",
            None,
            Send::Nothing,
        )
        .await;
    assert_eq!((status, code_of(&body).as_str()), (400, "invalid_user_id"));
    let (status, _) = r
        .call(
            M::GET,
            member,
            "/v1/campaigns/missing/members/1",
            None,
            Send::Nothing,
        )
        .await;
    assert_eq!(status, 404);
    let users = "/v1/users/{user_id}/campaigns";
    let (status, _) = r
        .call(M::GET, users, "/v1/users/42/campaigns", None, Send::Nothing)
        .await;
    assert_eq!(status, 200);
    let check = "/v1/check";
    for body in [
        json!({ "user_ids": [1, 5, 42], "campaign": "spring-sale" }),
        json!({ "user_ids": [1, 5, 42] }),
    ] {
        let (status, _) = r.call(M::POST, check, check, None, Send::Json(body)).await;
        assert_eq!(status, 200);
    }
    let many = json!({ "user_ids": vec![1; 10_001] });
    let (status, body) = r.call(M::POST, check, check, None, Send::Json(many)).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "too_many_user_ids")
    );

    // Operations behind the admin token.
    r.admin(M::GET, "/v1/cache", "/v1/cache", Send::Nothing, 200)
        .await;
    r.admin(
        M::GET,
        "/v1/audit",
        "/v1/audit?campaign=spring-sale&limit=5",
        Send::Nothing,
        200,
    )
    .await;
    let body = r
        .admin(M::GET, "/v1/audit", "/v1/audit?limit=0", Send::Nothing, 400)
        .await;
    assert_eq!(code_of(&body), "invalid_limit");
    let body = r
        .admin(
            M::GET,
            "/v1/audit",
            "/v1/audit?campagin=x",
            Send::Nothing,
            400,
        )
        .await;
    assert_eq!(
        code_of(&body),
        "invalid_query",
        "a JSON error, not axum's text"
    );

    r.admin(
        M::DELETE,
        one,
        "/v1/campaigns/spring-sale",
        Send::Nothing,
        204,
    )
    .await;
    r.admin(
        M::DELETE,
        one,
        "/v1/campaigns/spring-sale",
        Send::Nothing,
        404,
    )
    .await;

    // A known path with a method it does not take: the JSON error body too.
    let (status, body) = r.call(M::GET, "-", "/v1/check", None, Send::Nothing).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (405, "method_not_allowed")
    );
    r.seen.pop();

    // Every operation the document describes was exercised, and nothing else.
    let exercised: BTreeSet<(String, String)> = r
        .seen
        .iter()
        .map(|e| (e.method.to_string(), e.template.to_string()))
        .collect();
    assert_eq!(exercised, operations(&spec));

    let dir = venv_dir.path();
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    let seen: Vec<Value> = r
        .seen
        .iter()
        .map(|e| {
            json!({
                "method": e.method.as_str(),
                "path": e.template,
                "status": e.status,
                "content_type": e.content_type,
                "body": e.body,
            })
        })
        .collect();
    std::fs::write(dir.join("responses.json"), Value::from(seen).to_string()).unwrap();
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openapi/validate.py"
        ))
        .arg(dir.join("spec.json"))
        .arg(dir.join("responses.json"))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!("{} responses checked", r.seen.len())),
        "{report}"
    );
}

/// Each listener describes exactly what it serves: with `--admin-listen`,
/// the login listener's document has the checks, the admin listener's the
/// rest, and both the health routes and the document itself.
#[tokio::test]
async fn each_listener_describes_exactly_its_own_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let state = AppState::new(store, Tokens::single(ADMIN), 1 << 20);
    let mut documents = Vec::new();
    for surface in [Surface::All, Surface::Checks, Surface::Admin] {
        let app = router_for(state.clone(), surface);
        let response = app
            .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let spec: Value = serde_json::from_slice(&body).unwrap();
        let paths: BTreeSet<String> = operations(&spec).into_iter().map(|(_, p)| p).collect();
        documents.push(paths);
    }
    let [all, checks, admin] = <[_; 3]>::try_from(documents).unwrap();
    let shared: BTreeSet<String> = ["/healthz", "/readyz", "/openapi.json"]
        .map(String::from)
        .into();
    let login: BTreeSet<String> = [
        "/v1/campaigns/{id}/members/{user_id}",
        "/v1/users/{user_id}/campaigns",
        "/v1/check",
    ]
    .map(String::from)
    .into();
    assert_eq!(checks, &shared | &login);
    assert!(
        admin.is_superset(&shared) && admin.is_disjoint(&login),
        "{admin:?}"
    );
    assert_eq!(all, &admin | &checks);
}

/// Routes are added to the API only through the document (`routes!`): a
/// plain `.route("…"` would serve a path the document does not show. The
/// portal's HTML pages are the one exception, and every path they add is
/// under `/admin`. Formatting aside (a call split over lines), every such
/// call in the source is found.
#[test]
fn no_api_route_is_added_outside_the_document() {
    let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut dirs = vec![src.to_path_buf()];
    let mut portal_paths = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests build throwaway routers of their own.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let squeezed: String = code.split_whitespace().collect::<Vec<_>>().join("");
            let in_portal = path.starts_with(src.join("portal"));
            for call in [
                ".route(\"",
                ".route_service(\"",
                ".nest(\"",
                ".nest_service(\"",
            ] {
                for (at, _) in squeezed.match_indices(call) {
                    let route = &squeezed[at + call.len()..];
                    let route = &route[..route.find('"').unwrap()];
                    // The portal's pages are nested under /admin, the one
                    // place its routes are mounted; a path of its own
                    // starting elsewhere would be another page under it.
                    let allowed = in_portal
                        && if call == ".nest(\"" {
                            route == "/admin"
                        } else {
                            route.starts_with('/') && !route.starts_with("/v1")
                        };
                    assert!(
                        allowed,
                        "{} adds {route:?} outside the OpenAPI document",
                        path.display()
                    );
                    portal_paths += 1;
                }
            }
        }
    }
    // The scan sees the portal's routes, so it would see others.
    assert!(
        portal_paths >= 10,
        "found only {portal_paths} portal routes"
    );
}
