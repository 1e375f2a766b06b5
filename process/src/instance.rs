//! Instance identity and the directories and ports derived from it (cli.md §2).

use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Instance {
    pub suffix: String,
    pub index: u32,
    home: PathBuf,
}

impl Instance {
    /// From `RDD_INSTANCE` (default `2`) and `HOME`.
    pub fn from_env() -> Result<Instance, String> {
        let suffix = std::env::var("RDD_INSTANCE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "2".into());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or("HOME is not set")?;
        Ok(Instance::new(&suffix, home))
    }

    pub fn new(suffix: &str, home: PathBuf) -> Instance {
        let index = match suffix.parse::<u32>() {
            Ok(n) if (1..=99).contains(&n) => n,
            _ => 100 + suffix.chars().map(|c| c as u32).sum::<u32>() % 100,
        };
        Instance {
            suffix: suffix.to_string(),
            index,
            home,
        }
    }

    pub fn name(&self) -> String {
        format!("rancher-desktop-{}", self.suffix)
    }

    pub fn dir(&self) -> PathBuf {
        self.home.join(".local/share").join(self.name())
    }

    pub fn log_dir(&self) -> PathBuf {
        match std::env::var_os("RDD_LOG_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => self.home.join(".local/state").join(self.name()),
        }
    }

    pub fn short_dir(&self) -> PathBuf {
        self.home.join(format!(".rd{}", self.suffix))
    }

    /// The docker-gateway's gRPC socket. Not a `rdd svc paths` key (cli.md fixes that list); the
    /// supervisor passes it to the controllers it starts.
    pub fn gateway_socket(&self) -> PathBuf {
        self.dir().join("docker-gateway.sock")
    }

    /// The Unix socket on which the process serving `controller`'s passthrough endpoints
    /// listens (controllers.md §4.15); the API server relays `/passthrough/<controller>/…` to
    /// it. Derived here so the supervisor and the serving process agree without a flag.
    pub fn passthrough_socket(&self, controller: &str) -> PathBuf {
        self.dir().join(format!("passthrough-{controller}.sock"))
    }

    /// The Docker endpoint of the instance as a URL (`unix://<short dir>/docker.sock`).
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.short_dir().join("docker.sock").display())
    }

    pub fn secure_port(&self) -> u16 {
        (6443 + self.index) as u16
    }

    /// Every `rdd svc paths` key with its value, sorted by key.
    pub fn paths(&self) -> Vec<(&'static str, PathBuf)> {
        let dir = self.dir();
        let short = self.short_dir();
        vec![
            ("args_file", dir.join("args.json")),
            ("config", dir.join("config.yaml")),
            ("dir", dir.clone()),
            ("docker_socket", short.join("docker.sock")),
            ("k3s_config", dir.join("k3s.yaml")),
            ("lima_home", short.join("lima")),
            ("log_dir", self.log_dir()),
            ("pid_file", dir.join("rdd.pid")),
            ("short_dir", short),
            ("tls_dir", dir.join("tls")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_ports() {
        let i = Instance::new("2", "/h".into());
        assert_eq!((i.index, i.secure_port()), (2, 6445));
        assert_eq!(i.dir(), PathBuf::from("/h/.local/share/rancher-desktop-2"));
        let named = Instance::new("ab", "/h".into());
        assert_eq!(named.index, 100 + (97 + 98) % 100);
        assert_eq!(
            Instance::new("100", "/h".into()).index,
            100 + (49 + 48 + 48) % 100
        );
    }
}
