//! `--controllers` (cli.md §3.6): which controllers run, and which processes that means.
//!
//! Items are comma-separated; `*` is all; an item names a controller or an API group; a leading
//! `-` excludes. A controller runs iff some item includes it and none excludes it.
//!
//! The Go controller names map onto rdd's processes like this: `engine` (Docker mirroring) is
//! the docker-gateway plus the container-, image- and volume-controllers; `app` is the
//! app-controller; `limavm` the limavm-controller. `container`, `image`, `volume` and
//! `containernamespace` only registered CRDs in Go; rdd installs every CRD at start, so they
//! start no process of their own. `kubernetes` is not part of this project yet.

/// (controller name, API group).
pub const CONTROLLERS: &[(&str, &str)] = &[
    ("app", "app"),
    ("kubernetes", ""),
    ("engine", "containers"),
    ("container", "containers"),
    ("containernamespace", "containers"),
    ("image", "containers"),
    ("volume", "containers"),
    ("limavm", "lima"),
];

const GROUPS: &[&str] = &["rdd", "app", "containers", "lima"];

/// A supervised process and the controller that enables it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proc {
    pub name: &'static str,
    pub enabled_by: &'static str,
    /// Needs an API identity (the gateway talks only to Docker).
    pub kube: bool,
    /// The controller whose passthrough endpoints (`/passthrough/<controller>/…`) this process
    /// serves on its socket (`Instance::passthrough_socket`).
    pub passthrough: Option<&'static str>,
}

/// Start order; stopping goes in reverse, so controllers stop before the gateway.
pub const PROCS: &[Proc] = &[
    Proc {
        name: "docker-gateway",
        enabled_by: "engine",
        kube: false,
        passthrough: None,
    },
    Proc {
        name: "container-controller",
        enabled_by: "engine",
        kube: true,
        passthrough: Some("engine"),
    },
    Proc {
        name: "image-controller",
        enabled_by: "engine",
        kube: true,
        passthrough: None,
    },
    Proc {
        name: "volume-controller",
        enabled_by: "engine",
        kube: true,
        passthrough: None,
    },
    Proc {
        name: "limavm-controller",
        enabled_by: "limavm",
        kube: true,
        passthrough: None,
    },
    Proc {
        name: "app-controller",
        enabled_by: "app",
        kube: true,
        passthrough: None,
    },
];

/// The enabled controller names, or a one-line error for an unknown item.
pub fn enabled(spec: &str) -> Result<Vec<&'static str>, String> {
    let mut include: Vec<&str> = Vec::new();
    let mut exclude: Vec<&str> = Vec::new();
    for raw in spec.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            continue;
        }
        let (neg, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        let known = name == "*"
            || CONTROLLERS
                .iter()
                .any(|(n, g)| *n == name || (!g.is_empty() && *g == name))
            || GROUPS.contains(&name);
        if !known || name.is_empty() {
            let names: Vec<&str> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "--controllers: unknown controller or group {name:?}; controllers: {}; groups: {}",
                names.join(", "),
                GROUPS.join(", ")
            ));
        }
        if neg {
            exclude.push(name);
        } else {
            include.push(name);
        }
    }
    let hit = |items: &[&str], n: &str, g: &str| {
        items
            .iter()
            .any(|i| *i == "*" || *i == n || (!g.is_empty() && *i == g))
    };
    Ok(CONTROLLERS
        .iter()
        .filter(|(n, g)| hit(&include, n, g) && !hit(&exclude, n, g))
        .map(|(n, _)| *n)
        .collect())
}

pub fn procs(enabled: &[&str]) -> Vec<Proc> {
    PROCS
        .iter()
        .copied()
        .filter(|p| enabled.contains(&p.enabled_by))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let all = enabled("*").unwrap();
        assert_eq!(all.len(), CONTROLLERS.len());
        assert_eq!(enabled("app").unwrap(), vec!["app"]);
        assert_eq!(enabled("lima").unwrap(), vec!["limavm"]);
        assert_eq!(
            enabled("containers,-engine").unwrap(),
            vec!["container", "containernamespace", "image", "volume"]
        );
        assert!(enabled("").unwrap().is_empty());
        assert!(enabled("*,-app").unwrap().iter().all(|c| *c != "app"));
        let err = enabled("app,bogus").unwrap_err();
        assert!(err.contains("\"bogus\""), "{err}");
        let names: Vec<_> = procs(&enabled("containers,-engine").unwrap())
            .iter()
            .map(|p| p.name)
            .collect();
        assert!(names.is_empty());
        let names: Vec<_> = procs(&enabled("*").unwrap())
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names[0], "docker-gateway");
        assert_eq!(names.len(), 6);
    }
}
