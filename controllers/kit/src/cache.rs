//! An informer cache whose readiness any number of tasks can wait for.
//!
//! kube-runtime's `Store::wait_until_ready` cannot be awaited by two tasks at once: behind it is
//! one `futures` oneshot receiver (its `DelayedInit`), which keeps a single waker — each poll
//! replaces the previous task's. When the store becomes ready only the task that polled last is
//! woken; any other waits forever. The reconcile runner (kube-runtime's applier) always waits on
//! it, and it polls again on every queued request, so a second waiter — a mirror controller's
//! full sync — could hang for good after a restart, leaving the controller never connected:
//! pending actions and deletions then waited forever (docs/reliability.md). Hence the rule: only
//! the runner calls `Store::wait_until_ready`; everything else waits on [`Ready`], which the
//! task driving the reflector sets when the reflector yields `InitDone` (the store has swapped
//! in the complete list by then).

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_api};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use tokio::sync::watch;

use crate::KitError;

/// Whether an informer's store holds its first complete list; cloneable, any number of waiters.
#[derive(Clone, Debug)]
pub struct Ready(watch::Receiver<bool>);

impl Ready {
    /// Wait until the store is ready. Fails if the informer stopped before that.
    pub async fn wait(&self) -> Result<(), KitError> {
        let mut rx = self.0.clone();
        rx.wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| KitError::InformerStopped)
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }
}

/// The setting side of [`Ready`], held by whoever polls the reflector.
#[derive(Debug)]
pub struct MarkReady(watch::Sender<bool>);

/// A [`Ready`] not yet ready, and what sets it.
pub fn readiness() -> (MarkReady, Ready) {
    let (tx, rx) = watch::channel(false);
    (MarkReady(tx), Ready(rx))
}

impl MarkReady {
    /// One item of a reflector's event stream: marks the store ready at `InitDone` and returns
    /// what `applied_objects` would (the object of `Apply` and `InitApply`, errors unchanged).
    pub fn decode<K>(
        &self,
        item: Result<Event<K>, watcher::Error>,
    ) -> Option<Result<K, watcher::Error>> {
        match item {
            Ok(Event::Apply(o) | Event::InitApply(o)) => Some(Ok(o)),
            Ok(Event::InitDone) => {
                self.0.send_replace(true);
                None
            }
            Ok(Event::Init | Event::Delete(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// An informer of every `K` in `api` without managedFields (no predicate or reconcile reads
/// them): its store, its readiness, and the stream of applied objects, which must be polled for
/// the store to fill. Wait on the [`Ready`], never on the store (see the module documentation).
pub fn informer<K>(
    api: Api<K>,
) -> (
    Store<K>,
    Ready,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    use futures::StreamExt;
    let (store, writer) = reflector::store();
    let (mark, ready) = readiness();
    let stream = watch_api(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .filter_map(move |item| futures::future::ready(mark.decode(item)));
    (store, ready, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::time::Duration;

    fn cm(name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c
    }

    /// The hang this module exists for: several tasks wait at once, and every one is woken.
    #[tokio::test]
    async fn every_waiter_is_woken_when_the_store_is_ready() {
        let (mark, ready) = readiness();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let r = ready.clone();
            waiters.push(tokio::spawn(async move { r.wait().await }));
            // Each waiter polls (and registers) before the next one starts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!ready.is_ready());
        assert!(mark.decode::<ConfigMap>(Ok(Event::Init)).is_none());
        assert!(mark.decode(Ok(Event::InitApply(cm("a")))).is_some());
        assert!(!ready.is_ready(), "ready only once the list is complete");
        assert!(mark.decode::<ConfigMap>(Ok(Event::InitDone)).is_none());
        for w in waiters {
            let r = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("a waiter was never woken")
                .expect("waiter task");
            assert!(r.is_ok(), "{r:?}");
        }
        // A late waiter returns at once.
        assert!(ready.wait().await.is_ok());
    }

    #[tokio::test]
    async fn waiters_fail_when_the_informer_stops_before_ready() {
        let (mark, ready) = readiness();
        let w = tokio::spawn({
            let r = ready.clone();
            async move { r.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(mark);
        let r = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("woken")
            .expect("task");
        assert!(matches!(r, Err(KitError::InformerStopped)), "{r:?}");
    }

    #[test]
    fn decode_passes_what_applied_objects_passes() {
        let (mark, _ready) = readiness();
        let name = |r: Option<Result<ConfigMap, watcher::Error>>| match r {
            Some(Ok(o)) => o.metadata.name,
            Some(Err(_)) => Some("error".into()),
            None => None,
        };
        assert_eq!(
            name(mark.decode(Ok(Event::Apply(cm("a"))))),
            Some("a".into())
        );
        assert_eq!(
            name(mark.decode(Ok(Event::InitApply(cm("b"))))),
            Some("b".into())
        );
        assert_eq!(name(mark.decode(Ok(Event::Delete(cm("c"))))), None);
        assert_eq!(name(mark.decode(Ok(Event::Init))), None);
        assert_eq!(
            name(mark.decode(Err(watcher::Error::NoResourceVersion))),
            Some("error".into())
        );
    }
}
