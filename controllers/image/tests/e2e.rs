//! The image-controller against real Docker, the docker-gateway and `rdd svc serve`, all as real
//! processes (see `support`). Build the other binaries first: `cargo build -p rdd -p
//! docker-gateway`. Every image is the test's own (`Scope::image`: a labelled import of the
//! busybox rootfs), so the tags it creates and removes touch nothing else. Test names carry the
//! invariant IDs they check.

#[path = "../../mirror/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use image_controller::mirror::name;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rdd_api::containers::Image;
use rdd_testkit::{docker, docker_try};
use serde_json::{Value, json};
use support::Env;

const T: Duration = Duration::from_secs(60);
const CTRL: &str = "image-controller";
const FINALIZER: &str = "engine.rancherdesktop.io/mirror";

fn tag_of(i: &Image) -> Option<String> {
    i.status.as_ref().and_then(|s| s.repo_tag.clone())
}

fn docker_id(reference: &str) -> Option<String> {
    let (ok, out, _) = docker_try(&["image", "inspect", "-f", "{{.Id}}", reference]);
    ok.then_some(out)
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

async fn start(env: &mut Env) {
    env.start_kind(CTRL);
    env.wait_cond("ImagesSynced", "Connected", T).await;
}

fn images(env: &Env) -> Api<Image> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// A mirror written by the test (a stand-in for a stale or bare object), with our finalizer.
async fn bare_mirror(env: &Env, name: &str, status: Option<Value>) {
    let mut obj = Image::new(name, Default::default());
    obj.metadata.finalizers = Some(vec![FINALIZER.into()]);
    images(env)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    if let Some(s) = status {
        images(env)
            .patch_status(
                name,
                &PatchParams::apply("test-writer").force(),
                &Patch::Apply(json!({
                    "apiVersion": "containers.rancherdesktop.io/v1alpha1",
                    "kind": "Image", "status": s,
                })),
            )
            .await
            .unwrap();
    }
}

/// Three tags, one deleted through the API: only that tag goes; a mirror whose tag moved to
/// another image is released without untagging the new one; a bare mirror needs no Docker call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_s3_r_eng_s4_three_tags_untag_one_moved_tag_and_bare_mirror() {
    let mut env = Env::start().await;
    let id = env.scope.image(&["a", "b", "c"]);
    let (ra, rb, rc) = (
        env.scope.image_ref("a"),
        env.scope.image_ref("b"),
        env.scope.image_ref("c"),
    );
    // A container of this image (created from tag a).
    let label = env.scope.label();
    let name_user = env.scope.name("user");
    let user = docker(&[
        "create", "--label", &label, "--name", &name_user, &ra, "true",
    ]);
    start(&mut env).await;

    // §4.7.3: one mirror per tag, named from id NUL tag, with the image's status.
    let m = env
        .wait_list::<Image>("three tag mirrors", T, |m| m.len() == 3)
        .await;
    for r in [&ra, &rb, &rc] {
        let n = name(&id, Some(r));
        let s = m[&n].status.clone().expect("status");
        assert_eq!(s.id, id);
        assert_eq!(s.repo_tag.as_deref(), Some(r.as_str()));
        assert_eq!(s.namespace, "moby");
        assert_eq!(s.os, "linux");
        assert!(s.size > 0);
        assert_eq!(s.labels.get("rdd-test"), Some(&env.scope.id));
        assert!(m[&n].finalizers().contains(&FINALIZER.to_string()));
    }

    // Deleting b's mirror untags b only: a, c, their mirrors and the container stay.
    let before = env.docker_calls();
    let nb = name(&id, Some(&rb));
    let started = Instant::now();
    env.kubectl_ok(&[
        "delete",
        "-n",
        &env.ns,
        &format!("image/{nb}"),
        "--timeout=60s",
    ]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(docker_id(&rb), None, "tag b removed");
    assert_eq!(docker_id(&ra).as_deref(), Some(id.as_str()));
    assert_eq!(docker_id(&rc).as_deref(), Some(id.as_str()));
    assert!(
        docker_try(&["inspect", &user]).0,
        "the container is untouched"
    );
    let m2 = env
        .wait_list::<Image>("a and c only", T, |m| m.len() == 2 && !m.contains_key(&nb))
        .await;
    for r in [&ra, &rc] {
        let n = name(&id, Some(r));
        assert_eq!(
            m2[&n].metadata.uid, m[&n].metadata.uid,
            "{r} kept its mirror"
        );
    }
    assert_eq!(delta(&before, &env.docker_calls(), "image_remove"), 1);

    // A tag that moves to another image: the old mirror goes, the new image gets it.
    let id2 = env.scope.image(&[]);
    docker(&["tag", &id2, &rc]);
    let nc_old = name(&id, Some(&rc));
    let nc_new = name(&id2, Some(&rc));
    env.wait_list::<Image>("c moved", T, |m| {
        !m.contains_key(&nc_old) && m.get(&nc_new).and_then(tag_of).as_deref() == Some(rc.as_str())
    })
    .await;

    // R-ENG-S3: a mirror whose tag now names another image is released without a Docker call;
    // the tag stays on the new image.
    let before = env.docker_calls();
    let stale = format!("img-stale-{}", env.scope.id);
    bare_mirror(
        &env,
        &stale,
        Some(
            json!({"namespace": "moby", "id": id, "repoTag": rc, "architecture": "amd64",
                    "os": "linux", "size": 1}),
        ),
    )
    .await;
    env.kubectl_ok(&[
        "delete",
        "-n",
        &env.ns,
        &format!("image/{stale}"),
        "--timeout=60s",
    ]);
    assert_eq!(
        docker_id(&rc).as_deref(),
        Some(id2.as_str()),
        "c still names the new image"
    );
    assert_eq!(delta(&before, &env.docker_calls(), "image_remove"), 0);

    // R-ENG-S4: a mirror with no Docker identity is released without a Docker call.
    let bare = format!("img-bare-{}", env.scope.id);
    bare_mirror(&env, &bare, None).await;
    env.kubectl_ok(&[
        "delete",
        "-n",
        &env.ns,
        &format!("image/{bare}"),
        "--timeout=60s",
    ]);
    assert_eq!(delta(&before, &env.docker_calls(), "image_remove"), 0);

    // Untag in Docker: only that mirror goes; the last untag deletes the image and every mirror
    // of it goes.
    let rd = env.scope.image_ref("d");
    docker(&["tag", &id2, &rd]);
    env.wait_list::<Image>("d", T, |m| m.contains_key(&name(&id2, Some(&rd))))
        .await;
    docker(&["rmi", &rc]);
    let m = env
        .wait_list::<Image>("c's mirror gone", T, |m| !m.contains_key(&nc_new))
        .await;
    assert!(m.contains_key(&name(&id2, Some(&rd))));
    docker(&["rm", "-f", &user]);
    docker(&["rmi", &ra, &rd]);
    env.wait_list::<Image>("all gone", T, |m| m.is_empty())
        .await;
}

/// An image in use: the delete is refused by Docker and reported on the mirror (condition and
/// event), not looped on; the mirror goes once the container is gone. The last untag of a used
/// image turns the tag mirror into the dangling mirror. A terminating mirror never gets our
/// finalizer back, also through a full resync (R-ENG-S6, gap G-6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_s6_image_in_use_conflict_dangling_mirror_and_no_finalizer_on_terminating_mirrors() {
    let mut env = Env::start().await;
    let used = env.scope.image(&["solo"]);
    let rsolo = env.scope.image_ref("solo");
    let label = env.scope.label();
    let cname = env.scope.name("c");
    let user = docker(&[
        "create", "--label", &label, "--name", &cname, &rsolo, "true",
    ]);
    let held_id = env.scope.image(&["held", "other"]);
    let rheld = env.scope.image_ref("held");
    start(&mut env).await;
    let nsolo = name(&used, Some(&rsolo));
    let nheld = name(&held_id, Some(&rheld));
    env.wait_list::<Image>("mirrors", T, |m| m.len() == 3).await;

    // The only tag of an image a container uses: Docker refuses, the mirror says why.
    let before = env.docker_calls();
    images(&env)
        .delete(&nsolo, &DeleteParams::default())
        .await
        .unwrap();
    let m = env
        .wait_list::<Image>("DeletionBlocked", T, |m| {
            m[&nsolo]
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "DeletionBlocked"))
        })
        .await;
    let c = m[&nsolo].status.as_ref().unwrap().conditions[0].clone();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Conflict"));
    assert!(c.message.contains("conflict"), "{}", c.message);
    assert!(m[&nsolo].finalizers().contains(&FINALIZER.to_string()));
    let events = env.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        &env.ns,
        "-o",
        "jsonpath={range .items[*]}{.reason} {.regarding.name} {.type}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!("DeletionBlocked {nsolo} Warning")),
        "{events}"
    );
    // Not a loop: a handful of retries over 6 s, each one Docker call, no API write.
    let rv = m[&nsolo].resource_version();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let removes = delta(&before, &env.docker_calls(), "image_remove");
    assert!((1..=5).contains(&removes), "{removes} removes in 6 s");
    assert_eq!(
        images(&env).get(&nsolo).await.unwrap().resource_version(),
        rv
    );
    assert_eq!(docker_id(&rsolo).as_deref(), Some(used.as_str()));

    // R-ENG-S6: a terminating mirror held by a foreign finalizer, ours gone after the untag.
    images(&env)
        .patch(
            &nheld,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER, "example.com/hold"]}})),
        )
        .await
        .unwrap();
    images(&env)
        .delete(&nheld, &DeleteParams::default())
        .await
        .unwrap();
    env.wait_list::<Image>("held untagged, ours stripped", T, |m| {
        m.get(&nheld)
            .is_some_and(|o| o.finalizers() == ["example.com/hold".to_string()])
    })
    .await;
    assert_eq!(docker_id(&rheld), None, "held untagged in Docker");
    // The tag comes back in Docker (an event for the same mirror), then a full resync.
    docker(&["tag", &held_id, &rheld]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.proxy.kill().await;
    env.wait_cond("ImagesSynced", "ConnectFailed", T).await;
    env.proxy.restart().await;
    env.wait_cond("ImagesSynced", "Connected", T).await;
    let m = env.list::<Image>().await;
    assert_eq!(
        m[&nheld].finalizers(),
        ["example.com/hold".to_string()],
        "never re-added to a terminating mirror"
    );
    assert!(m[&nheld].metadata.deletion_timestamp.is_some());
    images(&env)
        .patch(
            &nheld,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();

    // The container goes: the refused delete succeeds on a retry (≤ 30 s). (Whether Docker also
    // deletes the then unused image depends on whether the retry raced the container's removal;
    // a dangling image left behind would get its dangling mirror.)
    docker(&["rm", "-f", &user]);
    env.wait_list::<Image>("solo collected", T, |m| !m.contains_key(&nsolo))
        .await;
    assert_eq!(docker_id(&rsolo), None, "the tag removed in Docker");

    // The last untag of an image a running container uses (a forced untag; Docker keeps the
    // image): the tag mirror becomes the dangling mirror.
    let id = env.scope.image(&["last"]);
    let rlast = env.scope.image_ref("last");
    let cname = env.scope.name("c2");
    let user = docker(&[
        "run", "-d", "--label", &label, "--name", &cname, &rlast, "sleep", "1000",
    ]);
    env.wait_list::<Image>("last", T, |m| m.contains_key(&name(&id, Some(&rlast))))
        .await;
    docker(&["rmi", "-f", &rlast]);
    let dangling = name(&id, None);
    env.wait_list::<Image>("dangling mirror", T, |m| {
        !m.contains_key(&name(&id, Some(&rlast)))
            && m.get(&dangling).is_some_and(|o| tag_of(o).is_none())
    })
    .await;
    // Removing a dangling image by ID is refused while the container uses it.
    images(&env)
        .delete(&dangling, &DeleteParams::default())
        .await
        .unwrap();
    env.wait_list::<Image>("dangling DeletionBlocked", T, |m| {
        m[&dangling]
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "DeletionBlocked"))
    })
    .await;
    docker(&["rm", "-f", &user]);
    env.wait_list::<Image>("dangling collected", T, |m| !m.contains_key(&dangling))
        .await;
    assert_eq!(docker_id(&id), None);
}
