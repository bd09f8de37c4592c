//! The token rules, against the real `serve` binary: short tokens stop it
//! at start, wrong bearers are limited per client (through trusted proxies
//! only) and logged without the token, secrets come from the environment or
//! files and never show in `ps`, and a non-loopback address needs a check
//! token or `--public-reads`.

mod common;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ADMIN;
use common::serve::Serve;
use reqwest::StatusCode;

const CHECK: &str = "reader-token-0123456789";

/// Runs `serve` with `args` and `env` (no inherited token) and expects it to
/// exit by itself; returns its exit code and stderr.
fn serve_exits(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let args: Vec<&str> = ["serve"].iter().chain(args).copied().collect();
    exits(&args, env)
}

/// Runs the binary and expects it to exit by itself within 20 s; it is
/// killed, and the test fails, if it keeps running.
fn exits(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .args(args)
        .env_remove("GUESTLIST_ADMIN_TOKEN")
        .env_remove("GUESTLIST_ADMIN_TOKENS")
        .env_remove("GUESTLIST_CHECK_TOKEN")
        .env_remove("GUESTLIST_PUBLIC_READS")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_shorter_than_16_characters_stops_the_server_before_it_opens_anything() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let listen = ["--listen", "127.0.0.1:0", "--store", store];
    for (var, value, named) in [
        ("GUESTLIST_ADMIN_TOKEN", "abcd", "GUESTLIST_ADMIN_TOKEN"),
        (
            "GUESTLIST_ADMIN_TOKENS",
            "alice:abcdefghijklmno",
            "\"alice\"",
        ),
        (
            "GUESTLIST_CHECK_TOKEN",
            "abcdefghijklmno",
            "GUESTLIST_CHECK_TOKEN",
        ),
    ] {
        let mut env = vec![(var, value)];
        if var != "GUESTLIST_ADMIN_TOKEN" {
            env.push(("GUESTLIST_ADMIN_TOKEN", ADMIN));
        }
        let (code, stderr) = serve_exits(&listen, &env);
        assert_ne!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("16 characters"),
            "{stderr}"
        );
        assert!(!stderr.contains("abcd"), "the token leaked: {stderr}");
        assert!(!dir.path().join("store").exists(), "the store was opened");
    }
}

