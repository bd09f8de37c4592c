//! The real `guestlist serve` against clients that misbehave on purpose:
//! made-up methods that would grow the metrics without end, half-sent
//! headers that would pin connections, uploads that stall, and request ids
//! that would be echoed into logs.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::ADMIN;
use common::serve::Serve;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server on a fresh embedded store; the directory lives as long as it.
async fn start(name: &str, extra: &[&str]) -> (Serve, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Serve::start(name, dir.path().to_str().unwrap(), extra);
    server.wait_ready().await;
    (server, dir)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A campaign `c` live now whose audience is 1, 2 and 3.
async fn live_campaign(http: &reqwest::Client, base: &str) {
    let created = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "id": "c", "name": "c", "design": "set",
            "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.text().await
    );
    let replaced = http
        .put(format!("{base}/v1/campaigns/c/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("1\n2\n3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
}

async fn is_member(http: &reqwest::Client, base: &str, user: u64) -> bool {
    let r = http
        .get(format!("{base}/v1/campaigns/c/members/{user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["member"]
        .as_bool()
        .unwrap()
}

/// The series in a Prometheus text page: one per metric and label set, a
/// histogram's buckets, sum and count being one series.
async fn series(server: &Serve) -> HashSet<String> {
    let page = server.admin_text("/metrics").await;
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let name_and_labels = l.rsplit_once(' ').map_or(l, |(series, _value)| series);
            let without_le = strip_le(name_and_labels);
            let (name, labels) =
                without_le.split_at(without_le.find('{').unwrap_or(without_le.len()));
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            format!("{name}{labels}")
        })
        .collect()
}

/// Drops the `le="…"` label of a histogram bucket.
fn strip_le(series: &str) -> String {
    match series.find("le=\"") {
        Some(start) => {
            let end = start + 4 + series[start + 4..].find('"').unwrap() + 1;
            let rest = series[end..].trim_start_matches(',');
            format!("{}{rest}", &series[..start])
        }
        None => series.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_methods_add_at_most_ten_metric_series() {
    let (server, _dir) = start("made-up-methods", &[]).await;
    let http = client();
    let base = server.base.clone();
    // The first scrape records itself; the baseline includes that.
    series(&server).await;
    let before = series(&server).await;

    let mut senders = tokio::task::JoinSet::new();
    for task in 0..8u32 {
        let (http, base) = (http.clone(), base.clone());
        senders.spawn(async move {
            for i in 0..1_250u32 {
                let method = format!("M{task}X{i}Y{:08X}", rand::random::<u32>());
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                // A real route (405) and no route at all (404).
                let path = if i % 2 == 0 {
                    "/healthz".to_string()
                } else {
                    format!("/nothing/{i}")
                };
                let r = http
                    .request(method, format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_client_error(), "{}", r.status());
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }

    let after = series(&server).await;
    let added: Vec<_> = after.difference(&before).collect();
    assert!(
        added.len() <= 10,
        "{} new series, e.g. {:?}",
        added.len(),
        added.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        added.iter().any(|s| s.contains("method=\"other\"")),
        "the requests were not counted at all: {added:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_error_bodies_name_it() {
    let (server, _dir) = start("request-ids", &[]).await;
    let http = client();
    let url = format!("{}/v1/campaigns/nope", server.base);

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], made.as_str());

    // A short plain id of the client's is kept, end to end.
    let r = http
        .get(&url)
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a_b");
    assert_eq!(
        r.json::<Value>().await.unwrap()["request_id"],
        "trace-42.a_b"
    );

    // Too long, or with characters a log reader could trip on: replaced.
    for bad in ["x".repeat(65), "a b".into(), "a\"}{".into()] {
        let r = http
            .get(&url)
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 36, "{echoed}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["request_id"],
            echoed.as_str()
        );
    }
}

/// Reads until the server closes the connection; `None` if it stays open
/// past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

/// Replaces campaign c's audience with a body that promises 1,000 bytes and
/// sends six, then nothing.
async fn stalled_upload(addr: &str) -> TcpStream {
    let mut upload = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/campaigns/c/audience HTTP/1.1\r\nHost: guestlist\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n7\n8\n9\n"
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload
}

/// Reads a response whose body is one JSON object, up to its last brace.
async fn json_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let done = text
            .split_once("\r\n\r\n")
            .is_some_and(|(_, body)| body.trim_end().ends_with('}'));
        if n == 0 || done {
            return text.into_owned();
        }
    }
}

const HALF_A_HEADER: &[u8] =
    b"GET /v1/campaigns/c/members/1 HTTP/1.1\r\nHost: guestlist\r\nUser-Ag";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_header_is_cut_off_at_the_header_timeout() {
    let (server, _dir) = start("half-header", &["--header-timeout", "2s"]).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(HALF_A_HEADER).await.unwrap();
    let sent = Instant::now();
    let answer = closed_within(&mut slow, Duration::from_secs(15))
        .await
        .expect("the server kept a half-sent header open past its header timeout");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Closed by the timer, not on sight.
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );

    // A byte now and then does not keep a header alive either.
    let mut dribble = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in HALF_A_HEADER.iter().cycle().take(40) {
        if dribble.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cut = cut
        || closed_within(&mut dribble, Duration::from_secs(10))
            .await
            .is_some();
    assert!(
        cut,
        "a dribbled header was kept for {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_headers_do_not_starve_checks() {
    // A header timeout far longer than the test, so all thousand stay open.
    let (server, _dir) = start("thousand-half-headers", &["--header-timeout", "120s"]).await;
    let http = client();
    live_campaign(&http, &server.base).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut held = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(HALF_A_HEADER).await.unwrap();
        held.push(stream);
    }
    // New connections each time, as a fresh login client would open.
    for user in [1, 2, 3, 4, 5] {
        let fresh = client();
        assert_eq!(
            is_member(&fresh, &server.base, user).await,
            user <= 3,
            "user {user}"
        );
    }
    // Every one of the thousand was still open while the checks answered.
    let mut buf = [0u8; 1];
    for (i, stream) in held.iter_mut().enumerate() {
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("held connection {i} was no longer open: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_with_408_and_changes_nothing() {
    let (server, _dir) = start("stalled-upload", &["--upload-idle-timeout", "1s"]).await;
    let http = client();
    live_campaign(&http, &server.base).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut upload = stalled_upload(&addr).await;
    let answer = tokio::time::timeout(Duration::from_secs(15), json_answer(&mut upload))
        .await
        .expect("a stalled upload was never cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_idle_timeout\""), "{answer}");
    assert!(answer.contains("\"request_id\""), "{answer}");

    for (user, member) in [(1, true), (3, true), (7, false), (9, false)] {
        assert_eq!(
            is_member(&http, &server.base, user).await,
            member,
            "user {user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_requests_in_flight_the_drain_timeout_and_no_more() {
    let (mut server, _dir) = start(
        "drain-deadline",
        &["--drain-timeout", "1s", "--upload-idle-timeout", "300s"],
    )
    .await;
    let http = client();
    live_campaign(&http, &server.base).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    // An upload that will not finish by itself for minutes.
    let mut upload = stalled_upload(&addr).await;
    // Time for the handler to start reading the body; the server still answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(is_member(&http, &server.base, 1).await);

    let status = server
        .terminate(Duration::from_secs(20))
        .await
        .expect("the server waited on a stalled upload past its drain timeout");
    assert!(status.success(), "{status}");
    assert!(
        closed_within(&mut upload, Duration::from_secs(5))
            .await
            .is_some(),
        "the upload's connection outlived the server"
    );
}

/// A connection with a 1 KiB receive buffer, so the server's answers back
/// up after a few kilobytes.
async fn tight_connection(addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

fn healthz_requests(count: usize) -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: guestlist\r\n\r\n".repeat(count)
}

/// A server whose timeouts are as short as the stalls the tests can wait
/// out; the write timeout goes through its environment variable.
async fn start_short(name: &str) -> (Serve, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--header-timeout",
        "2s",
        "--idle-timeout",
        "3s",
        "--request-timeout",
        "2s",
    ];
    let mut server = Serve::start_with(
        name,
        Some(dir.path().to_str().unwrap()),
        &flags,
        &[("GUESTLIST_WRITE_TIMEOUT", "2s")],
    );
    server.wait_ready().await;
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_off_at_the_write_timeout() {
    let (server, _dir) = start_short("never-reads").await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut hostile = tight_connection(&addr).await;
    let requests = healthz_requests(40_000);
    let started = Instant::now();
    // Keeps sending and never reads: once the server gives up on writing
    // and closes (with our requests unread, so with a reset), a write fails.
    let cut = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = hostile.write_all(&requests).await {
                return e;
            }
        }
    })
    .await;
    let error = cut.unwrap_or_else(|_| {
        panic!(
            "a client that never read was still connected after {:?}",
            started.elapsed()
        )
    });
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{error:?}"
    );

    // The server still answers everyone else.
    let r = client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_keeps_reading_outlasts_the_write_timeout() {
    let (server, _dir) = start_short("slow-reader").await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    // Far more answers than the reader takes in the time below, so the
    // server keeps waiting on it, each time for a fraction of the limit
    // (the kernel's buffers drain at the reader's pace between writes).
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&healthz_requests(300_000)).await;
        writer
    });
    // Three write timeouts long.
    let until = Instant::now() + Duration::from_secs(6);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while Instant::now() < until {
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("the server stopped answering a reader that kept reading")
            .unwrap();
        assert_ne!(n, 0, "the server closed a reader that kept reading");
        total += n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(total > 0);
    sending.abort();
}
