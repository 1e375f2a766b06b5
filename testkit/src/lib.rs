//! Test support shared by the end-to-end suites that drive the real Docker Engine.
//!
//! - [`busybox_image`]: the suite's one image, `docker import` of a rootfs holding Debian's
//!   `busybox-static` (no registry is reachable here);
//! - [`DockerProxy`]: a Unix-socket proxy between a process under test and Docker that counts
//!   connections and requests and can be killed and restarted, to cut the connection without
//!   touching the daemon;
//! - [`Scope`]: a unique label for what one test creates, and removal of exactly that;
//! - [`MirrorControllers`]: starting the mirror controllers under their own identities, scoped to
//!   the test's label.

pub mod kinds;
pub mod otlp;

pub use kinds::{MirrorControllers, free_port};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

/// Stop a process under test as a user would: SIGTERM, so it shuts down its own way, then
/// SIGKILL if it is still running after `grace`; reaped either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) with a PID this process spawned and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const IMAGE: &str = "rdd-test/busybox:1";
/// Label every test object carries, so cleanup can never touch anything else.
pub const LABEL: &str = "rdd-test";

/// Run `docker` with `args`; panics with its stderr on failure (tests only).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker` that may fail; returns (success, stdout, stderr).
pub fn docker_try(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

static IMAGE_LOCK: Mutex<()> = Mutex::new(());

/// Ensure the test image exists and return its reference. Built once per machine: the tag is
/// reused by every test binary (`scripts/test` removes it when the suite ends).
pub fn busybox_image() -> &'static str {
    let _g = IMAGE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if docker_try(&["image", "inspect", IMAGE]).0 {
        return IMAGE;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path());
    // Concurrent test binaries may race here; whoever loses just finds the tag.
    let (ok, _, err) = docker_try(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        &tar.to_string_lossy(),
        IMAGE,
    ]);
    assert!(
        ok || docker_try(&["image", "inspect", IMAGE]).0,
        "docker import: {err}"
    );
    IMAGE
}

/// A tar of a root filesystem holding Debian's `busybox-static` and a few applets, in `dir`.
fn rootfs_tar(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (.ci/run does)"
    );
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("rootfs");
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "sleep", "echo", "cat", "true", "false", "ls", "env", "kill",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    let tar = dir.join("rootfs.tar");
    let ok = Command::new("tar")
        .args(["-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar runs")
        .success();
    assert!(ok, "tar of the busybox rootfs failed");
    tar
}

/// What one test creates, under a unique label value; dropping it removes exactly those
/// containers, volumes and images (and the tags named after the scope).
pub struct Scope {
    pub id: String,
}

