//! The admin portal's guards, request by request: sessions, CSRF tokens,
//! cookie flags, the sign-in limiter, and forms that refuse bad input
//! without changing anything. The full browser walk-through is in
//! `portal_browser.rs`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{ADMIN, Backend, Harness, lines};
use guestlist::app::sessions::{SESSION_COOKIE as SESSION, SIGNIN_COOKIE as SIGNIN};
use guestlist::app::{AppState, Tokens};
use guestlist::portal::Portal;
use guestlist::routes::router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A cookie-keeping client of the in-process router.
struct Browser<'a> {
    h: &'a Harness,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        self.body[start..start + 64].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(h: &'a Harness) -> Browser<'a> {
        Browser {
            h,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = request.header(header::COOKIE, cookie.join("; "));
        let response = self
            .h
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Request::get(path), Body::empty()).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, Body::from(body)).await
    }

    /// Signs in with `token`; returns the sign-in response.
    async fn try_sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/admin/signin").await;
        let csrf = form.csrf();
        self.post("/admin/signin", &[("token", token), ("csrf", &csrf)])
            .await
    }

    /// Signs in as the admin; returns the session's CSRF token.
    async fn sign_in(&mut self) -> String {
        let done = self.try_sign_in(ADMIN).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        self.get("/admin/campaigns").await.csrf()
    }
}

async fn audit_len(h: &Harness) -> usize {
    let (_, log) = h.get("/v1/audit?limit=1000").await;
    log["events"].as_array().unwrap().len()
}

