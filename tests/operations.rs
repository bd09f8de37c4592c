//! What an operator sees of a real `serve`: `/metrics` as Prometheus expects
//! it (HELP and TYPE for every family, each documented in docs/metrics.md,
//! `promtool check metrics` when promtool is installed), the access log and
//! the start-up security summary on stderr (no colour codes in a file, no
//! secrets, no user ids), `--log-level` against `RUST_LOG`, and the split of
//! the admin surface onto `--admin-listen`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{ADMIN, RedisServer};
use reqwest::StatusCode;
use serde_json::json;

const CHECK: &str = "reader-token-0123456789";
/// A user id nothing else in a log line could contain by chance.
const USER: u64 = 918_273_645;

fn campaign_body(id: &str) -> serde_json::Value {
    json!({
        "id": id, "name": "Ops test",
        "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2999-01-01T00:00:00Z"
    })
}

/// Creates campaign `id` holding [`USER`] through `base`'s admin API.
async fn create_campaign(base: &str, id: &str) {
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&campaign_body(id))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{}",
        created.text().await.unwrap()
    );
    let uploaded = http
        .put(format!("{base}/v1/campaigns/{id}/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(format!("{USER}\n7\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploaded.status(),
        StatusCode::OK,
        "{}",
        uploaded.text().await.unwrap()
    );
}

async fn get(url: String, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Waits until the server's stderr holds `needle`, or panics with the log.
async fn wait_for_log(server: &Serve, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log_text();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Families by name, from the `# HELP` and `# TYPE` lines, and every sample's
/// metric name.
struct Scrape {
    help: BTreeSet<String>,
    types: BTreeMap<String, String>,
    samples: Vec<String>,
}

fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape {
        help: BTreeSet::new(),
        types: BTreeMap::new(),
        samples: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "empty help: {line}");
            assert!(
                scrape.help.insert(name.to_string()),
                "two HELP lines for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                scrape.types.insert(name.into(), kind.into()).is_none(),
                "two TYPE lines for {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(valid_name(name), "bad metric name in {line}");
            if line[name_end..].starts_with('{') {
                let labels = &line[name_end + 1..line.rfind('}').unwrap()];
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (label, value) = pair.split_once('=').unwrap();
                    assert!(valid_name(label) && !label.starts_with("__"), "{line}");
                    assert!(value.starts_with('"'), "{line}");
                }
            }
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "{line}"
            );
            scrape.samples.push(name.to_string());
        }
    }
    scrape
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// The family a sample belongs to: histograms add suffixes to their name.
fn family_of<'a>(sample: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(sample) {
        return sample;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && types.get(base).is_some_and(|k| k == "histogram")
        {
            return base;
        }
    }
    sample
}

/// The `### name` headings of docs/metrics.md.
fn documented() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_string())
        .collect()
}

#[tokio::test]
async fn metrics_after_traffic_have_help_and_type_for_every_family_and_match_the_docs() {
    let redis = RedisServer::start();
    let mut server = Serve::start("ops-metrics", &redis.url(), &[]);
    server.wait_ready().await;
    create_campaign(&server.base, "ops-metrics").await;
    // The near-cache picks the campaign up, and answers from it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(
            format!("{}/v1/campaigns/ops-metrics/members/{USER}", server.base),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains("\"source\":\"cache\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never answered from the cache: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    get(format!("{}/no/such/route", server.base), None).await;
    let (status, text) = get(format!("{}/metrics", server.base), None).await;
    assert_eq!(status, StatusCode::OK);

    let scrape = parse(&text);
    for sample in &scrape.samples {
        let family = family_of(sample, &scrape.types);
        assert!(scrape.types.contains_key(family), "no # TYPE for {sample}");
        assert!(scrape.help.contains(family), "no # HELP for {sample}");
    }
    let docs = documented();
    for family in scrape.types.keys() {
        assert!(
            docs.contains(family),
            "{family} is exported but not in docs/metrics.md"
        );
    }
    for family in [
        "guestlist_build_info",
        "guestlist_store_up",
        "guestlist_http_requests_total",
        "guestlist_http_request_duration_seconds",
        "guestlist_store_duration_seconds",
        "guestlist_checks_total",
        "guestlist_cache_reloads_total",
        "guestlist_cache_invalidation_lag_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            scrape.help.contains(family),
            "{family} missing from\n{text}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "guestlist_build_info{{version=\"{version}\"}} 1\n"
        )),
        "{text}"
    );
    assert!(text.contains("guestlist_store_up 1\n"), "{text}");
    assert_eq!(
        scrape.types["guestlist_cache_invalidation_lag_seconds"],
        "histogram"
    );
    // Buckets fit what they measure: the lag starts at a millisecond,
    // request durations at 100 µs.
    assert!(text.contains("guestlist_cache_invalidation_lag_seconds_bucket{le=\"0.001\"}"));
    assert!(!text.contains("guestlist_cache_invalidation_lag_seconds_bucket{le=\"0.0005\"}"));
    assert!(
        text.contains("le=\"0.0001\"}")
            && text.contains("guestlist_http_request_duration_seconds_bucket{")
    );
    // No raw path becomes a label value.
    assert!(
        !text.contains(&USER.to_string()),
        "a user id is a label:\n{text}"
    );
    assert!(text.contains("route=\"unmatched\""));

    if let Ok(found) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        && found.status.success()
    {
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("promtool is not installed; the parser's checks above stand in for it");
    }
}

#[tokio::test]
async fn access_log_and_security_summary_reach_a_log_file_plainly_and_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut server = Serve::start_with(
        "ops-access-log",
        Some(store),
        &["--log-level", "info"],
        &[("RUST_LOG", ""), ("GUESTLIST_CHECK_TOKEN", CHECK)],
    );
    server.wait_ready().await;
    create_campaign(&server.base, "ops-log").await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/campaigns/ops-log/members/{USER}",
            server.base
        ))
        .bearer_auth(CHECK)
        .header("x-request-id", "ops-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let log = wait_for_log(&server, "request_id=ops-trace-42").await;
    let line = log
        .lines()
        .find(|l| l.contains("request_id=ops-trace-42"))
        .unwrap();
    for field in [
        " INFO ",
        "guestlist::access",
        "method=\"GET\"",
        "route=\"/v1/campaigns/{id}/members/{user_id}\"",
        "status=200",
        "duration_us=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(
        !log.contains(&USER.to_string()),
        "a user id reached the log:\n{log}"
    );

    let posture = log
        .lines()
        .find(|l| l.contains("security posture"))
        .unwrap_or_else(|| panic!("no start-up summary in\n{log}"));
    for field in [
        "checks=\"check token or admin token\"",
        "admin_tokens=1",
        "tls=\"off\"",
        "listen=127.0.0.1:",
        "admin_listen=\"same as listen\"",
    ] {
        assert!(posture.contains(field), "{field} missing from {posture}");
    }
    assert!(!log.contains('\x1b'), "escape codes in a log file:\n{log}");
    for secret in [ADMIN, CHECK] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}

