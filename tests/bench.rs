//! The benchmark against an already running server: it measures every design
//! and leaves the server exactly as it found it.

mod common;

use std::time::Duration;

use common::RedisServer;
use guestlist::bench::results::{Results, Run};
use guestlist::bench::{BenchDesign, Mode, Plan, run};
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
        modes: vec![Mode::Closed],
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        seed: 7,
        ..Plan::default()
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
/// `per-user` checks spread by user (concurrent checks share their read of
/// the campaign's metadata), and near-cache checks never reach Redis.
#[test]
fn the_cluster_bench_reports_how_each_design_spreads_over_the_masters() {
    let (results, report) = bench(&[
        "--cluster",
        "--designs",
        "set,per-user,near-cache",
        "--audience",
        "3000",
        "--concurrency",
        "8",
        "--duration",
        "1s",
        "--mode",
        "closed",
        "--warmup",
        "200ms",
    ]);

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
    // Each check reads the user's hash on the user's master, and shares a
    // read of the campaign's metadata (for an answer of one version) with
    // the checks waiting at the same time: far fewer than one metadata
    // read per check, so the three masters share the load.
    assert!(
        checks_to_redis(per_user) * 10 < per_user.checks * 15,
        "a metadata read per check: {per_user:?}"
    );
    let share = per_user.busiest_node_check_share.unwrap();
    assert!(share <= 0.55, "{per_user:?}");

    let near = run("near-cache");
    assert!(
        checks_to_redis(near) * 1_000 < near.checks,
        "near-cache checks reached Redis: {near:?}"
    );

    assert!(report.contains("busiest node"), "{report}");
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

/// [`bench_binary`] for the matrix: its results and report.
fn bench(args: &[&str]) -> (Results, String) {
    let out = bench_binary(args);
    let text = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    (serde_json::from_str(&text).unwrap(), report)
}

/// Acceptance: `--quick` writes open-loop runs beside the closed-loop ones.
/// At 30,000 IDs and an offered rate at least twice what `json` answers in
/// closed loop, `json` misses its deadline while `set` and the near-cache
/// hold the same rate without a timeout.
#[test]
fn the_quick_bench_shows_the_story_collapse_at_a_fixed_arrival_rate() {
    let (results, report) = bench(&["--quick"]);
    let runs_of = |design: &str, mode: &str| -> Vec<&Run> {
        results
            .runs
            .iter()
            .filter(|r| r.design == design && r.mode == mode && r.audience == 30_000)
            .collect()
    };
    for design in ["json", "set", "per-user", "bitmap", "near-cache"] {
        let open = runs_of(design, "open");
        assert_eq!(open.len(), 1, "{design}: {:?}", results.runs);
        let run = open[0];
        assert_eq!(run.offered_rate, Some(10_000.0), "{run:?}");
        assert!(run.checks > 0 && run.p99_us >= run.p50_us, "{run:?}");
        assert!(run.p999_us >= run.p99_us, "{run:?}");
        assert!(run.dispatch_lag_p99_us.is_some(), "{run:?}");
        assert_eq!(run.checks, run.completed + run.errors, "{run:?}");
        assert!(!runs_of(design, "closed").is_empty(), "{design}");
    }
    let json_open = runs_of("json", "open")[0];
    let json_capacity = runs_of("json", "closed")
        .iter()
        .map(|r| r.checks_per_sec)
        .fold(0.0, f64::max);
    assert!(
        json_open.offered_rate.unwrap() >= 2.0 * json_capacity,
        "json answers {json_capacity}/s in closed loop"
    );
    assert!(
        json_open.timeouts > 0 || json_open.p99_us >= 1e6,
        "json held the rate: {json_open:?}"
    );
    for design in ["set", "near-cache"] {
        let run = runs_of(design, "open")[0];
        assert_eq!((run.timeouts, run.errors), (0, 0), "{run:?}");
        assert_eq!(run.completed, run.checks, "{run:?}");
    }
    assert!(
        report.contains("## Open loop: a fixed arrival rate"),
        "{report}"
    );
}

/// Acceptance: `--via http` measures every service design through a real
/// `guestlist serve`, and the report puts the paths side by side.
#[test]
fn every_service_design_is_measured_through_http_too() {
    let (results, report) = bench(&[
        "--designs",
        "json,set,per-user,bitmap,near-cache",
        "--audience",
        "1000",
        "--mode",
        "open",
        "--arrival-rate",
        "300",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--via",
        "direct,http",
    ]);
    let via = |design: &str| -> Vec<&str> {
        results
            .runs
            .iter()
            .filter(|r| r.design == design)
            .map(|r| r.via.as_str())
            .collect()
    };
    assert_eq!(via("json"), ["redis-direct"]);
    for design in ["set", "per-user", "bitmap"] {
        assert_eq!(via(design), ["redis-direct", "http"], "{design}");
    }
    assert_eq!(via("near-cache"), ["in-process", "http"]);
    for r in &results.runs {
        assert_eq!(r.errors, 0, "wrong or failed answers: {r:?}");
        assert!(r.completed > 100, "{r:?}");
    }
    assert!(
        report.contains("| Design | in-process p99 | in-process answered/s | redis-direct p99"),
        "{report}"
    );
}

/// `--id-type`: string and UUID audiences through every design that takes
/// them, directly and over HTTP, answered right, with bytes per ID in
/// Redis and in the near-cache reported for each type.
#[test]
fn string_and_uuid_ids_are_measured_with_their_bytes_per_id() {
    for id_type in ["string", "uuid"] {
        let (results, report) = bench(&[
            "--id-type",
            id_type,
            "--designs",
            "json,set,per-user,near-cache",
            "--audience",
            "2000",
            "--mode",
            "open",
            "--arrival-rate",
            "300",
            "--duration",
            "1s",
            "--warmup",
            "300ms",
            "--via",
            "direct,http",
        ]);
        assert_eq!(results.id_type, id_type);
        assert!(
            report.contains(&format!("- User IDs: {id_type}")),
            "{report}"
        );
        for r in &results.runs {
            assert_eq!(r.errors, 0, "{id_type}: wrong or failed answers: {r:?}");
            assert!(r.completed > 100, "{id_type}: {r:?}");
            if r.design != "json" {
                assert!(r.redis_bytes_per_id > 0.0, "{id_type}: {r:?}");
            }
        }
        let cache = results
            .runs
            .iter()
            .find_map(|r| r.cache_bytes_per_id)
            .expect("the near-cache's bytes per ID");
        eprintln!("{id_type}: near-cache {cache:.1} bytes per ID");
        assert!((16.0..=20.0).contains(&cache), "{id_type}: {cache}");
        assert!(report.contains("; cache "), "{report}");
    }
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .args([
            "bench",
            "--quick",
            "--id-type",
            "uuid",
            "--designs",
            "bitmap",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("integer IDs only"), "{stderr}");
}

/// `--redis-baselines` runs redis-benchmark and redis-cli --pipe beside
/// the library in the same run and records the ratios the goals name.
#[test]
fn the_redis_baselines_compare_the_library_with_redis_tools() {
    let (results, report) = bench(&[
        "--designs",
        "set",
        "--audience",
        "100",
        "--mode",
        "closed",
        "--concurrency",
        "1",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--redis-baselines",
    ]);
    let b = results.baselines.expect("baselines were measured");
    assert_eq!(b.concurrency, 64);
    for rate in [
        b.redis_benchmark_rps,
        b.library_sismember_rps,
        b.store_check_rps,
    ] {
        assert!(rate.is_finite() && rate > 100.0, "{b:?}");
    }
    assert!(b.pipe_secs > 0.0 && b.replace_secs > 0.0, "{b:?}");
    assert!((b.replace_ratio - b.replace_secs / b.pipe_secs).abs() < 1e-9);
    assert!(report.contains("## Against Redis's own tools"), "{report}");
}

/// A Redis off loopback is measured only on purpose: without
/// `--allow-remote` the bench refuses before connecting, and says how.
#[test]
fn a_remote_redis_is_refused_without_allow_remote() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .args(["bench", "--quick", "--redis", "redis://192.0.2.1:6379"])
        .env_remove("GUESTLIST_BENCH_REDIS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("192.0.2.1 is not one (add --allow-remote to measure it on purpose)"),
        "{stderr}"
    );
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
