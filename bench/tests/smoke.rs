//! Keeps `rdd-bench` working (issue 12: "a small N runs in CI"): the engine and App sections
//! at a tiny N, debug build, figures not asserted — only that each prints its table with a goal
//! next to every figure and that the JSON output parses. Needs the workspace binaries
//! (`cargo build --workspace --bins`).

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_rdd-bench"))
        .args(args)
        .output()
        .expect("run rdd-bench");
    assert!(
        o.status.success(),
        "rdd-bench {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn engine_and_app_sections_run_at_a_small_n() {
    let table = bench(&["engine", "--n", "10", "--idle-seconds", "1"]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure"))
        .collect();
    assert!(rows.len() >= 9, "{table}");
    for r in &rows {
        assert!(r.contains("goal") || r.contains("baseline"), "{r}");
    }
    let json = bench(&["--json", "app", "--rounds", "1"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON output");
    let rows = v.as_array().expect("an array");
    assert!(rows.len() >= 5, "{json}");
    assert!(
        rows.iter()
            .all(|r| r["figure"].is_string() && r["goal"].is_string())
    );
}
