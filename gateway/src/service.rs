//! The gRPC service. Every call gets a span (joined to the caller's trace through
//! `traceparent`), go-grpc-prometheus metrics, argument checks before any Docker call, and
//! Docker errors mapped to gRPC codes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, ListImagesOptions, ListVolumesOptions,
    LogsOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
    RestartContainerOptions, StopContainerOptions,
};
use futures::{Stream, StreamExt};
use rdd_proto::v1::{
    self as pb, ActionResponse, ContainerLogsRequest, ContainerRef, ImageRef, InfoRequest,
    InfoResponse, KillContainerRequest, ListContainersRequest, ListContainersResponse,
    ListImagesRequest, ListImagesResponse, ListVolumesRequest, ListVolumesResponse, LogChunk,
    PingRequest, PingResponse, RemoveContainerRequest, RemoveImageResponse, RemoveVolumeRequest,
    StopContainerRequest, SubscribeRequest, SubscribeResponse, VolumeRef, WatchConnectionRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert;
use crate::engine::{ConnState, Engine};
use crate::hub::{Filter, HubMsg, Subscription};
use crate::metrics::Metrics;
use crate::status::require;

pub const SERVICE: &str = "rdd.gateway.v1.DockerGateway";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct Gateway {
    pub engine: Arc<Engine>,
    pub hub: mpsc::Sender<HubMsg>,
    pub metrics: Arc<Metrics>,
    pub buffer: usize,
    pub shutdown: CancellationToken,
}

/// The span of one call; `id` is the Docker object the call names (container ID, image
/// reference, volume name), recorded as `docker.id` like on the `docker.event` spans, so an
/// object's calls and events can be found together.
fn span(method: &'static str, meta: &MetadataMap, id: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = SERVICE,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        docker.id = tracing::field::Empty,
    );
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        span.record("docker.id", id);
    }
    rdd_process::telemetry::set_parent_from(&span, &meta.clone().into_headers());
    span
}

fn label_filters(labels: &[String]) -> Option<HashMap<String, Vec<String>>> {
    (!labels.is_empty()).then(|| HashMap::from([("label".to_string(), labels.to_vec())]))
}

/// Records `grpc_server_handled_total` when a server stream ends, however it ends.
struct Finished {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.metrics.rpc_handled(
            SERVICE,
            self.method,
            "server_stream",
            tonic::Code::Ok,
            self.start.elapsed(),
        );
    }
}

impl Gateway {
    async fn unary<T>(
        &self,
        method: &'static str,
        meta: &MetadataMap,
        id: Option<String>,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let span = span(method, meta, id.as_deref());
        self.metrics.rpc_started(SERVICE, method, "unary");
        let start = Instant::now();
        let r = f.instrument(span.clone()).await;
        let code = r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        span.record("rpc.grpc.status_code", code as i32);
        if let Err(s) = &r {
            span.in_scope(
                || tracing::debug!(code = ?s.code(), message = s.message(), "call failed"),
            );
        }
        self.metrics
            .rpc_handled(SERVICE, method, "unary", code, start.elapsed());
        r.map(Response::new)
    }

    /// Starts a server stream's accounting; a setup error is recorded at once.
    fn stream_started<T: Send + 'static>(
        &self,
        method: &'static str,
        setup: Result<BoxStream<T>, Status>,
    ) -> Result<Response<BoxStream<T>>, Status> {
        self.metrics.rpc_started(SERVICE, method, "server_stream");
        let start = Instant::now();
        match setup {
            Err(s) => {
                self.metrics.rpc_handled(
                    SERVICE,
                    method,
                    "server_stream",
                    s.code(),
                    start.elapsed(),
                );
                Err(s)
            }
            Ok(stream) => {
                let done = Finished {
                    metrics: self.metrics.clone(),
                    method,
                    start,
                };
                let shutdown = self.shutdown.clone();
                let s = stream
                    .take_until(async move { shutdown.cancelled().await })
                    .map(move |item| {
                        let _keep = &done;
                        item
                    });
                Ok(Response::new(Box::pin(s)))
            }
        }
    }
}

fn conn_proto(st: &ConnState, endpoint: &str) -> pb::ConnectionState {
    pb::ConnectionState {
        state: if st.connected {
            pb::connection_state::State::Connected
        } else {
            pb::connection_state::State::Disconnected
        } as i32,
        reason: st.reason.clone(),
        endpoint: endpoint.to_string(),
        session: st.session,
    }
}

