//! Mirror construction (controllers.md §4.7.1): a Container's status from the gateway's inspect,
//! and the Container conditions (resources.md §5.2.2). Pure functions, tested without a server.

use rdd_api::containers::{ContainerStatus, ContainerStatusValue, Port, PortBinding};
use rdd_kit::conditions::Desired;
use rdd_proto::v1 as pb;

/// Docker's `Name` → (namespace, name): one leading `/` stripped; `/<ns>/<name>` names a
/// container namespace, anything else is in `moby`; an empty result falls back to the container
/// ID, so `status.name` is never empty (R-ENG-S5).
pub fn parse_name(docker_name: &str, id: &str) -> (String, String) {
    let rest = docker_name.strip_prefix('/').unwrap_or(docker_name);
    let (ns, name) = match rest.split_once('/') {
        Some((ns, name)) if !ns.is_empty() => (ns.to_string(), name.to_string()),
        Some((_, name)) => ("moby".to_string(), name.to_string()),
        None => ("moby".to_string(), rest.to_string()),
    };
    if name.is_empty() {
        tracing::info!(%id, docker_name, "container without a name: using its ID");
        (ns, id.to_string())
    } else {
        (ns, name)
    }
}

/// Docker's state string; anything outside the known eight is `unknown` (R-ENG-S7).
pub fn status_value(s: &str) -> ContainerStatusValue {
    use ContainerStatusValue as V;
    match s {
        "created" => V::Created,
        "running" => V::Running,
        "pausing" => V::Pausing,
        "paused" => V::Paused,
        "restarting" => V::Restarting,
        "removing" => V::Removing,
        "exited" => V::Exited,
        "dead" => V::Dead,
        _ => V::Unknown,
    }
}

/// A Docker time if it parses and is not Go's zero time.
fn time(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    if t.timestamp() <= -62_135_596_800 {
        // 0001-01-01T00:00:00Z: Docker's "never".
        return None;
    }
    Some(s.to_string())
}

