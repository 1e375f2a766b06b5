//! Request attributes from the URL alone, as kube-apiserver's RequestInfo derives them: no
//! registry lookups, so authorization happens before routing and a caller without rights
//! learns nothing about which resources exist.

use http::Method;

use super::rules::Attributes;
use crate::request::Query;

/// Subresources of a namespace (`/api/v1/namespaces/<ns>/status`), which must not be taken
/// for a resource type inside the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn from_request(method: &Method, path: &str, query: &Query) -> Attributes {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = || Attributes::non_resource(&method.as_str().to_ascii_lowercase(), path);
    // /api/<version>/... or /apis/<group>/<version>/...; shorter paths are discovery.
    let (group, rest) = match parts.as_slice() {
        ["api", _, _, ..] => ("", &parts[1..]),
        ["apis", g, _, _, ..] => (*g, &parts[2..]),
        _ => return non_resource(),
    };
    let version = rest[0];
    let mut rest = &rest[1..];
    let mut a = Attributes {
        resource_request: true,
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut watch_path = false;
    if let ["watch", tail @ ..] = rest
        && !tail.is_empty()
    {
        watch_path = true;
        rest = tail;
    }
    if let ["namespaces", ns, tail @ ..] = rest {
        a.namespace = ns.to_string();
        if let [first, ..] = tail
            && !NAMESPACE_SUBRESOURCES.contains(first)
        {
            rest = tail;
        }
    }
    if let Some(r) = rest.first() {
        a.resource = r.to_string();
    }
    if let Some(n) = rest.get(1) {
        a.name = n.to_string();
    }
    if let Some(s) = rest.get(2) {
        a.subresource = s.to_string();
    }
    let watching = watch_path || query.flag("watch").unwrap_or(false);
    a.verb = match *method {
        Method::GET | Method::HEAD if watching => "watch",
        Method::GET | Method::HEAD if a.name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if a.name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    // A list or watch selecting one name by field is about that object (as upstream), so
    // resourceNames rules can grant watching a single object.
    if a.name.is_empty()
        && matches!(a.verb.as_str(), "list" | "watch")
        && let Some(name) = exact_name(query.get("fieldSelector").unwrap_or(""))
    {
        a.name = name;
    }
    a
}

fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        let v = v.trim();
        (k.trim() == "metadata.name" && !v.is_empty() && !v.contains('/') && v != "." && v != "..")
            .then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, url: &str) -> Attributes {
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        from_request(&method, path, &Query::parse(Some(q)))
    }

    #[test]
    fn resource_paths() {
        let a = attrs(Method::GET, "/api/v1/namespaces/team/configmaps");
        assert_eq!(
            (
                a.verb.as_str(),
                a.group.as_str(),
                a.resource.as_str(),
                a.namespace.as_str()
            ),
            ("list", "", "configmaps", "team")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/team/configmaps/x");
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("get", "x"));
        let a = attrs(Method::GET, "/api/v1/configmaps?watch=1");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
        let a = attrs(Method::GET, "/api/v1/watch/namespaces/team/configmaps/x");
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("watch", "x", "team")
        );
        let a = attrs(
            Method::PATCH,
            "/apis/app.rancherdesktop.io/v1alpha1/apps/app/status",
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.group.as_str(),
                a.resource.as_str(),
                a.name.as_str(),
                a.subresource.as_str()
            ),
            ("patch", "app.rancherdesktop.io", "apps", "app", "status")
        );
        let a = attrs(Method::DELETE, "/api/v1/namespaces/team/configmaps");
        assert_eq!(a.verb, "deletecollection");
        let a = attrs(
            Method::GET,
            "/api/v1/namespaces/team/configmaps?fieldSelector=metadata.name%3Dx&watch=true",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "x"));
    }

    #[test]
    fn namespaces_are_their_own_namespace() {
        let a = attrs(Method::GET, "/api/v1/namespaces/team");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "team", "team")
        );
        let a = attrs(Method::PUT, "/api/v1/namespaces/team/finalize");
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str(), a.verb.as_str()),
            ("namespaces", "finalize", "update")
        );
        let a = attrs(Method::POST, "/api/v1/namespaces");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("create", ""));
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource() {
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/openapi/v3",
            "/healthz",
            "/version",
        ] {
            let a = attrs(Method::GET, p);
            assert!(!a.resource_request, "{p}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", p));
        }
    }
}
