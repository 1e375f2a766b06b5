//! Identity: the kubeconfig, client certificates, bearer tokens, anonymous access, and the
//! one-server-per-instance lock.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Server, raw};

fn sha256_hex(s: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kubeconfig_tls_files_and_token_auth() {
    let mut s = Server::start();
    let mode = std::fs::metadata(s.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "kubeconfig mode");
    for key in ["ca.key", "server.key", "admin.key"] {
        let m = std::fs::metadata(s.dir().join("tls").join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o600, "{key} mode");
    }
    let ca_before = std::fs::read(s.dir().join("tls/ca.crt")).unwrap();
    // A token stored only as its hash authenticates; the plain token is never written.
    let token = "rdd-test-token-0123456789abcdef";
    let tokens =
        serde_json::json!([{"sha256": sha256_hex(token), "user": "alice", "groups": ["devs"]}]);
    std::fs::write(s.dir().join("tls/tokens.json"), tokens.to_string()).unwrap();
    s.restart();
    assert_eq!(
        std::fs::read(s.dir().join("tls/ca.crt")).unwrap(),
        ca_before,
        "the CA is reused across restarts"
    );
    let tls = s.dir().join("tls");
    let port = s.port();
    let curl = |auth: Option<&str>, path: &str| {
        let mut c = std::process::Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(tls.join("ca.crt"));
        if let Some(a) = auth {
            c.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let url = format!("https://127.0.0.1:{port}{path}");
        String::from_utf8(c.arg(&url).output().unwrap().stdout).unwrap()
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    // Authenticated: discovery is open to every authenticated user, configmaps are not granted
    // to alice by RBAC (403, not 401).
    assert_eq!(curl(Some(token), "/api"), "200");
    assert_eq!(curl(Some(token), cms), "403");
    assert_eq!(curl(Some("wrong-token"), cms), "401");
    assert_eq!(curl(Some("wrong-token"), "/api"), "401");
    assert_eq!(curl(None, cms), "401");
    // The admin client certificate works (kubectl and kube-rs use it through the kubeconfig).
    let (code, _) = raw(&s.client().await, "GET", "/api/v1/namespaces", "", vec![]).await;
    assert_eq!(code, 200);
    // Health and version are public.
    let out = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(tls.join("ca.crt"))
        .arg(format!("https://127.0.0.1:{}/readyz?verbose", s.port()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("[+]bootstrap ok"));
}

#[test]
fn cp_second_server_on_one_instance_is_refused() {
    let s = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdd"))
        .args(["svc", "serve", "--secure-port", "0"])
        .env("HOME", s.home.path())
        .env("RDD_INSTANCE", "e2e")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is already running"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

/// `kubectl auth whoami` and `kubectl auth can-i` (SelfSubjectReview, SelfSubjectAccessReview,
/// SelfSubjectRulesReview; kubectl sends them as protobuf) answer from the caller's identity.
#[test]
fn cp_auth_whoami_and_can_i() {
    let s = Server::start();
    for k in [
        std::path::PathBuf::from(crate::harness::KUBECTL_OLD),
        crate::harness::kubectl_new(),
    ] {
        let who = s.ok(&k, &["auth", "whoami"]);
        assert!(
            who.contains("rdd-admin") && who.contains("system:masters"),
            "{who}"
        );
        assert_eq!(
            s.ok(&k, &["auth", "can-i", "create", "configmaps"]).trim(),
            "yes"
        );
        let list = s.ok(&k, &["auth", "can-i", "--list"]);
        assert!(list.contains("*.*"), "{list}");
    }
}
