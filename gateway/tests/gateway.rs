//! The docker-gateway as a real process against the real Docker Engine, with a proxy the tests
//! control between the two.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::{
    ContainerRef, ImageRef, ListContainersRequest, RemoveVolumeRequest, StopContainerRequest,
    SubscribeRequest, SubscribeResponse, VolumeRef, connection_state, resync,
    subscribe_response::Message,
};
use rdd_testkit::{DockerProxy, Scope, docker};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

struct Gateway {
    child: Child,
    socket: PathBuf,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_gateway(docker_socket: &Path, extra: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gw.sock");
    let admin = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_docker-gateway"))
        .arg("--docker-host")
        .arg(format!("unix://{}", docker_socket.display()))
        .arg("--socket")
        .arg(&socket)
        .args(["--admin-addr", &admin])
        .args(extra)
        .env("HOME", dir.path())
        .env("RDD_LOG_LEVEL", "warn")
        .env("RDD_RECONNECT_MIN_MS", "100")
        .env("RDD_RECONNECT_MAX_MS", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "gateway socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway {
        child,
        socket,
        admin,
        _dir: dir,
    }
}

/// Until the gateway has reached Docker (calls before that are UNAVAILABLE).
async fn wait_connected(gw: &Gateway) {
    let mut w = client(gw)
        .watch_connection(rdd_proto::v1::WatchConnectionRequest {})
        .await
        .unwrap()
        .into_inner();
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        while let Some(st) = w.message().await.unwrap() {
            if st.state == connection_state::State::Connected as i32 {
                return;
            }
        }
    })
    .await
    .expect("gateway connected to Docker");
}

fn client(gw: &Gateway) -> DockerGatewayClient<Channel> {
    DockerGatewayClient::new(rdd_proto::unix_channel(&gw.socket))
}

