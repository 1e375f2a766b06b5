//! Impersonation (`kubectl --as`, `--as-group`): the `Impersonate-*` headers switch the
//! request's identity when the caller may `impersonate` each requested user, group, uid and
//! ServiceAccount, as upstream's impersonation filter decides it.

use http::HeaderMap;

use super::Authorizer;
use super::rules::Attributes;
use crate::auth::{SERVICE_ACCOUNT_PREFIX, UserInfo, service_account_groups};
use crate::error::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The identity the request acts as: `user` itself without impersonation headers, the
/// impersonated one when every part is allowed, else 403 (400 for groups without a user).
pub fn resolve(z: &Authorizer, user: UserInfo, h: &HeaderMap) -> Result<UserInfo, ApiError> {
    let names = values(h, USER);
    let groups = values(h, GROUP);
    let uids = values(h, UID);
    let has_extra = h.keys().any(|k| k.as_str().starts_with(EXTRA_PREFIX));
    let Some(name) = names.first().copied() else {
        if groups.is_empty() && uids.is_empty() && !has_extra {
            return Ok(user);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups, uid or extra fields without impersonating a user",
        ));
    };
    let check = |a: Attributes| -> Result<(), ApiError> {
        let d = z.authorize(&user, &a);
        if d.allowed {
            Ok(())
        } else {
            Err(super::forbidden(&user, &a, &d.reason))
        }
    };
    let impersonate = |group: &str, resource: &str, namespace: &str, name: &str| {
        let mut a = Attributes::resource("impersonate", group, resource, namespace);
        a.name = name.to_string();
        a
    };
    let mut out_groups: Vec<String> = Vec::new();
    match name
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            check(impersonate("", "serviceaccounts", ns, sa))?;
            if groups.is_empty() {
                out_groups = service_account_groups(name);
            }
        }
        None => check(impersonate("", "users", "", name))?,
    }
    for g in &groups {
        check(impersonate("", "groups", "", g))?;
        out_groups.push(g.to_string());
    }
    let uid = match uids.first() {
        Some(u) => {
            check(impersonate("authentication.k8s.io", "uids", "", u))?;
            u.to_string()
        }
        None => String::new(),
    };
    if has_extra {
        // Extra fields carry nothing rdd's authorizer looks at; refusing them is the honest
        // answer rather than dropping them silently.
        return Err(ApiError::bad_request(
            "impersonating extra user fields is not supported",
        ));
    }
    if name != "system:anonymous" && !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        username: name.to_string(),
        uid,
        groups: out_groups,
    })
}
