//! Running one controller: a kube-runtime `Controller` for kind `K` that wakes only when the
//! generation, annotations, finalizers or deletion state change (status writes by the
//! controller itself do not wake it), with per-reconcile spans and metrics, exponential backoff
//! on errors, and graceful shutdown on SIGTERM/SIGINT.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::metrics::{ControllerLabels, Metrics, QueueLabels, ResultLabels};

/// The workqueue metrics of one controller. kube-runtime's scheduler is the queue but does not
/// expose it, so the runner keeps its own view: a key is queued from the first wake (watch
/// event or trigger) until its reconcile starts, and a wake of a key already queued is one add
/// but no new entry, as client-go's dirty set. Keys whose wake never became a reconcile (the
/// object vanished from the cache first) are dropped after [`Queue::STALE`].
struct Queue {
    labels: QueueLabels,
    metrics: Arc<Metrics>,
    queued: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl Queue {
    const STALE: Duration = Duration::from_secs(600);

    fn new(name: &str, metrics: Arc<Metrics>) -> Queue {
        let labels = QueueLabels::new(name);
        // Present from the start, so a dashboard shows an idle queue as 0, not as no data.
        metrics.queue_depth.get_or_create(&labels).set(0);
        metrics.queue_adds.get_or_create(&labels).inc_by(0);
        Queue {
            labels,
            metrics,
            queued: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Instant>> {
        match self.queued.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        }
    }

    fn add(&self, key: String) {
        self.metrics.queue_adds.get_or_create(&self.labels).inc();
        let mut q = self.lock();
        let now = Instant::now();
        q.retain(|_, t| now.duration_since(*t) < Self::STALE);
        q.entry(key).or_insert(now);
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set(q.len() as i64);
    }

    fn start(&self, key: &str) {
        let mut q = self.lock();
        if let Some(t) = q.remove(key) {
            self.metrics
                .queue_duration
                .get_or_create(&self.labels)
                .observe(t.elapsed().as_secs_f64());
        }
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set(q.len() as i64);
    }
}

fn queue_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// Backoff after a failed reconcile: 1 s doubling to 5 minutes, per object.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64
        .checked_shl(failures.min(16))
        .unwrap_or(u64::MAX)
        .min(300);
    Duration::from_secs(secs)
}

/// What the controller's predicates look at: everything but status and resourceVersion.
pub fn wake_hash<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in [
        predicates::generation(obj),
        predicates::annotations(obj),
        predicates::finalizers(obj),
        predicates::labels(obj),
    ] {
        h.write_u64(p.unwrap_or(0));
    }
    h.write_u8(obj.meta().deletion_timestamp.is_some() as u8);
    Some(h.finish())
}

/// Run `reconcile` for every `K` in `api` until a termination signal. Errors requeue with
/// [`backoff`]; each reconcile is a `reconcile` span with kind, namespace and name.
pub async fn run<K, C, E, F, Fut>(
    name: &'static str,
    api: Api<K>,
    ctx: Arc<C>,
    metrics: Arc<Metrics>,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    run_with(name, api, ctx, metrics, Options::default(), reconcile).await
}

/// How [`run_with`] wakes a controller beyond the predicate-filtered watch of its kind.
pub struct Options<K: Resource> {
    /// Wake on every change of the object, status included (for a controller that reacts to
    /// conditions other writers set on its object, e.g. the App controller).
    pub wake_on_status: bool,
    /// Further triggers (watches of related kinds mapped to this kind, internal channels).
    pub triggers: Vec<futures::stream::BoxStream<'static, kube::runtime::reflector::ObjectRef<K>>>,
}

impl<K: Resource> Default for Options<K> {
    fn default() -> Self {
        Options {
            wake_on_status: false,
            triggers: Vec::new(),
        }
    }
}

/// [`run`] with [`Options`].
pub async fn run_with<K, C, E, F, Fut>(
    name: &'static str,
    api: Api<K>,
    ctx: Arc<C>,
    metrics: Arc<Metrics>,
    options: Options<K>,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    // The runner is the only waiter on the store's readiness here (crate::cache).
    let (reader, _ready, stream) = crate::cache::informer(api);
    run_with_cache(name, reader, stream, ctx, metrics, options, reconcile).await;
}

