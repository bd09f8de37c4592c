//! The login-path library stands alone: a service that depends on
//! `guestlist` with `default-features = false` (plus `openfeature`, if it
//! wants the provider) builds none of the service's crates.

use std::collections::BTreeSet;
use std::process::Command;

/// What `cargo tree` lists for the library's normal dependencies.
fn library_tree(features: &str) -> BTreeSet<String> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["tree", "--locked", "--offline", "-e", "normal"])
        .args([
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--no-default-features",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !features.is_empty() {
        cargo.args(["--features", features]);
    }
    let out = cargo.output().expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_library_alone_pulls_in_none_of_the_service_crates() {
    let service_only = [
        "axum",
        "askama",
        "askama_web",
        "plotters",
        "indicatif",
        "clap",
        "redb",
        // (tower-http may come in, as reqwest's own client middleware, with
        // the OpenFeature provider's HTTP client.)
        "tracing-subscriber",
        "metrics-exporter-prometheus",
        "utoipa",
        "hdrhistogram",
    ];
    for features in ["", "openfeature"] {
        let tree = library_tree(features);
        // The tree is the real one: the library's own crates are in it.
        for needed in ["guestlist", "redis", "roaring", "arc-swap"] {
            assert!(tree.contains(needed), "{needed} missing from {tree:?}");
        }
        let found: Vec<_> = service_only.iter().filter(|c| tree.contains(**c)).collect();
        assert!(
            found.is_empty(),
            "with features {features:?} the library pulls in {found:?}"
        );
    }
    // And the service itself does use them: the check can fail.
    assert!(library_tree("server").contains("axum"));
}

/// And it builds: the `cfg`s that keep the service out leave a library that
/// compiles on its own (warnings are errors here, so code that only the
/// service used shows too).
#[test]
fn the_library_alone_builds_without_warnings() {
    // Without `openfeature`, which only adds its own module: the core's
    // `cfg`s are what can break, and one build (about a minute here) checks
    // them. `cargo rustc` passes `-D warnings` to this crate alone;
    // RUSTFLAGS would rebuild every dependency.
    let out = Command::new(env!("CARGO"))
        .args([
            "rustc",
            "--locked",
            "--offline",
            "--lib",
            "--no-default-features",
        ])
        .args(["--", "-D", "warnings"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo rustc");
    assert!(
        out.status.success(),
        "the library alone does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
