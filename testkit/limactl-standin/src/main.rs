//! `limactl-standin`: the test stand-in for `limactl` of lima.md §12.2. It is a test fixture,
//! never installed as `limactl`; the limavm-controller is pointed at it through its `limactl`
//! configuration.
//!
//! Operations (all honour `LIMA_HOME` and accept the global `--tty=false`):
//! - `template validate FILE`: YAML must parse; every `arch` must be a Lima architecture.
//! - `create --name=N FILE`: `<LIMA_HOME>/N` with `lima.yaml` (exact bytes) and `lima-version`.
//! - `start [--foreground] N`: become the host agent (without `--foreground`: spawn one in the
//!   background and wait for `ha.pid`). An image location whose host ends in `.test` fails like
//!   a download error. The agent writes `ha.pid`, serves `ha.sock` (`GET /v1/info`), runs a
//!   dummy driver (`<vmType>.pid`), logs `hostagent socket created` on stderr, emits the
//!   `sshLocalPort` event and, after `LIMACTL_STANDIN_BOOT_MS` (default 300) ms, `running`.
//!   On SIGINT/SIGTERM it emits `exiting`, kills the driver, removes its files and exits 0.
//! - `list --json [N…]`, `stop --force N`, `delete --force N`.
//! - `shell [--shell S] [--workdir D] N [CMD…]`: the "guest" is this machine, so the command runs
//!   here (in D, with the template's `env:` set, as Lima sets it in the guest), and only while
//!   the instance runs — `rdd limavm shell` is tested through it.
//!
//! The one addition beyond §12.2: when the template forwards the guest's `/var/run/docker.sock`
//! to a host socket, the agent serves that socket while the "VM" runs, proxying every
//! connection to the machine's Docker (`LIMACTL_STANDIN_DOCKER`, default
//! `/var/run/docker.sock`), and removes it when it stops.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

const ARCHES: &[&str] = &["x86_64", "aarch64", "armv7l", "riscv64", "s390x", "ppc64le"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--tty"))
        .collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["template", "validate", file] => validate(Path::new(file)),
        ["create", name, file] if name.starts_with("--name=") => {
            create(&name["--name=".len()..], Path::new(file))
        }
        ["start", "--foreground", name] => agent(name),
        ["start", name] => start_background(name),
        ["list", "--json", names @ ..] => list(names),
        ["stop", "--force", name] => stop_force(name).map(|_| ()),
        ["delete", "--force", name] => delete(name),
        ["shell", rest @ ..] => shell(rest),
        ["__driver"] => driver(),
        _ => Err(format!("limactl-standin: unsupported invocation {args:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn lima_home() -> Result<PathBuf, String> {
    match std::env::var_os("LIMA_HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => Err("LIMA_HOME must be set".into()),
    }
}

fn inst_dir(name: &str) -> Result<PathBuf, String> {
    Ok(lima_home()?.join(name))
}

fn parse(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| format!("failed to parse YAML: {e}"))
}

fn check_template(text: &str) -> Result<Value, String> {
    let v = parse(text)?;
    let mut arches: Vec<&Value> = vec![];
    if let Some(a) = v.get("arch") {
        arches.push(a);
    }
    for img in v
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(a) = img.get("arch") {
            arches.push(a);
        }
    }
    for a in arches {
        let s = a.as_str().unwrap_or_default();
        if !ARCHES.contains(&s) {
            return Err(format!(
                "field `arch` must be one of {ARCHES:?}; got `{}`",
                a.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| a.to_string())
            ));
        }
    }
    Ok(v)
}

fn validate(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    check_template(&text).map(|_| ())
}

