//! The Docker connection cut for 10 s (the proxy between the gateway and Docker killed) while
//! 100 changes happen in Docker: afterwards the mirrors equal Docker exactly (R-ENG-T2: the
//! watcher's death and reconnect while the engine keeps running, through a killed proxy).

use std::time::{Duration, Instant};

use rdd_testkit::docker;

use crate::support::{Env, SERIAL};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_t2_docker_cut_for_10_s_during_100_changes_then_mirrors_equal_docker() {
    let _serial = SERIAL.lock().await;
    let mut env = Env::start(&[]).await;
    let mut running: Vec<String> = (0..10)
        .map(|i| env.container(&format!("r{i}"), true, &[], &["sleep", "1000"]))
        .collect();
    let mut stopped: Vec<String> = (0..10)
        .map(|i| env.container(&format!("s{i}"), false, &[], &["sleep", "1000"]))
        .collect();
    let mut volumes: Vec<String> = (0..5).map(|i| env.scope.volume(&format!("v{i}"))).collect();
    env.start_kind("container-controller");
    env.start_kind("volume-controller");
    env.wait_cond("ContainersSynced", "Connected", T).await;
    env.wait_cond("VolumesSynced", "Connected", T).await;
    env.wait_equal("before the cut", T).await;

    env.proxy.kill().await;
    let cut = Instant::now();
    // 100 changes of every kind, made directly on Docker's socket (the gateway cannot see them).
    let mut changes = 0;
    let mut n = 0;
    while changes < 100 {
        n += 1;
        match n % 7 {
            0 => running.push(env.container(&format!("n{n}"), true, &[], &["sleep", "1000"])),
            1 => stopped.push(env.container(&format!("n{n}"), false, &[], &["true"])),
            2 if !running.is_empty() => {
                let id = running.remove(0);
                docker(&["kill", &id]);
                stopped.push(id);
            }
            3 if !stopped.is_empty() => {
                let id = stopped.remove(0);
                docker(&["rm", "-f", &id]);
            }
            4 if !running.is_empty() => {
                docker(&["pause", &running[0]]);
            }
            5 => volumes.push(env.scope.volume(&format!("n{n}"))),
            6 if volumes.len() > 1 => {
                let v = volumes.remove(0);
                docker(&["volume", "rm", &v]);
            }
            _ => continue,
        }
        changes += 1;
    }
    // While cut, the mirrors cannot be trusted and the App says so.
    let cond = env.app_condition("ContainersSynced").await.unwrap();
    assert_ne!(cond["reason"], "Connected", "{cond}");
    let made = cut.elapsed();
    if made < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(10) - made).await;
    }
    eprintln!(
        "{changes} changes in {:?}; connection cut for {:?}",
        made,
        cut.elapsed()
    );
    env.proxy.restart().await;
    env.wait_cond("ContainersSynced", "Connected", T).await;
    env.wait_cond("VolumesSynced", "Connected", T).await;
    env.wait_equal("after the cut", T).await;
    // And they stay equal: nothing left over that a late event would undo.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = env.mirror_diffs().await;
    assert!(d.is_empty(), "{}", rdd_faults::describe(&d));
}
