//! Users edit the App and the mirrors while the controllers write them: no acknowledged edit is
//! lost (on either side), and no condition is owned by two field managers (R-ENG-I2: every
//! writer of the App's conditions owns its own; R-ENG-D3: a Container's `status.status` stays the
//! engine's, its conditions the conditions writer's).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use rdd_testkit::docker;
use serde_json::{Value, json};

use crate::support::{Env, SERIAL, apps_rs, containers_rs};

const T: Duration = Duration::from_secs(60);
const USER: &str = "faults-user";

/// GET, add the annotation, PUT with the read resourceVersion; retry on 409 as kubectl edit
/// users do. Returns whether the server acknowledged it.
async fn edit(api: &Api<DynamicObject>, name: &str, key: &str) -> bool {
    for _ in 0..50 {
        let Ok(mut o) = api.get(name).await else {
            return false;
        };
        o.annotations_mut().insert(key.into(), "1".into());
        let pp = PostParams {
            field_manager: Some(USER.into()),
            ..Default::default()
        };
        match api.replace(name, &pp, &o).await {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("edit of {name}: {e}"),
        }
    }
    false
}

/// Condition types by the manager owning them, from `managedFields`.
fn condition_owners(o: &DynamicObject) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for mf in o.managed_fields() {
        let manager = mf.manager.clone().unwrap_or_default();
        let Some(f) = &mf.fields_v1 else { continue };
        let conds = &f.0["f:status"]["f:conditions"];
        if let Some(m) = conds.as_object() {
            for k in m.keys() {
                if let Some(t) = k
                    .strip_prefix("k:")
                    .and_then(|j| serde_json::from_str::<Value>(j).ok())
                {
                    out.entry(t["type"].as_str().unwrap_or("").to_string())
                        .or_default()
                        .insert(format!("{manager}/{:?}", mf.subresource));
                }
            }
        }
    }
    out
}

/// Managers owning `status.<field>`.
fn status_field_owners(o: &DynamicObject, field: &str) -> BTreeSet<String> {
    o.managed_fields()
        .iter()
        .filter(|mf| {
            mf.fields_v1
                .as_ref()
                .is_some_and(|f| !f.0["f:status"][format!("f:{field}")].is_null())
        })
        .map(|mf| mf.manager.clone().unwrap_or_default())
        .collect()
}

fn assert_one_owner(what: &str, o: &DynamicObject) {
    for (t, owners) in condition_owners(o) {
        assert_eq!(owners.len(), 1, "{what}: condition {t} owned by {owners:?}");
        assert!(
            !owners.iter().any(|m| m.starts_with(USER)),
            "{what}: the user took over {t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_i2_r_eng_d3_concurrent_user_edits_lose_nothing_and_each_condition_has_one_owner() {
    let _serial = SERIAL.lock().await;
    let mut env = Env::start(&[]).await;
    let ids: Vec<String> = (0..6)
        .map(|i| env.container(&format!("c{i}"), true, &[], &["sleep", "1000"]))
        .collect();
    env.start_all_kinds();
    for t in ["ContainersSynced", "ImagesSynced", "VolumesSynced"] {
        env.wait_cond(t, "Connected", T).await;
    }
    env.wait_equal("before", T).await;

    let apps: Api<DynamicObject> = Api::all_with(env.client.clone(), &apps_rs());
    let mirrors: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &containers_rs());
    // Docker churn: every pause/unpause is a status write by the container-controller.
    let churn = {
        let ids = ids.clone();
        tokio::task::spawn_blocking(move || {
            for round in 0..6 {
                for id in &ids {
                    docker(&[if round % 2 == 0 { "pause" } else { "unpause" }, id]);
                }
            }
        })
    };
    // Meanwhile users: replace-with-resourceVersion edits of the App and of each mirror, and
    // merge patches of mirror labels (no resourceVersion: the server merges atomically).
    let mut acked_app = Vec::new();
    let mut acked_mirror = Vec::new();
    let mut acked_labels = Vec::new();
    for i in 0..30 {
        let key = format!("faults.rancherdesktop.io/edit-{i}");
        if edit(&apps, "app", &key).await {
            acked_app.push(key.clone());
        }
        let id = &ids[i % ids.len()];
        if edit(&mirrors, id, &key).await {
            acked_mirror.push((id.clone(), key));
        }
        let label = format!("faults-{i}");
        let pp = PatchParams {
            field_manager: Some(USER.into()),
            ..Default::default()
        };
        let body = json!({"metadata": {"labels": {label.clone(): "1"}}});
        if mirrors.patch(id, &pp, &Patch::Merge(body)).await.is_ok() {
            acked_labels.push((id.clone(), label));
        }
    }
    churn.await.unwrap();
    env.wait_equal("after the churn", T).await;

    let app = apps.get("app").await.unwrap();
    for k in &acked_app {
        assert!(app.annotations().contains_key(k), "App edit {k} lost");
    }
    assert_eq!(acked_app.len(), 30);
    for (id, k) in &acked_mirror {
        let o = mirrors.get(id).await.unwrap();
        assert!(
            o.annotations().contains_key(k),
            "mirror edit {k} of {id} lost"
        );
    }
    for (id, l) in &acked_labels {
        let o = mirrors.get(id).await.unwrap();
        assert!(o.labels().contains_key(l), "mirror label {l} of {id} lost");
    }
    // The controllers' writes survived the users' too: the synced conditions are intact.
    for t in [
        "ContainersSynced",
        "ImagesSynced",
        "VolumesSynced",
        "Running",
    ] {
        assert!(env.app_condition(t).await.is_some(), "{t} lost");
    }
    assert_one_owner("App", &app);
    for id in &ids {
        let o = mirrors.get(id).await.unwrap();
        assert_one_owner(id, &o);
        // R-ENG-D3: the mirror's own status stays with the engine's manager, whatever the
        // conditions writer and the users did.
        assert_eq!(
            status_field_owners(&o, "status"),
            BTreeSet::from(["container-controller".to_string()]),
            "{id}: owners of status.status"
        );
    }
}
