//! The benchmark against an already running server: it measures every design
//! and leaves the server exactly as it found it.

mod common;

use std::time::Duration;

use common::RedisServer;
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
