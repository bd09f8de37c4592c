//! The admin CLI's grammar and its failures, run as the binary against a
//! real server: global options anywhere on the line, help on every command,
//! errors that lead with their cause, documented exit codes, confirmation of
//! a delete, explicit formats.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::ADMIN;
use common::cli::{command, output, stderr, stdout};
use guestlist::store::Store;
use guestlist::store::embedded::EmbeddedStore;
use serde_json::Value;

/// A guestlist server on the embedded store; returns its base URL and the
/// temp dir that holds its data.
async fn serve() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    (common::cli::serve(store).await, dir)
}

/// Not guestlist: an HTTP server that answers every request 404 with an
/// empty body.
async fn foreign_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new()).await });
    format!("http://{addr}")
}

/// Runs the binary with no server, token or CA from the environment (a
/// server that would answer if `--server` were ignored would hide a bug, so
/// GUESTLIST_SERVER points at a closed port), `RUST_BACKTRACE=1` as on many
/// operators' machines, and stdin closed.
async fn run(token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = command(args);
    cmd.env("GUESTLIST_SERVER", "http://127.0.0.1:9")
        .env_remove("GUESTLIST_TOKEN")
        .env_remove("GUESTLIST_TOKEN_FILE")
        .env_remove("GUESTLIST_CA_FILE")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("GUESTLIST_TOKEN", t);
    }
    output(cmd).await
}

