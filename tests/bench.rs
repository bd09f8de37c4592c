//! The benchmark against an already running server: it measures every design
//! and leaves the server exactly as it found it.

mod common;

use std::time::Duration;

use common::RedisServer;
use guestlist::bench::results::{Results, Run};
use guestlist::bench::{BenchDesign, Plan, run};
use guestlist::domain::Design;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_run_measures_every_design_and_leaves_no_keys_behind() {
    let server = RedisServer::start();
    server.cli(&["SET", "someone-elses:key", "untouched"]);
    let plan = Plan {
        designs: vec![
            BenchDesign::Json,
            BenchDesign::Store(Design::Set),
            BenchDesign::Store(Design::PerUser),
            BenchDesign::Store(Design::Bitmap),
        ],
        audiences: vec![2_000],
        concurrency: vec![4],
        duration: Duration::from_millis(300),
        seed: 7,
        hit_ratio: 0.1,
        id_space_factor: 10,
        deadline: Duration::from_secs(1),
    };
    let results = run(&server.url(), &plan, "test".into()).await.unwrap();

    assert_eq!(results.runs.len(), 4);
    for r in &results.runs {
        assert!(r.checks > 0, "{r:?}");
        assert_eq!(r.errors, 0, "wrong or failed answers: {r:?}");
        assert!(r.redis_bytes_per_id > 0.0, "memory not measured: {r:?}");
        assert!(r.p50_us > 0.0 && r.p99_us >= r.p50_us, "{r:?}");
    }
    let json = &results.runs[0];
    // 2,000 IDs below 20,000 are ~5 digits plus a comma each.
    assert!(json.redis_bytes_per_check > 8_000.0, "{json:?}");
    for r in &results.runs[1..] {
        assert!(r.redis_bytes_per_check < 200.0, "{r:?}");
    }
    assert!(!results.redis_version.is_empty());

    assert_eq!(
        server.cli(&["DBSIZE"]).trim(),
        "1",
        "{}",
        server.cli(&["KEYS", "*"])
    );
    assert_eq!(
        server.cli(&["GET", "someone-elses:key"]).trim(),
        "untouched"
    );
}

/// `bench --cluster` measures the designs on a private 3-master cluster and
/// shows the hot key: every `set` check lands on the campaign's shard,
/// `per-user` checks spread their user reads by user (their metadata read
/// stays on the campaign's master), and near-cache checks never reach Redis.
#[test]
fn the_cluster_bench_reports_how_each_design_spreads_over_the_masters() {
    let out = bench_binary(&[
        "--cluster",
        "--designs",
        "set,per-user,near-cache",
        "--audience",
        "3000",
        "--concurrency",
        "8",
        "--duration",
        "1s",
    ]);
    let text = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let results: Results = serde_json::from_str(&text).unwrap();

    assert_eq!(results.cluster_masters.as_ref().map(Vec::len), Some(3));
    assert_eq!(results.runs.len(), 3);
    let checks_to_redis =
        |r: &Run| -> u64 { r.node_check_commands.as_ref().unwrap().values().sum() };
    for r in &results.runs {
        assert_eq!(r.errors, 0, "wrong or failed answers: {r:?}");
        assert!(r.checks > 1_000, "{r:?}");
        assert!(r.busiest_node_share.is_some(), "{r:?}");
        assert_eq!(r.node_commands.as_ref().map(|n| n.len()), Some(3), "{r:?}");
    }
    let run = |design: &str| results.runs.iter().find(|r| r.design == design).unwrap();

    let set = run("set");
    assert!(checks_to_redis(set) >= set.checks, "{set:?}");
    assert!(set.busiest_node_check_share.unwrap() >= 0.9, "{set:?}");

    let per_user = run("per-user");
    assert!(checks_to_redis(per_user) >= per_user.checks, "{per_user:?}");
    // Each check reads the campaign's metadata on its master (for an answer
    // of one version) and the user's hash on the user's master: half the
    // commands spread over three masters, so the busiest serves about 2/3.
    let share = per_user.busiest_node_check_share.unwrap();
    assert!((0.55..=0.75).contains(&share), "{per_user:?}");

    let near = run("near-cache");
    assert!(
        checks_to_redis(near) * 1_000 < near.checks,
        "near-cache checks reached Redis: {near:?}"
    );

    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("busiest node"), "{report}");
}

/// `bench --scenario upload-at-peak --quick` runs the real `serve` twice
/// (pacing off, then on), holds checks at a fixed rate and replaces the
/// audience midway; the report covers every phase of both runs.
#[test]
fn the_upload_at_peak_scenario_reports_checks_before_during_and_after_the_upload() {
    let out = bench_binary(&["--scenario", "upload-at-peak", "--quick"]);
    let text = std::fs::read_to_string(out.path().join("upload_at_peak.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["design"], "set");
    assert_eq!(report["near_cache"], false);
    let upload_ids = report["upload_ids"].as_u64().unwrap();
    assert_eq!(upload_ids, 300_000);
    let runs = report["runs"].as_array().unwrap();
    let pacing: Vec<&str> = runs.iter().map(|r| r["pacing"].as_str().unwrap()).collect();
    assert_eq!(pacing, ["off", "on"]);
    let rate = report["check_rate"].as_f64().unwrap();
    for run in runs {
        let upload = &run["upload"];
        assert_eq!(upload["completed"], true, "{run}");
        assert_eq!(upload["audience_size"].as_u64(), Some(upload_ids), "{run}");
        assert!(upload["secs"].as_f64().unwrap() > 0.0, "{run}");
        for name in ["before", "during", "after"] {
            let phase = &run[name];
            let field = |f: &str| phase[f].as_f64().unwrap();
            assert!(field("completed") > 0.0, "{name}: {run}");
            assert_eq!(field("wrong"), 0.0, "wrong answers {name}: {run}");
            // An open loop offers the rate whatever the answers do.
            let due = field("offered") / field("secs");
            assert!(
                due > 0.8 * rate && due < 1.2 * rate,
                "{name}: {due}/s: {run}"
            );
            assert!(field("p50_us") > 0.0, "{name}: {run}");
            assert!(field("p99_us") >= field("p50_us"), "{name}: {run}");
            assert!(field("p999_us") >= field("p99_us"), "{name}: {run}");
        }
        // The idle phase answers every check.
        assert_eq!(run["before"]["timeouts"].as_f64(), Some(0.0), "{run}");
        let ratio = run["p99_during_over_idle"].as_f64().unwrap();
        let expected =
            run["during"]["p99_us"].as_f64().unwrap() / run["before"]["p99_us"].as_f64().unwrap();
        assert!((ratio - expected).abs() < 1e-6, "{run}");
    }
    let table = std::fs::read_to_string(out.path().join("upload_at_peak.md")).unwrap();
    assert!(table.contains("| during |"), "{table}");
}

/// Runs `guestlist bench ARGS --out DIR` on a private Redis it starts
/// itself; fails with its stderr if it fails. Returns DIR.
fn bench_binary(args: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .env_remove("GUESTLIST_BENCH_REDIS")
        .env_remove("GUESTLIST_BENCH_REDIS_CLUSTER")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}