async fn subscribe(
    c: &mut DockerGatewayClient<Channel>,
    types: &[&str],
    selector: &str,
    name: &str,
) -> Streaming<SubscribeResponse> {
    c.subscribe(SubscribeRequest {
        types: types.iter().map(|s| s.to_string()).collect(),
        actions: vec![],
        label_selector: selector.into(),
        subscriber: name.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn next(s: &mut Streaming<SubscribeResponse>) -> Message {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a message within 20s")
        .expect("stream ok")
        .expect("stream open")
        .message
        .expect("message set")
}

async fn until_synced(s: &mut Streaming<SubscribeResponse>) {
    loop {
        if let Message::Synced(_) = next(s).await {
            return;
        }
    }
}

/// Events of `s` until one with `action` for `id`; returns (sequence, action) of container events.
async fn events_until(
    s: &mut Streaming<SubscribeResponse>,
    id: &str,
    action: &str,
) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    loop {
        if let Message::Event(e) = next(s).await
            && e.actor_id == id
        {
            out.push((e.sequence, e.action.clone()));
            if e.action == action {
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_see_the_same_events_over_one_docker_events_connection() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &[]);
    let scope = Scope::new();
    rdd_testkit::busybox_image();
    let mut c = client(&gw);
    let sel = scope.label();
    let mut a = subscribe(&mut c, &["container"], &sel, "a").await;
    let mut b = subscribe(&mut c, &["container"], &sel, "b").await;
    until_synced(&mut a).await;
    until_synced(&mut b).await;

    let id = scope.container("fan", false, &["true"]);
    docker(&["start", &id]);
    docker(&["wait", &id]);
    docker(&["rm", &id]);

    let ea = events_until(&mut a, &id, "destroy").await;
    let eb = events_until(&mut b, &id, "destroy").await;
    assert_eq!(
        ea, eb,
        "both subscribers see the same events with the same sequence"
    );
    let actions: Vec<&str> = ea.iter().map(|(_, a)| a.as_str()).collect();
    let pos = |x: &str| {
        actions
            .iter()
            .position(|a| *a == x)
            .unwrap_or_else(|| panic!("{x} in {actions:?}"))
    };
    assert!(
        pos("create") < pos("start") && pos("start") < pos("die") && pos("die") < pos("destroy")
    );
    assert!(
        ea.windows(2).all(|w| w[0].0 < w[1].0),
        "sequences increase: {ea:?}"
    );
    assert_eq!(
        proxy.event_streams(),
        1,
        "one Docker events connection for two subscribers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_t2_killing_the_proxy_gives_disconnected_then_resync_and_the_relist_sees_the_changes()
{
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &[]);
    let scope = Scope::new();
    rdd_testkit::busybox_image();
    let mut c = client(&gw);
    let mut s = subscribe(&mut c, &["container"], &scope.label(), "r").await;
    until_synced(&mut s).await;

    proxy.kill().await;
    loop {
        if let Message::Connection(st) = next(&mut s).await
            && st.state == connection_state::State::Disconnected as i32
        {
            assert!(
                st.reason.contains(&proxy.path.display().to_string()),
                "{}",
                st.reason
            );
            break;
        }
    }
    // Calls while Docker is unreachable fail as UNAVAILABLE.
    let err = c
        .list_containers(ListContainersRequest {
            all: true,
            label: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // Changed while disconnected: invisible to the event stream.
    let id = scope.container("offline", false, &["true"]);
    proxy.restart().await;
    let mut saw_connected = false;
    loop {
        match next(&mut s).await {
            Message::Connection(st) => {
                saw_connected |= st.state == connection_state::State::Connected as i32
            }
            Message::Resync(r) => {
                assert_eq!(r.reason, resync::Reason::Reconnected as i32);
                break;
            }
            Message::Event(_) | Message::Synced(_) => {}
        }
    }
    assert!(saw_connected, "Connected precedes the resync");
    let list = c
        .list_containers(ListContainersRequest {
            all: true,
            label: vec![scope.label()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.containers.iter().any(|x| x.id == id),
        "the relist sees the container created while disconnected"
    );
    assert_eq!(
        proxy.event_streams(),
        2,
        "one events connection per Docker session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_gets_resync_and_the_other_is_not_held_up() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &["--subscriber-buffer", "4"]);
    let _ = &proxy;
    let scope = Scope::new();
    // The slow client's HTTP/2 window is tiny, so the gateway notices at once that it stopped.
    let ep = tonic::transport::Endpoint::from_static("http://gw.invalid")
        .initial_stream_window_size(Some(256))
        .initial_connection_window_size(Some(256));
    let mut slow_c = DockerGatewayClient::new(rdd_proto::unix_channel_with(ep, &gw.socket));
    let mut fast_c = client(&gw);
    let sel = scope.label();
    let mut slow = subscribe(&mut slow_c, &["container"], &sel, "slow").await;
    let mut fast = subscribe(&mut fast_c, &["container"], &sel, "fast").await;
    until_synced(&mut slow).await;
    until_synced(&mut fast).await;

    // Docker reports container labels as event attributes: 16 KiB labels make events large
    // enough to fill the HTTP/2 buffers between the gateway and the slow reader quickly.
    let image = rdd_testkit::busybox_image();
    let blob = format!("blob={}", "x".repeat(16 * 1024));
    let n = 40;
    let mut ids = Vec::new();
    for i in 0..n {
        let name = scope.name(&format!("c{i}"));
        let id = docker(&[
            "create", "--label", &sel, "--label", &blob, "--name", &name, image, "true",
        ]);
        docker(&["rm", &id]);
        ids.push(id);
    }
    // The fast subscriber sees every create and destroy, in order, while the slow one reads
    // nothing.
    let mut seen = Vec::new();
    while seen.len() < 2 * n {
        if let Message::Event(e) = next(&mut fast).await {
            seen.push((e.actor_id.clone(), e.action.clone()));
        }
    }
    let want: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), "create".to_string()),
                (id.clone(), "destroy".to_string()),
            ]
        })
        .collect();
    assert_eq!(seen, want);

    // Now the slow one reads: some events, then a resync that says how many it missed, and
    // events again after it.
    let mut before = 0;
    let dropped = loop {
        match next(&mut slow).await {
            Message::Event(_) => before += 1,
            Message::Resync(r) => {
                assert_eq!(r.reason, resync::Reason::Overflow as i32);
                break r.dropped;
            }
            _ => {}
        }
    };
    assert!(
        dropped > 0 && before < 2 * n,
        "before={before} dropped={dropped}"
    );
    let after = scope.container("after", false, &["true"]);
    loop {
        if let Message::Event(e) = next(&mut slow).await
            && e.actor_id == after
        {
            break;
        }
    }
    let metrics = reqwest_lite(&gw.admin, "/metrics").await;
    assert!(
        metrics.contains("docker_gateway_resyncs_total{reason=\"OVERFLOW\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_errors_and_bad_requests_map_to_grpc_codes() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &[]);
    wait_connected(&gw).await;
    let scope = Scope::new();
    let image = rdd_testkit::busybox_image();
    let mut c = client(&gw);

    let missing = c
        .inspect_container(ContainerRef {
            id: "rdd-no-such-container".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = c
        .inspect_volume(VolumeRef {
            name: "rdd-no-such-volume".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // An image used by a container cannot be removed without force: a conflict.
    let id = scope.container("user", false, &["true"]);
    let vol = scope.volume("busy");
    let conflict = c
        .remove_image(ImageRef {
            reference: image.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::FailedPrecondition, "{conflict:?}");
    docker(&["rm", &id]);
    let mount = format!("{vol}:/data");
    let holder = docker(&[
        "create",
        "--label",
        &scope.label(),
        "-v",
        &mount,
        image,
        "true",
    ]);
    let in_use = c
        .remove_volume(RemoveVolumeRequest {
            name: vol.clone(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition, "{in_use:?}");
    docker(&["rm", &holder]);

    // Bad requests are refused before any Docker call.
    let before = proxy.requests();
    let empty = c
        .inspect_container(ContainerRef { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let bad_timeout = c
        .stop_container(StopContainerRequest {
            id: "x".into(),
            timeout_seconds: Some(-7),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_timeout.code(), Code::InvalidArgument);
    let bad_filter = c
        .subscribe(SubscribeRequest {
            types: vec!["containers".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_filter.code(), Code::InvalidArgument);
    assert!(
        bad_filter.message().contains("unknown event type"),
        "{}",
        bad_filter.message()
    );
    let bad_selector = c
        .subscribe(SubscribeRequest {
            label_selector: "a b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_selector.code(), Code::InvalidArgument);
    assert_eq!(proxy.requests(), before, "no Docker call for a bad request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_actions_and_logs_go_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &[]);
    wait_connected(&gw).await;
    let scope = Scope::new();
    let mut c = client(&gw);
    let id = scope.container(
        "act",
        true,
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; trap 'exit 0' TERM; while true; do sleep 0.2; done",
        ],
    );
    let state = |c: &mut DockerGatewayClient<Channel>| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            c.inspect_container(ContainerRef { id })
                .await
                .unwrap()
                .into_inner()
                .state
                .unwrap()
                .status
        }
    };
    assert_eq!(state(&mut c).await, "running");
    c.pause_container(ContainerRef { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(state(&mut c).await, "paused");
    c.unpause_container(ContainerRef { id: id.clone() })
        .await
        .unwrap();
    c.stop_container(StopContainerRequest {
        id: id.clone(),
        timeout_seconds: Some(5),
    })
    .await
    .unwrap();
    assert_eq!(state(&mut c).await, "exited");
    // Stopping a stopped container is success, as in Docker (304).
    c.stop_container(StopContainerRequest {
        id: id.clone(),
        timeout_seconds: Some(1),
    })
    .await
    .unwrap();
    c.start_container(ContainerRef { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(state(&mut c).await, "running");

    // The second run prints right after its start returns: read until both runs' lines are
    // there (a loaded machine may not have run the shell yet), each read a complete
    // non-following stream.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (out, err) = loop {
        let mut logs = c
            .container_logs(rdd_proto::v1::ContainerLogsRequest {
                id: id.clone(),
                follow: false,
                tail: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = String::new();
        let mut err = String::new();
        while let Some(chunk) = logs.message().await.unwrap() {
            let text = String::from_utf8_lossy(&chunk.data).to_string();
            if chunk.stream == rdd_proto::v1::log_chunk::Stream::Stderr as i32 {
                err.push_str(&text);
            } else {
                out.push_str(&text);
            }
        }
        if (out.matches("hello").count() >= 2 && err.matches("oops").count() >= 2)
            || std::time::Instant::now() > deadline
        {
            break (out, err);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Started twice: each run printed its lines.
    assert_eq!(out.matches("hello").count(), 2, "{out}");
    assert_eq!(err.matches("oops").count(), 2, "{err}");

    c.kill_container(rdd_proto::v1::KillContainerRequest {
        id: id.clone(),
        signal: String::new(),
    })
    .await
    .unwrap();
    c.remove_container(rdd_proto::v1::RemoveContainerRequest {
        id: id.clone(),
        force: true,
        volumes: true,
    })
    .await
    .unwrap();
    let gone = c.inspect_container(ContainerRef { id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_private_and_a_second_gateway_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock")).await;
    let gw = start_gateway(&proxy.path, &[]);
    wait_connected(&gw).await;
    let mode = std::fs::metadata(&gw.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = Command::new(env!("CARGO_BIN_EXE_docker-gateway"))
        .arg("--docker-host")
        .arg(format!("unix://{}", proxy.path.display()))
        .arg("--socket")
        .arg(&gw.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another docker-gateway is already running"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    // The first gateway still serves.
    client(&gw)
        .ping(rdd_proto::v1::PingRequest {})
        .await
        .unwrap();
    let health = reqwest_lite(&gw.admin, "/healthz").await;
    assert_eq!(health, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_s1_an_absent_engine_is_a_quiet_disconnected_state_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nothing-here.sock");
    let gw = start_gateway(&absent, &[]);
    let mut c = client(&gw);
    let mut w = c
        .watch_connection(rdd_proto::v1::WatchConnectionRequest {})
        .await
        .unwrap()
        .into_inner();
    let st = w.message().await.unwrap().unwrap();
    assert_eq!(st.state, connection_state::State::Disconnected as i32);
    assert!(st.reason.contains("does not exist"), "{}", st.reason);
    assert!(st.reason.contains(&absent.display().to_string()));
    // The standard health service says NOT_SERVING while Docker is absent.
    let mut h =
        tonic_health::pb::health_client::HealthClient::new(rdd_proto::unix_channel(&gw.socket));
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    // When the engine appears, the gateway connects without being restarted.
    let _proxy = DockerProxy::start(&absent).await;
    let st = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(st.state, connection_state::State::Connected as i32);
}

/// GET over plain HTTP/1.1 without pulling in an HTTP client crate.
async fn reqwest_lite(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
