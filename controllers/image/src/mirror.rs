//! Image mirror construction (controllers.md §4.7.3, resources.md §5.3), pure: one mirror per
//! tag, or one dangling mirror for an image without tags; every list in a deterministic order.

use std::collections::BTreeMap;

use rdd_api::containers::ImageStatus;
use rdd_mirror::{docker_time, sha256_hex};
use rdd_proto::v1 as pb;

/// Mirror name of `id` with `tag` (`img-` + SHA-256 of `id` NUL `tag`), or of the dangling
/// image (`img-` + SHA-256 of `id`). `id` is the full `sha256:…` ID.
pub fn name(id: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("img-{}", sha256_hex(&[id, t])),
        None => format!("img-{}", sha256_hex(&[id])),
    }
}

/// The tags of an image, sorted and without Docker's `<none>` placeholders (older daemons list
/// a dangling image with `<none>:<none>`).
pub fn tags(repo_tags: &[String]) -> Vec<String> {
    let mut t: Vec<String> = repo_tags
        .iter()
        .filter(|t| !t.is_empty() && !t.starts_with("<none>"))
        .cloned()
        .collect();
    t.sort();
    t.dedup();
    t
}

/// The names of the mirrors an image has: one per tag, or the dangling one.
pub fn names(id: &str, repo_tags: &[String]) -> Vec<String> {
    let t = tags(repo_tags);
    if t.is_empty() {
        vec![name(id, None)]
    } else {
        t.iter().map(|tag| name(id, Some(tag))).collect()
    }
}

/// The status of the mirror of `tag` (or the dangling mirror): a fresh value each time, nothing
/// shared between mirrors.
pub fn status(i: &pb::Image, tag: Option<&str>) -> ImageStatus {
    let mut repo_digests = i.repo_digests.clone();
    repo_digests.sort();
    ImageStatus {
        namespace: "moby".into(),
        id: i.id.clone(),
        repo_tag: tag.map(str::to_string),
        repo_digests,
        created_at: docker_time(&i.created),
        architecture: i.architecture.clone(),
        os: i.os.clone(),
        size: i.size,
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        conditions: Vec::new(),
    }
}

/// Every mirror of an inspected image: (name, status), in name order of the sorted tags.
pub fn desired(i: &pb::Image) -> Vec<(String, ImageStatus)> {
    let t = tags(&i.repo_tags);
    if t.is_empty() {
        return vec![(name(&i.id, None), status(i, None))];
    }
    t.iter()
        .map(|tag| (name(&i.id, Some(tag)), status(i, Some(tag))))
        .collect()
}

/// The part of an existing mirror's status that [`status`] produces, for comparing.
pub fn owned_part(s: &ImageStatus) -> ImageStatus {
    ImageStatus {
        conditions: Vec::new(),
        ..s.clone()
    }
}

/// Deleting a mirror, before any Docker call (controllers.md §4.10):
///
/// | mirror status | first step |
/// |---|---|
/// | no `id`, no `repoTag` | release, no Docker call (R-ENG-S4) |
/// | `repoTag` set | inspect the tag |
/// | dangling (`id` only) | inspect the ID |
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    NoIdentity,
    Tag { tag: String, id: String },
    Dangling { id: String },
}

pub fn check(s: Option<&ImageStatus>) -> Check {
    let id = s.map(|s| s.id.clone()).unwrap_or_default();
    match s.and_then(|s| s.repo_tag.clone()).filter(|t| !t.is_empty()) {
        Some(tag) => Check::Tag { tag, id },
        None if id.is_empty() => Check::NoIdentity,
        None => Check::Dangling { id },
    }
}

/// After the inspect of [`check`]:
///
/// | check | inspect says | Docker call |
/// |---|---|---|
/// | tag | the tag resolves to the mirror's `id` | remove by tag (never forced, `noprune`): untags only that tag (R-ENG-S3) |
/// | tag | the tag is gone, or resolves to another image (it moved) | none: release (R-ENG-S3; never fall back to the ID) |
/// | dangling | the image is gone | none: release |
/// | dangling | the image has tags now | none: release (its tags' mirrors stand for it; removing by ID would untag them) |
/// | dangling | still untagged | remove by ID (never forced, `noprune`; Docker refuses while a container uses it) |
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    NoCall(String),
    Remove(String),
}

