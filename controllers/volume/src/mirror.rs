//! Volume mirror construction (controllers.md §4.7.2, resources.md §5.4), pure.

use std::collections::BTreeMap;

use rdd_api::containers::VolumeStatus;
use rdd_mirror::{docker_time, sha256_hex};
use rdd_proto::v1 as pb;

/// Mirror name: `vol-` + SHA-256 of the Docker name (which may hold uppercase and `_`).
pub fn name(volume: &str) -> String {
    format!("vol-{}", sha256_hex(&[volume]))
}

/// The status of a volume from its list entry or inspect. `createdAt` is required by the
/// schema: a volume whose `CreatedAt` does not parse is refused (skipped and reported).
pub fn status(v: &pb::Volume) -> Result<VolumeStatus, String> {
    let created_at = docker_time(&v.created_at).ok_or_else(|| {
        format!(
            "volume {}: CreatedAt {:?} is not an RFC 3339 time",
            v.name, v.created_at
        )
    })?;
    Ok(VolumeStatus {
        name: v.name.clone(),
        namespace: "moby".into(),
        created_at,
        driver: v.driver.clone(),
        mountpoint: v.mountpoint.clone(),
        labels: v
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        scope: v.scope.clone(),
        options: v
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        conditions: Vec::new(),
    })
}

/// The part of an existing mirror's status that [`status`] produces, for comparing.
pub fn owned_part(s: &VolumeStatus) -> VolumeStatus {
    VolumeStatus {
        conditions: Vec::new(),
        ..s.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_status() {
        // printf 'My_Vol' | sha256sum
        assert_eq!(
            name("My_Vol"),
            "vol-03dd472215bf9a9999682fb796cc32febcc286efc2433a3a8d35e766097af8f8"
        );
        let v = pb::Volume {
            name: "My_Vol".into(),
            driver: "local".into(),
            mountpoint: "/var/lib/docker/volumes/My_Vol/_data".into(),
            scope: "local".into(),
            labels: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into(),
            options: Default::default(),
            created_at: "2026-01-02T03:04:05+01:00".into(),
        };
        let s = status(&v).unwrap();
        assert_eq!(s.namespace, "moby");
        assert_eq!(s.created_at, "2026-01-02T03:04:05+01:00");
        assert_eq!(
            s.labels.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "sorted whatever the map order"
        );
        let bad = pb::Volume {
            created_at: String::new(),
            ..v
        };
        assert!(status(&bad).is_err());
    }
}
