//! Consistency of what readers see while a campaign's audience churns.
//!
//! Each test runs real `guestlist serve` processes on one backend: for Redis,
//! instance A answers every check from the store and instance B from its
//! near-cache, and an in-process library client is a third reader; for the
//! embedded store, one process. Writers on both instances replace, add to and
//! remove from one campaign's audience while a lifecycle task now and then
//! deletes and re-creates it; readers on every path record what they saw.
//! The recorded history is then checked (see `common::history`): every read
//! must match one committed state, be no older than its path allows, and not
//! go back in time for the reader that made it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use common::history::{
    Allowances, Answer, Change, History, Outcome, Read, ReadKind, Recorder, Source, Write, check,
};
use common::serve::Serve;
use common::{ADMIN, RedisServer, lines};
use guestlist::client::{Client, ClientError, ClientOptions};
use guestlist::lookup::{CheckError, Source as LookupSource};
use guestlist::store::StoreError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CAMPAIGN: &str = "h";
/// Users whose membership changes; every read asks about some of them.
const PROBES: u64 = 48;
/// IDs in every audience the writers upload, so batch checks exceed the
/// store's 1,000-ID chunk and can straddle two commands.
const FILLERS: std::ops::Range<u64> = 1_000_000..1_001_200;
const TARGET_OPS: usize = 20_000;
/// Runs last at least this long even once the target is reached, so that
/// time-driven behaviour shows: the catalog reconciliation (1 s), the
/// staleness bound (2 s), the retirement of replaced audiences (4 s), each
/// several times over.
const MIN_DURATION: Duration = Duration::from_secs(10);
/// Stops the run even if the target is not reached, so a test always ends.
const TIME_LIMIT: Duration = Duration::from_secs(45);
/// Instance B's and the library client's `--max-staleness`.
const MAX_STALENESS: Duration = Duration::from_secs(2);
/// How far "which campaigns is this user in?" from the store may lag: the
/// catalog is refreshed on every announcement and polled every second.
const CATALOG_LAG: Duration = Duration::from_secs(3);
/// Roughly how many operations pass between two delete-and-re-create cycles.
const LIFECYCLE_EVERY: usize = 300;
/// Generous, so a loaded two-core machine answers rather than timing out;
/// a timed-out check would only be a read that tells nothing.
const CHECK_TIMEOUT: &str = "1s";
/// Between two library checks: about the rate of one HTTP reader.
const LIBRARY_PAUSE: Duration = Duration::from_millis(1);

/// The tests of this file each start several processes; run one at a time
/// so their rates are their own and they stay within their time budget.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Set,
    PerUser,
    Bitmap,
    Embedded,
    ClusterSet,
    ClusterPerUser,
    ClusterBitmap,
}

impl Backend {
    fn design(self) -> &'static str {
        match self {
            Backend::Set | Backend::Embedded | Backend::ClusterSet => "set",
            Backend::PerUser | Backend::ClusterPerUser => "per-user",
            Backend::Bitmap | Backend::ClusterBitmap => "bitmap",
        }
    }

    fn on_cluster(self) -> bool {
        matches!(
            self,
            Backend::ClusterSet | Backend::ClusterPerUser | Backend::ClusterBitmap
        )
    }
}

/// The Redis a run shares between its instances.
enum Shared {
    Single(RedisServer),
    Cluster {
        cluster: guestlist::redis_cluster::RedisCluster,
        _guard: common::cluster::Guard,
    },
}

impl Shared {
    fn start(backend: Backend) -> Option<Shared> {
        match backend {
            Backend::Embedded => None,
            b if b.on_cluster() => {
                let cluster = guestlist::redis_cluster::RedisCluster::start(3, 0)
                    .expect("a local Redis Cluster starts");
                let _guard = common::cluster::guard(&cluster);
                Some(Shared::Cluster { cluster, _guard })
            }
            _ => Some(Shared::Single(RedisServer::start())),
        }
    }

    fn url(&self) -> String {
        match self {
            Shared::Single(server) => server.url(),
            Shared::Cluster { cluster, .. } => cluster.cluster_url(),
        }
    }
}

