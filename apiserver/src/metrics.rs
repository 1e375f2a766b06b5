//! The API server's Prometheus metrics, served on `/metrics` of the secure port (authorized
//! like any non-resource URL), under kube-apiserver's names so its dashboards work:
//!
//! - `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}`
//! - `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope,component}`
//!   (every request but `WATCH`, whose duration is the watch's lifetime, as upstream excludes
//!   long-running requests from its SLO histograms)
//! - `apiserver_registered_watchers{group,version,kind}`: watches open now
//! - `apiserver_longrunning_requests{verb,group,version,resource,scope,component}`: the same by
//!   resource, as kube-apiserver reports long-running requests
//! - `apiserver_storage_size_bytes{storage_cluster_id}`: the SQLite database and its WAL
//! - `apiserver_storage_objects{resource}`: objects stored per resource, counted at scrape
//! - `apiserver_current_inflight_requests{request_kind}`: `readOnly` / `mutating` now in flight
//!
//! `verb` is the upper-case form upstream uses: `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`,
//! `APPLY` (server-side apply patches), `DELETE`, `DELETECOLLECTION`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::authz::rules::Attributes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatcherLabels {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub storage_cluster_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    pub request_kind: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<CodeLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    pub watchers: Family<WatcherLabels, Gauge>,
    longrunning: Family<RequestLabels, Gauge>,
    storage_size: Family<StorageLabels, Gauge>,
    objects: Family<ObjectLabels, Gauge>,
    inflight: Family<InflightLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn buckets() -> Histogram {
    // kube-apiserver's request buckets, trimmed at the short end to what SQLite answers in.
    Histogram::new([
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    ])
}

