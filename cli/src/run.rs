//! `rdd run COMMAND [ARGS…]` (cli.md §7): the command with this instance's tools, Docker context
//! and kubeconfig, after the App runs.
//!
//! The child's exit status is rdd's, with nothing printed by rdd (a child killed by a signal
//! gives 128 + the signal, as a shell reports it). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
//! rdd are forwarded to the child, which decides whether and when to exit; rdd waits for it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use kube::Api;
use kube::api::DynamicObject;
use rdd_process::instance::Instance;

use crate::exit::ExitError;
use crate::set::{app_resource, wait_settled_showing, write};
use crate::svc::control;

/// How long `rdd run` waits for the App to settle.
const WAIT: Duration = Duration::from_secs(300);

/// The command basename without `.exe`: `kubectl` and `helm` also enable Kubernetes on a new App.
fn wants_kubernetes(command: &str) -> bool {
    let base = Path::new(command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = base.strip_suffix(".exe").unwrap_or(&base);
    matches!(base, "kubectl" | "helm")
}

/// The environment of the child: the instance's bin directory first on PATH, the instance's
/// Docker context (DOCKER_HOST removed, it would win over the context) and kubeconfig. The
/// second part is what is removed from the inherited environment.
///
/// `<short_dir>/kube.config` is the standalone kubeconfig of the in-VM k3s cluster, written by
/// the Kubernetes controller while k3s is healthy and removed otherwise (controllers.md §6,
/// resources.md §6). This project has no Kubernetes controller, so the file normally does not
/// exist; a path to a missing file would make kubectl and client libraries fail with a
/// confusing error (or silently fall back to an empty config), so KUBECONFIG is then left
/// unset, the caller's own value removed too: the child never sees a KUBECONFIG that does not
/// belong to this instance.
pub fn child_env(
    inst: &Instance,
    path: Option<OsString>,
) -> (Vec<(String, OsString)>, Vec<&'static str>) {
    let mut dirs = vec![inst.short_dir().join("bin")];
    if let Some(p) = path {
        dirs.extend(std::env::split_paths(&p));
    }
    let path = std::env::join_paths(dirs).unwrap_or_default();
    let mut set = vec![
        ("PATH".into(), path),
        ("DOCKER_CONTEXT".into(), inst.name().into()),
    ];
    let mut remove = vec!["DOCKER_HOST"];
    let kubeconfig = inst.short_dir().join("kube.config");
    if kubeconfig.is_file() {
        set.push(("KUBECONFIG".into(), kubeconfig.into_os_string()));
    } else {
        remove.push("KUBECONFIG");
    }
    (set, remove)
}

pub async fn run(inst: &Instance, mut args: Vec<String>, help: String) -> anyhow::Result<i32> {
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        print!("{help}");
        return Ok(0);
    }
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    let Some(command) = args.first().cloned() else {
        return Err(ExitError {
            code: 2,
            message: "rdd run needs a COMMAND (see --help)".into(),
        }
        .into());
    };
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    let app = api.get_opt("app").await?;
    let generation = match &app {
        // Already asked to run: nothing to write (and nothing logged); wait for its generation.
        Some(a) if a.data["spec"]["running"] == true => a.metadata.generation.unwrap_or(0),
        _ => {
            let mut props = BTreeMap::from([("running".to_string(), "true".to_string())]);
            if app.is_none() && wants_kubernetes(&command) {
                props.insert("kubernetes.enabled".into(), "true".into());
            }
            write(&client, &props, false).await?
        }
    };
    wait_settled_showing(&client, generation, WAIT, false).await?;
    exec(inst, &command, &args[1..]).await
}

async fn exec(inst: &Instance, command: &str, args: &[String]) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let (env, remove) = child_env(inst, std::env::var_os("PATH"));
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args);
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        // The program is looked up on this PATH too, so the instance's tools win.
        cmd.env(k, v);
    }
    // Handlers first: a signal between the spawn and their registration would kill rdd and
    // leave the child running.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut child = cmd.spawn().map_err(|e| ExitError {
        code: if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
        message: format!("{command}: {e}"),
    })?;
    let pid = child.id().unwrap_or(0) as i32;
    let status = loop {
        let sig = tokio::select! {
            s = child.wait() => break s?,
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
            _ = quit.recv() => libc::SIGQUIT,
        };
        if pid > 0 {
            // SAFETY: kill(2) of our own child, which we have not reaped yet.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_only_for_kubectl_and_helm() {
        assert!(wants_kubernetes("kubectl"));
        assert!(wants_kubernetes("/usr/bin/helm"));
        assert!(wants_kubernetes("kubectl.exe"));
        assert!(!wants_kubernetes("docker"));
        assert!(!wants_kubernetes("kubectl-foo"));
    }

    #[test]
    fn bin_dir_first_context_and_no_kubeconfig_without_the_file() {
        let inst = Instance::new("x", "/nonexistent-rdd-home".into());
        let (env, removed) = child_env(&inst, Some("/usr/bin:/bin".into()));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("PATH"),
            Some("/nonexistent-rdd-home/.rdx/bin:/usr/bin:/bin".into())
        );
        assert_eq!(get("DOCKER_CONTEXT"), Some("rancher-desktop-x".into()));
        assert_eq!(get("KUBECONFIG"), None);
        assert_eq!(removed, vec!["DOCKER_HOST", "KUBECONFIG"]);
    }

    #[test]
    fn kubeconfig_when_the_standalone_file_exists() {
        let home = tempfile::tempdir().unwrap();
        let inst = Instance::new("x", home.path().to_path_buf());
        std::fs::create_dir_all(inst.short_dir()).unwrap();
        let kc = inst.short_dir().join("kube.config");
        std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").unwrap();
        let (env, removed) = child_env(&inst, None);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("KUBECONFIG"), Some(kc.into_os_string()));
        assert_eq!(removed, vec!["DOCKER_HOST"]);
    }
}