/// Asserts the exit code and the first line of stderr, and that no
/// backtrace was printed.
fn assert_fails(out: &Output, code: i32, first_line: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.lines().next().unwrap_or(""),
        first_line,
        "stderr: {err}"
    );
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert!(!err.contains("Caused by"), "{err}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Creates campaign `id`, active now, as the admin.
async fn create(server: &str, id: &str) {
    let out = run(
        Some(ADMIN),
        &[&["--server", server, "campaign", "create", id][..], &WINDOW].concat(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A window that holds now.
const WINDOW: [&str; 4] = [
    "--starts-at",
    "2020-01-01T00:00:00Z",
    "--ends-at",
    "2099-01-01T00:00:00Z",
];

/// `args` with `--server URL` put at `position`: before the command, after
/// its first word, or at the end.
fn with_server(args: &[&str], server: &str, position: usize) -> Vec<String> {
    let mut line: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let at = match position {
        0 => 0,
        1 => 1,
        _ => line.len(),
    };
    line.splice(at..at, ["--server".to_string(), server.to_string()]);
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_command_takes_server_before_and_after_its_subcommand() {
    let (server, dir) = serve().await;
    let ids = write(dir.path(), "ids.txt", "1\n2\n3\n");
    let more = write(dir.path(), "more.txt", "4\n");
    for position in 0..3 {
        let c = format!("c{position}");
        let commands: Vec<Vec<&str>> = vec![
            [&["campaign", "create", &c][..], &WINDOW].concat(),
            vec!["campaign", "list"],
            vec!["campaign", "show", &c],
            vec!["campaign", "edit", &c, "--name", "Renamed"],
            vec!["audience", "replace", &c, &ids],
            vec!["audience", "add", &c, &more],
            vec!["audience", "remove", &c, &more],
            vec!["audience", "export", &c],
            vec!["check", &c, "2"],
            vec!["user", "2"],
            vec!["audit", "--campaign", &c],
            vec!["campaign", "delete", &c, "--yes"],
        ];
        for args in commands {
            let line = with_server(&args, &server, position);
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            let out = run(Some(ADMIN), &line).await;
            assert!(
                out.status.success(),
                "{line:?} failed ({:?}): {}",
                out.status.code(),
                stderr(&out)
            );
            match args[..2] {
                ["campaign", "show"] => assert!(stdout(&out).contains(&c), "{}", stdout(&out)),
                ["audience", "export"] => assert_eq!(stdout(&out), "1\n2\n3\n"),
                ["user", _] => assert!(stdout(&out).contains(&c), "{}", stdout(&out)),
                _ => {}
            }
        }
        let out = run(Some(ADMIN), &["campaign", "show", &c, "--server", &server]).await;
        assert_eq!(out.status.code(), Some(4), "{c} was not deleted");
    }
    // --json is global too, and reaches the nested command.
    let out = run(None, &["--json", "--server", &server, "campaign", "list"]).await;
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(body["campaigns"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_help_lists_the_global_options_the_token_and_the_exit_codes() {
    let helps: [&[&str]; 15] = [
        &[],
        &["campaign"],
        &["campaign", "create"],
        &["campaign", "list"],
        &["campaign", "show"],
        &["campaign", "edit"],
        &["campaign", "delete"],
        &["audience"],
        &["audience", "replace"],
        &["audience", "add"],
        &["audience", "remove"],
        &["audience", "export"],
        &["check"],
        &["user"],
        &["audit"],
    ];
    for path in helps {
        let mut args = path.to_vec();
        args.push("--help");
        let out = run(None, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let help = stdout(&out);
        for needle in [
            "--server",
            "--json",
            "--ca-file",
            "GUESTLIST_TOKEN",
            "GUESTLIST_SERVER",
        ] {
            assert!(
                help.contains(needle),
                "{args:?} --help lacks {needle}:\n{help}"
            );
        }
        if !path.is_empty() {
            assert!(help.contains("Exit codes:"), "{args:?}:\n{help}");
        }
    }
    let out = run(None, &["campaign", "delete", "--help"]).await;
    assert!(stdout(&out).contains("--yes"), "{}", stdout(&out));
    let out = run(None, &["audience", "export", "--help"]).await;
    assert!(
        stdout(&out).contains("[possible values: lines, csv, json]"),
        "{}",
        stdout(&out)
    );

    // serve has no use for them: hidden there, and refused if given.
    let out = run(None, &["serve", "--help"]).await;
    assert!(!stdout(&out).contains("--server"), "{}", stdout(&out));
    let out = run(None, &["serve", "--json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--json is an option of the admin commands"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_lead_with_their_cause_exit_with_their_code_and_print_no_backtrace() {
    let (server, dir) = serve().await;
    let line = [
        &["--server", &server, "campaign", "create", "c"][..],
        &WINDOW,
    ]
    .concat();

    // A directory given as the file of IDs.
    let data = dir.path().to_str().unwrap();
    let out = run(
        Some(ADMIN),
        &["--server", &server, "audience", "replace", "c", data],
    )
    .await;
    assert_fails(
        &out,
        4,
        &format!("error: {data} is a directory, not a file of IDs: give a file, or - for stdin"),
    );

    // A missing file.
    let out = run(
        Some(ADMIN),
        &[
            "--server",
            &server,
            "audience",
            "add",
            "c",
            "/no/such/ids.txt",
        ],
    )
    .await;
    assert_fails(
        &out,
        4,
        "error: cannot read /no/such/ids.txt: No such file or directory (os error 2)",
    );

    // --server without a scheme.
    let bare = server.trim_start_matches("http://");
    let out = run(Some(ADMIN), &["campaign", "list", "--server", bare]).await;
    assert_fails(
        &out,
        2,
        &format!("error: --server {bare}: missing scheme: use http://{bare} (or https://{bare})"),
    );

    // A server that is not guestlist.
    let foreign = foreign_server().await;
    let out = run(Some(ADMIN), &["campaign", "list", "--server", &foreign]).await;
    assert_fails(
        &out,
        3,
        &format!(
            "error: the server at {foreign} is not guestlist: its answer to GET /v1/campaigns (404 Not Found) is not guestlist's JSON"
        ),
    );

    // Nothing listening.
    let out = run(Some(ADMIN), &["campaign", "list"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with("error: cannot connect to http://127.0.0.1:9: ") && err.contains("refused"),
        "{err}"
    );

    // 401, without a token and with a wrong one.
    let out = run(None, &line).await;
    assert_fails(
        &out,
        4,
        "error: GUESTLIST_TOKEN is not set and this command needs a token: export GUESTLIST_TOKEN=<admin token> (HTTP 401 unauthorized)",
    );
    let out = run(Some("not-the-admin-token-0123"), &line).await;
    assert_fails(
        &out,
        4,
        "error: the server refused the token in GUESTLIST_TOKEN: it is not a token this server knows, or not an admin token (HTTP 401 unauthorized)",
    );

    // 409 speaks of the CLI's command, not of PATCH.
    let out = run(Some(ADMIN), &line).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(Some(ADMIN), &line).await;
    assert_fails(
        &out,
        4,
        "error: campaign c already exists (HTTP 409 campaign_exists): choose another id, or change this one with `guestlist campaign edit c`",
    );
    assert!(!stderr(&out).contains("PATCH"), "{}", stderr(&out));

    // 400 carries the server's message and code.
    let bad = write(dir.path(), "bad.txt", "1\n12a\n");
    let out = run(
        Some(ADMIN),
        &["--server", &server, "audience", "replace", "c", &bad],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("error: line 2: ") && first.ends_with("(HTTP 400 invalid_user_id)"),
        "{err}"
    );

    // 404 of an unknown campaign, with a hint.
    let out = run(
        Some(ADMIN),
        &["--server", &server, "campaign", "show", "nope"],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.lines()
            .next()
            .unwrap()
            .ends_with("(HTTP 404 campaign_not_found)"),
        "{err}"
    );
    assert_eq!(
        err.lines().nth(1),
        Some("hint: `guestlist campaign list` shows the campaigns")
    );

    // A usage error is clap's, exit 2.
    let out = run(Some(ADMIN), &["campaign", "frobnicate"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_0_for_a_member_1_for_a_non_member_and_4_for_an_unknown_campaign() {
    let (server, dir) = serve().await;
    let s = server.as_str();
    let ids = write(dir.path(), "ids.txt", "7\n");
    create(s, "c").await;
    let out = run(
        Some(ADMIN),
        &["--server", s, "audience", "replace", "c", &ids],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let code = |o: &Output| o.status.code();
    let out = run(None, &["check", "c", "7", "--server", s]).await;
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("user 7 is in c"),
        "{}",
        stdout(&out)
    );
    let out = run(None, &["check", "c", "8", "--server", s]).await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("user 8 is NOT in c"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stderr(&out), "", "a no is an answer, not an error");
    let out = run(None, &["check", "c", "8", "--json", "--server", s]).await;
    assert_eq!(code(&out), Some(1));
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(body["member"], false);
    let out = run(None, &["check", "nope", "7", "--server", s]).await;
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_asks_on_a_terminal_and_needs_yes_elsewhere() {
    let (server, _dir) = serve().await;
    let s = server.as_str();
    create(s, "c").await;
    create(s, "d").await;

    let out = run(Some(ADMIN), &["--server", s, "campaign", "delete", "c"]).await;
    assert_fails(
        &out,
        2,
        "error: not deleting campaign c: confirmation needs a terminal and stdin is not one; pass --yes to delete without asking",
    );
    let out = run(Some(ADMIN), &["--server", s, "campaign", "show", "c"]).await;
    assert!(out.status.success(), "c was deleted without confirmation");

    // On a terminal (`script` gives the command one): "n" keeps it, "y" deletes.
    for (answer, kept) in [("n", true), ("y", false)] {
        let bin = env!("CARGO_BIN_EXE_guestlist");
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!("{bin} --server {s} campaign delete d"),
            "/dev/null",
        ])
        .env("GUESTLIST_TOKEN", ADMIN)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let typed = format!("{answer}\n");
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(typed.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let shown = stdout(&out);
        assert!(
            shown.contains("Delete campaign d (d, active, 0 IDs) and its audience? This cannot be undone. [y/N]"),
            "{shown}"
        );
        let show = run(Some(ADMIN), &["--server", s, "campaign", "show", "d"]).await;
        assert_eq!(show.status.success(), kept, "answer {answer:?}: {shown}");
    }

    let out = run(
        Some(ADMIN),
        &["--server", s, "campaign", "delete", "c", "--yes"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deleted c\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_are_explicit_and_an_add_counts_the_ids_already_present() {
    let (server, dir) = serve().await;
    let s = server.as_str();
    let admin = |args: Vec<&str>| {
        let line: Vec<String> = ["--server", s]
            .iter()
            .chain(&args)
            .map(|a| a.to_string())
            .collect();
        async move {
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            run(Some(ADMIN), &line).await
        }
    };
    create(s, "c").await;

    // A .json name switches the parser, and says so.
    let json = write(dir.path(), "ids.json", "[3, 1, 2]");
    let out = admin(vec!["audience", "replace", "c", &json]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("as a JSON array of IDs because of its .json extension"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "c: audience size 3, version 1; 3 IDs received\n"
    );
    // --input-format says it outright, whatever the name.
    let text = write(dir.path(), "more.txt", "[4, 3]");
    let out = admin(vec![
        "audience",
        "add",
        "c",
        &text,
        "--input-format",
        "json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        stdout(&out),
        "c: added 1 IDs, 1 already present; audience size 4, version 2\n"
    );
    let lines = write(dir.path(), "again.txt", "4\n5\n5\n");
    let out = admin(vec!["audience", "add", "c", &lines]).await;
    assert_eq!(
        stdout(&out),
        "c: added 1 IDs, 1 already present (1 repeated in the file); audience size 5, version 3\n"
    );
    let out = admin(vec!["audience", "remove", "c", &lines, "--json"]).await;
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (
            body["removed"].as_u64(),
            body["received"].as_u64(),
            body["duplicates"].as_u64()
        ),
        (Some(2), Some(3), Some(1))
    );

    let out = admin(vec!["audience", "export", "c"]).await;
    assert_eq!(stdout(&out), "1\n2\n3\n");

    // --dry-run says what would change, and changes nothing.
    let replacement = write(dir.path(), "replacement.txt", "3\n9\n");
    let out = admin(vec!["audience", "replace", "c", &replacement, "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "c (dry run, nothing changed): would add 1 IDs and remove 2; audience size 3 -> 2 (version 4)\n  \
         would add: 9\n  would remove: 1, 2\n"
    );
    let out = admin(vec!["audience", "export", "c"]).await;
    assert_eq!(
        stdout(&out),
        "1\n2\n3\n",
        "the dry run changed the audience"
    );
    let out = admin(vec!["campaign", "show", "c", "--json"]).await;
    let campaign: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(campaign["version"], 4, "the dry run published a version");

    let out = admin(vec!["audience", "export", "c", "--format", "csv"]).await;
    assert_eq!(stdout(&out), "user_id\n1\n2\n3\n");
    for args in [
        vec!["audience", "export", "c", "--format", "json"],
        vec!["audience", "export", "c", "--json"],
    ] {
        let out = admin(args).await;
        let ids: Vec<u64> = serde_json::from_str(&stdout(&out)).expect("a JSON array");
        assert_eq!(ids, [1, 2, 3]);
    }
    let out = admin(vec![
        "audience", "export", "c", "--json", "--format", "lines",
    ])
    .await;
    assert_fails(
        &out,
        2,
        "error: --json and --format lines ask for different formats: pass one of them",
    );
}
