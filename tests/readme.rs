//! The README's walk-through (the curl walk, then the CLI), run as a new
//! user would: its `sh` blocks in order, in one shell, in a fresh
//! directory, and every output the README shows compared with what the
//! commands printed.
//!
//! In the README, a run of `# ` lines directly under a command (no blank
//! line between) is that command's output; a `# ` line after a blank line
//! is a comment. Three things differ from a reader's terminal, all said
//! here: `cargo run --` is the binary under test (so the walk does not
//! build the crate again), the server listens on a free port rather than
//! 8080 (`GUESTLIST_LISTEN` and `GUESTLIST_SERVER` in the environment,
//! the URLs in the text rewritten), and the shell waits for `/readyz`
//! after the server starts in the background, as a reader would wait for
//! its start-up line.

use std::path::Path;
use std::process::Command;

/// The sections whose `sh` blocks make the walk, in the README's order.
const WALK: &[&str] = &["## A walk through it with curl", "## Admin CLI"];

/// One step: shell text, and the output the README shows for it (empty
/// when it shows none).
#[derive(Debug)]
struct Step {
    script: String,
    shown: Vec<String>,
}

/// The `sh` blocks of the `WALK` sections, in order.
fn walk_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut section = "";
    let mut block: Option<String> = None;
    for line in readme.lines() {
        if let Some(text) = block.as_mut() {
            if line.starts_with("```") {
                blocks.push(block.take().unwrap());
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if line.starts_with("## ") {
            section = line;
        } else if line == "```sh" && WALK.contains(&section) {
            block = Some(String::new());
        }
    }
    blocks
}

/// Splits blocks into steps at each shown output.
fn steps(blocks: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut script = String::new();
    for block in blocks {
        let mut previous_was_command = false;
        let mut shown: Vec<String> = Vec::new();
        for line in block.lines() {
            let output = line.strip_prefix("# ").filter(|_| previous_was_command);
            match output {
                Some(text) => shown.push(text.to_string()),
                None => {
                    if !shown.is_empty() {
                        steps.push(Step {
                            script: std::mem::take(&mut script),
                            shown: std::mem::take(&mut shown),
                        });
                    }
                    script.push_str(line);
                    script.push('\n');
                    previous_was_command = !line.trim().is_empty() && !line.starts_with('#');
                }
            }
        }
        if !shown.is_empty() {
            steps.push(Step {
                script: std::mem::take(&mut script),
                shown,
            });
        }
    }
    if !script.trim().is_empty() {
        steps.push(Step {
            script,
            shown: Vec::new(),
        });
    }
    steps
}

const MARK: &str = "@@readme-step@@";

/// The walk as one bash script: each step, then a marker line on stdout.
fn script(steps: &[Step], bin: &Path, port: u16) -> String {
    let bin = bin.display().to_string();
    let bin_dir = Path::new(&bin).parent().unwrap().display().to_string();
    // The background server goes with the shell, however the shell ends.
    let mut out = String::from("set -u\ntrap 'kill %1 2>/dev/null' EXIT\n");
    for step in steps {
        let mut text = step
            .script
            .replace("localhost:8080", &format!("localhost:{port}"))
            .replace("$PWD/target/debug", &bin_dir);
        text = text.replace("cargo run -- serve &", &format!(
            "\"{bin}\" serve &\nfor _ in $(seq 300); do curl -sf localhost:{port}/readyz >/dev/null && break; sleep 0.1; done"
        ));
        assert!(
            !text.contains("cargo "),
            "a walk step runs cargo, which the test cannot stand in for:\n{text}"
        );
        out.push_str(&text);
        out.push_str(&format!("echo {MARK}\n"));
    }
    out
}

#[test]
fn the_readme_walk_prints_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = walk_blocks(&readme);
    assert_eq!(blocks.len(), 2, "one block per walk section");
    let steps = steps(&blocks);
    let shown: usize = steps.iter().map(|s| s.shown.len()).sum();
    assert!(shown >= 10, "the walk shows outputs to check: {steps:#?}");

    let dir = tempfile::tempdir().unwrap();
    let port = guestlist::redis_server::free_port().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_guestlist"));
    let listen = format!("127.0.0.1:{port}");
    // A fresh shell as a new user has it: none of the developer's
    // GUESTLIST_* or RUST_LOG settings, and a time limit, since a walk
    // that hangs would otherwise hang the test run.
    let output = Command::new("timeout")
        .args(["--kill-after=5", "120", "bash", "-c"])
        .arg(script(&steps, bin, port))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("GUESTLIST_LISTEN", &listen)
        .env("GUESTLIST_SERVER", format!("http://{listen}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    let printed: Vec<&str> = stdout.split(&format!("{MARK}\n")).collect();
    assert_eq!(
        printed.len(),
        steps.len() + 1,
        "every step ran to its marker\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (step, printed) in steps.iter().zip(&printed) {
        if step.shown.is_empty() {
            continue;
        }
        let printed: Vec<&str> = printed.lines().collect();
        // A step's earlier commands may print what the README leaves out
        // (a created campaign's JSON); the shown lines end the step.
        let tail = &printed[printed.len().saturating_sub(step.shown.len())..];
        let matches = tail.len() == step.shown.len()
            && tail.iter().zip(&step.shown).all(|(p, s)| shows(s, p));
        assert!(
            matches,
            "the output of\n{}\nprinted: {tail:#?}\nshown: {:#?}\nstderr:\n{stderr}",
            step.script, step.shown
        );
    }
    assert!(
        !stderr.lines().any(|l| l.starts_with("error")),
        "no command failed:\n{stderr}"
    );
    assert!(
        dir.path().join("guestlist-data").is_dir(),
        "the embedded store lives in the walk's directory"
    );
}

/// Whether `printed` is what the README's `shown` line says: the same
/// text, where each `…` stands for any text (a time, a generated id).
fn shows(shown: &str, printed: &str) -> bool {
    let mut parts = shown.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = printed.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn an_ellipsis_in_a_shown_line_stands_for_any_text() {
    assert!(shows("a", "a"));
    assert!(!shows("a", "ab"));
    assert!(shows(r#"{"at":"…","n":1}"#, r#"{"at":"2026-01-01","n":1}"#));
    assert!(!shows(
        r#"{"at":"…","n":1}"#,
        r#"{"at":"2026-01-01","n":2}"#
    ));
    assert!(shows("x…y…z", "x1y2z"));
    assert!(!shows("x…y…z", "x1z2y"));
    assert!(shows("…", "anything"));
}

#[test]
fn outputs_are_the_comment_lines_right_under_a_command() {
    let blocks = vec![
        "# a comment\ncmd one\n# out 1\n# out 2\n\n# another comment\ncmd two\ncmd three\n# out 3\n"
            .to_string(),
        "cmd four\n".to_string(),
    ];
    let steps = steps(&blocks);
    assert_eq!(steps.len(), 3, "{steps:#?}");
    assert_eq!(steps[0].script, "# a comment\ncmd one\n");
    assert_eq!(steps[0].shown, ["out 1", "out 2"]);
    assert_eq!(steps[1].script, "\n# another comment\ncmd two\ncmd three\n");
    assert_eq!(steps[1].shown, ["out 3"]);
    assert_eq!(steps[2].script, "cmd four\n");
    assert!(steps[2].shown.is_empty());
}
