//! The writes every mirror kind makes, against the informer's copy so that nothing unchanged is
//! written:
//!
//! | informer copy of the mirror | step |
//! |---|---|
//! | absent | plain create carrying our finalizer (never an apply, which could re-add the finalizer to a mirror that is being deleted, R-ENG-S6); 409 → read it |
//! | live, without our finalizer | add it (JSON patch guarded by resourceVersion, so a concurrent delete makes it fail) |
//! | terminating | nothing: status writes stay allowed, the finalizer is never re-added (R-ENG-S6) |
//! | Docker object gone (event or prune) | strip our finalizer, delete; no Docker call |

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use rdd_kit::cache::Ready;
use rdd_kit::finalizer::{self, Plan};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{FINALIZER, MirrorError, is_api_status};

/// One kind's mirrors in the API, with the informer cache every write compares against.
pub struct Objects<K: Resource<DynamicType = ()> + 'static> {
    pub client: Client,
    /// Informer copy of every mirror of the kind (all namespaces, without managedFields).
    pub store: Store<K>,
    /// Readiness of `store`; wait on it, never on the store itself (`rdd_kit::cache`).
    pub ready: Ready,
    /// The field manager of creates.
    pub field_manager: &'static str,
    /// (namespace, name) of mirrors this process created and has not released: the informer may
    /// not show them yet.
    created: std::sync::Mutex<HashSet<(String, String)>>,
}

/// What [`Objects::ensure`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ensured {
    pub created: bool,
    pub finalizer_added: bool,
}

impl<K> Objects<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static,
{
    pub fn new(
        client: Client,
        store: Store<K>,
        ready: Ready,
        field_manager: &'static str,
    ) -> Objects<K> {
        Objects {
            client,
            store,
            ready,
            field_manager,
            created: Default::default(),
        }
    }

    /// Wait until the cache holds its first complete list (a full sync compares against it).
    pub async fn wait_ready(&self) -> Result<(), MirrorError> {
        Ok(self.ready.wait().await?)
    }

    fn created(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn api(&self, ns: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The informer's copy of `ns/name`.
    pub fn cached(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        self.store.get(&ObjectRef::new(name).within(ns))
    }

    /// Every cached mirror in `ns`.
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        self.store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(ns))
            .collect()
    }

    /// The mirror `name` as it is now (see the table above). `None` when it vanished between a
    /// 409 and the read. `new` builds the bare object (name only).
    pub async fn ensure(
        &self,
        ns: &str,
        name: &str,
        new: impl FnOnce(&str) -> K,
    ) -> Result<Option<(K, Ensured)>, MirrorError> {
        let api = self.api(ns);
        let mut done = Ensured::default();
        let existing = match self.cached(ns, name) {
            Some(o) => (*o).clone(),
            None => {
                let mut obj = new(name);
                obj.meta_mut().namespace = Some(ns.to_string());
                obj.meta_mut().finalizers = Some(vec![FINALIZER.to_string()]);
                let pp = PostParams {
                    field_manager: Some(self.field_manager.into()),
                    ..Default::default()
                };
                match api.create(&pp, &obj).await {
                    Ok(o) => {
                        done.created = true;
                        self.created().insert((ns.to_string(), name.to_string()));
                        o
                    }
                    // The informer lags, or someone else created it first: read it and go on
                    // (a forced status apply takes the fields over, R-ENG-T4).
                    Err(e) if is_api_status(&e, 409) => match api.get_opt(name).await? {
                        Some(o) => o,
                        None => return Ok(None),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if finalizer::plan(&existing, FINALIZER) == Plan::Add {
            done.finalizer_added = finalizer::ensure(&api, name, FINALIZER).await?;
        }
        Ok(Some((existing, done)))
    }

    /// Docker no longer has the object: strip our finalizer, then delete the mirror (no Docker
    /// call). A mirror the cache does not know costs one read; one that does not exist, nothing
    /// more.
    pub async fn release(&self, ns: &str, name: &str) -> Result<(), MirrorError> {
        let api = self.api(ns);
        let obj = match self.cached(ns, name) {
            Some(o) => (*o).clone(),
            None => match api.get_opt(name).await? {
                Some(o) => o,
                None => return Ok(()),
            },
        };
        self.created().remove(&(ns.to_string(), name.to_string()));
        if obj.finalizers().iter().any(|f| f == FINALIZER) {
            finalizer::remove(&api, name, FINALIZER).await?;
        }
        if obj.meta().deletion_timestamp.is_some() {
            return Ok(());
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_api_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`release`](Self::release) of a mirror this process knows (cached, or created by it and
    /// not yet in the cache); any other name costs nothing. For events that cannot be filtered
    /// before they arrive (a volume `destroy` carries no labels): a destroy of an object that was
    /// never mirrored makes no API request. A mirror someone else created that the cache does
    /// not show yet is left to the next full sync.
    pub async fn release_known(&self, ns: &str, name: &str) -> Result<(), MirrorError> {
        let known = self.cached(ns, name).is_some()
            || self.created().contains(&(ns.to_string(), name.to_string()));
        if known {
            self.release(ns, name).await
        } else {
            Ok(())
        }
    }

    /// Names of cached mirrors in `ns` that are not in `keep` (the prune of a full sync).
    pub fn stale(&self, ns: &str, keep: &HashSet<String>) -> Vec<String> {
        let mut names: Vec<String> = self
            .in_namespace(ns)
            .iter()
            .map(|o| o.name_any())
            .filter(|n| !keep.contains(n))
            .collect();
        names.sort();
        names
    }
}
