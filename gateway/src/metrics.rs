//! The gateway's Prometheus metrics. gRPC metrics use go-grpc-prometheus names
//! (`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`) so
//! existing dashboards work; Docker calls and the fan-out have their own.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcCodeLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_type: String,
    pub grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpCodeLabels {
    pub operation: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    started: Family<GrpcLabels, Counter>,
    handled: Family<GrpcCodeLabels, Counter>,
    handling: Family<GrpcLabels, Histogram>,
    docker_calls: Family<OpCodeLabels, Counter>,
    docker_started: Family<OpLabels, Counter>,
    docker_seconds: Family<OpLabels, Histogram>,
    connected: Gauge,
    sessions: Counter,
    subscribers: Gauge,
    events: Family<TypeLabels, Counter>,
    dropped: Counter,
    resyncs: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(buckets),
            docker_calls: Family::default(),
            docker_started: Family::default(),
            docker_seconds: Family::new_with_constructor(buckets),
            connected: Gauge::default(),
            sessions: Counter::default(),
            subscribers: Gauge::default(),
            events: Family::default(),
            dropped: Counter::default(),
            resyncs: Family::default(),
        };
        // prometheus-client appends `_total` to counters.
        r.register(
            "grpc_server_started",
            "RPCs started on the server",
            m.started.clone(),
        );
        r.register(
            "grpc_server_handled",
            "RPCs completed on the server, by code",
            m.handled.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "Response latency of RPCs",
            m.handling.clone(),
        );
        r.register(
            "docker_gateway_docker_requests",
            "Docker Engine API calls, by gRPC code",
            m.docker_calls.clone(),
        );
        // Counted before the call: a call whose caller went away mid-way (and so never reports
        // a code) still shows, which is how the fault suite proves no action ran twice.
        r.register(
            "docker_gateway_docker_calls_started",
            "Docker Engine API calls started",
            m.docker_started.clone(),
        );
        r.register(
            "docker_gateway_docker_request_duration_seconds",
            "Docker Engine API call latency",
            m.docker_seconds.clone(),
        );
        r.register(
            "docker_gateway_connected",
            "1 while the gateway is connected to Docker",
            m.connected.clone(),
        );
        r.register(
            "docker_gateway_sessions",
            "Docker connections established",
            m.sessions.clone(),
        );
        r.register(
            "docker_gateway_subscribers",
            "Current event subscribers",
            m.subscribers.clone(),
        );
        r.register(
            "docker_gateway_events",
            "Docker events received, by type",
            m.events.clone(),
        );
        r.register(
            "docker_gateway_dropped_events",
            "Events not delivered to overflowed subscribers (each followed by a resync)",
            m.dropped.clone(),
        );
        r.register(
            "docker_gateway_resyncs",
            "Resync messages sent, by reason",
            m.resyncs.clone(),
        );
        // Present from the start, so dashboards show 0 rather than no data.
        for reason in [
            rdd_proto::v1::resync::Reason::Reconnected,
            rdd_proto::v1::resync::Reason::Overflow,
        ] {
            m.resyncs
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str_name().into(),
                })
                .inc_by(0);
        }
        for t in ["container", "image", "volume", "network"] {
            m.events
                .get_or_create(&TypeLabels { r#type: t.into() })
                .inc_by(0);
        }
        if let Ok(mut g) = m.registry.lock() {
            *g = r;
        }
        m
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }

    fn grpc(service: &str, method: &str, kind: &str) -> GrpcLabels {
        GrpcLabels {
            grpc_service: service.into(),
            grpc_method: method.into(),
            grpc_type: kind.into(),
        }
    }

    pub fn rpc_started(&self, service: &str, method: &str, kind: &str) {
        self.started
            .get_or_create(&Self::grpc(service, method, kind))
            .inc();
    }

    pub fn rpc_handled(
        &self,
        service: &str,
        method: &str,
        kind: &str,
        code: tonic::Code,
        d: Duration,
    ) {
        self.handled
            .get_or_create(&GrpcCodeLabels {
                grpc_service: service.into(),
                grpc_method: method.into(),
                grpc_type: kind.into(),
                grpc_code: format!("{code:?}"),
            })
            .inc();
        self.handling
            .get_or_create(&Self::grpc(service, method, kind))
            .observe(d.as_secs_f64());
    }

    pub fn docker_call_started(&self, op: &str) {
        self.docker_started
            .get_or_create(&OpLabels {
                operation: op.into(),
            })
            .inc();
    }

    pub fn docker_call(&self, op: &str, code: tonic::Code, d: Duration) {
        self.docker_calls
            .get_or_create(&OpCodeLabels {
                operation: op.into(),
                code: format!("{code:?}"),
            })
            .inc();
        self.docker_seconds
            .get_or_create(&OpLabels {
                operation: op.into(),
            })
            .observe(d.as_secs_f64());
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }
    pub fn session_started(&self) {
        self.sessions.inc();
    }
    pub fn set_subscribers(&self, n: usize) {
        self.subscribers.set(n as i64);
    }
    pub fn event(&self, t: &str) {
        self.events
            .get_or_create(&TypeLabels { r#type: t.into() })
            .inc();
    }
    pub fn event_dropped(&self) {
        self.dropped.inc();
    }
    pub fn resync(&self, reason: &str) {
        self.resyncs
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}
