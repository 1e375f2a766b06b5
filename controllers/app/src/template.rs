//! Rendering the App's Lima template (lima.md §2.2, controllers.md §2.5): platform image list +
//! shared template + parameter block. Deterministic, because the App controller compares the
//! result byte-for-byte with the stored copy. Every instance-specific value is derived at
//! runtime from the instance (R-APP-I6, R-ENG-L1); the image list follows the host platform
//! (R-APP-I8).

use std::path::Path;

use rdd_api::app::{App, EngineName};
use rdd_process::instance::Instance;

const SHARED: &str = include_str!("lima-template.yaml");

const RELEASE: &str =
    "https://github.com/rancher-sandbox/rancher-desktop-opensuse/releases/download/v0.2.6";

/// Which image list to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// macOS and Linux: xz-compressed raw disk images, one per architecture.
    Unix,
    /// Windows: WSL2 with a rootfs tarball.
    Windows,
}

impl Platform {
    pub fn host() -> Platform {
        if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Unix
        }
    }
}

/// The image list of lima.md §10, from `base` (the release by default; a mirror or a local
/// directory for offline machines and tests). The release digests are not pinned yet; the
/// LimaVM controller verifies a `digest` when one is given.
pub fn image_list(p: Platform, base: Option<&str>) -> String {
    let base = base.unwrap_or(RELEASE).trim_end_matches('/');
    match p {
        Platform::Unix => format!(
            "images:\n- location: \"{base}/distro.v0.2.6.amd64.raw.xz\"\n  arch: x86_64\n- location: \"{base}/distro.v0.2.6.arm64.raw.xz\"\n  arch: aarch64\n"
        ),
        Platform::Windows => format!(
            "vmType: wsl2\nmountType: wsl2\nimages:\n- location: \"{base}/distro.v0.2.6.amd64.tar.xz\"\n  arch: x86_64\n"
        ),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("invalid RDD_VM_CPUS value {0:?}: want a positive integer")]
    Cpus(String),
    #[error("RDD_VM_CPUS is set but the Lima template has no cpus line to override")]
    NoCpusLine,
    #[error("creating the instance log directory: {0}")]
    LogDir(String),
}

/// The environment knobs rendering reads (passed in so tests need no process environment).
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub vm_cpus: Option<String>,
    pub vm_type: Option<String>,
    pub keep_logs: bool,
    pub trace_packets: bool,
    /// `RDD_IMAGE_BASE_URL`: where the distro images are downloaded from instead of the
    /// release (a mirror URL, or a local directory as a path or `file://` URL).
    pub image_base: Option<String>,
}

impl Knobs {
    pub fn from_env() -> Knobs {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Knobs {
            vm_cpus: var("RDD_VM_CPUS"),
            vm_type: var("RDD_VM_TYPE"),
            keep_logs: var("RDD_KEEP_LOGS").is_some(),
            trace_packets: var("RDD_TRACE_PACKETS").is_some(),
            image_base: var("RDD_IMAGE_BASE_URL"),
        }
    }
}

/// A host path as the guest sees it: Windows `X:\a\b` → `/mnt/x/a/b`; elsewhere unchanged.
pub fn guest_path(p: &Path, platform: Platform) -> String {
    let s = p.to_string_lossy().into_owned();
    if platform == Platform::Windows {
        let b = s.as_bytes();
        if b.len() >= 2 && b[1] == b':' {
            let drive = s[..1].to_lowercase();
            return format!("/mnt/{drive}{}", s[2..].replace('\\', "/"));
        }
    }
    s
}

/// Go-style double-quoted string (`strconv.Quote` for the characters paths contain).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Render the template text (pure).
pub fn render_text(
    app: &App,
    inst: &Instance,
    home: &Path,
    kubernetes_port: i32,
    platform: Platform,
    knobs: &Knobs,
) -> Result<String, RenderError> {
    let mut shared = SHARED.to_string();
    if let Some(cpus) = &knobs.vm_cpus {
        let n: u32 = cpus
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| RenderError::Cpus(cpus.clone()))?;
        let re = regex::Regex::new(r"(?m)^cpus: \d+$").map_err(|_| RenderError::NoCpusLine)?;
        if !re.is_match(&shared) {
            return Err(RenderError::NoCpusLine);
        }
        shared = re.replace_all(&shared, format!("cpus: {n}")).into_owned();
    }
    let mut head = String::new();
    if let Some(t) = &knobs.vm_type
        && platform == Platform::Unix
    {
        head.push_str(&format!("vmType: {t}\n"));
    }
    head.push_str(&image_list(platform, knobs.image_base.as_deref()));
    let k8s = app.spec.kubernetes.clone().unwrap_or_default();
    let engine = match app.spec.container_engine.name {
        EngineName::Moby => "moby",
        EngineName::Containerd => "containerd",
    };
    let docker_socket = inst.short_dir().join("docker.sock");
    let log_dir = inst.log_dir();
    let mut extra = String::new();
    if knobs.keep_logs {
        extra.push_str("--vm-switch-logfile-append");
        if knobs.trace_packets {
            extra.push_str(" --trace-packets");
        }
    }
    let guest_log_dir = if knobs.keep_logs {
        guest_path(&log_dir, platform)
    } else {
        String::new()
    };
    let params = [
        "param:".to_string(),
        format!("  CONTAINER_ENGINE: {engine}"),
        format!(
            "  HOST_DOCKER_SOCKET: {}",
            quote(&docker_socket.to_string_lossy())
        ),
        format!("  HOST_HOME_GUEST: {}", quote(&guest_path(home, platform))),
        format!(
            "  HOST_INSTANCE_CONFIG: {}",
            quote(&guest_path(&inst.dir().join("k3s.yaml"), platform))
        ),
        format!(
            "  VM_SWITCH_LOG: {}",
            quote(&guest_path(&log_dir.join("vm-switch.log"), platform))
        ),
        format!("  NETWORK_SETUP_EXTRA_ARGS: {}", quote(&extra)),
        format!("  GUEST_LOG_DIR: {}", quote(&guest_log_dir)),
        format!("  KUBERNETES_ENABLED: {}", k8s.enabled),
        format!(
            "  KUBERNETES_VERSION: {}",
            k8s.version.clone().unwrap_or_default()
        ),
        format!("  KUBERNETES_PORT: {kubernetes_port}"),
    ];
    Ok(format!("{head}{shared}\n{}\n", params.join("\n")))
}