pub fn decide(check: &Check, inspected: Option<&pb::Image>) -> Decision {
    match (check, inspected) {
        (Check::NoIdentity, _) => Decision::NoCall("no Docker identity".into()),
        (Check::Tag { tag, .. }, None) => Decision::NoCall(format!("tag {tag} no longer exists")),
        (Check::Tag { tag, id }, Some(i)) if &i.id != id => Decision::NoCall(format!(
            "tag {tag} now names {} (moved); {id} is left alone",
            i.id
        )),
        (Check::Tag { tag, .. }, Some(_)) => Decision::Remove(tag.clone()),
        (Check::Dangling { id }, None) => Decision::NoCall(format!("image {id} no longer exists")),
        (Check::Dangling { id }, Some(i)) if !tags(&i.repo_tags).is_empty() => Decision::NoCall(
            format!("image {id} is tagged now; its tag mirrors stand for it"),
        ),
        (Check::Dangling { id }, Some(_)) => Decision::Remove(id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str]) -> pb::Image {
        pb::Image {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec!["r@sha256:2".into(), "r@sha256:1".into()],
            architecture: "amd64".into(),
            os: "linux".into(),
            size: 42,
            labels: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into(),
            created: "2026-01-02T03:04:05.123456789Z".into(),
        }
    }

    #[test]
    fn one_mirror_per_tag_sorted_or_one_dangling() {
        let i = image("sha256:aa", &["z:1", "a:1", "m:2", "a:1"]);
        let d = desired(&i);
        let tags: Vec<_> = d.iter().map(|(_, s)| s.repo_tag.clone().unwrap()).collect();
        assert_eq!(tags, ["a:1", "m:2", "z:1"]);
        for (n, s) in &d {
            assert_eq!(
                n,
                &format!(
                    "img-{}",
                    sha256_hex(&["sha256:aa", s.repo_tag.as_deref().unwrap()])
                )
            );
            assert_eq!(s.repo_digests, ["r@sha256:1", "r@sha256:2"]);
            assert_eq!(s.namespace, "moby");
            assert_eq!(
                s.created_at.as_deref(),
                Some("2026-01-02T03:04:05.123456789Z")
            );
        }
        let dangling = desired(&image("sha256:bb", &["<none>:<none>"]));
        assert_eq!(dangling.len(), 1);
        assert_eq!(dangling[0].0, format!("img-{}", sha256_hex(&["sha256:bb"])));
        assert_eq!(dangling[0].1.repo_tag, None);
        assert_eq!(
            names("sha256:aa", &["z:1".into(), "a:1".into()]),
            [
                name("sha256:aa", Some("a:1")),
                name("sha256:aa", Some("z:1"))
            ]
        );
    }

    #[test]
    fn r_eng_i4_status_is_independent_of_input_order() {
        let a = image("sha256:aa", &["x:1"]);
        let mut b = a.clone();
        b.repo_digests.reverse();
        assert_eq!(desired(&a), desired(&b));
        assert_eq!(
            serde_json::to_string(&desired(&a)[0].1).unwrap(),
            serde_json::to_string(&desired(&b)[0].1).unwrap()
        );
    }

    fn st(id: &str, tag: Option<&str>) -> ImageStatus {
        ImageStatus {
            id: id.into(),
            repo_tag: tag.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn r_eng_s4_no_identity_no_call() {
        assert_eq!(check(None), Check::NoIdentity);
        assert_eq!(check(Some(&st("", None))), Check::NoIdentity);
        assert!(matches!(
            decide(&Check::NoIdentity, None),
            Decision::NoCall(_)
        ));
    }

    #[test]
    fn r_eng_s3_remove_by_tag_only_while_it_names_this_image() {
        let c = check(Some(&st("sha256:a", Some("r:t"))));
        assert_eq!(
            c,
            Check::Tag {
                tag: "r:t".into(),
                id: "sha256:a".into()
            }
        );
        assert_eq!(
            decide(&c, Some(&image("sha256:a", &["r:t", "r:u"]))),
            Decision::Remove("r:t".into())
        );
        // The tag moved to another image: no call, and never a fallback to the ID.
        assert!(matches!(
            decide(&c, Some(&image("sha256:b", &["r:t"]))),
            Decision::NoCall(_)
        ));
        assert!(matches!(decide(&c, None), Decision::NoCall(_)));
        // A tag with an empty ID never resolves to it.
        let c = check(Some(&st("", Some("r:t"))));
        assert!(matches!(
            decide(&c, Some(&image("sha256:a", &["r:t"]))),
            Decision::NoCall(_)
        ));
    }

    #[test]
    fn dangling_mirrors_remove_by_id_only_while_untagged() {
        let c = check(Some(&st("sha256:a", None)));
        assert_eq!(
            c,
            Check::Dangling {
                id: "sha256:a".into()
            }
        );
        assert_eq!(
            decide(&c, Some(&image("sha256:a", &[]))),
            Decision::Remove("sha256:a".into())
        );
        assert!(matches!(
            decide(&c, Some(&image("sha256:a", &["r:t"]))),
            Decision::NoCall(_)
        ));
        assert!(matches!(decide(&c, None), Decision::NoCall(_)));
    }
}
