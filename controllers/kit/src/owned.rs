//! The "owned resource" cleanup of controllers.md §0.3: everything in a namespace whose
//! `ownerReferences` name an owner's UID is released from `rdd.rancherdesktop.io/owned-by-*`
//! finalizers and deleted, for every namespaced kind the API server serves (discovered at the
//! time of the call, so CRDs installed later are included).
//!
//! Kinds this identity may not list (403) are skipped: least-privilege RBAC means a controller
//! can only have made, and only be asked to clean up, what it may list. Reads are uncached.
//! The cleanup continues past individual failures and returns them joined; it never touches
//! `rdd.rancherdesktop.io/cleanup`, which belongs to the owner's own deletion path.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, ResourceExt};

use crate::KitError;
use rdd_api::names::OWNED_BY_PREFIX;

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Delete what `owner_uid` owns in `namespace`; returns how many objects were deleted.
pub async fn cleanup(client: &Client, namespace: &str, owner_uid: &str) -> Result<usize, KitError> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut errors = vec![];
    let mut deleted = 0;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) if matches!(code(&e), Some(403..=405)) => {
                    tracing::debug!(kind = %ar.kind, error = %e, "owned cleanup skips a kind");
                    continue;
                }
                Err(e) => {
                    errors.push(format!("listing {}: {e}", ar.plural));
                    continue;
                }
            };
            for obj in list
                .items
                .into_iter()
                .filter(|o| o.owner_references().iter().any(|r| r.uid == owner_uid))
            {
                match release(&api, &obj).await {
                    Ok(true) => deleted += 1,
                    Ok(false) => {}
                    Err(e) => errors.push(format!("{} {}: {e}", ar.kind, obj.name_any())),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(deleted)
    } else {
        Err(KitError::Cleanup(errors.join("; ")))
    }
}

/// Strip every owned-by finalizer of `obj`, then delete it; Ok(false) when it was already gone.
pub async fn release<K>(api: &Api<K>, obj: &K) -> Result<bool, KitError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.name_any();
    for f in obj
        .finalizers()
        .iter()
        .filter(|f| f.starts_with(OWNED_BY_PREFIX))
    {
        crate::finalizer::remove(api, &name, f).await?;
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) if code(&e) == Some(404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
