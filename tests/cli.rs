//! The admin CLI against a real server, and the audit log it reads.

mod common;

use std::process::Output;
use std::sync::Arc;

use common::cli::{command, output, serve, stderr, stdout};
use common::{ADMIN, Backend, Harness, RedisServer, app_for, test_options};
use guestlist::store::Store;
use guestlist::store::embedded::EmbeddedStore;
use guestlist::store::redis::RedisStore;
use serde_json::Value;

/// Runs the admin CLI against `server`, with `token` as GUESTLIST_TOKEN.
async fn cli(server: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = command(args);
    cmd.env("GUESTLIST_SERVER", server)
        .env_remove("GUESTLIST_TOKEN");
    if let Some(t) = token {
        cmd.env("GUESTLIST_TOKEN", t);
    }
    output(cmd).await
}

/// A server on a fresh embedded store, and the directory holding it.
async fn embedded_server() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    (dir, serve(store).await)
}

/// Creates campaign `id`, active from 2020 to 2099, through the CLI.
async fn create_active(server: &str, id: &str, extra: &[&str]) -> Output {
    let mut args = vec!["campaign", "create", id];
    args.extend([
        "--starts-at",
        "2020-01-01T00:00:00Z",
        "--ends-at",
        "2099-01-01T00:00:00Z",
    ]);
    args.extend(extra);
    let out = cli(server, Some(ADMIN), &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_a_campaign_end_to_end_and_refuses_a_bad_file_whole() {
    let (dir, server) = embedded_server().await;
    let t = Some(ADMIN);
    let out = create_active(&server, "spring", &["--name", "Spring sale"]).await;
    assert!(stdout(&out).contains("spring") && stdout(&out).contains("active"));

    // 1,000,000 lines with a header.
    let big = dir.path().join("ids.csv");
    let mut text = String::from("user_id\n");
    for i in 0..999_999u64 {
        text.push_str(&(i * 3).to_string());
        text.push('\n');
    }
    std::fs::write(&big, &text).unwrap();
    let out = cli(
        &server,
        t,
        &["audience", "replace", "spring", big.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("audience size 999999"),
        "{}",
        stdout(&out)
    );

    // A bad line 12,345: non-zero exit, the line printed, nothing changed.
    let bad = dir.path().join("bad.txt");
    let mut lines: Vec<String> = (0..20_000u64).map(|i| i.to_string()).collect();
    lines[12_344] = "12a".into();
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let out = cli(
        &server,
        t,
        &["audience", "replace", "spring", bad.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 12345"), "{}", stderr(&out));
    let out = cli(&server, t, &["campaign", "show", "spring", "--json"]).await;
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["audience_size"], 999_999);
    assert_eq!(shown["version"], 1);

    let out = cli(&server, None, &["check", "spring", "3"]).await;
    assert!(
        stdout(&out).contains("user 3 is in spring"),
        "{}",
        stdout(&out)
    );
    let out = cli(&server, None, &["check", "spring", "4"]).await;
    assert!(stdout(&out).contains("NOT in spring"), "{}", stdout(&out));
    let out = cli(&server, None, &["user", "6", "--json"]).await;
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(body["campaigns"], serde_json::json!(["spring"]));

    let out = cli(
        &server,
        t,
        &[
            "campaign",
            "edit",
            "spring",
            "--ends-at",
            "2098-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&server, t, &["campaign", "list"]).await;
    assert!(
        stdout(&out).contains("2098-01-01T00:00:00Z"),
        "{}",
        stdout(&out)
    );

    // Without a token, changes are refused with a hint.
    let out = cli(&server, None, &["campaign", "delete", "spring", "--yes"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("GUESTLIST_TOKEN"), "{}", stderr(&out));

    let out = cli(&server, t, &["audit", "--campaign", "spring"]).await;
    let log = stdout(&out);
    for what in [
        "created",
        "audience_replaced",
        "updated",
        "with 999,999 at version 1",
    ] {
        assert!(log.contains(what), "audit lacks {what}:\n{log}");
    }
    assert!(
        !log.contains("invalid"),
        "a refused upload is not a change:\n{log}"
    );

    let out = cli(&server, t, &["campaign", "delete", "spring", "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&server, t, &["campaign", "show", "spring"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("campaign_not_found"),
        "{}",
        stderr(&out)
    );
}

/// A CRM export: five columns, a header, a BOM, CRLF, quoted fields with
/// commas, doubled quotes and a line break. The IDs are the `user id`
/// column; the `account` column holds numbers too, so reading the wrong
/// column would not fail, it would load the wrong audience.
const EXPORT: &str = "\u{feff}name,\"account\",\"user id\",email,notes\r\n\
    \"Doe, Jane\",501,17,jane@example.com,\"said \"\"hi\"\", twice\"\r\n\
    Bob,502,42,\"bob+vip@example.com\",\"two\r\nlines\"\r\n\
    \"O'Neil, Ann\",503,\" 7 \",ann@example.com,\r\n\
    Zed,504,42,zed@example.com,\"dup, of Bob\"\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_export_loads_exactly_its_chosen_column_through_the_api_and_the_cli() {
    guestlist::tls::install_crypto_provider();
    let (dir, server) = embedded_server().await;
    let t = Some(ADMIN);
    create_active(&server, "crm", &[]).await;
    let http = reqwest::Client::new();
    let export = |server: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{server}/v1/campaigns/crm/audience"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            text.lines()
                .map(|l| l.parse::<u64>().unwrap_or_else(|_| panic!("{text}")))
                .collect::<Vec<_>>()
        }
    };
    let put = |query: &'static str, content_type: &'static str| {
        http.put(format!("{server}/v1/campaigns/crm/audience{query}"))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(EXPORT)
            .send()
    };

    // The API: the header declared by RFC 4180's parameter, the column by name.
    let r = put("?column=user+id", "text/csv; header=present")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["received"], &body["duplicates"]),
        (&4.into(), &1.into()),
        "{body}"
    );
    assert_eq!(export(server.clone()).await, vec![7, 17, 42]);

    // A column by number, after clearing, reads the same.
    let r = http
        .put(format!("{server}/v1/campaigns/crm/audience"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = put("?header=true&column=3", "text/csv").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(export(server.clone()).await, vec![7, 17, 42]);

    // Several columns and no choice: refused with the line, nothing changed.
    let r = put("?header=true", "text/csv").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["error"], &body["line"]),
        (&"invalid_csv".into(), &1.into()),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("5 columns"),
        "{body}"
    );
    // A named column without a declared header, and CSV options on a
    // text/plain body, are refused before the body is read.
    for (query, content_type, said) in [
        ("?column=email", "text/csv", "no header is declared"),
        (
            "?column=3",
            "text/plain",
            "send the body as Content-Type: text/csv",
        ),
        ("?header=maybe", "text/csv", "header must be true or false"),
    ] {
        let r = put(query, content_type).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_csv_options", "{body}");
        assert!(body["message"].as_str().unwrap().contains(said), "{body}");
    }

    // The CLI, from a file: --header and --column.
    let file = dir.path().join("crm-export.csv");
    std::fs::write(&file, EXPORT).unwrap();
    let file = file.to_str().unwrap();
    let out = cli(
        &server,
        t,
        &[
            "audience", "remove", "crm", file, "--header", "--column", "user id",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(export(server.clone()).await, Vec::<u64>::new());
    let out = cli(
        &server,
        t,
        &["audience", "add", "crm", file, "--header", "--column", "3"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(export(server.clone()).await, vec![7, 17, 42]);

    // The wrong column is refused by name with the header's columns, and a
    // non-numeric one by its line; neither changes the audience.
    let out = cli(
        &server,
        t,
        &[
            "audience", "replace", "crm", file, "--header", "--column", "user_id",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"line 1: the header has no column "user_id"; its columns are "name", "account", "user id""#),
        "{}",
        stderr(&out)
    );
    let out = cli(
        &server,
        t,
        &[
            "audience", "replace", "crm", file, "--header", "--column", "email",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"line 2: "jane@example.com" is not a user id"#),
        "{}",
        stderr(&out)
    );
    assert_eq!(export(server.clone()).await, vec![7, 17, 42]);
}

/// A campaign of string IDs through the CLI alone: created with
/// `--user-id-type string`, loaded from the export's email column with
/// `--header --column`, checked by email (`+` and `@` reach the server as
/// the user), and the export is exactly that column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_campaign_loads_an_email_column_and_answers_by_email() {
    guestlist::tls::install_crypto_provider();
    let (dir, server) = embedded_server().await;
    let t = Some(ADMIN);
    let out = create_active(&server, "vip", &["--user-id-type", "string", "--json"]).await;
    let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(created["user_id_type"], "string", "{created}");
    let file = dir.path().join("crm-export.csv");
    std::fs::write(&file, EXPORT).unwrap();
    let file = file.to_str().unwrap();
    let out = cli(
        &server,
        t,
        &[
            "audience", "replace", "vip", file, "--header", "--column", "email",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for (user, member) in [
        ("bob+vip@example.com", true),
        ("zed@example.com", true),
        ("Bob+vip@example.com", false),
        ("17", false),
    ] {
        let out = cli(&server, t, &["check", "vip", user]).await;
        assert_eq!(out.status.success(), member, "{user}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(&format!("user {user} is ")),
            "{}",
            stdout(&out)
        );
    }
    let out = cli(&server, t, &["user", "ann@example.com"]).await;
    assert!(stdout(&out).contains("is in: vip"), "{}", stdout(&out));
    let out = cli(&server, t, &["audience", "export", "vip"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "ann@example.com",
            "bob+vip@example.com",
            "jane@example.com",
            "zed@example.com"
        ]
    );
    // The bitmap design is refused for string IDs, with its code.
    let out = cli(
        &server,
        t,
        &[
            "campaign",
            "create",
            "bm",
            "--starts-at",
            "2020-01-01T00:00:00Z",
            "--ends-at",
            "2099-01-01T00:00:00Z",
            "--design",
            "bitmap",
            "--user-id-type",
            "string",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("design_needs_integer_ids"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_versions_and_rolls_back_on_a_server_keeping_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = common::serve::Serve::start(
        "keep-versions",
        data.to_str().unwrap(),
        &["--keep-versions", "2"],
    );
    server.wait_ready().await;
    let base = server.base.clone();
    create_active(&base, "c", &[]).await;
    for (i, ids) in ["1\n2\n", "3\n", "4\n5\n6\n"].iter().enumerate() {
        let file = dir.path().join(format!("v{i}.txt"));
        std::fs::write(&file, ids).unwrap();
        let out = cli(
            &base,
            Some(ADMIN),
            &["audience", "replace", "c", file.to_str().unwrap()],
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = cli(&base, Some(ADMIN), &["audience", "versions", "c"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "--keep-versions 2 kept more:\n{table}");
    assert_eq!(
        (rows[0][0], rows[0][1], rows[0][3], rows[0][4]),
        ("3", "3", "admin", "replaced")
    );
    assert_eq!((rows[1][0], rows[1][1]), ("2", "1"));

    let out = cli(&base, Some(ADMIN), &["audience", "rollback", "c", "1"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("keeps no version 1; the kept versions are 3, 2"),
        "{err}"
    );
    assert!(err.contains("guestlist audience versions c"), "{err}");

    let out = cli(&base, Some(ADMIN), &["audience", "rollback", "c", "2"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "c: rolled back to version 2; audience size 1, version 4"
    );
    let out = cli(&base, Some(ADMIN), &["audience", "export", "c"]).await;
    assert_eq!(stdout(&out), "3\n");
    let out = cli(&base, Some(ADMIN), &["--json", "audience", "versions", "c"]).await;
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let newest = &body["versions"][0];
    assert_eq!(
        (&newest["version"], &newest["action"], &newest["restored"]),
        (&4.into(), &"rolled_back".into(), &2.into())
    );
    assert_eq!(body["versions"].as_array().unwrap().len(), 2);
}

async fn audit_actions(h: &Harness) -> Vec<String> {
    let (status, body) = h.get("/v1/audit?campaign=c").await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "admin");
            e["action"].as_str().unwrap().to_string()
        })
        .collect()
}

const EXPECTED: [&str; 4] = ["deleted", "audience_added", "audience_replaced", "created"];

async fn make_history(h: &Harness) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    h.upload("c", "add", "text/plain", "3\n").await;
    h.delete("/v1/campaigns/c").await;
    assert_eq!(audit_actions(h).await, EXPECTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_audit_log_survives_a_restart() {
    let mut h = Harness::new(Backend::Embedded).await;
    make_history(&h).await;
    let dir = h.data_dir.take().unwrap();
    drop(h);
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let h = Harness {
        app: app_for(store.clone(), 1 << 20),
        store,
        backend: Backend::Embedded,
        redis: None,
        data_dir: Some(dir),
    };
    assert_eq!(audit_actions(&h).await, EXPECTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_audit_log_survives_a_service_restart() {
    let server = RedisServer::start();
    let first: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let h = Harness::over(first, Backend::RedisSet);
    make_history(&h).await;
    drop(h);
    let second: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let h = Harness::over(second, Backend::RedisSet);
    assert_eq!(audit_actions(&h).await, EXPECTED);
    let len = server.cli(&["XLEN", "guestlist:audit"]);
    assert_eq!(len.trim(), "4");
}
