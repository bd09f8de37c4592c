//! Uploads read exactly what was sent: padding, long lines, a BOM split
//! across chunks, the one user id syntax shared by paths and bodies, and the
//! limits on audience size and concurrent uploads. Every refusal is checked
//! to have changed nothing.

mod common;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode};
use common::serve::Serve;
use common::{ADMIN, Backend, Harness};
use serde_json::{Value, json};

/// Spellings of a user id and the id each names; `None` means refused
/// everywhere: in a path, a text line, a JSON upload and a batch check.
const SPELLINGS: &[(&str, Option<u64>)] = &[
    ("0", Some(0)),
    ("7", Some(7)),
    ("18446744073709551615", Some(u64::MAX)),
    ("007", None),
    ("00", None),
    ("+7", None),
    ("-7", None),
    ("-0", None),
    ("18446744073709551616", None),
    ("00000000000000000000007", None),
    ("7a", None),
    ("0x10", None),
    ("1e3", None),
    ("7.0", None),
    ("\u{663}", None),
];

/// Percent-encodes every byte that is not alphanumeric, so the router sees
/// the spelling itself after decoding.
fn path_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_bodies_accept_exactly_the_same_user_ids() {
    let h = Harness::new(Backend::Embedded).await;
    h.active("c").await;
    h.replace("c", &[424_242]).await;
    for &(spelling, expected) in SPELLINGS {
        let segment = path_segment(spelling);
        let (member_status, member) = h.get(&format!("/v1/campaigns/c/members/{segment}")).await;
        let (user_status, user) = h.get(&format!("/v1/users/{segment}/campaigns")).await;
        let (text_status, text) = h
            .upload("c", "replace", "text/plain", format!("{spelling}\n"))
            .await;
        let after_text = h.export("c").await;
        h.replace("c", &[424_242]).await;
        let (json_status, json_body) = h
            .upload("c", "replace", "application/json", format!("[{spelling}]"))
            .await;
        let after_json = h.export("c").await;
        h.replace("c", &[424_242]).await;
        let (check_status, check) = h
            .send(
                Method::POST,
                "/v1/check",
                Some(ADMIN),
                Some("application/json"),
                format!(r#"{{"user_ids":[{spelling}]}}"#),
            )
            .await;
        let all = format!(
            "{spelling:?}: member {member}, user {user}, text {text}, json {json_body}, check {check}"
        );
        match expected {
            Some(id) => {
                assert_eq!(member_status, StatusCode::OK, "{all}");
                assert_eq!(member["user_id"], id, "{all}");
                assert_eq!(user_status, StatusCode::OK, "{all}");
                assert_eq!(user["user_id"], id, "{all}");
                assert_eq!(text_status, StatusCode::OK, "{all}");
                assert_eq!(after_text, vec![id], "{all}");
                assert_eq!(json_status, StatusCode::OK, "{all}");
                assert_eq!(after_json, vec![id], "{all}");
                assert_eq!(check_status, StatusCode::OK, "{all}");
                assert_eq!(check["results"][0]["user_id"], id, "{all}");
            }
            None => {
                assert_eq!(member_status, StatusCode::BAD_REQUEST, "{all}");
                assert_eq!(member["error"], "invalid_user_id", "{all}");
                // Across campaigns the text may still be a string ID: then
                // no integer campaign holds it.
                match user_status {
                    StatusCode::OK => assert_eq!(user["campaigns"], json!([]), "{all}"),
                    _ => {
                        assert_eq!(user_status, StatusCode::BAD_REQUEST, "{all}");
                        assert_eq!(user["error"], "invalid_user_id", "{all}");
                    }
                }
                assert_eq!(text_status, StatusCode::BAD_REQUEST, "{all}");
                assert_eq!(text["error"], "invalid_user_id", "{all}");
                assert_eq!(text["line"], 1, "{all}");
                // One function judges both, so both explain a refusal alike
                // (the check adds which type the campaign takes).
                let reason = message(&text)
                    .strip_prefix("line 1: ")
                    .and_then(|m| m.strip_suffix("; nothing was changed"))
                    .unwrap_or_else(|| panic!("{all}"))
                    .to_string();
                assert!(message(&member).starts_with(&reason), "{all}");
                if user_status != StatusCode::OK {
                    assert_eq!(message(&user), reason, "{all}");
                }
                assert_eq!(after_text, vec![424_242], "{all}");
                assert_eq!(json_status, StatusCode::BAD_REQUEST, "{all}");
                assert_eq!(after_json, vec![424_242], "{all}");
                assert_eq!(check_status, StatusCode::BAD_REQUEST, "{all}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_line_is_stored_not_dropped() {
    let h = Harness::new(Backend::RedisSet).await;
    h.active("c").await;
    let body = format!(
        "{}12345\n{}7\r\n\t{}99{}\n",
        " ".repeat(45),
        " ".repeat(30),
        " ".repeat(22),
        " ".repeat(41)
    );
    let (status, reply) = h.upload("c", "replace", "text/plain", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["received"], 3, "{reply}");
    assert_eq!(h.export("c").await, vec![7, 99, 12345]);
    assert!(h.is_member("c", 12345).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_1_kib_is_refused_by_number_and_changes_nothing() {
    let h = Harness::new(Backend::RedisSet).await;
    h.active("c").await;
    h.replace("c", &[1, 2, 3]).await;
    let fits = format!("{}5", " ".repeat(1023));
    let body = format!("10\n{fits}\n11\n {fits}\n12\n");
    let (status, reply) = h.upload("c", "add", "text/plain", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"], "line_too_long", "{reply}");
    assert_eq!(reply["line"], 4, "{reply}");
    assert!(message(&reply).contains("1024 bytes"), "{reply}");
    assert_eq!(h.export("c").await, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bom_split_across_body_chunks_is_skipped() {
    let h = Harness::new(Backend::Embedded).await;
    h.active("c").await;
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        [&b"\xEF"[..], b"\xBB", b"\xBFuser_id\r\n7\r\n", b"8\r\n"]
            .into_iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let (status, reply) = h.upload("c", "replace", "text/csv", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(h.export("c").await, vec![7, 8]);
}

/// A served instance with campaign `c` holding `1, 2, 3`.
async fn served(name: &str, extra: &[&str]) -> (Serve, tempfile::TempDir, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(name, dir.path().to_str().unwrap(), extra);
    serve.wait_ready().await;
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    let created = http
        .post(format!("{}/v1/campaigns", serve.base))
        .bearer_auth(ADMIN)
        .json(&json!({
            "id": "c",
            "name": "Campaign c",
            "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let (status, _) = put(&http, &serve, "text/plain", "1\n2\n3\n").await;
    assert_eq!(status, 200);
    (serve, dir, http)
}

async fn put(
    http: &reqwest::Client,
    serve: &Serve,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = http
        .put(format!("{}/v1/campaigns/c/audience", serve.base))
        .bearer_auth(ADMIN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_max_audience_is_refused_and_changes_nothing() {
    let (serve, _dir, http) = served("max-audience", &["--max-audience", "3"]).await;
    // Duplicates are not audience: four lines, three ids.
    let (status, reply) = put(&http, &serve, "text/plain", "4\n5\n6\n5\n").await;
    assert_eq!(status, 200, "{reply}");
    for (content_type, body) in [
        ("text/plain", "7\n8\n9\n10\n"),
        ("application/json", "[7,8,9,10]"),
    ] {
        let (status, reply) = put(&http, &serve, content_type, body).await;
        assert_eq!(status, 413, "{content_type}: {reply}");
        assert_eq!(reply["error"], "audience_too_large", "{reply}");
        assert!(
            message(&reply).contains("more than 3 distinct user ids"),
            "{reply}"
        );
        assert_eq!(
            serve.admin_text("/v1/campaigns/c/audience").await,
            "4\n5\n6\n"
        );
    }
}

/// Reads `/metrics` until `guestlist_uploads_in_progress` shows `n`.
async fn wait_for_uploads(http: &reqwest::Client, serve: &Serve, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("guestlist_uploads_in_progress {n}");
    loop {
        let text = http
            .get(format!("{}/metrics", serve.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == want) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {want:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_beyond_the_concurrency_cap_is_told_to_retry_and_changes_nothing() {
    let (serve, _dir, http) = served("upload-cap", &["--max-concurrent-uploads", "1"]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let slow_body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let slow = {
        let (http, base) = (http.clone(), serve.base.clone());
        tokio::spawn(async move {
            http.put(format!("{base}/v1/campaigns/c/audience"))
                .bearer_auth(ADMIN)
                .header("content-type", "text/plain")
                .body(slow_body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tx.send(Ok(Bytes::from_static(b"40\n"))).await.unwrap();
    wait_for_uploads(&http, &serve, 1).await;

    let refused = http
        .post(format!("{}/v1/campaigns/c/audience/add", serve.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("50\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let retry_after = refused.headers().get("retry-after").cloned();
    let reply: Value = refused.json().await.unwrap();
    assert_eq!(reply["error"], "too_many_uploads", "{reply}");
    let seconds: u64 = retry_after
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1, "{seconds}");
    assert_eq!(
        serve.admin_text("/v1/campaigns/c/audience").await,
        "1\n2\n3\n"
    );

    tx.send(Ok(Bytes::from_static(b"41\n"))).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        serve.admin_text("/v1/campaigns/c/audience").await,
        "40\n41\n"
    );
    wait_for_uploads(&http, &serve, 0).await;
    let (status, reply) = put(&http, &serve, "text/plain", "60\n").await;
    assert_eq!(status, 200, "{reply}");
}

/// An export holds a whole audience in memory while it streams, so it takes
/// an export slot until its body is done or dropped; uploads have their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_export_holds_an_export_slot_until_it_ends() {
    use axum::http::{Request, header};
    use guestlist::app::slots::UploadSlots;
    use guestlist::app::{AppState, Tokens};
    use guestlist::routes::router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let h = Harness::new(Backend::Embedded).await;
    h.active("c").await;
    h.replace("c", &(0..100_000u64).collect::<Vec<_>>()).await;
    let mut state = AppState::new(h.store.clone(), Tokens::single(ADMIN), 1 << 20);
    state.exports = UploadSlots::new(1);
    let app = router(state);
    let request = |method: Method, path: &str, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(body))
            .unwrap()
    };
    let export = || request(Method::GET, "/v1/campaigns/c/audience", "");

    // The first export's body is not read yet: it holds the only slot.
    let first = app.clone().oneshot(export()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let r = app.clone().oneshot(export()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let body: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "too_many_exports", "{body}");
    // An upload meanwhile is not held up by it.
    let add = request(Method::POST, "/v1/campaigns/c/audience/add", "100000\n");
    assert_eq!(
        app.clone().oneshot(add).await.unwrap().status(),
        StatusCode::OK
    );
    // Read to its end, the export frees the slot.
    let text = first.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        text.iter().filter(|&&b| b == b'\n').count(),
        100_000,
        "the version it began with"
    );
    let again = app.clone().oneshot(export()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    // Dropped unread (the client went away), it frees the slot too.
    drop(again);
    let last = app.clone().oneshot(export()).await.unwrap();
    assert_eq!(last.status(), StatusCode::OK);
}
