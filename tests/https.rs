//! `serve --tls-cert/--tls-key` driven by the CLI over `https://`, with a CA
//! the test makes (no key material is committed).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::ADMIN;
use common::serve::Serve;
use common::tls::Pki;
use tokio::io::AsyncReadExt;

/// Runs the `guestlist` binary off the async workers.
async fn cli(server: &str, ca_file: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guestlist"));
    cmd.args(args)
        .env("GUESTLIST_SERVER", server)
        .env("GUESTLIST_TOKEN", ADMIN)
        .env_remove("GUESTLIST_CA_FILE");
    if let Some(ca) = ca_file {
        cmd.arg("--ca-file").arg(ca);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

const CREATE_SPRING: [&str; 7] = [
    "campaign",
    "create",
    "spring",
    "--starts-at",
    "2020-01-01T00:00:00Z",
    "--ends-at",
    "2099-01-01T00:00:00Z",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_a_campaign_over_https_with_a_private_ca_and_refuses_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem"),
    );
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let data = dir.path().join("data");
    let mut server = Serve::start(
        "https",
        data.to_str().unwrap(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "2s",
        ],
    )
    .https(&ca_pem);
    server.wait_ready().await;
    assert!(server.base.starts_with("https://127.0.0.1:"));

    // Without the CA: a clear certificate error, and nothing is created.
    let refused = cli(&server.base, None, &CREATE_SPRING).await;
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("TLS certificate") && stderr.contains("--ca-file"),
        "{stderr}"
    );

    let out = cli(&server.base, Some(&ca), &["campaign", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("spring"),
        "{}",
        text(&out.stdout)
    );

    let out = cli(&server.base, Some(&ca), &CREATE_SPRING).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "3\n6\n9\n").unwrap();
    let out = cli(
        &server.base,
        Some(&ca),
        &["audience", "replace", "spring", ids.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("audience size 3"),
        "{}",
        text(&out.stdout)
    );

    let out = cli(&server.base, Some(&ca), &["check", "spring", "6"]).await;
    assert!(
        text(&out.stdout).contains("user 6 is in spring"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(&server.base, Some(&ca), &["check", "spring", "7"]).await;
    assert!(
        text(&out.stdout).contains("NOT in spring"),
        "{}",
        text(&out.stdout)
    );

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let out = cli(&plain, None, &["check", "spring", "6"]).await;
    assert!(!out.status.success());

    // A client that never starts its TLS handshake is closed by the header timeout.
    let addr = server.base.trim_start_matches("https://");
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "a silent connection outlived the handshake timeout"
    );
    assert!(rest.is_empty());
}
