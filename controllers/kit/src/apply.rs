//! Server-side apply under one field manager per controller. A status apply names only the fields
//! this controller writes, so another writer's fields (other conditions, other status fields)
//! survive (R-ENG-D3, R-ENG-I2). A NotFound object is a successful no-op (R-ENG-S2).

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::KitError;

/// One controller's way of writing.
#[derive(Clone, Debug)]
pub struct Applier {
    pub field_manager: String,
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Applier {
    pub fn new(field_manager: impl Into<String>) -> Applier {
        Applier {
            field_manager: field_manager.into(),
        }
    }

    fn params(&self) -> PatchParams {
        // Forced: each field has exactly one writer by design, so a conflict means an older
        // instance of this controller (or a user's edit) that we are meant to overwrite.
        PatchParams::apply(&self.field_manager).force()
    }

    /// Apply `status` (the `.status` content this controller owns) to `name`'s status
    /// subresource. Returns the object, or `None` when it no longer exists.
    pub async fn status<K>(
        &self,
        api: &Api<K>,
        name: &str,
        status: Value,
    ) -> Result<Option<K>, KitError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        match api
            .patch_status(name, &self.params(), &Patch::Apply(body))
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Apply a partial object (`metadata`, `spec`, …) to the main resource; creates it when
    /// missing.
    pub async fn object<K>(
        &self,
        api: &Api<K>,
        name: &str,
        mut partial: Value,
    ) -> Result<K, KitError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        partial["apiVersion"] = json!(K::api_version(&()));
        partial["kind"] = json!(K::kind(&()));
        partial["metadata"]["name"] = json!(name);
        Ok(api
            .patch(name, &self.params(), &Patch::Apply(partial))
            .await?)
    }
}
