//! R-ENG-D5: the event stream's `since` is anchored to the daemon's clock, not the host's.
//!
//! Docker filters its event stream by its own clock: with `since` taken from a host clock that
//! runs ahead of the daemon, every event stamped before the host's "now" would be dropped. The
//! daemon here is a small stand-in on a Unix socket (the real Docker's clock cannot be moved):
//! it answers the calls the gateway makes when it connects (`/_ping`, `/version`, `/info`,
//! `/events`), reports a clock ten minutes behind the host and, like Docker, streams only the
//! events stamped at or after `since`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::{SubscribeRequest, subscribe_response::Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// The stand-in daemon's clock: the host's minus ten minutes, in nanoseconds since the epoch.
const BEHIND: Duration = Duration::from_secs(600);

fn daemon_now_nanos() -> i128 {
    (chrono::Utc::now() - chrono::Duration::from_std(BEHIND).unwrap())
        .timestamp_nanos_opt()
        .unwrap() as i128
}

/// Docker's `since` format, `<seconds>.<nanoseconds>`, as nanoseconds.
fn parse_since(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
}

#[derive(Default)]
struct Seen {
    since: Vec<String>,
}

struct Daemon {
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
    /// Set to true to have open event streams emit the test's event.
    emit: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Daemon {
    fn start(path: &Path) -> Daemon {
        let listener = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (emit, rx) = watch::channel(false);
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone(), rx.clone()));
            }
        });
        Daemon {
            path: path.to_path_buf(),
            seen,
            emit,
            task,
        }
    }
}

/// One keep-alive HTTP/1.1 connection: requests without bodies, as the gateway sends them.
async fn serve(mut conn: UnixStream, seen: Arc<Mutex<Seen>>, mut emit: watch::Receiver<bool>) {
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let body = if path.ends_with("/_ping") {
            "OK".to_string()
        } else if path.ends_with("/version") {
            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24","Os":"linux","Arch":"amd64"}"#.to_string()
        } else if path.ends_with("/info") {
            let t = chrono::DateTime::from_timestamp_nanos(daemon_now_nanos() as i64);
            serde_json::json!({
                "ID": "stand-in",
                "SystemTime": t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            })
            .to_string()
        } else if path.ends_with("/events") {
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .map(|v| v.replace("%2E", "."))
                .unwrap_or_default();
            seen.lock().unwrap().since.push(since.clone());
            events(&mut conn, &since, &mut emit).await;
            return;
        } else {
            let body = r#"{"message":"not stood in"}"#;
            let msg = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if conn.write_all(msg.as_bytes()).await.is_err() {
                return;
            }
            continue;
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The event stream: one container `start` event stamped one second after the stream opened
/// (daemon clock), sent when the test asks and only if it is not before `since`, as Docker does.
async fn events(conn: &mut UnixStream, since: &str, emit: &mut watch::Receiver<bool>) {
    let stamped = daemon_now_nanos() + 1_000_000_000;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nTransfer-Encoding: chunked\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if emit.wait_for(|e| *e).await.is_err() {
        return;
    }
    if since.is_empty() || stamped >= parse_since(since) {
        let ev = serde_json::json!({
            "Type": "container",
            "Action": "start",
            "Actor": {"ID": "d5-container", "Attributes": {"name": "d5"}},
            "scope": "local",
            "time": (stamped / 1_000_000_000) as i64,
            "timeNano": stamped as i64,
        })
        .to_string()
            + "\n";
        let chunk = format!("{:x}\r\n{ev}\r\n", ev.len());
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
    // Keep the stream open, as Docker does.
    std::future::pending::<()>().await;
}

struct Gateway {
    child: Child,
    socket: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(docker_socket: &Path, dir: &Path) -> Gateway {
    let socket = dir.join("gw.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_docker-gateway"))
        .arg("--docker-host")
        .arg(format!("unix://{}", docker_socket.display()))
        .arg("--socket")
        .arg(&socket)
        .args(["--admin-addr", "127.0.0.1:0"])
        .env("HOME", dir)
        .env("RDD_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "gateway socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway { child, socket }
}

async fn next(s: &mut tonic::Streaming<rdd_proto::v1::SubscribeResponse>) -> Message {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a message within 20 s")
        .expect("stream ok")
        .expect("stream open")
        .message
        .expect("message set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_d5_since_follows_a_daemon_clock_ten_minutes_behind_and_its_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("docker.sock"));
    let gw = start_gateway(&daemon.path, dir.path());
    let mut c = DockerGatewayClient::new(rdd_proto::unix_channel(&gw.socket));
    let mut s = c
        .subscribe(SubscribeRequest {
            types: vec!["container".into()],
            actions: vec![],
            label_selector: String::new(),
            subscriber: "d5".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while !matches!(next(&mut s).await, Message::Synced(_)) {}

    // `since` came from the daemon's clock: within a minute of it, ten minutes behind the host.
    let since = daemon.seen.lock().unwrap().since.clone();
    assert_eq!(since.len(), 1, "one event stream: {since:?}");
    let anchored = parse_since(&since[0]);
    let host = chrono::Utc::now().timestamp_nanos_opt().unwrap() as i128;
    let behind = Duration::from_nanos((host - anchored).max(0) as u64);
    assert!(
        behind > Duration::from_secs(540) && behind < Duration::from_secs(660),
        "since {} is {behind:?} behind the host clock; the daemon's is {BEHIND:?} behind",
        since[0]
    );

    // An event the daemon stamps after `since` but long before the host's "now" is delivered.
    daemon.emit.send(true).unwrap();
    loop {
        if let Message::Event(e) = next(&mut s).await {
            assert_eq!(
                (e.actor_id.as_str(), e.action.as_str()),
                ("d5-container", "start")
            );
            break;
        }
    }
}