#[test]
fn histories_on_the_set_design_are_consistent() {
    run(Backend::Set);
}

#[test]
fn histories_on_the_per_user_design_are_consistent() {
    run(Backend::PerUser);
}

#[test]
fn histories_on_the_bitmap_design_are_consistent() {
    run(Backend::Bitmap);
}

#[test]
fn histories_on_the_embedded_store_are_consistent() {
    run(Backend::Embedded);
}

#[test]
fn histories_on_the_set_design_on_a_cluster_are_consistent() {
    run(Backend::ClusterSet);
}

#[test]
fn histories_on_the_per_user_design_on_a_cluster_are_consistent() {
    run(Backend::ClusterPerUser);
}

#[test]
fn histories_on_the_bitmap_design_on_a_cluster_are_consistent() {
    run(Backend::ClusterBitmap);
}

fn run(backend: Backend) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(drive(backend));
}

/// A `guestlist serve` process for `backend`, with the generous check
/// deadline this history needs.
fn serve(name: &str, backend: Backend, store: &str, extra: &[&str]) -> Serve {
    let mut args = vec!["--check-timeout", CHECK_TIMEOUT];
    args.extend_from_slice(extra);
    Serve::start(&format!("history-{backend:?}-{name}"), store, &args)
}

/// What every task shares.
struct Ctx {
    rec: Arc<Recorder>,
    stop: AtomicBool,
    http: reqwest::Client,
    design: &'static str,
    /// Answers no run should see (a 500, a transport error); the test fails on any.
    unexpected: Mutex<Vec<String>>,
    probes: Arc<[u64]>,
    /// Half the probes, the fillers, then the other half: a batch that the
    /// store splits into chunks has probes on both sides of the split.
    batch: Arc<[u64]>,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn unexpected(&self, what: String) {
        self.unexpected.lock().unwrap().push(what);
    }
}

