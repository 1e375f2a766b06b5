//! The API server's disk fills up: writes are refused with a 5xx Status
//! (503 ServiceUnavailable), reads keep working, writes work again once space (or write access)
//! returns, and nothing acknowledged is lost — also across a `kill -9` afterwards.
//!
//! The instance directory (SQLite database, WAL) is a tmpfs of its own with a size limit, so the
//! fault is a real ENOSPC from the kernel (a filler file takes the last free byte). The
//! read-only case is `readonly.rs`. Mounting needs root (CI runs as root); without it the test
//! says SKIPPED and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use rdd_faults::{Write, acknowledged_vs_stored, describe};
use serde_json::Value;

use crate::support::{SERIAL, Server, client_no_retry};

/// A size-limited tmpfs at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .ok()?
            .status
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub(crate) fn cm(name: &str, size: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("v".to_string(), "x".repeat(size))].into()),
        ..Default::default()
    }
}

pub(crate) fn write_of(o: &ConfigMap) -> Write {
    Write::new(
        o.name_any(),
        o.resource_version().unwrap_or_default().parse().unwrap(),
        serde_json::to_string(&o.data).unwrap_or_default(),
    )
}

/// A client that does not retry, and 20 acknowledged 1 KiB creates to check for afterwards.
pub(crate) async fn start_with_acked(server: &Server) -> (Api<ConfigMap>, Vec<Write>) {
    let api: Api<ConfigMap> =
        Api::namespaced(client_no_retry(&server.kubeconfig()).await, "default");
    let mut acked = Vec::new();
    for i in 0..20 {
        let o = api
            .create(&PostParams::default(), &cm(&format!("a-{i}"), 1024))
            .await
            .unwrap();
        acked.push(write_of(&o));
    }
    (api, acked)
}

/// Nothing acknowledged is lost across a crash after the fault either: kill -9, restart, check,
/// and stop the server.
pub(crate) async fn survives_kill9(server: &mut Server, acked: &[Write]) {
    server.restart();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    check(&api, acked, "after kill -9 and restart").await;
    eprintln!("{} acknowledged writes all present", acked.len());
    server.kill9();
}

/// Create until the server refuses; returns the refusal (code, Status body), or the error
/// that was not a Status (the connection failed: the caller looks at the server).
pub(crate) async fn write_until_refused(
    api: &Api<ConfigMap>,
    acked: &mut Vec<Write>,
    prefix: &str,
) -> Result<(u16, Value), kube::Error> {
    for i in 0..2000 {
        match api
            .create(
                &PostParams::default(),
                &cm(&format!("{prefix}-{i}"), 32 * 1024),
            )
            .await
        {
            Ok(o) => acked.push(write_of(&o)),
            Err(kube::Error::Api(s)) => {
                return Ok((s.code, serde_json::to_value(&s).unwrap()));
            }
            Err(e) => return Err(e),
        }
    }
    panic!("the server never refused a write");
}

/// Writes work again within 10 s.
pub(crate) async fn write_recovers(api: &Api<ConfigMap>, acked: &mut Vec<Write>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api.create(&PostParams::default(), &cm(name, 16)).await {
            Ok(o) => {
                acked.push(write_of(&o));
                return;
            }
            Err(e) => assert!(Instant::now() < deadline, "writes did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn check(api: &Api<ConfigMap>, acked: &[Write], when: &str) {
    let stored: Vec<Write> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(write_of)
        .collect();
    let d = acknowledged_vs_stored(acked, &stored);
    assert!(d.is_empty(), "{when}: {}", describe(&d));
}

pub(crate) fn assert_unavailable(code: u16, status: &Value, when: &str) {
    assert!((500..600).contains(&code), "{when}: {code} {status}");
    assert_eq!(code, 503, "{when}: {status}");
    assert_eq!(status["reason"], "ServiceUnavailable", "{when}: {status}");
    assert!(
        status["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{when}: {status}"
    );
}

/// Fill the file system of `dir` with one file until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_recovers_when_space_returns_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let home = tempfile::tempdir().unwrap();
    let dir = Server::dir(home.path());
    let Some(fs) = Tmpfs::mount(&dir, "48m") else {
        // Taking permissions away instead would prove nothing: SQLite keeps its open file
        // descriptors, so only a real ENOSPC/EROFS from the kernel tests the path.
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the disk faults were not run");
        return;
    };
    let mut server = Server::start(home.path(), 0);
    let (api, mut acked) = start_with_acked(&server).await;

    // Disk full.
    let t = std::time::Instant::now();
    let filler = fill(&dir);
    eprintln!("filled in {:?}", t.elapsed());
    let (code, status) = match write_until_refused(&api, &mut acked, "full").await {
        Ok(r) => r,
        Err(e) => panic!(
            "disk full: not a Status: {e}; the server {:?}",
            server.exited()
        ),
    };
    eprintln!("refused after {:?}: {code} {status}", t.elapsed());
    assert_unavailable(code, &status, "disk full");
    // Reads still answer.
    check(&api, &acked, "while full").await;
    std::fs::remove_file(filler).unwrap();
    write_recovers(&api, &mut acked, "after-full").await;
    eprintln!("recovered after {:?}", t.elapsed());
    check(&api, &acked, "after space returned").await;

    survives_kill9(&mut server, &acked).await;
    drop(fs);
}
