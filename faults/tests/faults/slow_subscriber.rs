//! A subscriber at the gateway that stops reading: it is told (Resync with the number dropped)
//! instead of silently losing events, its relist then equals Docker, and the controller
//! subscribed next to it keeps its mirrors equal to Docker meanwhile.

use std::time::{Duration, Instant};

use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::{ListContainersRequest, SubscribeRequest, resync, subscribe_response::Message};
use rdd_testkit::docker;

use crate::support::{Env, SERIAL, metric_by};

const T: Duration = Duration::from_secs(60);

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
async fn a_slow_subscriber_gets_resync_and_relists_while_the_controller_is_unaffected() {
    let _serial = SERIAL.lock().await;
    let mut env = Env::start(&["--subscriber-buffer", "4"]).await;
    env.start_kind("container-controller");
    env.wait_cond("ContainersSynced", "Connected", T).await;

    // The slow client's HTTP/2 windows are tiny, so the gateway notices at once that it stopped.
    let ep = tonic::transport::Endpoint::from_static("http://gw.invalid")
        .initial_stream_window_size(Some(256))
        .initial_connection_window_size(Some(256));
    let mut slow_c = DockerGatewayClient::new(rdd_proto::unix_channel_with(ep, &env.gw_socket));
    let sel = env.scope.label();
    let mut slow = slow_c
        .subscribe(SubscribeRequest {
            types: vec!["container".into()],
            label_selector: sel.clone(),
            subscriber: "faults-slow".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        if let Message::Synced(_) = next(&mut slow).await {
            break;
        }
    }

    // Large events (16 KiB labels become event attributes) fill the slow reader's buffers fast.
    let blob = format!("blob={}", "x".repeat(16 * 1024));
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(env.container(&format!("c{i}"), false, &["--label", &blob], &["true"]));
    }
    for id in ids.iter().take(10) {
        docker(&["rm", id]);
    }
    // The controller next to it is not held up: its mirrors follow Docker while the slow
    // subscriber still reads nothing.
    let t = Instant::now();
    env.wait_equal("the controller's mirrors", T).await;
    eprintln!(
        "controller's mirrors equal Docker {:?} after the last change",
        t.elapsed()
    );

    // The slow one now reads: events, then a Resync saying how many it missed — never a gap
    // without one.
    let mut seen = 0;
    let dropped = loop {
        match next(&mut slow).await {
            Message::Event(_) => seen += 1,
            Message::Resync(r) => {
                assert_eq!(r.reason, resync::Reason::Overflow as i32);
                break r.dropped;
            }
            _ => {}
        }
    };
    assert!(dropped > 0, "{seen} events before the resync");
    assert!(
        seen < 50,
        "{seen} events before the resync: nothing was dropped"
    );
    // Its relist (what a mirror does on Resync) equals Docker.
    let list = slow_c
        .list_containers(ListContainersRequest {
            all: true,
            label: vec![sel.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let relist: Vec<(String, String)> = list
        .containers
        .into_iter()
        .map(|c| (c.id, c.state))
        .collect();
    let d = rdd_faults::mirrors_vs_docker(&env.docker_containers(), &relist);
    assert!(d.is_empty(), "relist: {}", rdd_faults::describe(&d));
    // Events flow to it again after the resync.
    let after = env.container("after", false, &[], &["true"]);
    let deadline = Instant::now() + T;
    loop {
        if let Message::Event(e) = next(&mut slow).await
            && e.actor_id == after
        {
            break;
        }
        assert!(Instant::now() < deadline, "no event after the resync");
    }
    let resyncs = metric_by(&env.gw_admin, "docker_gateway_resyncs_total{", "reason");
    assert!(
        resyncs.get("OVERFLOW").copied().unwrap_or(0) >= 1,
        "{resyncs:?}"
    );
    env.wait_equal("at the end", T).await;
}
