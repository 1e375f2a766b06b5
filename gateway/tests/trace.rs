//! The gateway joins its caller's trace: a call carrying W3C `traceparent` metadata produces a
//! gateway span in that trace, as a child of the caller's span, exported over OTLP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::ContainerRef;
use rdd_testkit::otlp::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_traceparent_yields_a_child_span_exported_over_otlp() {
    let otlp = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gw.sock");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_docker-gateway"))
        .args([
            "--docker-host",
            "unix:///var/run/docker.sock",
            "--log-level",
            "warn",
        ])
        .arg("--socket")
        .arg(&socket)
        .args(["--otlp-endpoint", &otlp.endpoint])
        .env("HOME", dir.path())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut c = DockerGatewayClient::new(rdd_proto::unix_channel(&socket));
    // Calls before the gateway reached Docker would be UNAVAILABLE.
    let mut w = c
        .watch_connection(rdd_proto::v1::WatchConnectionRequest {})
        .await
        .unwrap()
        .into_inner();
    while let Some(st) = w.message().await.unwrap() {
        if st.state == rdd_proto::v1::connection_state::State::Connected as i32 {
            break;
        }
    }
    let mut req = tonic::Request::new(ContainerRef {
        id: "rdd-trace-test-no-such-container".into(),
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().unwrap(),
    );
    let err = c.inspect_container(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let deadline = Instant::now() + Duration::from_secs(20);
    let span = loop {
        if let Some(s) = otlp
            .spans()
            .into_iter()
            .find(|s| s.span.name == "InspectContainer")
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no InspectContainer span exported: {:?}",
            otlp.spans()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(span.service, "docker-gateway");
    assert_eq!(hex(&span.span.trace_id), trace_id);
    assert_eq!(hex(&span.span.parent_span_id), parent);
    let code = span
        .span
        .attributes
        .iter()
        .find(|a| a.key == "rpc.grpc.status_code")
        .and_then(|a| a.value.clone());
    assert!(
        code.is_some(),
        "status code recorded: {:?}",
        span.span.attributes
    );
    // The object the call names, under the attribute the docker.event spans use.
    let id = span
        .span
        .attributes
        .iter()
        .find(|a| a.key == "docker.id")
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                Some(s.clone())
            }
            _ => None,
        });
    assert_eq!(
        id.as_deref(),
        Some("rdd-trace-test-no-such-container"),
        "{:?}",
        span.span.attributes
    );
}