#[test]
fn secrets_are_not_flags() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let token = "0123456789abcdefgh";
    for args in [
        vec!["serve", "--admin-token", token],
        vec!["serve", "--admin-tokens", "a:0123456789abcdefgh"],
        vec!["serve", "--check-token", token],
        vec!["campaign", "list", "--token", token],
    ] {
        // A loopback port and a private store, in case a flag is accepted.
        let mut args = args;
        if args[0] == "serve" {
            args.extend(["--listen", "127.0.0.1:0", "--store", store]);
        } else {
            args.extend(["--server", "http://127.0.0.1:1"]);
        }
        let (code, stderr) = exits(&args, &[]);
        assert_ne!(code, Some(0), "{args:?} was accepted");
        assert!(stderr.contains("unexpected argument"), "{args:?}: {stderr}");
    }
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn list(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(format!("{base}/v1/audit")).bearer_auth(token);
    if let Some(f) = forwarded {
        request = request.header("x-forwarded-for", f);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn repeated_wrong_bearers_are_answered_429_per_client_and_logged_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = Serve::start(
        "auth-limit",
        store.to_str().unwrap(),
        &["--trusted-proxy", "127.0.0.3"],
    );
    server.wait_ready().await;
    let base = server.base.clone();
    let (one, two, proxy) = (
        client_from("127.0.0.1"),
        client_from("127.0.0.2"),
        client_from("127.0.0.3"),
    );

    for _ in 0..5 {
        let r = list(&one, &base, "wrong-token-guess-1", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Limited now, even with the right token: a right guess must not pass.
    for token in ["wrong-token-guess-1", ADMIN] {
        let r = list(&one, &base, token, None).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "too_many_failures");
    }
    // Another address is not affected, and the header from an untrusted peer
    // changes nothing.
    assert_eq!(
        list(&two, &base, ADMIN, None).await.status(),
        StatusCode::OK
    );
    let r = list(&one, &base, ADMIN, Some("203.0.113.50")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // Behind the trusted proxy each forwarded client counts on its own.
    for _ in 0..5 {
        let r = list(&proxy, &base, "wrong-token-guess-2", Some("203.0.113.5")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = list(&proxy, &base, ADMIN, Some("203.0.113.5")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = list(&proxy, &base, ADMIN, Some("203.0.113.6")).await;
    assert_eq!(r.status(), StatusCode::OK);

    let log = server.log_text();
    assert!(
        !log.contains("wrong-token-guess"),
        "a token was logged: {log}"
    );
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a bearer token"))
        .collect();
    assert_eq!(refusals.len(), 10, "{log}");
    assert!(
        refusals[0].contains("127.0.0.1") && refusals[0].contains("/v1/audit"),
        "{}",
        refusals[0]
    );
    assert!(refusals[9].contains("203.0.113.5"), "{}", refusals[9]);
}

/// Logins share an address with whoever else sits behind the same NAT or
/// load balancer: wrong tokens from there must not refuse a valid check
/// token, and a valid token used on the wrong endpoint is no guess.
#[tokio::test]
async fn wrong_bearers_never_lock_out_checks_with_the_valid_check_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = Serve::start_with(
        "auth-limit-checks",
        Some(store.to_str().unwrap()),
        &[],
        &[("GUESTLIST_CHECK_TOKEN", CHECK)],
    );
    server.wait_ready().await;
    let base = server.base.clone();
    let client = client_from("127.0.0.1");
    let check = |token: &'static str| {
        client
            .post(format!("{base}/v1/check"))
            .bearer_auth(token)
            .json(&serde_json::json!({"user_ids": [42]}))
            .send()
    };

    // The check token on an admin endpoint is refused but is not a failure.
    for _ in 0..10 {
        let r = list(&client, &base, CHECK, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(check(CHECK).await.unwrap().status(), StatusCode::OK);
    for _ in 0..5 {
        let r = list(&client, &base, "wrong-token-guess-3", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        check("wrong-token-guess-3").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The login path still answers with the check token; admin calls from
    // the limited address wait out the window.
    let r = check(CHECK).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = list(&client, &base, ADMIN, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // The misplaced check token is logged, without its value.
    let log = server.log_text();
    let misplaced = log
        .lines()
        .filter(|l| l.contains("refused a token on an endpoint it does not cover"))
        .count();
    assert_eq!(misplaced, 10, "{log}");
    assert!(
        !log.contains(CHECK) && !log.contains("wrong-token-guess"),
        "{log}"
    );
}

#[tokio::test]
async fn tokens_from_files_work_and_no_secret_shows_in_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let admin_file = dir.path().join("admin-token");
    let from_file = "admin-token-from-a-file-0123";
    std::fs::write(&admin_file, format!("{from_file}\n")).unwrap();
    let store = dir.path().join("store");
    let mut server = Serve::start_with(
        "auth-files",
        Some(store.to_str().unwrap()),
        &[],
        &[
            ("GUESTLIST_ADMIN_TOKEN", ""),
            ("GUESTLIST_ADMIN_TOKEN_FILE", admin_file.to_str().unwrap()),
            ("GUESTLIST_CHECK_TOKEN", CHECK),
        ],
    );
    server.wait_ready().await;

    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("serve"), "{cmdline}");
    for secret in [from_file, CHECK, ADMIN] {
        assert!(!cmdline.contains(secret), "{secret} in {cmdline}");
    }

    let http = reqwest::Client::new();
    let audit = format!("{}/v1/audit", server.base);
    let campaigns = format!("{}/v1/campaigns", server.base);
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(
            http.get(&audit)
                .bearer_auth(from_file)
                .send()
                .await
                .unwrap()
        ),
        StatusCode::OK
    );
    assert_eq!(
        status(
            http.get(&campaigns)
                .bearer_auth(CHECK)
                .send()
                .await
                .unwrap()
        ),
        StatusCode::OK
    );
    assert_eq!(
        status(http.get(&campaigns).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    // The fixture's usual token is not set here.
    assert_eq!(
        status(http.get(&audit).bearer_auth(ADMIN).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert!(!server.log_text().contains(from_file));
}

#[test]
fn a_non_loopback_address_needs_a_check_token_or_public_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let args = ["--listen", "0.0.0.0:0", "--store", store];
    let (code, stderr) = serve_exits(&args, &[("GUESTLIST_ADMIN_TOKEN", ADMIN)]);
    assert_ne!(code, Some(0), "{stderr}");
    for needed in ["0.0.0.0:0", "GUESTLIST_CHECK_TOKEN", "--public-reads"] {
        assert!(stderr.contains(needed), "{needed} not in {stderr}");
    }
    assert!(!dir.path().join("store").exists(), "the store was opened");

    // Off loopback, a generated admin token would land in the log stream.
    let (code, stderr) = serve_exits(&[&args[..], &["--public-reads"]].concat(), &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("GUESTLIST_ADMIN_TOKEN") && !stderr.contains("this run's admin token"),
        "{stderr}"
    );
    assert!(!dir.path().join("store").exists(), "the store was opened");

    // Either answer lets it start; it is stopped as soon as it says so, so
    // nothing stays listening on a public address.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        (&["--public-reads"], &[]),
        (&[], &[("GUESTLIST_PUBLIC_READS", "true")]),
        (&[], &[("GUESTLIST_CHECK_TOKEN", CHECK)]),
    ];
    for (extra, env) in cases {
        let log = dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_guestlist"))
            .arg("serve")
            .args(args)
            .args(extra)
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .env_remove("GUESTLIST_PUBLIC_READS")
            .env("GUESTLIST_ADMIN_TOKEN", ADMIN)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let started = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("guestlist serving") {
                break true;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            started,
            "{extra:?} {env:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

#[test]
fn serve_help_names_every_secret_and_its_file_form() {
    let out = Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "GUESTLIST_ADMIN_TOKEN ",
        "GUESTLIST_ADMIN_TOKENS",
        "GUESTLIST_CHECK_TOKEN",
        "NAME_FILE",
        "--trusted-proxy",
        "--public-reads",
        "--portal-idle-timeout",
    ] {
        assert!(help.contains(name), "{name} not in {help}");
    }
    assert!(!help.contains("--admin-token"), "{help}");
}

/// Who may call what. Each route group states its access beside its routes;
/// this table says it once more, independently, and must name every
/// operation the document describes, so a new route cannot slip in unguarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_takes_the_access_its_group_requires() {
    use axum::http::Method;
    use common::{Backend, Harness};
    use guestlist::app::{AppState, Tokens};

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Need {
        Open,
        Read,
        Admin,
        /// Admin, or a portal session with its CSRF token.
        Upload,
    }
    let table = [
        ("GET", "/healthz", Need::Open),
        ("GET", "/readyz", Need::Open),
        ("GET", "/openapi.json", Need::Open),
        ("GET", "/metrics", Need::Open),
        ("GET", "/v1/cache", Need::Admin),
        ("GET", "/v1/audit", Need::Admin),
        ("GET", "/v1/campaigns", Need::Read),
        ("POST", "/v1/campaigns", Need::Admin),
        ("GET", "/v1/campaigns/{id}", Need::Read),
        ("PATCH", "/v1/campaigns/{id}", Need::Admin),
        ("DELETE", "/v1/campaigns/{id}", Need::Admin),
        ("GET", "/v1/campaigns/{id}/audience", Need::Admin),
        ("PUT", "/v1/campaigns/{id}/audience", Need::Upload),
        ("POST", "/v1/campaigns/{id}/audience/add", Need::Upload),
        ("POST", "/v1/campaigns/{id}/audience/remove", Need::Upload),
        ("GET", "/v1/campaigns/{id}/versions", Need::Admin),
        ("POST", "/v1/campaigns/{id}/rollback", Need::Admin),
        ("GET", "/v1/campaigns/{id}/members/{user_id}", Need::Read),
        ("GET", "/v1/users/{user_id}/campaigns", Need::Read),
        ("POST", "/v1/check", Need::Read),
    ];
    let mut h = Harness::new(Backend::Embedded).await;
    let tokens = Tokens::single(ADMIN).with_check_token(CHECK);
    h.app = guestlist::routes::router(AppState::new(h.store.clone(), tokens, 1 << 20));

    let (_, doc) = h.send(Method::GET, "/openapi.json", None, None, "").await;
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let schemes: Vec<String> = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().cloned())
                .collect();
            documented.push((method.to_uppercase(), path.clone(), schemes));
        }
    }
    let mut listed: Vec<(String, String)> = table
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let mut in_doc: Vec<(String, String)> = documented
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    listed.sort();
    in_doc.sort();
    assert_eq!(
        listed, in_doc,
        "the table and the document name different operations"
    );

    for (method, path, need) in table {
        let (_, _, schemes) = documented
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .unwrap();
        let expected: &[&str] = match need {
            Need::Open => &[],
            Need::Read => &["check_token", "admin_token"],
            Need::Admin => &["admin_token"],
            // One requirement of two schemes, listed by name.
            Need::Upload => &["admin_token", "csrf_token", "portal_session"],
        };
        assert_eq!(schemes, expected, "{method} {path}: documented security");

        let real = path.replace("{id}", "c").replace("{user_id}", "1");
        let method: Method = method.parse().unwrap();
        let status = |token| {
            let (h, method, real) = (&h, method.clone(), real.clone());
            async move {
                h.send(method, &real, token, Some("application/json"), "{}")
                    .await
                    .0
            }
        };
        let unauthorized = axum::http::StatusCode::UNAUTHORIZED;
        let (none, check, admin) = (
            status(None).await,
            status(Some(CHECK)).await,
            status(Some(ADMIN)).await,
        );
        match need {
            Need::Open => assert_ne!(none, unauthorized, "{method} {path}"),
            Need::Read => {
                assert_eq!(none, unauthorized, "{method} {path}");
                assert_ne!(check, unauthorized, "{method} {path}");
            }
            Need::Admin | Need::Upload => {
                assert_eq!(none, unauthorized, "{method} {path}");
                assert_eq!(check, unauthorized, "{method} {path}");
            }
        }
        assert_ne!(admin, unauthorized, "{method} {path}");
    }
    // A path no route serves is not found, token or not: the document says
    // which routes exist anyway.
    let (status, body) = h.send(Method::GET, "/v1/nope", None, None, "").await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (404, &"route_not_found".into())
    );
}