fn create(name: &str, file: &Path) -> Result<(), String> {
    let dir = inst_dir(name)?;
    if dir.exists() {
        return Err(format!(
            "instance \"{name}\" already exists (\"{}\")",
            dir.display()
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    check_template(&String::from_utf8_lossy(&bytes))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("lima.yaml"), &bytes).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("lima-version"), "2.0.0-standin\n").map_err(|e| e.to_string())?;
    Ok(())
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn vm_type(tmpl: &Value) -> String {
    tmpl.get("vmType")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("qemu")
        .to_string()
}

fn template_of(dir: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(dir.join("lima.yaml"))
        .map_err(|e| format!("{}: {e}", dir.join("lima.yaml").display()))?;
    parse(&text)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn event(status: Value) {
    let line = json!({"time": now(), "status": status});
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn log(msg: &str) {
    let line = json!({"level": "info", "msg": msg, "time": now()});
    eprintln!("{line}");
}

/// The host path the template forwards the guest Docker socket to, with `{{.Param.X}}`
/// substituted from `param`.
fn docker_forward(tmpl: &Value) -> Option<PathBuf> {
    let params = tmpl.get("param");
    tmpl.get("portForwards")?
        .as_array()?
        .iter()
        .find(|f| f.get("guestSocket").and_then(Value::as_str) == Some("/var/run/docker.sock"))
        .and_then(|f| f.get("hostSocket").and_then(Value::as_str))
        .map(|s| {
            let mut out = s.to_string();
            if let Some(Value::Object(p)) = params {
                for (k, v) in p {
                    let val = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    out = out.replace(&format!("{{{{.Param.{k}}}}}"), &val);
                }
            }
            PathBuf::from(out)
        })
}

fn start_background(name: &str) -> Result<(), String> {
    let dir = inst_dir(name)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::fs::File::create(dir.join("ha.stdout.log")).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(dir.join("ha.stderr.log")).map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(exe)
        .args(["start", "--foreground", name])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if dir.join("ha.pid").exists() {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!("host agent exited: {s}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("host agent did not write ha.pid".into())
}

fn agent(name: &str) -> Result<(), String> {
    let dir = inst_dir(name)?;
    let tmpl = template_of(&dir)?;
    let ha_pid = dir.join("ha.pid");
    let existing = read_pid(&ha_pid);
    if alive(existing) {
        return Err(format!(
            "another hostagent may already be running with pid {existing} (pidfile \"{}\")",
            ha_pid.display()
        ));
    }
    for img in tmpl
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let loc = img.get("location").and_then(Value::as_str).unwrap_or("");
        let host = loc
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("");
        // A fully qualified name may end in a dot: `foo.test.` is `foo.test`.
        if host.trim_end_matches('.').ends_with(".test") {
            return Err(format!(
                "failed to download \"{loc}\": dial tcp: lookup {host}: no such host"
            ));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_agent(dir, tmpl))
}

async fn run_agent(dir: PathBuf, tmpl: Value) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let ha_pid = dir.join("ha.pid");
    let ha_sock = dir.join("ha.sock");
    let driver_pid_file = dir.join(format!("{}.pid", vm_type(&tmpl)));
    std::fs::write(&ha_pid, format!("{}\n", std::process::id())).map_err(|e| e.to_string())?;

    // The "SSH" port: any free port (Lima picks one; nothing here is fixed).
    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let ssh_port = ssh.local_addr().map_err(|e| e.to_string())?.port();

    let _ = std::fs::remove_file(&ha_sock);
    let api = tokio::net::UnixListener::bind(&ha_sock).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = api.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = json!({"sshLocalPort": ssh_port}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut driver = tokio::process::Command::new(exe)
        .arg("__driver")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let driver_pid = driver.id().unwrap_or(0);
    std::fs::write(&driver_pid_file, format!("{driver_pid}\n")).map_err(|e| e.to_string())?;
    log("hostagent socket created");
    event(json!({"sshLocalPort": ssh_port}));

    let boot_ms: u64 = std::env::var("LIMACTL_STANDIN_BOOT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let docker_sock = docker_forward(&tmpl);
    let stop = async {
        tokio::select! {
            _ = sigint.recv() => {},
            _ = sigterm.recv() => {},
        }
    };
    tokio::pin!(stop);
    let booted = tokio::select! {
        _ = &mut stop => false,
        _ = tokio::time::sleep(Duration::from_millis(boot_ms)) => true,
    };
    if booted {
        if let Some(path) = &docker_sock {
            match serve_docker(path) {
                Ok(()) => log(&format!("forwarding docker socket to {}", path.display())),
                Err(e) => log(&format!("docker socket forward failed: {e}")),
            }
        }
        event(json!({"running": true, "sshLocalPort": ssh_port}));
        stop.await;
    }
    event(json!({"exiting": true}));
    let _ = driver.start_kill();
    let _ = driver.wait().await;
    if let Some(path) = &docker_sock {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(&driver_pid_file);
    let _ = std::fs::remove_file(&ha_sock);
    let _ = std::fs::remove_file(&ha_pid);
    drop(ssh);
    Ok(())
}

/// Serve `path` by proxying each connection to the machine's Docker socket.
fn serve_docker(path: &Path) -> Result<(), String> {
    let upstream = std::env::var("LIMACTL_STANDIN_DOCKER")
        .unwrap_or_else(|_| "/var/run/docker.sock".to_string());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut u) = tokio::net::UnixStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut u).await;
                }
            });
        }
    });
    Ok(())
}

