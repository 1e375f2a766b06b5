//! The API server's database cannot be written: writes are refused with a 503
//! `ServiceUnavailable` Status, reads keep working, writes work again once the files can be
//! written, and nothing acknowledged is lost — also across a `kill -9` afterwards.
//!
//! The instance directory (SQLite database, WAL, shared memory) is an ext4 file system in a
//! loop-mounted image, and the fault is the immutable attribute (`chattr +i`) on the directory
//! and every file in it. ext4 refuses writes to an immutable file even through descriptors opened
//! before (EPERM), so the server's open connections meet the fault at once; root cannot bypass
//! it. A read-only remount is refused by the kernel (EBUSY) while SQLite holds its files open for
//! writing, permission bits do not stop root, and tmpfs keeps accepting writes through open
//! descriptors of an immutable file — hence ext4. Mounting needs root and a loop device (CI runs
//! as root); without them the test says SKIPPED and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, PostParams};

use crate::disk::{
    assert_unavailable, check, start_with_acked, survives_kill9, write_recovers,
    write_until_refused,
};
use crate::support::{SERIAL, Server};

/// An ext4 image loop-mounted at `dir`; unmounted (and its flags cleared) on drop.
struct Ext4 {
    dir: PathBuf,
}

fn run_ok(cmd: &str, args: &[&str], path: &Path) -> bool {
    Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Ext4 {
    fn mount(image: &Path, dir: &Path, size: u64) -> Option<Ext4> {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::File::create(image).ok()?.set_len(size).ok()?;
        if !run_ok("mkfs.ext4", &["-q", "-F"], image) {
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(image)
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Ext4 {
            dir: dir.to_path_buf(),
        })
    }

    /// `chattr ±i` on the directory and everything in it.
    fn immutable(&self, on: bool) {
        let flag = if on { "+i" } else { "-i" };
        assert!(
            run_ok("chattr", &["-R", flag], &self.dir),
            "chattr -R {flag} {}",
            self.dir.display()
        );
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = run_ok("chattr", &["-R", "-i"], &self.dir);
        if !run_ok("umount", &[], &self.dir) {
            let _ = run_ok("umount", &["-l"], &self.dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_answers_503_keeps_reads_recovers_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let home = tempfile::tempdir().unwrap();
    let dir = Server::dir(home.path());
    let Some(fs) = Ext4::mount(&home.path().join("instance.img"), &dir, 64 << 20) else {
        eprintln!(
            "SKIPPED: cannot loop-mount an ext4 image here (needs root, mkfs.ext4 and a loop device); the read-only fault was not run"
        );
        return;
    };
    let mut server = Server::start(home.path(), 0);
    let (api, mut acked) = start_with_acked(&server).await;

    // Read-only.
    fs.immutable(true);
    let t = Instant::now();
    let before = acked.len();
    let (code, status) = match write_until_refused(&api, &mut acked, "ro").await {
        Ok(r) => r,
        Err(e) => {
            // The connection dropped: say how the server ended (it died of SIGBUS before the
            // WAL index moved off the memory-mapped -shm file).
            let deadline = Instant::now() + Duration::from_secs(2);
            while server.exited().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "read-only create: not a Status: {e}; the server: {:?}",
                server.exited()
            )
        }
    };
    eprintln!(
        "refused after {:?} and {} accepted writes: {code} {status}",
        t.elapsed(),
        acked.len() - before
    );
    assert_unavailable(code, &status, "read-only create");
    // An update and a delete are refused the same way; neither takes effect.
    let mut first = api.get("a-0").await.unwrap();
    first.data = Some([("v".to_string(), "changed".to_string())].into());
    match api.replace("a-0", &PostParams::default(), &first).await {
        Err(kube::Error::Api(s)) => assert_unavailable(
            s.code,
            &serde_json::to_value(&s).unwrap(),
            "read-only update",
        ),
        other => panic!("read-only update: {other:?}"),
    }
    match api.delete("a-1", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_unavailable(
            s.code,
            &serde_json::to_value(&s).unwrap(),
            "read-only delete",
        ),
        other => panic!("read-only delete: {other:?}"),
    }
    // Reads still answer, and show nothing of the refused writes.
    check(&api, &acked, "while read-only").await;
    assert!(api.get("a-1").await.is_ok(), "a-1 was deleted");
    assert_eq!(server.exited(), None, "the server exited while read-only");

    fs.immutable(false);
    write_recovers(&api, &mut acked, "after-ro").await;
    eprintln!("recovered after {:?}", t.elapsed());
    check(&api, &acked, "after writes returned").await;

    survives_kill9(&mut server, &acked).await;
    drop(fs);
}
