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
/// Docker context (DOCKER_HOST removed, it would win over the context) and kubeconfig.
pub fn child_env(
    inst: &Instance,
    path: Option<OsString>,
) -> (Vec<(String, OsString)>, &'static str) {
    let mut dirs = vec![inst.short_dir().join("bin")];
    if let Some(p) = path {
        dirs.extend(std::env::split_paths(&p));
    }
    let path = std::env::join_paths(dirs).unwrap_or_default();
    (
        vec![
            ("PATH".into(), path),
            ("DOCKER_CONTEXT".into(), inst.name().into()),
            (
                "KUBECONFIG".into(),
                inst.short_dir().join("kube.config").into_os_string(),
            ),
        ],
        "DOCKER_HOST",
    )
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
    cmd.args(args).env_remove(remove);
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
    fn bin_dir_first_context_and_kubeconfig() {
        let inst = Instance::new("x", "/h".into());
        let (env, removed) = child_env(&inst, Some("/usr/bin:/bin".into()));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PATH"), Some("/h/.rdx/bin:/usr/bin:/bin".into()));
        assert_eq!(get("DOCKER_CONTEXT"), Some("rancher-desktop-x".into()));
        assert_eq!(get("KUBECONFIG"), Some("/h/.rdx/kube.config".into()));
        assert_eq!(removed, "DOCKER_HOST");
    }
}
