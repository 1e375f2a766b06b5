//! The Python `kubernetes` client (from the project venv) against the server.

use crate::harness::{Server, fixture, repo_root};

#[test]
fn cp_python_client_list_watch_resume_apply_and_410() {
    let s = Server::start_with(&[
        "--compaction-interval-seconds",
        "2",
        "--compaction-keep-revisions",
        "0",
    ]);
    s.ok(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &["apply", "-f", fixture("widgets-crd.yaml").to_str().unwrap()],
    );
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/test",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(fixture("python_client.py"))
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}

#[test]
fn cp_helm_v4_installs_upgrades_and_uninstalls_the_rdd_chart() {
    let s = Server::start();
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .arg(fixture("helm_chart.py"))
        .arg(s.kubeconfig())
        .arg(repo_root().join("charts/rdd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("helm chart ok"));
}

/// A chart shipping a PodDisruptionBudget installs, upgrades (a bad budget is refused with the
/// server's message) and uninstalls with Helm v4.
#[test]
fn cp_helm_v4_installs_a_chart_with_a_pod_disruption_budget() {
    let s = Server::start();
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .arg(fixture("helm_pdb.py"))
        .arg(s.kubeconfig())
        .arg(fixture("pdb-chart"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("helm pdb chart ok"));
}
