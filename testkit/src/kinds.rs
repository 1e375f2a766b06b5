//! Starting rdd's mirror controllers (container-, image-, volume-controller) in an end-to-end
//! test, as the suites of `controllers/mirror/tests` and `faults/` do: each under its own
//! least-privilege identity, mirroring only the test's objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// The mirror controllers of one test: what every start shares, and what a restart keeps (the
/// identity's kubeconfig and the admin address).
pub struct MirrorControllers {
    rdd: PathBuf,
    home: PathBuf,
    gateway_socket: PathBuf,
    label_selector: String,
    kubeconfigs: BTreeMap<String, PathBuf>,
    /// Admin address (`/healthz`, `/metrics`) of each controller started, fixed per test.
    pub admin: BTreeMap<String, String>,
}

impl MirrorControllers {
    /// Controllers of instance `e2e` in `home` (its API server running), talking to the gateway
    /// on `gateway_socket` and mirroring only objects matching `label_selector`; `rdd` is the
    /// binary that mints their tokens.
    pub fn new(
        rdd: &Path,
        home: &Path,
        gateway_socket: &Path,
        label_selector: &str,
    ) -> MirrorControllers {
        MirrorControllers {
            rdd: rdd.to_path_buf(),
            home: home.to_path_buf(),
            gateway_socket: gateway_socket.to_path_buf(),
            label_selector: label_selector.to_string(),
            kubeconfigs: BTreeMap::new(),
            admin: BTreeMap::new(),
        }
    }

    /// The kubeconfig of `name`'s identity (`deploy/rbac/<name>.yaml`): `<home>/<name>.yaml`,
    /// minted by `rdd svc token create --controller <name>` on first use.
    pub fn kubeconfig(&mut self, name: &str) -> PathBuf {
        if let Some(k) = self.kubeconfigs.get(name) {
            return k.clone();
        }
        let kc = self.home.join(format!("{name}.yaml"));
        let o = Command::new(&self.rdd)
            .args(["svc", "token", "create", "--controller", name])
            .arg("--kubeconfig")
            .arg(&kc)
            .env("HOME", &self.home)
            .env("RDD_INSTANCE", "e2e")
            .output()
            .expect("run rdd svc token create");
        assert!(
            o.status.success(),
            "rdd svc token create --controller {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.kubeconfigs.insert(name.to_string(), kc.clone());
        kc
    }

    /// Start controller `name` from the binary `bin`. Logs go to the test's stderr at
    /// `TEST_LOG` (default `warn`); sweeps wait 5 s; the Docker CLI context goes to the test
    /// home's `.docker`, never the caller's.
    pub fn start(&mut self, name: &str, bin: &Path) -> Child {
        let kubeconfig = self.kubeconfig(name);
        let admin = self
            .admin
            .entry(name.to_string())
            .or_insert_with(|| format!("127.0.0.1:{}", free_port()))
            .clone();
        Command::new(bin)
            .env("HOME", &self.home)
            // The container-controller writes the instance's Docker context: never the caller's.
            .env("DOCKER_CONFIG", self.home.join(".docker"))
            .env("RDD_INSTANCE", "e2e")
            .env("RDD_KUBECONFIG", &kubeconfig)
            .env("RDD_GATEWAY_SOCKET", &self.gateway_socket)
            .env("RDD_LABEL_SELECTOR", &self.label_selector)
            .env("RDD_ADMIN_ADDR", &admin)
            .env("RDD_SWEEP_WAIT_SECONDS", "5")
            .env(
                "RDD_LOG_LEVEL",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()))
    }
}