/// [`run_with`] over a cache the caller owns and also reads: `stream` carries the applied
/// objects of the reflector behind `reader`. The caller must keep that reflector polled on its
/// own (e.g. in a task feeding a channel), so the cache becomes ready whatever the runner does.
/// The runner waits on `reader.wait_until_ready()`, which wakes only one waiter: the caller's
/// tasks must wait on the [`crate::cache::Ready`] of [`crate::cache::informer`] instead.
pub async fn run_with_cache<K, S, C, E, F, Fut>(
    name: &'static str,
    reader: Store<K>,
    stream: S,
    ctx: Arc<C>,
    metrics: Arc<Metrics>,
    options: Options<K>,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    let failures: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> =
        Default::default();
    let wake_on_status = options.wake_on_status;
    let queue = Arc::new(Queue::new(name, metrics.clone()));
    let q = queue.clone();
    let stream = stream
        .predicate_filter(
            move |o: &K| {
                if wake_on_status {
                    predicates::resource_version(o)
                } else {
                    wake_hash(o)
                }
            },
            Default::default(),
        )
        .inspect(move |r| {
            if let Ok(o) = r {
                q.add(queue_key(o.meta().namespace.as_deref(), &o.name_any()));
            }
        });
    let labels = ControllerLabels {
        controller: name.to_string(),
    };
    // kube-runtime's default: unbounded concurrency across objects, one at a time per object.
    metrics.max_concurrent.get_or_create(&labels).set(0);
    metrics.active_workers.get_or_create(&labels).set(0);
    for result in ["success", "error", "requeue_after"] {
        metrics
            .reconcile_total
            .get_or_create(&ResultLabels {
                controller: name.to_string(),
                result: result.into(),
            })
            .inc_by(0);
    }
    metrics.reconcile_errors.get_or_create(&labels).inc_by(0);
    let q = queue.clone();
    let reconcile = Arc::new(reconcile);
    let m = metrics.clone();
    let f2 = failures.clone();
    let wrapped = move |obj: Arc<K>, ctx: Arc<C>| {
        let reconcile = reconcile.clone();
        let metrics = m.clone();
        let labels = labels.clone();
        let failures = f2.clone();
        let queue = q.clone();
        let span = tracing::info_span!("reconcile", controller = name, kind = %K::kind(&()), namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), result = tracing::field::Empty);
        async move {
            let key = queue_key(obj.meta().namespace.as_deref(), &obj.name_any());
            queue.start(&key);
            metrics.active_workers.get_or_create(&labels).inc();
            let started = Instant::now();
            let result = reconcile(obj, ctx).await;
            let took = started.elapsed().as_secs_f64();
            metrics.reconcile_time.get_or_create(&labels).observe(took);
            metrics
                .work_duration
                .get_or_create(&queue.labels)
                .observe(took);
            metrics.active_workers.get_or_create(&labels).dec();
            let outcome = match &result {
                Ok(a) if *a == Action::await_change() => "success",
                Ok(_) => "requeue_after",
                Err(_) => "error",
            };
            tracing::Span::current().record("result", outcome);
            metrics
                .reconcile_total
                .get_or_create(&ResultLabels {
                    controller: name.to_string(),
                    result: outcome.into(),
                })
                .inc();
            if result.is_ok()
                && let Ok(mut f) = failures.lock()
            {
                f.remove(&key);
            }
            if let Err(e) = &result {
                metrics.reconcile_errors.get_or_create(&labels).inc();
                tracing::warn!(error = %e, "reconcile failed");
            }
            result
        }
        .instrument(span)
    };
    let f3 = failures.clone();
    let error_policy = move |obj: Arc<K>, _e: &E, _ctx: Arc<C>| {
        let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        let n = match f3.lock() {
            Ok(mut f) => {
                let n = f.entry(key).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        Action::requeue(backoff(n.saturating_sub(1)))
    };
    let mut controller = Controller::for_stream(stream, reader).shutdown_on_signal();
    for t in options.triggers {
        let q = queue.clone();
        controller = controller.reconcile_on(t.inspect(move |r| {
            q.add(queue_key(r.namespace.as_deref(), &r.name));
        }));
    }
    controller
        .run(wrapped, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }

    #[test]
    fn status_only_changes_do_not_wake() {
        let mut a = ConfigMap::default();
        a.metadata.generation = Some(1);
        a.metadata.resource_version = Some("1".into());
        let mut b = a.clone();
        b.metadata.resource_version = Some("2".into());
        assert_eq!(wake_hash(&a), wake_hash(&b));
        b.metadata.finalizers = Some(vec!["x/y".into()]);
        assert_ne!(wake_hash(&a), wake_hash(&b));
        let mut c = a.clone();
        c.metadata.generation = Some(2);
        assert_ne!(wake_hash(&a), wake_hash(&c));
    }
}
