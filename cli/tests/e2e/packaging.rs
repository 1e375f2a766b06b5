//! The container image of docs/deploy.md: `deploy/image/build.sh` builds it offline (an empty
//! base, the workspace's binaries and the libraries they link), and every binary in it runs
//! without a network.

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_image_builds_offline_and_every_binary_runs_in_it() {
    // The debug binaries next to `rdd`: <target>/debug/<bin>.
    let debug = Path::new(env!("CARGO_BIN_EXE_rdd")).parent().unwrap();
    let target = debug.parent().unwrap();
    let scope = rdd_testkit::Scope::new();
    let tag = format!("{}:test", scope.name("rdd-image"));
    let out = Command::new(crate::harness::repo_root().join("deploy/image/build.sh"))
        .args([
            "--profile",
            "debug",
            "--no-build",
            "-t",
            &tag,
            "--",
            "--label",
        ])
        .arg(scope.label())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build.sh: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The image is removed with the scope (it carries the scope's label).
    for bin in [
        "docker-gateway",
        "app-controller",
        "limavm-controller",
        "container-controller",
        "image-controller",
        "volume-controller",
    ] {
        let v = rdd_testkit::docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--entrypoint",
            &format!("/usr/local/bin/{bin}"),
            &tag,
            "--version",
        ]);
        assert_eq!(v, format!("{bin} {}", env!("CARGO_PKG_VERSION")));
    }
    let user = rdd_testkit::docker(&["image", "inspect", "-f", "{{.Config.User}}", &tag]);
    assert_eq!(user, "65532:65532", "non-root by default");
}

/// Leader election as the chart turns it on (`RDD_LEADER_ELECTION_NAMESPACE`, `POD_NAME`): of
/// two replicas of a controller one holds the Lease named after the controller; when it dies
/// the other takes over once the Lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_two_replicas_elect_one_leader_through_a_lease_and_fail_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let s = crate::harness::Server::start();
    let client = s.client().await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, "rdd-system");
    let bin = Path::new(env!("CARGO_BIN_EXE_rdd"))
        .parent()
        .unwrap()
        .join("volume-controller");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let replica = |pod: &str| {
        Kill(
            Command::new(&bin)
                .env("HOME", s.home.path())
                .env("RDD_INSTANCE", "e2e")
                .env("RDD_KUBECONFIG", s.kubeconfig())
                .env("RDD_ADMIN_ADDR", "127.0.0.1:0")
                .env("RDD_GATEWAY_SOCKET", s.home.path().join("no-gateway.sock"))
                .env("RDD_LOG_LEVEL", "warn")
                .env("RDD_LEADER_ELECTION_NAMESPACE", "rdd-system")
                .env("POD_NAME", pod)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let holder = || async {
        leases
            .get_opt("volume-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let wait_holder = |want: &'static str, secs: u64| {
        let holder = &holder;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            loop {
                if holder().await.as_deref() == Some(want) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{want} never held the Lease (holder {:?})",
                    holder().await
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let a = replica("replica-a");
    wait_holder("replica-a", 20).await;
    let _b = replica("replica-b");
    // b waits while a renews.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(holder().await.as_deref(), Some("replica-a"));
    }
    drop(a);
    // The Lease lasts 15 s without renewal; b renews every 5 s.
    wait_holder("replica-b", 40).await;
}