#[tokio::test]
async fn without_a_session_every_page_redirects_alike_and_no_form_is_accepted() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("real", -1, 24).await;
    let mut b = Browser::new(&h);
    let mut bodies = Vec::new();
    for path in [
        "/admin",
        "/admin/campaigns",
        "/admin/campaigns/real",
        "/admin/campaigns/no-such-campaign",
        "/admin/campaigns/real/delete",
        "/admin/campaigns/real/rollback/1",
        "/admin/audit?campaign=real",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/admin/signin", "{path}");
        bodies.push(page.body);
    }
    // A real and a missing campaign answer identically: nothing leaks.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let page = b.get("/admin/").await;
    assert_eq!(
        page.location(),
        "/admin/campaigns",
        "the slash form of /admin"
    );
    let page = b
        .post("/admin/campaigns/real/rollback/1", &[("confirm", "real")])
        .await;
    assert_eq!(
        page.status,
        StatusCode::FORBIDDEN,
        "a rollback without a session"
    );

    let page = b
        .post("/admin/campaigns/real/delete", &[("confirm", "real")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(h.get("/v1/campaigns/real").await.0, StatusCode::OK);
    assert_eq!(audit_len(&h).await, 1, "only the creation");
}

#[tokio::test]
async fn sign_in_sets_a_host_only_secure_strict_expiring_cookie_and_a_wrong_token_learns_nothing() {
    let h = Harness::new(Backend::Embedded).await;
    let mut b = Browser::new(&h);

    let form = b.get("/admin/signin").await;
    assert_eq!(form.status, StatusCode::OK);
    let signin_cookie = form.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(signin_cookie.contains("HttpOnly") && signin_cookie.contains("SameSite=Strict"));
    let csp = form.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let wrong = b.try_sign_in("not-the-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("That token is not valid."));
    assert!(!b.cookies.contains_key(SESSION));

    // Without the sign-in page's token the form is refused outright.
    let mut fresh = Browser::new(&h);
    let forged = fresh
        .post("/admin/signin", &[("token", ADMIN), ("csrf", "guess")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key(SESSION));

    let ok = b.try_sign_in(ADMIN).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/admin/campaigns");
    // Signing in again replaces the session: the old cookie stops working.
    let first = b.cookies[SESSION].clone();
    // (The sign-in page forwards a signed-in browser, so its form token comes
    // from another one.)
    let mut other = Browser::new(&h);
    let form = other.get("/admin/signin").await;
    let signin = other.cookies[SIGNIN].clone();
    b.cookies.insert(SIGNIN.into(), signin);
    let again = b
        .post("/admin/signin", &[("token", ADMIN), ("csrf", &form.csrf())])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_ne!(b.cookies[SESSION], first);
    let mut old = Browser::new(&h);
    old.cookies.insert(SESSION.into(), first);
    assert_eq!(
        old.get("/admin/campaigns").await.location(),
        "/admin/signin"
    );
    let session = ok
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{SESSION}=")))
        .expect("session cookie");
    // `__Host-` and `Secure` always: browsers still keep it over plain HTTP
    // to a loopback host, and nowhere else.
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/",
        "Secure",
    ] {
        assert!(session.contains(flag), "{flag} missing from {session}");
    }
    assert!(session.starts_with("__Host-") && !session.contains("Domain"));
    let signin = form.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        signin.starts_with("__Host-") && signin.contains("Secure"),
        "{signin}"
    );
    assert_eq!(b.get("/admin/campaigns").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_with_two_session_cookies_is_not_signed_in() {
    let h = Harness::new(Backend::Embedded).await;
    h.active("c").await;
    h.replace("c", &[1]).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;
    let mine = b.cookies[SESSION].clone();
    let mut other = Browser::new(&h);
    other.sign_in().await;
    let theirs = other.cookies[SESSION].clone();

    for planted in [theirs.as_str(), "planted", mine.as_str()] {
        let cookie = format!("{SESSION}={mine}; {SESSION}={planted}");
        let page = Browser::new(&h)
            .send(
                Request::get("/admin/campaigns").header(header::COOKIE, &cookie),
                Body::empty(),
            )
            .await;
        assert_eq!(page.location(), "/admin/signin", "{planted}");
        let upload = Request::put("/v1/campaigns/c/audience")
            .header(header::CONTENT_TYPE, "text/plain")
            .header("x-csrf-token", &csrf)
            .header(header::COOKIE, &cookie);
        let page = Browser::new(&h).send(upload, Body::from(lines(&[7]))).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{planted}");
    }
    assert_eq!(h.export("c").await, vec![1], "unchanged");
    assert_eq!(b.get("/admin/campaigns").await.status, StatusCode::OK);
}

/// `h`'s store behind a router whose portal is `portal`.
fn with_portal(h: &Harness, portal: Portal) -> Harness {
    let mut state = AppState::new(h.store.clone(), Tokens::single(ADMIN), 1 << 20);
    state.portal = std::sync::Arc::new(portal);
    Harness {
        app: router(state),
        store: h.store.clone(),
        backend: h.backend,
        redis: None,
        data_dir: None,
    }
}

#[tokio::test]
async fn a_session_left_idle_past_its_timeout_ends() {
    let h = Harness::new(Backend::Embedded).await;
    let idle = with_portal(&h, Portal::new(Duration::from_millis(300)));
    let mut b = Browser::new(&idle);
    b.sign_in().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let page = b.get("/admin/campaigns").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/signin");
}

#[tokio::test]
async fn the_removal_share_that_asks_first_is_configured_and_a_backup_is_one_click() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("c", -1, 24).await;
    h.replace("c", &[3, 1, 2]).await;
    let configured = with_portal(&h, Portal::default().confirming_removals_over(0.25));
    let mut b = Browser::new(&configured);
    b.sign_in().await;
    let page = b.get("/admin/campaigns/c").await;
    assert!(
        page.body.contains(r#"data-confirm-share="0.25""#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"href="/admin/campaigns/c/audience.txt" download>Download version 1<"#),
        "{}",
        page.body
    );
    let file = b.get("/admin/campaigns/c/audience.txt").await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(
        file.headers[header::CONTENT_DISPOSITION],
        r#"attachment; filename="c-v1.txt""#
    );
    assert_eq!(file.body, "1\n2\n3\n");
    let missing = b.get("/admin/campaigns/nope/audience.txt").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forms_without_or_with_a_wrong_csrf_token_get_403_and_change_nothing() {
    let h = Harness::new(Backend::Embedded).await;
    let before = h.create("c", -1, 24).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;
    let log = audit_len(&h).await;

    let create = [
        ("id", "other"),
        ("name", "Other"),
        ("starts_at", "2030-01-01T00:00"),
        ("ends_at", "2030-02-01T00:00"),
        ("design", "set"),
    ];
    let edit = [
        ("name", "Renamed"),
        ("starts_at", "2030-01-01T00:00"),
        ("ends_at", "2030-02-01T00:00"),
    ];
    let forms: [(&str, &[(&str, &str)]); 5] = [
        ("/admin/campaigns/new", &create),
        ("/admin/campaigns/c/edit", &edit),
        ("/admin/campaigns/c/delete", &[("confirm", "c")]),
        ("/admin/campaigns/c/rollback/1", &[("confirm", "c")]),
        ("/admin/signout", &[]),
    ];
    for (path, fields) in forms {
        for token in [None, Some("0".repeat(64)), Some(csrf[..63].to_string())] {
            let mut sent: Vec<(&str, &str)> = fields.to_vec();
            if let Some(t) = &token {
                sent.push(("csrf", t));
            }
            let page = b.post(path, &sent).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(page.body.contains("security token"), "{}", page.body);
        }
    }
    assert_eq!(h.campaign("c").await, before, "campaign unchanged");
    assert_eq!(h.get("/v1/campaigns/other").await.0, StatusCode::NOT_FOUND);
    assert_eq!(audit_len(&h).await, log, "nothing recorded");
    assert_eq!(
        b.get("/admin/campaigns").await.status,
        StatusCode::OK,
        "still signed in"
    );

    // The right token goes through, and the audit log names the token's owner.
    let page = b
        .post(
            "/admin/campaigns/c/edit",
            &[&edit[..], &[("csrf", &csrf)]].concat(),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(h.campaign("c").await["name"], "Renamed");
    let (_, log) = h.get("/v1/audit?campaign=c&limit=1").await;
    assert_eq!(log["events"][0]["actor"], "admin");
    assert_eq!(log["events"][0]["action"], "updated");
}

#[tokio::test]
async fn the_upload_endpoint_takes_a_session_only_with_its_csrf_header() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("c", -1, 24).await;
    h.replace("c", &[1, 2, 3]).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;

    let upload = |token: Option<&str>| {
        let mut r =
            Request::put("/v1/campaigns/c/audience").header(header::CONTENT_TYPE, "text/csv");
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r
    };
    for token in [None, Some("wrong")] {
        let page = b.send(upload(token), Body::from(lines(&[7, 8]))).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{token:?}");
        let body: Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(body["error"], "csrf_token_invalid");
        assert_eq!(h.export("c").await, vec![1, 2, 3], "unchanged");
    }
    // A browser with no session gets the API's usual 401.
    let mut stranger = Browser::new(&h);
    let page = stranger
        .send(upload(Some(&csrf)), Body::from(lines(&[7, 8])))
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);

    // Only the uploads take a session: every other admin call still needs
    // a bearer token, CSRF header or not.
    for (method, path) in [
        ("DELETE", "/v1/campaigns/c"),
        ("GET", "/v1/campaigns/c/audience"),
        ("GET", "/v1/audit"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-csrf-token", &csrf);
        let page = b.send(request, Body::empty()).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(h.export("c").await, vec![1, 2, 3], "still there");

    let page = b
        .send(upload(Some(&csrf)), Body::from(lines(&[7, 8, 8])))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(body["audience_size"], 2);
    assert_eq!(body["duplicates"], 1);
    assert_eq!(h.export("c").await, vec![7, 8]);
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let h = Harness::new(Backend::Embedded).await;
    let mut b = Browser::new(&h);
    for _ in 0..5 {
        assert_eq!(
            b.try_sign_in("wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right token waits out the window: that is what a limit means.
    let limited = b.try_sign_in(ADMIN).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.body.contains("Too many failed sign-ins"));
    let wait: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(!b.cookies.contains_key(SESSION));
}

#[tokio::test]
async fn the_create_form_shows_every_error_by_its_field_and_keeps_the_values() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("taken", -1, 24).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;

    let page = b
        .post(
            "/admin/campaigns/new",
            &[
                ("csrf", &csrf),
                ("id", "Bad Id!"),
                ("name", "Kept name"),
                ("starts_at", "2030-01-02T00:00"),
                ("ends_at", "2030-01-01T00:00"),
                ("design", "set"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("id=\"id-error\""), "{}", page.body);
    assert!(page.body.contains("id=\"ends_at-error\""));
    assert!(page.body.contains("must be after starts_at"));
    assert!(page.body.contains("value=\"Kept name\""));
    assert!(page.body.contains("value=\"Bad Id!\""));
    assert!(page.body.contains("value=\"2030-01-01T00:00\""));

    let page = b
        .post(
            "/admin/campaigns/new",
            &[
                ("csrf", &csrf),
                ("id", "taken"),
                ("name", "Duplicate"),
                ("starts_at", "2030-01-01T00:00"),
                ("ends_at", "2030-01-02T00:00"),
                ("design", "set"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("id=\"id-error\""));
    let (_, list) = h.get("/v1/campaigns").await;
    assert_eq!(
        list["campaigns"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    assert_eq!(h.campaign("taken").await["name"], "Campaign taken");
}

#[tokio::test]
async fn rollback_needs_the_campaign_id_typed_and_a_kept_version() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("c", -1, 24).await;
    h.replace("c", &[1, 2]).await;
    h.replace("c", &[3]).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;
    let before = (h.campaign("c").await, audit_len(&h).await);

    let page = b.get("/admin/campaigns/c").await;
    assert!(
        page.body
            .contains(r#"href="/admin/campaigns/c/rollback/1""#)
    );
    assert!(
        !page
            .body
            .contains(r#"href="/admin/campaigns/c/rollback/2""#),
        "the live version has no rollback"
    );
    let page = b.get("/admin/campaigns/c/rollback/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Roll back to version 1"),
        "{}",
        page.body
    );
    for (path, status) in [
        ("/admin/campaigns/c/rollback/9", StatusCode::NOT_FOUND),
        ("/admin/campaigns/c/rollback/one", StatusCode::NOT_FOUND),
        ("/admin/campaigns/nope/rollback/1", StatusCode::NOT_FOUND),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, status, "{path}");
        let page = b.post(path, &[("csrf", &csrf), ("confirm", "c")]).await;
        assert_eq!(page.status, status, "{path}");
    }
    let page = b
        .post(
            "/admin/campaigns/c/rollback/9",
            &[("csrf", &csrf), ("confirm", "c")],
        )
        .await;
    assert!(
        page.body
            .contains("keeps no version 9; the kept versions are 2, 1"),
        "{}",
        page.body
    );
    let page = b.get("/admin/campaigns/c/rollback/one").await;
    assert!(
        page.body.contains("&#34;one&#34; is not a version number"),
        "{}",
        page.body
    );
    let page = b
        .post(
            "/admin/campaigns/c/rollback/1",
            &[("csrf", &csrf), ("confirm", "C")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Nothing was changed."));
    assert_eq!(
        (h.campaign("c").await, audit_len(&h).await),
        before,
        "a refused rollback changed something"
    );

    // The page showed version 2 live; an upload made it 3 since.
    let page = b.get("/admin/campaigns/c/rollback/1").await;
    assert!(
        page.body.contains(r#"name="expected_version" value="2""#),
        "{}",
        page.body
    );
    h.replace("c", &[4]).await;
    let seen = [
        ("csrf", csrf.as_str()),
        ("confirm", "c"),
        ("expected_version", "2"),
    ];
    let page = b.post("/admin/campaigns/c/rollback/1", &seen).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body
            .contains("is at version 3, not 2 as expected; nothing was changed"),
        "{}",
        page.body
    );
    assert_eq!(h.export("c").await, [4]);

    let page = b
        .post(
            "/admin/campaigns/c/rollback/1",
            &[("csrf", &csrf), ("confirm", "c"), ("expected_version", "3")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/campaigns/c?done=rolled-back");
    assert_eq!(h.export("c").await, [1, 2]);
    let (_, log) = h.get("/v1/audit?campaign=c&limit=1").await;
    assert_eq!(log["events"][0]["action"], "audience_rolled_back");
    assert_eq!(log["events"][0]["actor"], "admin");
    let page = b.get("/admin/campaigns/c?done=rolled-back").await;
    assert!(
        page.body
            .contains("Audience rolled back, as a new version.")
    );
    assert!(page.body.contains("Rolled back to version 1"));
}

#[tokio::test]
async fn delete_needs_the_campaign_id_typed() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("c", -1, 24).await;
    let mut b = Browser::new(&h);
    let csrf = b.sign_in().await;

    let page = b
        .post(
            "/admin/campaigns/c/delete",
            &[("csrf", &csrf), ("confirm", "C")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Nothing was deleted."));
    assert_eq!(h.get("/v1/campaigns/c").await.0, StatusCode::OK);

    let page = b
        .post(
            "/admin/campaigns/c/delete",
            &[("csrf", &csrf), ("confirm", "c")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/campaigns?done=deleted");
    assert_eq!(h.get("/v1/campaigns/c").await.0, StatusCode::NOT_FOUND);
    let (_, log) = h.get("/v1/audit?campaign=c&limit=1").await;
    assert_eq!(log["events"][0]["action"], "deleted");
    assert_eq!(log["events"][0]["actor"], "admin");

    // A signed-in administrator asking for a missing campaign gets a 404 page.
    let page = b.get("/admin/campaigns/c").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("does not exist"));
}

#[tokio::test]
async fn lookups_answer_in_the_page() {
    let h = Harness::new(Backend::Embedded).await;
    h.create("c", -1, 24).await;
    h.replace("c", &[10, 20]).await;
    let mut b = Browser::new(&h);
    b.sign_in().await;

    let page = b.get("/admin/campaigns/c?user=20").await;
    assert!(page.body.contains("is a member"), "{}", page.body);
    let page = b.get("/admin/campaigns/c?user=21").await;
    assert!(page.body.contains("is not a member"));
    let page = b.get("/admin/campaigns/c?user=abc").await;
    assert!(page.body.contains("is not a user id"), "{}", page.body);
    assert!(
        page.body.contains("takes integer user ids"),
        "{}",
        page.body
    );

    let page = b.get("/admin/lookup?user=10").await;
    assert!(page.body.contains("is in 1 active campaign"));
    assert!(page.body.contains("href=\"/admin/campaigns/c\""));
    let page = b.get("/admin/lookup?user=11").await;
    assert!(page.body.contains("is in no active campaign"));
    // "-1" is no integer, but it may be a string campaign's user.
    let page = b.get("/admin/lookup?user=-1").await;
    assert!(page.body.contains("is in no active campaign"));
    let page = b
        .get(&format!("/admin/lookup?user={}", "x".repeat(257)))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("at most 256"), "{}", page.body);
}