#[tokio::test]
async fn log_level_flag_sets_the_filter_unless_rust_log_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut quiet = Serve::start_with(
        "ops-log-level-warn",
        Some(store),
        &["--log-level", "warn"],
        &[("RUST_LOG", "")],
    );
    quiet.wait_ready().await;
    get(format!("{}/healthz", quiet.base), None).await;
    let mut loud = Serve::start_with(
        "ops-log-level-rust-log",
        Some(&format!("{store}-2")),
        &["--log-level", "warn"],
        &[("RUST_LOG", "info")],
    );
    loud.wait_ready().await;
    get(format!("{}/healthz", loud.base), None).await;
    wait_for_log(&loud, "route=\"/healthz\"").await;
    // The quiet one has had as long to write its line.
    let log = quiet.log_text();
    assert!(
        !log.contains("guestlist::access") && !log.contains("security posture"),
        "{log}"
    );

    let mut env_set = Serve::start_with(
        "ops-log-level-env",
        Some(&format!("{store}-3")),
        &[],
        &[
            ("RUST_LOG", ""),
            ("GUESTLIST_LOG_LEVEL", "info,guestlist::access=off"),
        ],
    );
    env_set.wait_ready().await;
    get(format!("{}/healthz", env_set.base), None).await;
    let log = wait_for_log(&env_set, "security posture").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!env_set.log_text().contains("guestlist::access"), "{log}");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .args(["serve", "--log-level", "info,guestlist=loudest"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--log-level"), "{stderr}");
}

#[tokio::test]
async fn admin_listen_takes_the_portal_admin_api_and_metrics_off_the_check_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = guestlist::redis_server::free_port().unwrap();
    let admin_addr = format!("127.0.0.1:{port}");
    let mut server = Serve::start_with(
        "ops-admin-listen",
        Some(dir.path().to_str().unwrap()),
        &["--admin-listen", &admin_addr],
        &[("RUST_LOG", "")],
    );
    server.wait_ready().await;
    let checks = server.base.clone();
    let admin = format!("http://{admin_addr}");
    // Campaigns are created where the admin API is.
    create_campaign(&admin, "split").await;
    let refused = reqwest::Client::new()
        .post(format!("{checks}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&campaign_body("elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(refused.text().await.unwrap().contains("route_not_found"));

    let member = format!("/v1/campaigns/split/members/{USER}");
    let (status, body) = get(format!("{checks}{member}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"member\":true"), "{body}");
    for path in [member.as_str(), "/v1/users/7/campaigns"] {
        let (status, body) = get(format!("{admin}{path}"), None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{path} on the admin listener"
        );
        assert!(body.contains("route_not_found"), "{body}");
    }
    let batch = |base: &str| {
        reqwest::Client::new()
            .post(format!("{base}/v1/check"))
            .json(&json!({ "user_ids": [USER] }))
            .send()
    };
    assert_eq!(batch(&checks).await.unwrap().status(), StatusCode::OK);
    assert_eq!(batch(&admin).await.unwrap().status(), StatusCode::NOT_FOUND);

    for (path, token) in [
        ("/metrics", None),
        ("/admin/signin", None),
        ("/v1/campaigns", Some(ADMIN)),
        ("/v1/campaigns/split", Some(ADMIN)),
        ("/v1/audit", Some(ADMIN)),
        ("/v1/cache", Some(ADMIN)),
    ] {
        let (status, body) = get(format!("{admin}{path}"), token).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path} on the admin listener: {body}"
        );
        let (status, body) = get(format!("{checks}{path}"), token).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{path} on the check listener: {body}"
        );
    }
    for base in [&checks, &admin] {
        assert_eq!(get(format!("{base}/healthz"), None).await.0, StatusCode::OK);
        assert_eq!(get(format!("{base}/readyz"), None).await.0, StatusCode::OK);
    }
    let log = server.log_text();
    assert!(log.contains(&format!("admin_listen={admin_addr}")), "{log}");

    // One SIGTERM stops both listeners.
    let status = server.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