/// Ports sorted by name, bindings by (hostIP, hostPort), whatever order they came in (R-ENG-I4).
pub fn ports(input: &[pb::Port]) -> Vec<Port> {
    let mut out: Vec<Port> = input
        .iter()
        .map(|p| {
            let mut bindings: Vec<PortBinding> = p
                .bindings
                .iter()
                .map(|b| PortBinding {
                    host_ip: b.host_ip.clone(),
                    host_port: b.host_port.clone(),
                })
                .collect();
            bindings.sort();
            bindings.dedup();
            Port {
                name: p.name.clone(),
                bindings,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The status this controller owns (everything but `conditions` and `lastAction`, R-ENG-D3).
pub fn status(c: &pb::Container) -> ContainerStatus {
    let (namespace, name) = parse_name(&c.name, &c.id);
    let state = c.state.clone().unwrap_or_default();
    let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    ContainerStatus {
        name,
        namespace,
        path: c.path.clone(),
        args: c.args.clone(),
        image: c.image.clone(),
        ports: ports(&c.ports),
        labels: if c.has_config {
            c.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            Default::default()
        },
        status: status_value(&state.status),
        pid: Some(clamp(state.pid)),
        exit_code: Some(clamp(state.exit_code)),
        error: (!state.error.is_empty()).then(|| state.error.clone()),
        created_at: time(&c.created),
        started_at: time(&state.started_at),
        finished_at: time(&state.finished_at),
        conditions: Vec::new(),
        last_action: None,
    }
}

/// The part of an existing mirror's status that [`status`] produces, for comparing.
pub fn owned_part(s: &ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        conditions: Vec::new(),
        last_action: None,
        ..s.clone()
    }
}

/// The Container conditions for a `status.status` (resources.md §5.2.2).
pub fn conditions(s: ContainerStatusValue) -> [Desired<'static>; 5] {
    use ContainerStatusValue as V;
    let flag = |on: bool,
                type_: &'static str,
                yes: (&'static str, &'static str),
                no: (&'static str, &'static str)| Desired {
        type_,
        status: if on { "True" } else { "False" },
        reason: if on { yes.0 } else { no.0 },
        message: if on { yes.1 } else { no.1 },
        observed_generation: None,
    };
    [
        flag(
            s == V::Running,
            "Running",
            ("Running", "Container is running"),
            ("NotRunning", "Container is not running"),
        ),
        flag(
            s == V::Paused,
            "Paused",
            ("Paused", "Container is paused"),
            ("NotPaused", "Container is not paused"),
        ),
        flag(
            s == V::Restarting,
            "Restarting",
            ("Restarting", "Container is restarting"),
            ("NotRestarting", "Container is not restarting"),
        ),
        flag(
            s == V::Dead,
            "Dead",
            ("Dead", "Container is dead"),
            ("NotDead", "Container is not dead"),
        ),
        Desired {
            type_: "OOMKilled",
            status: "Unknown",
            reason: "OOMKilled",
            message: "Unable to tell if container is OOMKilled",
            observed_generation: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn r_eng_s5_name_parser_never_returns_an_empty_name() {
        let p = |n: &str| parse_name(n, ID);
        assert_eq!(p(""), ("moby".into(), ID.into()));
        assert_eq!(p("/"), ("moby".into(), ID.into()));
        assert_eq!(p("/x"), ("moby".into(), "x".into()));
        assert_eq!(p("x"), ("moby".into(), "x".into()));
        assert_eq!(p("/ns/x/y"), ("ns".into(), "x/y".into()));
        assert_eq!(p("/ns/"), ("ns".into(), ID.into()));
    }

    #[test]
    fn r_eng_s7_unknown_docker_states_are_unknown() {
        assert_eq!(status_value("initializing"), ContainerStatusValue::Unknown);
        assert_eq!(status_value(""), ContainerStatusValue::Unknown);
        assert_eq!(status_value("exited"), ContainerStatusValue::Exited);
        let c = pb::Container {
            id: ID.into(),
            name: "/".into(),
            state: Some(pb::ContainerState {
                status: "initializing".into(),
                started_at: "0001-01-01T00:00:00Z".into(),
                ..Default::default()
            }),
            created: "not a time".into(),
            ..Default::default()
        };
        let s = status(&c);
        assert_eq!(s.status, ContainerStatusValue::Unknown);
        assert_eq!(s.name, ID);
        assert_eq!(s.started_at, None);
        assert_eq!(s.created_at, None);
        assert_eq!(s.error, None);
    }

    fn six_ports(seed: u64) -> Vec<pb::Port> {
        let mut ports: Vec<pb::Port> = (0..6)
            .map(|i| pb::Port {
                name: format!("{}/tcp", 8000 + i),
                bindings: vec![
                    pb::PortBinding {
                        host_ip: "::".into(),
                        host_port: format!("{}", 32000 + i),
                    },
                    pb::PortBinding {
                        host_ip: "0.0.0.0".into(),
                        host_port: format!("{}", 32000 + i),
                    },
                ],
                has_bindings: true,
            })
            .collect();
        // A deterministic shuffle of ports and of each binding list.
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for i in (1..ports.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let j = (x >> 33) as usize % (i + 1);
            ports.swap(i, j);
            if x & 1 == 1 {
                ports[i].bindings.reverse();
            }
        }
        ports
    }

    #[test]
    fn r_eng_i4_six_ports_byte_identical_over_twenty_shuffles() {
        let first = serde_json::to_string(&ports(&six_ports(0))).unwrap();
        for seed in 1..=20 {
            assert_eq!(
                serde_json::to_string(&ports(&six_ports(seed))).unwrap(),
                first
            );
        }
        let p = ports(&six_ports(3));
        assert_eq!(p[0].name, "8000/tcp");
        assert_eq!(p[0].bindings[0].host_ip, "0.0.0.0");
    }

    #[test]
    fn an_exposed_unpublished_port_has_no_bindings() {
        let p = ports(&[pb::Port {
            name: "80/tcp".into(),
            bindings: vec![],
            has_bindings: false,
        }]);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, serde_json::json!([{"name": "80/tcp"}]));
    }

    #[test]
    fn conditions_follow_the_status() {
        let c = conditions(ContainerStatusValue::Paused);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[1].status, "True");
        assert_eq!(c[1].reason, "Paused");
        assert_eq!(c[4].status, "Unknown");
    }
}