async fn drive(backend: Backend) {
    let started = Instant::now();
    let redis = Shared::start(backend);
    let data = tempfile::tempdir().unwrap();
    guestlist::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let staleness = format!("{}s", MAX_STALENESS.as_secs());
    let mut servers: Vec<(&str, Serve)> = match &redis {
        Some(redis) => vec![
            (
                "A",
                serve("A", backend, &redis.url(), &["--near-cache", "off"]),
            ),
            (
                "B",
                serve(
                    "B",
                    backend,
                    &redis.url(),
                    &["--near-cache", "on", "--max-staleness", &staleness],
                ),
            ),
        ],
        None => vec![("E", serve("E", backend, data.path().to_str().unwrap(), &[]))],
    };
    for (_, s) in &mut servers {
        s.wait_ready().await;
    }
    let library = match &redis {
        Some(redis) => {
            let client = Client::connect(
                &redis.url(),
                ClientOptions {
                    check_timeout: Duration::from_secs(1),
                    max_staleness: MAX_STALENESS,
                    ..ClientOptions::default()
                },
            )
            .await
            .unwrap();
            Some(client)
        }
        None => None,
    };

    let probes: Vec<u64> = (0..PROBES).collect();
    let half = probes.len() / 2;
    let batch: Vec<u64> = probes[..half]
        .iter()
        .copied()
        .chain(FILLERS)
        .chain(probes[half..].iter().copied())
        .collect();
    let ctx = Arc::new(Ctx {
        rec: Recorder::new(),
        stop: AtomicBool::new(false),
        http,
        design: backend.design(),
        unexpected: Mutex::new(Vec::new()),
        probes: probes.into(),
        batch: batch.into(),
    });
    let admin = servers[0].1.base.clone();
    assert!(
        create(&ctx, &admin).await,
        "creating the campaign failed: {:?}",
        ctx.unexpected.lock().unwrap()
    );
    if let Some(client) = &library {
        assert!(
            client.wait_until_warm(Duration::from_secs(10)).await,
            "library near-cache never warmed"
        );
    }

    let mut tasks = Vec::new();
    let mut seed = 1u64;
    let mut next_seed = || {
        seed += 1;
        seed
    };
    for (name, s) in &servers {
        tasks.push(tokio::spawn(audience_writer(
            ctx.clone(),
            format!("writer@{name}"),
            s.base.clone(),
            next_seed(),
        )));
    }
    if servers.len() == 1 {
        // Two writers contend for the lease on Redis; the embedded store
        // serialises them, and contending is still worth recording.
        tasks.push(tokio::spawn(audience_writer(
            ctx.clone(),
            "writer2@E".into(),
            admin.clone(),
            next_seed(),
        )));
    }
    tasks.push(tokio::spawn(lifecycle(
        ctx.clone(),
        admin.clone(),
        next_seed(),
    )));
    for (name, s) in &servers {
        for kind in [ReadKind::Member, ReadKind::Batch, ReadKind::UserCampaigns] {
            tasks.push(tokio::spawn(http_reader(
                ctx.clone(),
                format!("{kind:?}@{name}"),
                s.base.clone(),
                kind,
                next_seed(),
            )));
        }
    }
    if let Some(client) = &library {
        for kind in [ReadKind::Member, ReadKind::UserCampaigns] {
            tasks.push(tokio::spawn(library_reader(
                ctx.clone(),
                format!("{kind:?}@library"),
                client.clone(),
                kind,
                next_seed(),
            )));
        }
    }

    let run_started = Instant::now();
    let mut progress = Instant::now();
    while (ctx.rec.completed() < TARGET_OPS || run_started.elapsed() < MIN_DURATION)
        && run_started.elapsed() < TIME_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if progress.elapsed() >= Duration::from_secs(5) {
            progress = Instant::now();
            println!(
                "{backend:?}: {} ops after {:.0} s",
                ctx.rec.completed(),
                run_started.elapsed().as_secs_f64()
            );
        }
    }
    let completed = ctx.rec.completed();
    let elapsed = run_started.elapsed();
    ctx.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let history = ctx.rec.history();
    drop(servers);

    let checked = Instant::now();
    let report = check(
        &history,
        &Allowances {
            cache: MAX_STALENESS,
            catalog: CATALOG_LAG,
        },
    );
    println!(
        "{backend:?}: {completed} ops in {:.1} s = {:.0} ops/s; {}; checked in {:.1} s; whole test {:.1} s",
        elapsed.as_secs_f64(),
        completed as f64 / elapsed.as_secs_f64(),
        summary(&history),
        checked.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{} states over {} incarnations, {} reads checked, {} without an answer",
        report.states, report.incarnations, report.reads_checked, report.reads_failed
    );

    let mut failures = Vec::new();
    let unexpected = ctx.unexpected.lock().unwrap().clone();
    if !unexpected.is_empty() {
        failures.push(format!(
            "{} unexpected outcome(s), first ones:\n  {}",
            unexpected.len(),
            unexpected
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    if !report.violations.is_empty() {
        failures.push(report.render());
    }
    if completed < TARGET_OPS {
        failures.push(format!(
            "only {completed} operations completed within {TIME_LIMIT:?}; the target is {TARGET_OPS}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: history check failed\n{}",
        failures.join("\n\n")
    );
}

/// Counts by operation and outcome, and reads by path and source.
fn summary(history: &History) -> String {
    let mut writes = std::collections::BTreeMap::<String, usize>::new();
    for w in &history.writes {
        let outcome = match &w.outcome {
            Outcome::Done { .. } => "ok".to_string(),
            Outcome::NoEffect(why) => why.clone(),
            Outcome::Unknown(_) => "unknown".to_string(),
        };
        *writes
            .entry(format!("{} {outcome}", w.change.name()))
            .or_default() += 1;
    }
    let mut reads = std::collections::BTreeMap::<String, usize>::new();
    for r in &history.reads {
        let path = r.reader.clone();
        let how = match (&r.answer, r.source, r.stale) {
            (Answer::Failed(_), _, _) => "failed",
            (Answer::Absent, _, _) => "absent",
            (_, Source::Cache, true) => "cache-stale",
            (_, Source::Cache, false) => "cache",
            (_, Source::Store, _) => "store",
        };
        *reads.entry(format!("{path} {how}")).or_default() += 1;
    }
    let fmt = |m: std::collections::BTreeMap<String, usize>| {
        m.into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} writes ({}); {} reads ({})",
        history.writes.len(),
        fmt(writes),
        history.reads.len(),
        fmt(reads)
    )
}

/// Sends a request; the status and the body as JSON (or a JSON string of
/// the text), or the transport error.
async fn send(request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), String> {
    let response = request.send().await.map_err(|e| format!("{e}"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| format!("{e}"))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, body))
}

fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

/// Creates the campaign: active from an hour ago for a day, empty.
async fn create(ctx: &Ctx, base: &str) -> bool {
    let now = Utc::now();
    let body = json!({
        "id": CAMPAIGN,
        "name": "History",
        "starts_at": (now - Span::hours(1)).to_rfc3339(),
        "ends_at": (now + Span::days(1)).to_rfc3339(),
        "design": ctx.design,
    });
    let invoke = ctx.rec.now();
    let result = send(
        ctx.http
            .post(format!("{base}/v1/campaigns"))
            .bearer_auth(ADMIN)
            .json(&body),
    )
    .await;
    let complete = ctx.rec.now();
    let outcome = match &result {
        Ok((StatusCode::CREATED, _)) => Outcome::Done {
            version: None,
            changed: None,
            size: None,
        },
        other => {
            let why = format!("create: {other:?}");
            ctx.unexpected(why.clone());
            Outcome::Unknown(why)
        }
    };
    let ok = matches!(outcome, Outcome::Done { .. });
    ctx.rec.write(Write {
        writer: "lifecycle".into(),
        change: Change::Create,
        invoke,
        complete,
        outcome,
    });
    ok
}

/// Deletes the campaign. `Some(true)` once deleted, `Some(false)` when an
/// audience write holds the lease, `None` on anything else.
async fn delete(ctx: &Ctx, base: &str) -> Option<bool> {
    let invoke = ctx.rec.now();
    let result = send(
        ctx.http
            .delete(format!("{base}/v1/campaigns/{CAMPAIGN}"))
            .bearer_auth(ADMIN),
    )
    .await;
    let complete = ctx.rec.now();
    let (outcome, deleted) = match &result {
        Ok((StatusCode::NO_CONTENT, _)) => (
            Outcome::Done {
                version: None,
                changed: None,
                size: None,
            },
            Some(true),
        ),
        Ok((StatusCode::CONFLICT, body)) if error_code(body) == "audience_busy" => {
            (Outcome::NoEffect("409".into()), Some(false))
        }
        other => {
            let why = format!("delete: {other:?}");
            ctx.unexpected(why.clone());
            (Outcome::Unknown(why), None)
        }
    };
    ctx.rec.write(Write {
        writer: "lifecycle".into(),
        change: Change::Delete,
        invoke,
        complete,
        outcome,
    });
    deleted
}

/// Every ~300 operations: delete the campaign (retrying while a writer holds
/// the lease), leave it absent briefly so readers can see that, re-create it.
async fn lifecycle(ctx: Arc<Ctx>, base: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next = LIFECYCLE_EVERY;
    while ctx.running() {
        if ctx.rec.completed() < next {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        loop {
            if !ctx.running() {
                return;
            }
            match delete(&ctx, &base).await {
                Some(true) => break,
                Some(false) => tokio::time::sleep(Duration::from_millis(2)).await,
                None => return,
            }
        }
        let absent_for = rng.random_range(0..20);
        tokio::time::sleep(Duration::from_millis(absent_for)).await;
        if !create(&ctx, &base).await {
            return;
        }
        next = ctx.rec.completed()
            + rng.random_range(LIFECYCLE_EVERY * 2 / 3..LIFECYCLE_EVERY * 4 / 3);
    }
}

/// A few distinct probes.
fn few(rng: &mut StdRng, probes: &[u64]) -> Vec<u64> {
    let n = rng.random_range(1..=3);
    let mut picked: Vec<u64> = Vec::with_capacity(n);
    while picked.len() < n {
        let p = probes[rng.random_range(0..probes.len())];
        if !picked.contains(&p) {
            picked.push(p);
        }
    }
    picked
}

/// Replace with a random half of the probes plus the fillers, add a few
/// probes, remove a few, and again.
async fn audience_writer(ctx: Arc<Ctx>, name: String, base: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut step = 0u64;
    while ctx.running() {
        let change = match step % 3 {
            0 => Change::Replace(
                ctx.probes
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.5))
                    .chain(FILLERS)
                    .collect(),
            ),
            1 => Change::Add(few(&mut rng, &ctx.probes)),
            _ => Change::Remove(few(&mut rng, &ctx.probes)),
        };
        step += 1;
        let (request, ids, count_field) = match &change {
            Change::Replace(ids) => (
                ctx.http
                    .put(format!("{base}/v1/campaigns/{CAMPAIGN}/audience")),
                ids,
                None,
            ),
            Change::Add(ids) => (
                ctx.http
                    .post(format!("{base}/v1/campaigns/{CAMPAIGN}/audience/add")),
                ids,
                Some("added"),
            ),
            Change::Remove(ids) => (
                ctx.http
                    .post(format!("{base}/v1/campaigns/{CAMPAIGN}/audience/remove")),
                ids,
                Some("removed"),
            ),
            Change::Create | Change::Delete => unreachable!("audience writes only"),
        };
        let request = request
            .bearer_auth(ADMIN)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(lines(ids));
        let invoke = ctx.rec.now();
        let result = send(request).await;
        let complete = ctx.rec.now();
        let outcome = match &result {
            Ok((StatusCode::OK, body)) => Outcome::Done {
                version: body["version"].as_u64(),
                changed: count_field.and_then(|f| body[f].as_u64()),
                size: body["audience_size"].as_u64(),
            },
            Ok((StatusCode::CONFLICT, body)) if error_code(body) == "audience_busy" => {
                Outcome::NoEffect("409".into())
            }
            Ok((StatusCode::NOT_FOUND, body)) if error_code(body) == "campaign_not_found" => {
                Outcome::NoEffect("404".into())
            }
            other => {
                let why = format!("{name} {} at {:?}: {other:?}", change.name(), invoke);
                ctx.unexpected(why.clone());
                Outcome::Unknown(why)
            }
        };
        if matches!(&outcome, Outcome::Done { version: None, .. }) {
            ctx.unexpected(format!("{name}: a 200 without a version: {result:?}"));
        }
        ctx.rec.write(Write {
            writer: name.clone(),
            change,
            invoke,
            complete,
            outcome,
        });
        let pause = rng.random_range(0..5);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn source_of(body: &Value) -> Option<Source> {
    match body["source"].as_str()? {
        "cache" => Some(Source::Cache),
        "store" => Some(Source::Store),
        _ => None,
    }
}

/// Reads over HTTP as fast as answers come, recording each.
async fn http_reader(ctx: Arc<Ctx>, name: String, base: String, kind: ReadKind, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while ctx.running() {
        let users: Arc<[u64]> = match kind {
            ReadKind::Batch => ctx.batch.clone(),
            _ => Arc::new([ctx.probes[rng.random_range(0..ctx.probes.len())]]),
        };
        let request = match kind {
            ReadKind::Member => ctx.http.get(format!(
                "{base}/v1/campaigns/{CAMPAIGN}/members/{}",
                users[0]
            )),
            ReadKind::Batch => ctx
                .http
                .post(format!("{base}/v1/check"))
                .json(&json!({ "user_ids": &users[..], "campaign": CAMPAIGN })),
            ReadKind::UserCampaigns => ctx
                .http
                .get(format!("{base}/v1/users/{}/campaigns", users[0])),
        };
        let invoke = ctx.rec.now();
        let result = send(request).await;
        let complete = ctx.rec.now();
        let mut source = Source::Store;
        let mut stale = false;
        let answer = match &result {
            Ok((StatusCode::OK, body)) => {
                source = source_of(body).unwrap_or(Source::Store);
                stale = body["stale"].as_bool().unwrap_or(false);
                match parse_answer(kind, &users, body) {
                    Some(answer) => answer,
                    None => {
                        ctx.unexpected(format!("{name}: malformed answer {body}"));
                        Answer::Failed(format!("malformed: {body}"))
                    }
                }
            }
            Ok((StatusCode::NOT_FOUND, body))
                if kind != ReadKind::UserCampaigns && error_code(body) == "campaign_not_found" =>
            {
                Answer::Absent
            }
            // A check that missed its deadline: expected now and then on a
            // loaded machine, and it says nothing about the audience.
            Ok((StatusCode::SERVICE_UNAVAILABLE, body)) => {
                Answer::Failed(format!("503 {}", error_code(body)))
            }
            other => {
                ctx.unexpected(format!("{name} at {invoke:?}: {other:?}"));
                Answer::Failed(format!("{other:?}"))
            }
        };
        ctx.rec.read(Read {
            reader: name.clone(),
            kind,
            users,
            invoke,
            complete,
            answer,
            source,
            stale,
        });
    }
}

fn parse_answer(kind: ReadKind, users: &[u64], body: &Value) -> Option<Answer> {
    match kind {
        ReadKind::Member => Some(Answer::Members(vec![body["member"].as_bool()?])),
        ReadKind::UserCampaigns => {
            let listed = body["campaigns"]
                .as_array()?
                .iter()
                .any(|c| c.as_str() == Some(CAMPAIGN));
            Some(Answer::Members(vec![listed]))
        }
        ReadKind::Batch => {
            let results = body["results"].as_array()?;
            if results.len() != users.len() {
                return None;
            }
            let mut members = Vec::with_capacity(users.len());
            for (r, u) in results.iter().zip(users) {
                if r["user_id"].as_u64()? != *u {
                    return None;
                }
                members.push(r["member"].as_bool()?);
            }
            Some(Answer::Members(members))
        }
    }
}

/// Reads through the library client, in this process.
async fn library_reader(ctx: Arc<Ctx>, name: String, client: Client, kind: ReadKind, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let lookup_source = |s: LookupSource| match s {
        LookupSource::Cache => Source::Cache,
        // No run here reads replicas.
        LookupSource::Store | LookupSource::Replica => Source::Store,
    };
    while ctx.running() {
        let user = ctx.probes[rng.random_range(0..ctx.probes.len())];
        let invoke = ctx.rec.now();
        let result = match kind {
            ReadKind::Member => client
                .is_member(CAMPAIGN, user)
                .await
                .map(|m| (m.member, m.source, m.stale)),
            _ => client.campaigns_for(user).await.map(|c| {
                (
                    c.campaigns.iter().any(|id| id == CAMPAIGN),
                    c.source,
                    c.stale,
                )
            }),
        };
        let complete = ctx.rec.now();
        let (answer, source, stale) = match result {
            Ok((yes, source, stale)) => (Answer::Members(vec![yes]), lookup_source(source), stale),
            Err(ClientError::Check(CheckError::Store(StoreError::NotFound(_)))) => {
                (Answer::Absent, Source::Store, false)
            }
            Err(ClientError::Check(CheckError::Store(StoreError::Timeout(t)))) => (
                Answer::Failed(format!("timeout {t:?}")),
                Source::Store,
                false,
            ),
            Err(e) => {
                ctx.unexpected(format!("{name} at {invoke:?}: {e}"));
                (Answer::Failed(e.to_string()), Source::Store, false)
            }
        };
        ctx.rec.read(Read {
            reader: name.clone(),
            kind,
            users: Arc::new([user]),
            invoke,
            complete,
            answer,
            source,
            stale,
        });
        // A cached answer never awaits anything, so without a pause this
        // loop would hold a worker thread and flood the history.
        tokio::time::sleep(LIBRARY_PAUSE).await;
    }
}
