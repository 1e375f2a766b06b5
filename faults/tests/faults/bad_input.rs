//! Bad input everywhere — undecodable gRPC messages and bytes that are not HTTP/2 at the
//! gateway, mutated JSON bodies at the API server, malformed flags, environment and
//! configuration files for every binary: each is a clear error, and no process crashes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::PingRequest;
use serde_json::{Value, json};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::support::{Env, SERIAL, Server, sibling_bin};

/// A codec that sends the given bytes as the message, whatever they are.
#[derive(Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn raw_unary(env: &Env, method: &'static str, body: Bytes) -> tonic::Status {
    let ch = rdd_proto::unix_channel(&env.gw_socket);
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    match grpc.unary(tonic::Request::new(body), path, Raw).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a failure names a reproducible input.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_and_non_http2_bytes_at_the_gateway_are_refused_and_it_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let env = Env::start(&[]).await;
    let before = env.proxy.requests();
    let methods = [
        "/rdd.gateway.v1.DockerGateway/InspectContainer",
        "/rdd.gateway.v1.DockerGateway/StopContainer",
        "/rdd.gateway.v1.DockerGateway/RemoveVolume",
        "/rdd.gateway.v1.DockerGateway/ListContainers",
    ];
    for (i, m) in methods.iter().enumerate() {
        for seed in 0..8u64 {
            let body = noise(seed + 100 * i as u64, 1 + (seed as usize * 37) % 300);
            let s = raw_unary(&env, m, Bytes::from(body)).await;
            // Undecodable protobuf is a protocol error of the caller; a message that happens to
            // decode must still fail validation or name nothing that exists.
            assert!(
                matches!(
                    s.code(),
                    Code::Internal | Code::InvalidArgument | Code::NotFound | Code::Ok
                ),
                "{m} seed {seed}: {s:?}"
            );
            assert!(
                s.code() == Code::Ok || !s.message().is_empty(),
                "{m}: {s:?}"
            );
        }
    }
    // A method that does not exist.
    let s = raw_unary(
        &env,
        "/rdd.gateway.v1.DockerGateway/Frobnicate",
        Bytes::new(),
    )
    .await;
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
    // Bytes that are not HTTP/2 at all, then a connection closed in the middle of a preface.
    for seed in 0..4u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::UnixStream::connect(&env.gw_socket)
            .await
            .unwrap();
        let _ = c.write_all(&noise(seed, 4096)).await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
    }
    {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::UnixStream::connect(&env.gw_socket)
            .await
            .unwrap();
        let _ = c.write_all(b"PRI * HTTP/2.0\r\n").await;
    }
    // Still serving, and none of it reached Docker except well-formed list calls.
    let mut gw = DockerGatewayClient::new(rdd_proto::unix_channel(&env.gw_socket));
    let pong = gw.ping(PingRequest {}).await.unwrap().into_inner();
    assert!(!pong.api_version.is_empty());
    let metrics = crate::support::http_get(&env.gw_admin, "/metrics");
    assert!(
        metrics.contains("grpc_server_handled_total"),
        "admin still answers"
    );
    eprintln!(
        "Docker requests during the garbage: {}",
        env.proxy.requests() - before
    );
}

