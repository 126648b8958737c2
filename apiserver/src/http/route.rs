//! URL paths to targets: discovery documents, health endpoints, and resource requests
//! (`/api/v1/namespaces/default/pods/web/status`).

use keelson_apimachinery::ApiError;
use keelson_resources::ResourceType;

/// A request on a resource.
#[derive(Debug, Clone)]
pub struct ResourceTarget {
    pub rt: &'static ResourceType,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

#[derive(Debug, Clone)]
pub enum Target {
    Root,
    Version,
    Health(&'static str),
    Metrics,
    /// `/.well-known/openid-configuration`: the service-account issuer's OIDC document.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the keys that verify service-account tokens.
    OpenIdKeys,
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String),
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourceTarget),
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Subresources of namespaces, which make `/api/v1/namespaces/<x>/<y>` ambiguous.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn resolve(path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let decoded: Vec<String> = segs
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [] => Ok(Target::Root),
        ["version"] => Ok(Target::Version),
        ["healthz"] | ["healthz", ..] => Ok(Target::Health("healthz")),
        ["livez"] | ["livez", ..] => Ok(Target::Health("livez")),
        ["readyz"] | ["readyz", ..] => Ok(Target::Health("readyz")),
        ["metrics"] => Ok(Target::Metrics),
        [".well-known", "openid-configuration"] => Ok(Target::OpenIdConfiguration),
        ["openid", "v1", "jwks"] => Ok(Target::OpenIdKeys),
        ["openapi", "v2"] => Ok(Target::OpenApiV2),
        ["openapi", "v3"] => Ok(Target::OpenApiV3Index),
        ["openapi", "v3", rest @ ..] => Ok(Target::OpenApiV3(rest.join("/"))),
        ["api"] => Ok(Target::CoreVersions),
        ["api", "v1"] => Ok(Target::ResourceList {
            group: String::new(),
            version: "v1".into(),
        }),
        ["api", "v1", rest @ ..] => resource("", "v1", rest),
        ["apis"] => Ok(Target::Groups),
        ["apis", g] => Ok(Target::Group(g.to_string())),
        ["apis", g, v] => Ok(Target::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Err(not_found()),
    }
}

fn resource(group: &str, version: &str, segs: &[&str]) -> Result<Target, ApiError> {
    let (watch_path, segs) = match segs {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, segs),
    };
    let (namespace, rest): (&str, &[&str]) = match segs {
        ["namespaces", ns, third, ..]
            if !(segs.len() == 3 && NAMESPACE_SUBRESOURCES.contains(third)) =>
        {
            (ns, &segs[2..])
        }
        _ => ("", segs),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, "", ""),
        [p, n] => (*p, *n, ""),
        [p, n, s] => (*p, *n, *s),
        // pods/x/proxy/<path> and friends.
        [p, n, s, ..] if *s == "proxy" => (*p, *n, *s),
        _ => return Err(not_found()),
    };
    let rt = keelson_resources::find_version(group, version, plural).ok_or_else(not_found)?;
    if !rt.namespaced && !namespace.is_empty() {
        return Err(not_found());
    }
    if !sub.is_empty() && !rt.subresources.iter().any(|s| s.paths().contains(&sub)) {
        return Err(not_found());
    }
    Ok(Target::Resource(ResourceTarget {
        rt,
        namespace: namespace.to_string(),
        name: name.to_string(),
        subresource: sub.to_string(),
        watch_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceTarget {
        match resolve(path).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_like_kubernetes() {
        let r = res("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (r.rt.plural, r.namespace.as_str(), r.name.as_str()),
            ("configmaps", "default", "x")
        );
        let r = res("/api/v1/configmaps");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("", ""));
        let r = res("/api/v1/watch/namespaces/default/configmaps");
        assert!(r.watch_path);
        assert!(matches!(
            resolve("/apis/apps/v1").unwrap(),
            Target::ResourceList { .. }
        ));
        assert_eq!(resolve("/api/v1/nothings").unwrap_err().code, 404);
        assert_eq!(
            resolve("/api/v1/namespaces/default/configmaps/x/bogus")
                .unwrap_err()
                .code,
            404
        );
    }
}