/// The labels of a request, from the attributes authorization derived from its URL.
pub fn labels(attrs: &Attributes, is_apply: bool) -> RequestLabels {
    let verb = match attrs.verb.as_str() {
        "patch" if is_apply => "APPLY".to_string(),
        "create" => "POST".to_string(),
        "update" => "PUT".to_string(),
        v => v.to_ascii_uppercase(),
    };
    let scope = if !attrs.resource_request {
        ""
    } else if !attrs.name.is_empty() && !matches!(attrs.verb.as_str(), "list" | "watch") {
        "resource"
    } else if !attrs.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb,
        group: attrs.group.clone(),
        version: attrs.version.clone(),
        // Non-resource paths are not labelled by path: any client could make the set unbounded.
        resource: attrs.resource.clone(),
        subresource: attrs.subresource.clone(),
        scope: scope.into(),
        component: "apiserver".into(),
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            duration: Family::new_with_constructor(buckets),
            watchers: Family::default(),
            longrunning: Family::default(),
            storage_size: Family::default(),
            objects: Family::default(),
            inflight: Family::default(),
        };
        let mut r = Registry::default();
        // prometheus-client appends `_total` to counters itself.
        r.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code",
            m.requests.clone(),
        );
        r.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component",
            m.duration.clone(),
        );
        r.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resource",
            m.watchers.clone(),
        );
        r.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component",
            m.longrunning.clone(),
        );
        r.register(
            "apiserver_storage_size_bytes",
            "Size of the storage database file physically allocated in bytes",
            m.storage_size.clone(),
        );
        r.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind",
            m.objects.clone(),
        );
        r.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind",
            m.inflight.clone(),
        );
        for kind in ["readOnly", "mutating"] {
            m.inflight
                .get_or_create(&InflightLabels {
                    request_kind: kind.into(),
                })
                .set(0);
        }
        if let Ok(mut g) = m.registry.lock() {
            *g = r;
        }
        m
    }

    /// A request is starting: counts it in flight (and as long-running for a watch).
    pub fn begin(&self, l: &RequestLabels) {
        self.inflight_gauge(l).inc();
        if l.verb == "WATCH" {
            self.longrunning.get_or_create(l).inc();
        }
    }

    /// A request has been answered (for a watch: its response head was sent).
    pub fn end(&self, l: &RequestLabels, code: u16, seconds: f64) {
        self.inflight_gauge(l).dec();
        self.requests
            .get_or_create(&CodeLabels {
                verb: l.verb.clone(),
                group: l.group.clone(),
                version: l.version.clone(),
                resource: l.resource.clone(),
                subresource: l.subresource.clone(),
                scope: l.scope.clone(),
                component: l.component.clone(),
                code: code.to_string(),
            })
            .inc();
        if l.verb == "WATCH" {
            // A watch refused before it started never became long-running.
            if code >= 300 {
                self.longrunning.get_or_create(l).dec();
            }
        } else {
            self.duration.get_or_create(l).observe(seconds);
        }
    }

    /// A watch of `kind` was answered with 200: registered until [`Metrics::watch_closed`].
    pub fn watch_opened(&self, w: &WatcherLabels) {
        self.watchers.get_or_create(w).inc();
    }

    /// A watch that was answered with 200 has ended.
    pub fn watch_closed(&self, l: &RequestLabels, w: &WatcherLabels) {
        self.longrunning.get_or_create(l).dec();
        self.watchers.get_or_create(w).dec();
    }

    fn inflight_gauge(&self, l: &RequestLabels) -> Gauge {
        let kind = match l.verb.as_str() {
            "GET" | "LIST" | "WATCH" | "" => "readOnly",
            _ => "mutating",
        };
        self.inflight
            .get_or_create(&InflightLabels {
                request_kind: kind.into(),
            })
            .clone()
    }

    /// Encode, after refreshing what is measured at scrape time.
    pub fn encode(&self, storage_bytes: u64, objects: &[(String, i64)]) -> String {
        self.storage_size
            .get_or_create(&StorageLabels {
                storage_cluster_id: "sqlite".into(),
            })
            .set(storage_bytes as i64);
        self.objects.clear();
        for (resource, n) in objects {
            self.objects
                .get_or_create(&ObjectLabels {
                    resource: resource.clone(),
                })
                .set(*n);
        }
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Query;

    fn attrs(method: http::Method, path: &str, query: &str) -> Attributes {
        crate::authz::attrs::from_request(&method, path, &Query::parse(Some(query)))
    }

    #[test]
    fn labels_follow_kube_apiserver() {
        let l = labels(
            &attrs(http::Method::GET, "/api/v1/namespaces/a/pods", "watch=1"),
            false,
        );
        assert_eq!(
            (l.verb.as_str(), l.resource.as_str(), l.scope.as_str()),
            ("WATCH", "pods", "namespace")
        );
        let l = labels(
            &attrs(
                http::Method::PATCH,
                "/apis/app.rancherdesktop.io/v1alpha1/apps/app/status",
                "",
            ),
            true,
        );
        assert_eq!(
            (
                l.verb.as_str(),
                l.group.as_str(),
                l.subresource.as_str(),
                l.scope.as_str()
            ),
            ("APPLY", "app.rancherdesktop.io", "status", "resource")
        );
        let l = labels(&attrs(http::Method::GET, "/healthz", ""), false);
        assert_eq!((l.verb.as_str(), l.resource.as_str()), ("GET", ""));
    }

    #[test]
    fn a_watch_is_long_running_until_closed_and_not_timed() {
        let m = Metrics::new();
        let l = labels(
            &attrs(http::Method::GET, "/api/v1/pods", "watch=true"),
            false,
        );
        m.begin(&l);
        m.end(&l, 200, 0.01);
        let text = m.encode(4096, &[("pods".into(), 3)]);
        assert!(
            text.contains("apiserver_longrunning_requests{verb=\"WATCH\""),
            "{text}"
        );
        assert!(text.contains("} 1\n"), "{text}");
        assert!(!text.contains("apiserver_request_duration_seconds_bucket{verb=\"WATCH\""));
        assert!(text.contains("apiserver_storage_size_bytes{storage_cluster_id=\"sqlite\"} 4096"));
        assert!(text.contains("apiserver_storage_objects{resource=\"pods\"} 3"));
        let w = WatcherLabels {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        };
        m.watch_opened(&w);
        assert!(
            m.encode(0, &[]).contains(
                "apiserver_registered_watchers{group=\"\",version=\"v1\",kind=\"Pod\"} 1"
            )
        );
        m.watch_closed(&l, &w);
        assert!(
            m.encode(0, &[]).contains(
                "apiserver_registered_watchers{group=\"\",version=\"v1\",kind=\"Pod\"} 0"
            )
        );
        let text = m.encode(0, &[]);
        assert!(
            text.contains("scope=\"cluster\",component=\"apiserver\"} 0"),
            "{text}"
        );
    }
}
