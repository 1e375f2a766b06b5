//! Every acknowledged write survives `kill -9` of the server.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use rand::Rng;

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_acknowledged_writes_survive_kill_9() {
    let mut s = Server::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    // 8 writers × 125 objects = 1000 creates; the kill lands at a random point among them.
    for w in 0..8 {
        let api = api.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..125 {
                let name = format!("d-{w}-{i}");
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(o) => {
                        let rv: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
                        acked.lock().unwrap().insert((name, rv));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let delay = rand::rng().random_range(100..1500);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let pid = s.pid();
    s.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "killed pid {pid} after {delay} ms with {} acknowledged creates",
        acked.len()
    );
    s.restart();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let present: BTreeSet<String> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    for (name, _) in &acked {
        assert!(present.contains(name), "acknowledged create {name} lost");
    }
    // Revisions keep increasing across the restart.
    let max_acked = acked.iter().map(|(_, rv)| *rv).max().unwrap_or(0);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("after-restart".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let o = api.create(&PostParams::default(), &cm).await.unwrap();
    let rv: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv > max_acked, "revision {rv} not above {max_acked}");
}