/// Render for this host; also makes sure the instance log directory exists (mode 0700), since
/// the guest's network helper writes into it.
pub fn render(
    app: &App,
    inst: &Instance,
    home: &Path,
    kubernetes_port: i32,
) -> Result<String, RenderError> {
    let log_dir = inst.log_dir();
    std::fs::create_dir_all(&log_dir).map_err(|e| RenderError::LogDir(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o700));
    }
    render_text(
        app,
        inst,
        home,
        kubernetes_port,
        Platform::host(),
        &Knobs::from_env(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdd_api::app::AppSpec;

    fn app() -> App {
        App::new(
            "app",
            AppSpec {
                running: true,
                namespace: "default".into(),
                container_engine: Default::default(),
                kubernetes: None,
            },
        )
    }

    fn render_for(suffix: &str, port: i32, p: Platform, knobs: &Knobs) -> String {
        let inst = Instance::new(suffix, "/home/u".into());
        render_text(&app(), &inst, Path::new("/home/u"), port, p, knobs).unwrap()
    }

    #[test]
    fn r_app_i6_instance_values_differ_and_no_fixed_host_port() {
        let a = render_for("2", 7443, Platform::Unix, &Knobs::default());
        let b = render_for("e2e", 7541, Platform::Unix, &Knobs::default());
        assert!(
            a.contains("HOST_DOCKER_SOCKET: \"/home/u/.rd2/docker.sock\""),
            "{a}"
        );
        assert!(b.contains("HOST_DOCKER_SOCKET: \"/home/u/.rde2e/docker.sock\""));
        assert!(a.contains("KUBERNETES_PORT: 7443") && b.contains("KUBERNETES_PORT: 7541"));
        for t in [&a, &b] {
            assert!(!t.contains("localPort:"), "no fixed SSH port");
            assert!(!t.contains("hostPort: 6443"), "no fixed k3s forward (G-5)");
        }
    }

    #[test]
    fn r_app_i8_d2_image_list_by_platform_and_base() {
        let unix = render_for("2", 0, Platform::Unix, &Knobs::default());
        assert_eq!(unix.matches(".raw.xz").count(), 2);
        assert!(unix.contains("arch: x86_64") && unix.contains("arch: aarch64"));
        assert!(!unix.contains("wsl2"));
        let win = render_for("2", 0, Platform::Windows, &Knobs::default());
        assert!(win.contains("vmType: wsl2") && win.contains("mountType: wsl2"));
        assert!(win.contains(".tar.xz") && !win.contains(".raw.xz"));
        assert!(unix.contains(&format!("{RELEASE}/distro.v0.2.6.amd64.raw.xz")));
        let knobs = Knobs {
            image_base: Some("/srv/mirror/".into()),
            ..Knobs::default()
        };
        let local = render_for("2", 0, Platform::Unix, &knobs);
        assert!(local.contains("location: \"/srv/mirror/distro.v0.2.6.arm64.raw.xz\""));
        assert!(!local.contains("github.com"));
    }

    #[test]
    fn deterministic_param_block_after_an_empty_line() {
        let a = render_for("2", 0, Platform::Unix, &Knobs::default());
        assert_eq!(a, render_for("2", 0, Platform::Unix, &Knobs::default()));
        assert!(a.contains("\n\nparam:\n  CONTAINER_ENGINE: moby\n"));
        assert!(a.ends_with("KUBERNETES_PORT: 0\n"));
    }

    #[test]
    fn cpus_override_and_errors() {
        let k = Knobs {
            vm_cpus: Some("4".into()),
            ..Default::default()
        };
        assert!(render_for("2", 0, Platform::Unix, &k).contains("\ncpus: 4\n"));
        let inst = Instance::new("2", "/h".into());
        let bad = Knobs {
            vm_cpus: Some("0".into()),
            ..Default::default()
        };
        assert_eq!(
            render_text(&app(), &inst, Path::new("/h"), 0, Platform::Unix, &bad)
                .unwrap_err()
                .to_string(),
            "invalid RDD_VM_CPUS value \"0\": want a positive integer"
        );
    }

    #[test]
    fn windows_guest_paths() {
        assert_eq!(
            guest_path(Path::new(r"C:\Users\x"), Platform::Windows),
            "/mnt/c/Users/x"
        );
        assert_eq!(guest_path(Path::new("/home/x"), Platform::Unix), "/home/x");
    }
}
