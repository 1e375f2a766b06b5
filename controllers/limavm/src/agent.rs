//! Host-agent supervision (controllers.md §3.1, §3.7, §3.9, §3.10): one record per started
//! instance with the child, a reaper and an event tail. Only the watcher writes `phase`; only
//! the reconciler writes API conditions. Watchers wake the reconciler through a channel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use rdd_api::limavm::LimaVM;
use tokio::sync::{mpsc, watch};

use crate::Error;
use crate::limactl::Limactl;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Stopped,
}

struct Record {
    namespace: String,
    pid: i32,
    phase: Arc<Mutex<Phase>>,
    /// true once the child was reaped (its PID may be recycled: never signal it then).
    exited: watch::Receiver<bool>,
}

/// Crash-loop bookkeeping per instance (G-4).
#[derive(Clone, Copy, Debug)]
struct Starts {
    crashes: u32,
    last: Instant,
    next_allowed: Instant,
}

pub struct Agents {
    limactl: Limactl,
    records: Mutex<HashMap<String, Record>>,
    starts: Mutex<HashMap<String, Starts>>,
    notify: mpsc::Sender<ObjectRef<LimaVM>>,
}

/// A run that lasted this long was not a crash loop; the backoff starts over.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// Delay before the n-th automatic restart after a crash: 0 for the first, then 1 s doubling
/// to 5 minutes.
pub fn crash_backoff(crashes: u32) -> Duration {
    if crashes == 0 {
        return Duration::ZERO;
    }
    rdd_kit::runner::backoff(crashes - 1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agents {
    pub fn new(limactl: Limactl, notify: mpsc::Sender<ObjectRef<LimaVM>>) -> Arc<Agents> {
        Arc::new(Agents {
            limactl,
            records: Mutex::new(HashMap::new()),
            starts: Mutex::new(HashMap::new()),
            notify,
        })
    }

    /// The watcher phase; None = no record ("Unknown").
    pub fn phase(&self, name: &str) -> Option<Phase> {
        lock(&self.records).get(name).map(|r| *lock(&r.phase))
    }

    /// How long to wait before restarting `name` after a crash (zero: start now).
    pub fn restart_delay(&self, name: &str) -> Duration {
        let now = Instant::now();
        lock(&self.starts)
            .get(name)
            .map(|s| s.next_allowed.saturating_duration_since(now))
            .unwrap_or(Duration::ZERO)
    }

    /// Forget crash history (a stop the user asked for).
    pub fn reset_backoff(&self, name: &str) {
        lock(&self.starts).remove(name);
    }

    fn record_start(&self, name: &str, after_crash: bool) -> u32 {
        let now = Instant::now();
        let mut starts = lock(&self.starts);
        let s = starts.entry(name.to_string()).or_insert(Starts {
            crashes: 0,
            last: now,
            next_allowed: now,
        });
        if !after_crash || now.duration_since(s.last) > STABLE_RUN {
            s.crashes = 0;
        } else {
            s.crashes += 1;
        }
        s.last = now;
        s.next_allowed = now + crash_backoff(s.crashes + 1);
        s.crashes
    }

    /// Start the host agent (lima.md §4, §12.1 `start`): rotate logs, spawn in a new process
    /// group, wait for `ha.pid` (up to `pid_wait`, which must allow for disk preparation), then
    /// watch. Err carries the StartFailed message.
    pub async fn start(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        after_crash: bool,
        pid_wait: Duration,
    ) -> Result<i32, String> {
        let dir = self.limactl.dir(name);
        crate::limactl::rotate_logs(&dir);
        let crashes = self.record_start(name, after_crash);
        let begin = chrono::Utc::now();
        let mut child = self
            .limactl
            .spawn_agent(name)
            .map_err(|e| format!("starting the host agent: {e}"))?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        // R-ENG-S12: the process-group fact comes from the OS, not from an assumption.
        let pgid = unsafe { libc::getpgid(pid) };
        tracing::info!(instance = name, pid, pgid, crashes, "host agent spawned");
        let pid_file = dir.join("ha.pid");
        let deadline = Instant::now() + pid_wait;
        loop {
            if pid_file.exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let stderr = std::fs::read_to_string(dir.join("ha.stderr.log")).unwrap_or_default();
                return Err(format!(
                    "host agent exited ({status}) before creating its PID file: {}",
                    stderr.trim()
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!(
                    "hostagent did not create PID file within timeout (see {})",
                    dir.join("ha.stderr.log").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let phase = Arc::new(Mutex::new(Phase::Starting));
        let (exit_tx, exit_rx) = watch::channel(false);
        let key = ObjectRef::<LimaVM>::new(name).within(namespace);
        // Reaper: waits for the child, marks it reaped, and wakes the reconciler.
        {
            let phase = phase.clone();
            let notify = self.notify.clone();
            let key = key.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                let status = child.wait().await;
                tracing::info!(instance = %name, ?status, "host agent exited");
                let _ = exit_tx.send(true);
                let changed = {
                    let mut p = lock(&phase);
                    let changed = *p != Phase::Stopped;
                    *p = Phase::Stopped;
                    changed
                };
                if changed {
                    let _ = notify.try_send(key);
                }
            });
        }
        tokio::spawn(tail(
            dir.join("ha.stdout.log"),
            begin,
            phase.clone(),
            exit_rx.clone(),
            self.notify.clone(),
            key,
        ));
        lock(&self.records).insert(
            name.to_string(),
            Record {
                namespace: namespace.to_string(),
                pid,
                phase,
                exited: exit_rx,
            },
        );
        Ok(pid)
    }

    /// Graceful shutdown (controllers.md §3.7): interrupt an unreaped child and wait 30 s; with
    /// no child, a reaped one, or on timeout: force stop and wait 10 s more. The record is
    /// removed ("stop watcher").
    pub async fn stop(&self, name: &str) -> Result<(), Error> {
        let rec = lock(&self.records).remove(name);
        let Some(rec) = rec else {
            return self.limactl.stop_force(name).await;
        };
        let mut exited = rec.exited;
        if !*exited.borrow() && rec.pid > 0 {
            unsafe { libc::kill(rec.pid, libc::SIGINT) };
            if wait_exit(&mut exited, Duration::from_secs(30)).await {
                return Ok(());
            }
        } else if *exited.borrow() {
            // Reaped already: it cleaned up (or was killed); make sure nothing is left.
            return self.limactl.stop_force(name).await;
        }
        let r = self.limactl.stop_force(name).await;
        wait_exit(&mut exited, Duration::from_secs(10)).await;
        r
    }

    /// Drop the record without touching the process (after it was observed Stopped).
    pub fn forget(&self, name: &str) {
        lock(&self.records).remove(name);
    }

    /// Control-plane shutdown (§3.9): interrupt every unreaped child at once, wait for all in
    /// parallel (30 s), then always force-stop each instance and wait for reaping (10 s).
    pub async fn shutdown_all(&self) {
        let records: Vec<(String, Record)> = lock(&self.records).drain().collect();
        let mut waits = Vec::new();
        for (name, rec) in records {
            if !*rec.exited.borrow() && rec.pid > 0 {
                unsafe { libc::kill(rec.pid, libc::SIGINT) };
            }
            let limactl = self.limactl.clone();
            let mut exited = rec.exited;
            let ns = rec.namespace;
            waits.push(async move {
                wait_exit(&mut exited, Duration::from_secs(30)).await;
                if let Err(e) = limactl.stop_force(&name).await {
                    tracing::warn!(instance = %name, namespace = %ns, error = %e, "forced stop at shutdown failed");
                }
                wait_exit(&mut exited, Duration::from_secs(10)).await;
            });
        }
        futures::future::join_all(waits).await;
    }

    /// Orphan kill (§3.7): no child handle; interrupt the recorded PID if it is verifiably a
    /// host agent of this instance, poll inspect every 500 ms for up to 30 s, else force.
    pub async fn kill_orphan(&self, name: &str, pid: i32) -> Result<(), Error> {
        if pid > 0 && is_our_agent(pid, name, &self.limactl.dir(name)) {
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match self.limactl.inspect(name).await? {
                    None => return Ok(()),
                    Some(i) if i.status == "Stopped" => return Ok(()),
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        self.limactl.stop_force(name).await
    }
}

/// True when `pid`'s command line names a host agent of this instance (`start` … `<name>`
/// or `hostagent` … `<dir>/ha.pid`). Linux reads /proc; elsewhere it cannot be verified.
fn is_our_agent(pid: i32, name: &str, dir: &std::path::Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let pid_file = dir.join("ha.pid").to_string_lossy().into_owned();
    (args.iter().any(|a| a == "start") && args.last().is_some_and(|a| a == name))
        || (args.iter().any(|a| a == "hostagent") && args.iter().any(|a| a.contains(&pid_file)))
}

async fn wait_exit(exited: &mut watch::Receiver<bool>, cap: Duration) -> bool {
    tokio::time::timeout(cap, exited.wait_for(|e| *e))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// One host-agent event line (lima.md §5); only the fields the watcher uses.
#[derive(serde::Deserialize, Default)]
struct Event {
    #[serde(default)]
    time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    status: EventStatus,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EventStatus {
    #[serde(default)]
    running: bool,
    #[serde(default)]
    exiting: bool,
    #[serde(default)]
    ssh_local_port: u32,
}

/// What one event does to the phase (controllers.md §3.10): (new phase, stop tailing).
pub fn apply_event(phase: Phase, running: bool, exiting: bool, ssh_port: u32) -> (Phase, bool) {
    if exiting {
        (Phase::Stopped, true)
    } else if running {
        (Phase::Running, false)
    } else if ssh_port > 0 && phase != Phase::Running {
        (Phase::Starting, false)
    } else {
        (phase, false)
    }
}

/// Follow `ha.stdout.log` until `exiting`, or until the child was reaped and the file drained.
async fn tail(
    path: PathBuf,
    begin: chrono::DateTime<chrono::Utc>,
    phase: Arc<Mutex<Phase>>,
    exited: watch::Receiver<bool>,
    notify: mpsc::Sender<ObjectRef<LimaVM>>,
    key: ObjectRef<LimaVM>,
) {
    let mut offset = 0usize;
    let mut pending = String::new();
    loop {
        let done = *exited.borrow();
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.len() < offset {
                offset = 0; // recreated (lima recreates the log on start)
            }
            pending.push_str(&String::from_utf8_lossy(&bytes[offset..]));
            offset = bytes.len();
        }
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let ev: Event = match serde_json::from_str(line) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, line, "skipping a host agent line that is not JSON");
                    continue;
                }
            };
            if ev.time.is_some_and(|t| t < begin) {
                continue;
            }
            let (next, stop) = {
                let mut p = lock(&phase);
                let (next, stop) = apply_event(
                    *p,
                    ev.status.running,
                    ev.status.exiting,
                    ev.status.ssh_local_port,
                );
                let changed = *p != next;
                *p = next;
                (changed, stop)
            };
            if next {
                let _ = notify.try_send(key.clone());
            }
            if stop {
                return;
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changed = {
        let mut p = lock(&phase);
        let c = *p != Phase::Stopped;
        *p = Phase::Stopped;
        c
    };
    if changed {
        let _ = notify.try_send(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_drive_the_phase() {
        assert_eq!(
            apply_event(Phase::Starting, false, false, 22),
            (Phase::Starting, false)
        );
        assert_eq!(
            apply_event(Phase::Starting, true, false, 22),
            (Phase::Running, false)
        );
        assert_eq!(
            apply_event(Phase::Running, false, false, 22),
            (Phase::Running, false)
        );
        assert_eq!(
            apply_event(Phase::Running, false, true, 0),
            (Phase::Stopped, true)
        );
    }

    #[test]
    fn title_header_is_a_harmless_event() {
        let ev: Event = serde_json::from_str(r#"{"title":"rdd e2e"}"#).unwrap();
        assert!(ev.time.is_none());
        assert!(!ev.status.running && !ev.status.exiting && ev.status.ssh_local_port == 0);
        let ev: Event = serde_json::from_str(
            r#"{"time":"2026-04-12T10:00:03.123456789Z","status":{"running":true,"sshLocalPort":60022,"degraded":false}}"#,
        )
        .unwrap();
        assert!(ev.status.running && ev.status.ssh_local_port == 60022 && ev.time.is_some());
    }

    #[test]
    fn g4_crash_restarts_back_off() {
        assert_eq!(crash_backoff(0), Duration::ZERO);
        assert_eq!(crash_backoff(1), Duration::from_secs(1));
        assert_eq!(crash_backoff(3), Duration::from_secs(4));
        assert_eq!(crash_backoff(40), Duration::from_secs(300));
    }
}
