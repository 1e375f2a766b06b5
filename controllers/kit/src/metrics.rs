//! Prometheus metrics under controller-runtime's names, so existing dashboards work:
//! `controller_runtime_reconcile_total{controller,result}`,
//! `controller_runtime_reconcile_errors_total{controller}`,
//! `controller_runtime_reconcile_time_seconds{controller}`,
//! `controller_runtime_active_workers{controller}`, `controller_runtime_max_concurrent_reconciles`;
//! client-go's workqueue names (`workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`, labelled `name` and
//! `controller` as controller-runtime labels them); and client-go's
//! `rest_client_requests_total{method,code}` for every API request the process makes
//! ([`crate::counted_client`]).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// controller-runtime labels its workqueue metrics with both `name` and `controller`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub name: String,
    pub controller: String,
}

impl QueueLabels {
    pub fn new(controller: &str) -> QueueLabels {
        QueueLabels {
            name: controller.to_string(),
            controller: controller.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestLabels {
    pub method: String,
    pub code: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub rest_client_requests: Family<RestLabels, Counter>,
    pub reconcile_total: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_time: Family<ControllerLabels, Histogram>,
    pub active_workers: Family<ControllerLabels, Gauge>,
    pub max_concurrent: Family<ControllerLabels, Gauge>,
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub queue_adds: Family<QueueLabels, Counter>,
    pub queue_duration: Family<QueueLabels, Histogram>,
    pub work_duration: Family<QueueLabels, Histogram>,
}

/// Reconcile and queue latency buckets, 5 ms to a minute.
fn latency() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_time =
            Family::<ControllerLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        let max_concurrent = Family::<ControllerLabels, Gauge>::default();
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        let queue_adds = Family::<QueueLabels, Counter>::default();
        let queue_duration =
            Family::<QueueLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        let work_duration =
            Family::<QueueLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        let rest_client_requests = Family::<RestLabels, Counter>::default();
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests to the API server, partitioned by method and status code",
            rest_client_requests.clone(),
        );
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Current depth of the workqueue",
            queue_depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by the workqueue",
            queue_adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in the workqueue before being requested",
            queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from the workqueue takes",
            work_duration.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            rest_client_requests,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            max_concurrent,
            queue_depth,
            queue_adds,
            queue_duration,
            work_duration,
        }
    }

    /// Register more metrics (a controller's own) in the same exposition.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut reg = match self.registry.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        f(&mut reg)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.with_registry(|reg| {
            let _ = prometheus_client::encoding::text::encode(&mut out, reg);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_controller_runtime() {
        let m = Metrics::new();
        m.reconcile_total
            .get_or_create(&ResultLabels {
                controller: "x".into(),
                result: "success".into(),
            })
            .inc();
        m.reconcile_time
            .get_or_create(&ControllerLabels {
                controller: "x".into(),
            })
            .observe(0.01);
        let text = m.encode();
        assert!(
            text.contains(
                "controller_runtime_reconcile_total{controller=\"x\",result=\"success\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_time_seconds_bucket"),
            "{text}"
        );
    }
}