impl Scope {
    pub fn new() -> Scope {
        Scope {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        }
    }
    /// `rdd-test=<id>`, for `--label` and `--filter label=`.
    pub fn label(&self) -> String {
        format!("{LABEL}={}", self.id)
    }
    /// A name unique to this scope.
    pub fn name(&self, base: &str) -> String {
        format!("rddt-{}-{base}", self.id)
    }
    /// `docker run -d` (or `create` when `start` is false) of the test image with this
    /// scope's label; returns the full ID.
    pub fn container(&self, name: &str, start: bool, cmd: &[&str]) -> String {
        let image = busybox_image();
        let name = self.name(name);
        let label = self.label();
        let mut args = vec![if start { "run" } else { "create" }];
        if start {
            args.push("-d");
        }
        args.extend(["--label", &label, "--name", &name, image]);
        args.extend(cmd);
        docker(&args)
    }
    /// A new image of its own (`docker import` of the busybox rootfs with this scope's label),
    /// tagged `<repo>:<tag>` for each of `tags` with `repo` = [`name`](Self::name)`("img")`;
    /// returns its ID. Every tag of a scope image is the test's own, so cleanup removes the image
    /// with all its tags.
    pub fn image(&self, tags: &[&str]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = self.import(&rootfs_tar(dir.path()), &[]);
        for t in tags {
            docker(&["tag", &id, &self.image_ref(t)]);
        }
        id
    }
    /// `count` distinct untagged images of this scope (one import each of the same rootfs,
    /// told apart by a `rdd-variant` label); returns their IDs.
    pub fn images(&self, count: usize) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = rootfs_tar(dir.path());
        (0..count)
            .map(|i| self.import(&tar, &[&format!("LABEL rdd-variant={i}")]))
            .collect()
    }
    /// `docker import` of the rootfs `tar` with this scope's label, a shell as its command and
    /// the Dockerfile instructions `changes`; returns the image ID.
    fn import(&self, tar: &Path, changes: &[&str]) -> String {
        let label = format!("LABEL {}", self.label());
        let tar = tar.to_string_lossy();
        let mut args = vec!["import", "--change", &label];
        for c in changes {
            args.extend(["--change", c]);
        }
        args.extend(["--change", "CMD [\"/bin/sh\"]", &tar]);
        docker(&args)
    }
    /// `<repo>:<tag>` of this scope's images.
    pub fn image_ref(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name("img"))
    }
    pub fn volume(&self, name: &str) -> String {
        let name = self.name(name);
        docker(&["volume", "create", "--label", &self.label(), &name])
    }
    pub fn cleanup(&self) {
        let filter = format!("label={}", self.label());
        let (_, ids, _) = docker_try(&["ps", "-aq", "--filter", &filter]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = docker_try(&["rm", "-f", id]);
        }
        let (_, vols, _) = docker_try(&["volume", "ls", "-q", "--filter", &filter]);
        for v in vols.lines().filter(|l| !l.is_empty()) {
            let _ = docker_try(&["volume", "rm", "-f", v]);
        }
        // Images carrying the scope's label were made by `image` (all their tags are ours);
        // tags a test put on other images are named after the scope.
        let (_, imgs, _) = docker_try(&["image", "ls", "-q", "--no-trunc", "--filter", &filter]);
        for i in imgs.lines().filter(|l| !l.is_empty()) {
            let _ = docker_try(&["rmi", "-f", i]);
        }
        let repo = self.name("img");
        let (_, refs, _) =
            docker_try(&["image", "ls", &repo, "--format", "{{.Repository}}:{{.Tag}}"]);
        for r in refs.lines().filter(|l| l.starts_with(&repo)) {
            let _ = docker_try(&["rmi", r]);
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Counters a proxy keeps across restarts.
#[derive(Default)]
pub struct ProxyStats {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    pub event_streams: AtomicUsize,
}

/// A Unix-socket proxy in front of Docker's socket. Killing it closes every proxied connection
/// at once, like a VM's socket forwarder dying.
pub struct DockerProxy {
    pub path: PathBuf,
    pub stats: Arc<ProxyStats>,
    tasks: Option<JoinSet<()>>,
}

impl DockerProxy {
    pub async fn start(path: &Path) -> DockerProxy {
        let mut p = DockerProxy {
            path: path.to_path_buf(),
            stats: Arc::new(ProxyStats::default()),
            tasks: None,
        };
        p.restart().await;
        p
    }

    /// Listen again on the same path (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy socket");
        let stats = self.stats.clone();
        let mut tasks = JoinSet::new();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let conns2 = conns.clone();
        tasks.spawn(async move {
            // Connection tasks live in a set owned by this task, so aborting it drops them all.
            let _hold = conns2;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(upstream) = UnixStream::connect(DOCKER_SOCKET).await else {
                    continue;
                };
                stats.connections.fetch_add(1, Ordering::SeqCst);
                let stats = stats.clone();
                if let Ok(mut set) = _hold.lock() {
                    set.spawn(pipe(client, upstream, stats));
                }
            }
        });
        self.tasks = Some(tasks);
    }

    /// Stop listening and cut every proxied connection.
    pub async fn kill(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }
    pub fn event_streams(&self) -> usize {
        self.stats.event_streams.load(Ordering::SeqCst)
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

async fn pipe(client: UnixStream, upstream: UnixStream, stats: Arc<ProxyStats>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        // Keep a short tail so a request line split across reads is still counted once.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut scan = std::mem::take(&mut tail);
            let keep_from = scan.len();
            scan.extend_from_slice(&buf[..n]);
            let req = count(&scan, b" HTTP/1.1\r\n");
            let prev = count(&scan[..keep_from], b" HTTP/1.1\r\n");
            stats.requests.fetch_add(req - prev, Ordering::SeqCst);
            let ev = count(&scan, b"/events?") + count(&scan, b"/events HTTP");
            let ev_prev =
                count(&scan[..keep_from], b"/events?") + count(&scan[..keep_from], b"/events HTTP");
            stats
                .event_streams
                .fetch_add(ev - ev_prev, Ordering::SeqCst);
            let start = scan.len().saturating_sub(16);
            tail = scan[start..].to_vec();
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