#[tonic::async_trait]
impl pb::docker_gateway_server::DockerGateway for Gateway {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        self.unary("Ping", req.metadata(), None, async {
            self.engine
                .call("ping", |d| async move { d.ping().await })
                .await?;
            let v = self
                .engine
                .call("version", |d| async move { d.version().await })
                .await?;
            Ok(PingResponse {
                api_version: v.api_version.unwrap_or_default(),
            })
        })
        .await
    }

    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.unary("Info", req.metadata(), None, async {
            let v = self
                .engine
                .call("version", |d| async move { d.version().await })
                .await?;
            let i = self
                .engine
                .call("info", |d| async move { d.info().await })
                .await?;
            let system_time = i
                .system_time
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| prost_types::Timestamp {
                    seconds: t.timestamp(),
                    nanos: t.timestamp_subsec_nanos() as i32,
                });
            Ok(InfoResponse {
                server_version: v.version.unwrap_or_default(),
                api_version: v.api_version.unwrap_or_default(),
                os: v.os.unwrap_or_default(),
                architecture: v.arch.unwrap_or_default(),
                name: i.name.unwrap_or_default(),
                system_time,
                containers: i.containers.unwrap_or(0),
                images: i.images.unwrap_or(0),
            })
        })
        .await
    }

    type WatchConnectionStream = BoxStream<pb::ConnectionState>;

    async fn watch_connection(
        &self,
        req: Request<WatchConnectionRequest>,
    ) -> Result<Response<Self::WatchConnectionStream>, Status> {
        let _span = span("WatchConnection", req.metadata(), None).entered();
        let endpoint = self.engine.endpoint().to_string();
        let s = WatchStream::new(self.engine.state()).map(move |st| Ok(conn_proto(&st, &endpoint)));
        self.stream_started("WatchConnection", Ok(Box::pin(s)))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("ListContainers", &meta, None, async {
            let opts = ListContainersOptions {
                all: r.all,
                filters: label_filters(&r.label),
                ..Default::default()
            };
            let list = self
                .engine
                .call("container_list", |d| async move {
                    d.list_containers(Some(opts)).await
                })
                .await?;
            Ok(ListContainersResponse {
                containers: list.into_iter().map(convert::container_summary).collect(),
            })
        })
        .await
    }

    async fn inspect_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<pb::Container>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("InspectContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            let c = self
                .engine
                .call("container_inspect", |d| async move {
                    d.inspect_container(&r.id, None).await
                })
                .await?;
            Ok(convert::container(c))
        })
        .await
    }

    async fn start_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("StartContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            self.engine
                .call("container_start", |d| async move {
                    d.start_container(&r.id, None).await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("StopContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            let t = timeout_arg(r.timeout_seconds)?;
            self.engine
                .call("container_stop", |d| async move {
                    d.stop_container(&r.id, Some(StopContainerOptions { signal: None, t }))
                        .await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn restart_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("RestartContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            let t = timeout_arg(r.timeout_seconds)?;
            self.engine
                .call("container_restart", |d| async move {
                    d.restart_container(&r.id, Some(RestartContainerOptions { signal: None, t }))
                        .await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn kill_container(
        &self,
        req: Request<KillContainerRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("KillContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            let signal = if r.signal.is_empty() {
                "SIGKILL".to_string()
            } else if r
                .signal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
            {
                r.signal.clone()
            } else {
                return Err(Status::invalid_argument(format!(
                    "signal {:?} is not a signal name or number",
                    r.signal
                )));
            };
            self.engine
                .call("container_kill", |d| async move {
                    d.kill_container(&r.id, Some(KillContainerOptions { signal }))
                        .await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn pause_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("PauseContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            self.engine
                .call("container_pause", |d| async move {
                    d.pause_container(&r.id).await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn unpause_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("UnpauseContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            self.engine
                .call("container_unpause", |d| async move {
                    d.unpause_container(&r.id).await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("RemoveContainer", &meta, Some(r.id.clone()), async {
            require("id", &r.id)?;
            let opts = RemoveContainerOptions {
                v: r.volumes,
                force: r.force,
                link: false,
            };
            self.engine
                .call("container_remove", |d| async move {
                    d.remove_container(&r.id, Some(opts)).await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    type ContainerLogsStream = BoxStream<LogChunk>;

    async fn container_logs(
        &self,
        req: Request<ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let (meta, _, r) = req.into_parts();
        let span = span("ContainerLogs", &meta, Some(&r.id));
        let setup = (|| {
            require("id", &r.id)?;
            if r.since < 0 || r.since > i64::from(i32::MAX) {
                return Err(Status::invalid_argument(
                    "since must be a Unix time in seconds",
                ));
            }
            let (stdout, stderr) = if !r.stdout && !r.stderr {
                (true, true)
            } else {
                (r.stdout, r.stderr)
            };
            let opts = LogsOptions {
                follow: r.follow,
                stdout,
                stderr,
                since: r.since as i32,
                until: 0,
                timestamps: r.timestamps,
                tail: r.tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            };
            let docker = self.engine.stream_client()?;
            let (tx, rx) = mpsc::channel(64);
            let endpoint = self.engine.endpoint().clone();
            tokio::spawn(
                async move {
                    let mut logs = docker.logs(&r.id, Some(opts));
                    while let Some(item) = logs.next().await {
                        let msg = match item {
                            Ok(out) => Ok(log_chunk(out)),
                            Err(e) => {
                                Err(crate::status::from_docker("container_logs", &endpoint, e))
                            }
                        };
                        let stop = msg.is_err();
                        if tx.send(msg).await.is_err() || stop {
                            break;
                        }
                    }
                }
                .instrument(span),
            );
            Ok(Box::pin(ReceiverStream::new(rx)) as BoxStream<LogChunk>)
        })();
        self.stream_started("ContainerLogs", setup)
    }

    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("ListImages", &meta, None, async {
            let opts = ListImagesOptions {
                all: r.all,
                filters: label_filters(&r.label),
                ..Default::default()
            };
            let list = self
                .engine
                .call(
                    "image_list",
                    |d| async move { d.list_images(Some(opts)).await },
                )
                .await?;
            Ok(ListImagesResponse {
                images: list.into_iter().map(convert::image_summary).collect(),
            })
        })
        .await
    }

    async fn inspect_image(&self, req: Request<ImageRef>) -> Result<Response<pb::Image>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("InspectImage", &meta, Some(r.reference.clone()), async {
            require("reference", &r.reference)?;
            let i = self
                .engine
                .call("image_inspect", |d| async move {
                    d.inspect_image(&r.reference).await
                })
                .await?;
            Ok(convert::image(i))
        })
        .await
    }

    async fn remove_image(
        &self,
        req: Request<ImageRef>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("RemoveImage", &meta, Some(r.reference.clone()), async {
            require("reference", &r.reference)?;
            // Never forced, parents kept (R-ENG-S3): removing a tag untags only that tag.
            let opts = RemoveImageOptions {
                force: false,
                noprune: true,
                platforms: None,
            };
            let items = self
                .engine
                .call("image_remove", |d| async move {
                    d.remove_image(&r.reference, Some(opts), None).await
                })
                .await?;
            Ok(RemoveImageResponse {
                untagged: items.iter().filter_map(|i| i.untagged.clone()).collect(),
                deleted: items.iter().filter_map(|i| i.deleted.clone()).collect(),
            })
        })
        .await
    }

    async fn list_volumes(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("ListVolumes", &meta, None, async {
            let opts = ListVolumesOptions {
                filters: label_filters(&r.label),
            };
            let list = self
                .engine
                .call("volume_list", |d| async move {
                    d.list_volumes(Some(opts)).await
                })
                .await?;
            let mut volumes: Vec<pb::Volume> = list
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(convert::volume)
                .collect();
            volumes.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(ListVolumesResponse {
                volumes,
                warnings: list.warnings.unwrap_or_default(),
            })
        })
        .await
    }

    async fn inspect_volume(
        &self,
        req: Request<VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("InspectVolume", &meta, Some(r.name.clone()), async {
            require("name", &r.name)?;
            let v = self
                .engine
                .call("volume_inspect", |d| async move {
                    d.inspect_volume(&r.name).await
                })
                .await?;
            Ok(convert::volume(v))
        })
        .await
    }

    async fn remove_volume(
        &self,
        req: Request<RemoveVolumeRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        self.unary("RemoveVolume", &meta, Some(r.name.clone()), async {
            require("name", &r.name)?;
            let opts = RemoveVolumeOptions { force: r.force };
            self.engine
                .call("volume_remove", |d| async move {
                    d.remove_volume(&r.name, Some(opts)).await
                })
                .await?;
            Ok(ActionResponse {})
        })
        .await
    }

    type SubscribeStream = BoxStream<SubscribeResponse>;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (meta, _, r) = req.into_parts();
        let span = span("Subscribe", &meta, None);
        let setup = async {
            match Filter::new(r.types, r.actions, &r.label_selector) {
                Err(e) => Err(Status::invalid_argument(e)),
                Ok(filter) => {
                    let (tx, rx) = mpsc::channel(self.buffer);
                    let name = if r.subscriber.is_empty() {
                        "anonymous".to_string()
                    } else {
                        r.subscriber
                    };
                    match self
                        .hub
                        .send(HubMsg::Subscribe(Subscription { name, filter, tx }))
                        .await
                    {
                        Ok(()) => {
                            Ok(Box::pin(ReceiverStream::new(rx)) as BoxStream<SubscribeResponse>)
                        }
                        Err(_) => Err(Status::unavailable("the gateway is shutting down")),
                    }
                }
            }
        }
        .instrument(span)
        .await;
        self.stream_started("Subscribe", setup)
    }
}

fn timeout_arg(t: Option<i64>) -> Result<Option<i32>, Status> {
    match t {
        None => Ok(None),
        Some(t) if (-1..=i64::from(i32::MAX)).contains(&t) => Ok(Some(t as i32)),
        Some(t) => Err(Status::invalid_argument(format!(
            "timeout_seconds {t} is out of range (-1 waits forever)"
        ))),
    }
}

fn log_chunk(out: bollard::container::LogOutput) -> LogChunk {
    use bollard::container::LogOutput as L;
    use pb::log_chunk::Stream as S;
    let (stream, data) = match out {
        L::StdOut { message } => (S::Stdout, message),
        L::StdErr { message } => (S::Stderr, message),
        L::Console { message } => (S::Console, message),
        L::StdIn { message } => (S::Unspecified, message),
    };
    LogChunk {
        stream: stream as i32,
        data: data.to_vec(),
    }
}