/// The dummy VM driver: sleeps until killed.
fn driver() -> Result<(), String> {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn instance_json(name: &str) -> Result<Option<Value>, String> {
    let dir = inst_dir(name)?;
    if !dir.join("lima.yaml").exists() {
        return Ok(None);
    }
    let tmpl = template_of(&dir).unwrap_or(Value::Null);
    let vm = vm_type(&tmpl);
    let pid_of = |f: &Path| {
        let p = read_pid(f);
        if alive(p) { p } else { 0 }
    };
    let ha = pid_of(&dir.join("ha.pid"));
    let drv = pid_of(&dir.join(format!("{vm}.pid")));
    let (status, errors) = match (ha > 0, drv > 0) {
        (true, true) => ("Running", vec![]),
        (false, false) => ("Stopped", vec![]),
        (true, false) => ("Broken", vec!["driver is not running".to_string()]),
        (false, true) => ("Broken", vec!["host agent is not running".to_string()]),
    };
    let arch = std::env::consts::ARCH;
    Ok(Some(json!({
        "name": name, "status": status, "dir": dir, "vmType": vm, "arch": arch,
        "hostAgentPID": ha, "driverPID": drv, "sshLocalPort": 0, "errors": errors,
    })))
}

fn list(names: &[&str]) -> Result<(), String> {
    let names: Vec<String> = if names.is_empty() {
        let mut all: Vec<String> = std::fs::read_dir(lima_home()?)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('_'))
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        all
    } else {
        names.iter().map(|s| s.to_string()).collect()
    };
    let mut missing = false;
    for n in &names {
        match instance_json(n)? {
            Some(v) => println!("{v}"),
            None => missing = true,
        }
    }
    if missing {
        return Err("instance not found".into());
    }
    Ok(())
}

fn stop_force(name: &str) -> Result<bool, String> {
    let dir = inst_dir(name)?;
    let tmpl = template_of(&dir).unwrap_or(Value::Null);
    let mut ok = true;
    for f in ["ha.pid".to_string(), format!("{}.pid", vm_type(&tmpl))] {
        let p = read_pid(&dir.join(&f));
        if alive(p) && unsafe { libc::kill(p, libc::SIGKILL) } != 0 {
            ok = false;
        }
    }
    if ok && let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".pid") || n.ends_with(".sock") || n.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(sock) = docker_forward(&tmpl) {
        let _ = std::fs::remove_file(sock);
    }
    Ok(ok)
}

fn shell(args: &[&str]) -> Result<(), String> {
    let mut shell = None;
    let mut workdir = None;
    let mut i = 0;
    while i < args.len() && args[i].starts_with("--") {
        let (flag, value) = match args[i].split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (args[i], args.get(i + 1).map(|v| v.to_string())),
        };
        if !args[i].contains('=') {
            i += 1;
        }
        i += 1;
        match flag {
            "--shell" => shell = value,
            "--workdir" => workdir = value,
            _ => return Err(format!("shell: unknown flag {flag}")),
        }
    }
    let Some(name) = args.get(i) else {
        return Err("shell: instance name required".into());
    };
    let dir = inst_dir(name)?;
    if !dir.join("lima.yaml").exists() {
        return Err(format!("instance \"{name}\" does not exist"));
    }
    if !alive(read_pid(&dir.join("ha.pid"))) {
        return Err(format!(
            "instance \"{name}\" is stopped, run `limactl start {name}` to start the instance"
        ));
    }
    let tmpl = template_of(&dir)?;
    let shell = shell.unwrap_or_else(|| "/bin/sh".into());
    let mut cmd = std::process::Command::new(&shell);
    let rest = &args[i + 1..];
    if !rest.is_empty() {
        cmd.arg("-c").arg("exec \"$@\"").arg("sh").args(rest);
    }
    if let Some(w) = workdir {
        cmd.current_dir(w);
    }
    if let Some(Value::Object(env)) = tmpl.get("env") {
        for (k, v) in env {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            cmd.env(k, v);
        }
    }
    let status = cmd.status().map_err(|e| format!("{shell}: {e}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn delete(name: &str) -> Result<(), String> {
    let dir = inst_dir(name)?;
    if !dir.exists() {
        return Ok(());
    }
    stop_force(name)?;
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_field_and_value() {
        let e = check_template("arch: cray-1\n").unwrap_err();
        assert!(
            e.contains("field `arch`") && e.contains("got `cray-1`"),
            "{e}"
        );
        assert!(check_template("images:\n- location: x\n  arch: x86_64\n").is_ok());
        assert!(check_template(": [").is_err());
    }

    #[test]
    fn docker_forward_substitutes_params() {
        let t = parse(
            "portForwards:\n- guestSocket: /var/run/docker.sock\n  hostSocket: \"{{.Param.HOST_DOCKER_SOCKET}}\"\nparam:\n  HOST_DOCKER_SOCKET: \"/h/.rdx/docker.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            docker_forward(&t),
            Some(PathBuf::from("/h/.rdx/docker.sock"))
        );
    }
}
