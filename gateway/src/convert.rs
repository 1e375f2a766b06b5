//! Docker's answers in the gateway's message types. Every list that Docker builds from a Go map
//! is sorted here, once, so no consumer ever sees map order (R-ENG-I4).

use bollard::models::{
    ContainerInspectResponse, ContainerSummary as DockerContainerSummary, ImageInspect,
    ImageSummary as DockerImageSummary, PortMap, Volume as DockerVolume,
};
use rdd_proto::v1::{
    Container, ContainerState, ContainerSummary, Image, ImageSummary, Port, PortBinding, Volume,
};

pub fn ports(map: Option<&PortMap>) -> Vec<Port> {
    let Some(map) = map else { return Vec::new() };
    let mut out: Vec<Port> = map
        .iter()
        .map(|(name, bindings)| {
            let mut b: Vec<PortBinding> = bindings
                .iter()
                .flatten()
                .map(|b| PortBinding {
                    host_ip: b.host_ip.clone().unwrap_or_default(),
                    host_port: b.host_port.clone().unwrap_or_default(),
                })
                .collect();
            b.sort_by(|x, y| (&x.host_ip, &x.host_port).cmp(&(&y.host_ip, &y.host_port)));
            Port {
                name: name.clone(),
                has_bindings: bindings.is_some(),
                bindings: b,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn container(c: ContainerInspectResponse) -> Container {
    let state = c.state.map(|s| ContainerState {
        status: s.status.map(|v| v.to_string()).unwrap_or_default(),
        running: s.running.unwrap_or(false),
        paused: s.paused.unwrap_or(false),
        restarting: s.restarting.unwrap_or(false),
        dead: s.dead.unwrap_or(false),
        pid: s.pid.unwrap_or(0),
        exit_code: s.exit_code.unwrap_or(0),
        error: s.error.unwrap_or_default(),
        started_at: s.started_at.unwrap_or_default(),
        finished_at: s.finished_at.unwrap_or_default(),
    });
    let ports = ports(c.network_settings.as_ref().and_then(|n| n.ports.as_ref()));
    let has_config = c.config.is_some();
    let (labels, config_image) = match c.config {
        Some(cfg) => (
            cfg.labels.unwrap_or_default(),
            cfg.image.unwrap_or_default(),
        ),
        None => (Default::default(), String::new()),
    };
    Container {
        id: c.id.unwrap_or_default(),
        name: c.name.unwrap_or_default(),
        path: c.path.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        config_image,
        labels,
        has_config,
        state,
        created: c.created.unwrap_or_default(),
        ports,
        restart_count: c.restart_count.unwrap_or(0),
    }
}

pub fn container_summary(c: DockerContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        names: c.names.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        status: c.status.unwrap_or_default(),
        labels: c.labels.unwrap_or_default(),
        created: c.created.unwrap_or(0),
    }
}

pub fn image(i: ImageInspect) -> Image {
    let mut repo_digests = i.repo_digests.unwrap_or_default();
    repo_digests.sort();
    Image {
        id: i.id.unwrap_or_default(),
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests,
        architecture: i.architecture.unwrap_or_default(),
        os: i.os.unwrap_or_default(),
        size: i.size.unwrap_or(0),
        labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
        created: i.created.unwrap_or_default(),
    }
}

pub fn image_summary(i: DockerImageSummary) -> ImageSummary {
    let mut repo_digests = i.repo_digests;
    repo_digests.sort();
    ImageSummary {
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests,
        size: i.size,
        created: i.created,
        labels: i.labels,
        containers: i.containers,
    }
}

pub fn volume(v: DockerVolume) -> Volume {
    Volume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        scope: v.scope.map(|s| s.to_string()).unwrap_or_default(),
        labels: v.labels,
        options: v.options,
        created_at: v.created_at.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ports_are_sorted_whatever_the_map_order() {
        let b = |ip: &str, p: &str| bollard::models::PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(p.into()),
        };
        let entries = vec![
            (
                "80/tcp".to_string(),
                Some(vec![b("::", "8080"), b("0.0.0.0", "8080")]),
            ),
            ("53/udp".to_string(), None),
            ("443/tcp".to_string(), Some(vec![])),
        ];
        let mut seen = None;
        for rot in 0..3 {
            let mut e = entries.clone();
            e.rotate_left(rot);
            let map: HashMap<_, _> = e.into_iter().collect();
            let p = ports(Some(&map));
            let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["443/tcp", "53/udp", "80/tcp"]);
            assert_eq!(p[2].bindings[0].host_ip, "0.0.0.0");
            assert!(!p[1].has_bindings && p[0].has_bindings && p[0].bindings.is_empty());
            if let Some(prev) = &seen {
                assert_eq!(prev, &p);
            }
            seen = Some(p);
        }
    }
}
