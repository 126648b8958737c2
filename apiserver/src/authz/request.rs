//! What an HTTP request asks to do, read from its method, path and query the way
//! Kubernetes' `RequestInfoFactory` reads it. This looks only at the URL, so a request
//! for a resource that does not exist is still authorized (and refused) before it is
//! routed, as in Kubernetes.

use super::Attributes;
use crate::registry::UserInfo;
use axum::http::Method;

/// Namespace subresources: `/api/v1/namespaces/<name>/status` is the namespace's
/// status, not a resource called `status` in the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn query_value<'a>(query: &'a str, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The attributes of a request by `user`.
pub fn attributes(user: &UserInfo, method: &Method, path: &str, query: &str) -> Attributes {
    let non_resource = || Attributes {
        user: user.clone(),
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
        ..Default::default()
    };
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let (group, version, mut rest): (&str, &str, &[&str]) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return non_resource(),
    };
    if rest.is_empty() {
        // Discovery of a group version is not a resource request.
        return non_resource();
    }
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    if let ["watch", tail @ ..] = rest {
        if verb == "get" {
            verb = "watch".into();
        }
        rest = tail;
    }
    let mut namespace = String::new();
    if let ["namespaces", ns, tail @ ..] = rest {
        namespace = ns.to_string();
        if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) {
            rest = tail;
        }
    }
    let mut a = Attributes {
        user: user.clone(),
        resource_request: true,
        namespace,
        api_group: group.to_string(),
        api_version: version.to_string(),
        resource: rest.first().map(|s| s.to_string()).unwrap_or_default(),
        name: rest.get(1).map(|s| s.to_string()).unwrap_or_default(),
        subresource: rest.get(2).map(|s| s.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    if a.name.is_empty() && verb == "get" {
        verb = if query_value(query, "watch").is_some_and(|w| truthy(&w)) {
            "watch".into()
        } else {
            "list".into()
        };
        // A list or watch of one object by name is authorized as that object.
        if let Some(fs) = query_value(query, "fieldSelector") {
            if let Some(name) = fs
                .split(',')
                .find_map(|r| r.trim().strip_prefix("metadata.name="))
                .or_else(|| {
                    fs.split(',')
                        .find_map(|r| r.trim().strip_prefix("metadata.name=="))
                })
            {
                if keelson_apimachinery::validation::path_segment_name(name).is_empty() {
                    a.name = name.to_string();
                }
            }
        }
    }
    if a.name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    a.verb = verb;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: &str) -> Attributes {
        attributes(&UserInfo::default(), &method, path, query)
    }

    fn summary(a: &Attributes) -> (String, String, String, String, String, String) {
        (
            a.verb.clone(),
            a.api_group.clone(),
            a.resource.clone(),
            a.subresource.clone(),
            a.namespace.clone(),
            a.name.clone(),
        )
    }

    fn s(v: [&str; 6]) -> (String, String, String, String, String, String) {
        (
            v[0].into(),
            v[1].into(),
            v[2].into(),
            v[3].into(),
            v[4].into(),
            v[5].into(),
        )
    }

    #[test]
    fn requests_read_like_request_info() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "",
                ["list", "", "pods", "", "default", ""],
            ),
            (
                Method::GET,
                "/api/v1/pods",
                "watch=true",
                ["watch", "", "pods", "", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/a/pods/p",
                "",
                ["watch", "", "pods", "", "a", "p"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods",
                "fieldSelector=metadata.name%3Dp",
                ["list", "", "pods", "", "a", "p"],
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/pods/p/eviction",
                "",
                ["create", "", "pods", "eviction", "a", "p"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods/p/log",
                "",
                ["get", "", "pods", "log", "a", "p"],
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments",
                "",
                ["deletecollection", "apps", "deployments", "", "a", ""],
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                "",
                ["patch", "apps", "deployments", "scale", "a", "d"],
            ),
            // A namespace is its own namespace.
            (
                Method::GET,
                "/api/v1/namespaces/a",
                "",
                ["get", "", "namespaces", "", "a", "a"],
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/a/finalize",
                "",
                ["update", "", "namespaces", "finalize", "a", "a"],
            ),
            (
                Method::GET,
                "/api/v1/nodes/n/proxy/stats/summary",
                "",
                ["get", "", "nodes", "proxy", "", "n"],
            ),
        ];
        for (method, path, query, want) in cases {
            let a = attrs(method, path, query);
            assert!(a.resource_request, "{path}");
            assert_eq!(summary(&a), s(want), "{path}?{query}");
        }
        for path in [
            "/healthz",
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v3/api/v1",
        ] {
            let a = attrs(Method::GET, path, "");
            assert!(!a.resource_request, "{path}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", path));
        }
    }
}