async fn post(client: &kube::Client, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", ct)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Mutations of a valid body: truncations, byte flips, wrong types, deep nesting, huge strings.
fn mutations(valid: &Value) -> Vec<Vec<u8>> {
    let text = serde_json::to_vec(valid).unwrap();
    let mut out = Vec::new();
    for cut in (1..text.len()).step_by(7) {
        out.push(text[..cut].to_vec());
    }
    for seed in 0..40u64 {
        let mut t = text.clone();
        let n = noise(seed, 3);
        let i = (n[0] as usize * 131 + n[1] as usize) % t.len();
        t[i] = n[2];
        out.push(t);
        out.push(noise(seed + 1000, 64 + seed as usize * 13));
    }
    for (path, v) in [
        ("metadata", json!("x")),
        ("metadata", json!([1, 2])),
        ("data", json!(7)),
        ("data", json!({"k": {"nested": true}})),
        ("kind", json!(42)),
        ("apiVersion", json!(null)),
    ] {
        let mut w = valid.clone();
        w[path] = v;
        out.push(serde_json::to_vec(&w).unwrap());
    }
    let mut w = valid.clone();
    w["metadata"]["name"] = json!("Not A Valid Name!");
    out.push(serde_json::to_vec(&w).unwrap());
    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    out.push(deep.into_bytes());
    out.push(Vec::new());
    out.push(b"null".to_vec());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_api_bodies_are_4xx_statuses_and_the_server_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let home = tempfile::tempdir().unwrap();
    let mut server = Server::start(home.path(), 0);
    let client = server.client().await;
    let valid = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fuzz"}, "data": {"a": "b"}});
    let bodies = mutations(&valid);
    let path = "/api/v1/namespaces/default/configmaps";
    let mut created = 0;
    for (i, body) in bodies.iter().enumerate() {
        for ct in ["application/json", "application/merge-patch+json"] {
            let (code, status) = post(&client, path, ct, body.clone()).await;
            if code == 201 {
                created += 1;
                // A mutation that is still valid: remove it so the next one can be created.
                let _ = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
                    client.clone(),
                    "default",
                )
                .delete(
                    status["metadata"]["name"].as_str().unwrap_or(""),
                    &Default::default(),
                )
                .await;
                continue;
            }
            assert!(
                (400..500).contains(&code),
                "body {i} ({ct}): {code} {status}\n{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(status["kind"], "Status", "body {i}: {status}");
            assert!(
                status["message"].as_str().is_some_and(|m| !m.is_empty()),
                "body {i}: {status}"
            );
        }
    }
    eprintln!("{} bodies, {created} still valid", bodies.len());
    // Alive, and the valid body still works.
    let (code, _) = post(
        &client,
        path,
        "application/json",
        serde_json::to_vec(&valid).unwrap(),
    )
    .await;
    assert!(code == 201 || code == 409, "{code}");
    server.kill9();
}

/// Run `bin` with `args` and `env`; it must fail with a non-empty error naming `want`, and not
/// panic.
fn refuses(bin: &Path, args: &[&str], env: &[(&str, &str)], home: &Path, want: &str) {
    let o = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .env("HOME", home)
        .env("RDD_INSTANCE", "faults-bad")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let name = bin.file_name().unwrap().to_string_lossy();
    assert!(!o.status.success(), "{name} {args:?} {env:?} succeeded");
    assert!(
        o.status.code().is_some(),
        "{name} {args:?}: killed by a signal"
    );
    assert!(!err.contains("panicked"), "{name} {args:?}: {err}");
    assert!(
        err.contains(want),
        "{name} {args:?} {env:?}: error does not name {want:?}: {err}"
    );
}

#[test]
fn malformed_flags_environment_and_config_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let bad_yaml = home.join("bad.yaml");
    std::fs::write(&bad_yaml, "admin_addr: [unclosed\n").unwrap();
    let wrong_type = home.join("wrong.yaml");
    std::fs::write(&wrong_type, "sync_concurrency: lots\n").unwrap();
    let unknown = home.join("unknown.yaml");
    std::fs::write(&unknown, "admin_address: 127.0.0.1:1\n").unwrap();
    let missing = home.join("missing.yaml");
    let (bad_s, wrong_s, missing_s) = (
        bad_yaml.to_str().unwrap(),
        wrong_type.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    for name in [
        "container-controller",
        "image-controller",
        "volume-controller",
    ] {
        let bin = sibling_bin(name);
        refuses(&bin, &["--bogus"], &[], home, "--bogus");
        refuses(
            &bin,
            &["--admin-addr", "not-an-address"],
            &[],
            home,
            "not-an-address",
        );
        refuses(&bin, &["--config", bad_s], &[], home, "bad.yaml");
        refuses(&bin, &["--config", wrong_s], &[], home, "sync_concurrency");
        refuses(&bin, &["--config", missing_s], &[], home, "missing.yaml");
        refuses(
            &bin,
            &[],
            &[("RDD_ADMIN_ADDR", "nowhere")],
            home,
            "ADMIN_ADDR",
        );
        refuses(&bin, &[], &[("RDD_CONFIG", bad_s)], home, "bad.yaml");
    }
    let gw = sibling_bin("docker-gateway");
    refuses(&gw, &["--bogus"], &[], home, "--bogus");
    refuses(&gw, &["--config", bad_s], &[], home, "bad.yaml");
    refuses(&gw, &["--subscriber-buffer", "-3"], &[], home, "-3");
    refuses(
        &gw,
        &["--subscriber-buffer", "1"],
        &[],
        home,
        "subscriber_buffer",
    );
    for name in ["app-controller", "limavm-controller"] {
        let bin = sibling_bin(name);
        refuses(&bin, &["--bogus"], &[], home, "--bogus");
        refuses(&bin, &["--config", bad_s], &[], home, "bad.yaml");
    }
    let rdd = sibling_bin("rdd");
    refuses(
        &rdd,
        &["svc", "serve", "--secure-port", "seventy"],
        &[],
        home,
        "seventy",
    );
    refuses(
        &rdd,
        &["svc", "start", "--controllers=nope"],
        &[],
        home,
        "nope",
    );
    refuses(&rdd, &["set", "running"], &[], home, "PROPERTY=VALUE");
    let _ = unknown;
}
