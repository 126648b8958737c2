//! `pods/proxy`, `services/proxy`, `nodes/proxy`.

use crate::support::{ENV, NODE};
use keelson_testkit::ok;

/// Give a pod the IP 127.0.0.1 (what its node agent would report).
fn set_pod_ip(name: &str) {
    ok(ENV.cluster.kubectl(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}"#,
    ]));
}

#[test]
fn pods_proxy_goes_to_the_pod_ip_with_every_verb() {
    let env = &*ENV;
    let port = env.echo_port;
    env.pod("web", NODE, &["app"], &[], &[port]);
    env.pod("no-ip", NODE, &["app"], &[], &[port]);
    set_pod_ip("web");
    let base = "/api/v1/namespaces/default/pods";

    let (ok_, out, err) = env.raw(&format!("{base}/web:{port}/proxy/some/path?x=1&y=two"));
    assert!(ok_, "{err}");
    assert_eq!(out, "GET /some/path?x=1&y=two auth=absent body=");
    // No port: the first container port; a named port; the bare proxy root.
    let (_, out, _) = env.raw(&format!("{base}/web/proxy/"));
    assert_eq!(out, "GET / auth=absent body=");
    let (_, out, _) = env.raw(&format!("{base}/http:web:web/proxy/named"));
    assert_eq!(out, "GET /named auth=absent body=");

    let body = env.cluster.dir.path().join("proxy-body.json");
    std::fs::write(&body, r#"{"posted":true}"#).unwrap();
    let out = ok(env.cluster.kubectl(&[
        "create",
        "--raw",
        &format!("{base}/web:{port}/proxy/submit"),
        "-f",
        body.to_str().unwrap(),
    ]));
    assert_eq!(out, r#"POST /submit auth=absent body={"posted":true}"#);
    let out = ok(env.cluster.kubectl(&[
        "replace",
        "--raw",
        &format!("{base}/web/proxy/item"),
        "-f",
        body.to_str().unwrap(),
    ]));
    assert!(out.starts_with("PUT /item "), "{out}");
    let out = ok(env
        .cluster
        .kubectl(&["delete", "--raw", &format!("{base}/web/proxy/item")]));
    assert!(out.starts_with("DELETE /item "), "{out}");

    // A bearer token authenticates the client here and is not passed on to the pod.
    let (mut conn, head) = env.raw_tls(&format!(
        "GET {base}/web/proxy/private HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        env.cluster.token
    ));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let all = conn.read_until(head, "body=");
    assert!(all.contains("GET /private auth=absent"), "{all}");

    let (ok_, _, err) = env.raw(&format!("{base}/no-ip/proxy/"));
    assert!(
        !ok_ && err.contains("(ServiceUnavailable)") && err.contains("no IP address"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/web:nosuchport/proxy/"));
    assert!(
        err.contains("(BadRequest)") && err.contains("nosuchport"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/ftp:web:21/proxy/"));
    assert!(err.contains("(BadRequest)"), "{err}");
}

/// Endpoints may not name loopback addresses (validation says so, as Kubernetes), so the
/// test writes this one into etcd itself: the proxy only reads it.
fn put_endpoints_in_etcd(name: &str, port: u16) {
    let eps = serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default", "uid": "0d6c5a0e-0000-4000-8000-000000000001",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "subsets": [{
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        }],
    });
    let out = std::process::Command::new("etcdctl")
        .args([
            &format!("--endpoints={}", ENV.cluster.etcd.url),
            "put",
            &format!("/registry/endpoints/default/{name}"),
            &eps.to_string(),
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn services_proxy_goes_to_a_ready_endpoint() {
    let env = &*ENV;
    for (name, port) in [("websvc", 80), ("empty", 80)] {
        env.apply(&serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": port, "targetPort": env.echo_port}]},
        }));
    }
    put_endpoints_in_etcd("websvc", env.echo_port);
    let base = "/api/v1/namespaces/default/services";
    keelson_testkit::eventually(
        std::time::Duration::from_secs(10),
        "endpoints readable",
        || {
            let (ok_, out, _) = env.raw(&format!("{base}/websvc:http/proxy/hello?q=1"));
            ok_.then_some(out)
        },
    );
    let (_, out, err) = env.raw(&format!("{base}/websvc:http/proxy/hello?q=1"));
    assert_eq!(out, "GET /hello?q=1 auth=absent body=", "{err}");
    let (_, out, _) = env.raw(&format!("{base}/websvc:80/proxy/by-number"));
    assert_eq!(out, "GET /by-number auth=absent body=");

    let (ok_, _, err) = env.raw(&format!("{base}/empty:http/proxy/"));
    assert!(!ok_);
    assert!(
        err.contains("(ServiceUnavailable)")
            && err.contains("no endpoints available for service \"empty\""),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/websvc:nope/proxy/"));
    assert!(
        err.contains("no service port \"nope\" found for service \"websvc\""),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/absent/proxy/"));
    assert!(err.contains("services \"absent\" not found"), "{err}");
}

#[test]
fn nodes_proxy_goes_to_the_agent_or_another_node_port() {
    let env = &*ENV;
    let (ok_, out, err) = env.raw(&format!("/api/v1/nodes/{NODE}/proxy/healthz"));
    assert!(ok_, "{err}");
    assert_eq!(out, "ok");
    let (_, out, _) = env.raw(&format!(
        "/api/v1/nodes/{NODE}/proxy/stats/summary?only=cpu"
    ));
    assert_eq!(out, "kubelet GET /stats/summary?only=cpu");
    let (_, out, _) = env.raw(&format!(
        "/api/v1/nodes/{NODE}:{}/proxy/healthz",
        env.kubelet_port
    ));
    assert_eq!(out, "ok");
    // Another port on the node: plain HTTP there.
    let (_, out, _) = env.raw(&format!(
        "/api/v1/nodes/{NODE}:{}/proxy/other",
        env.echo_port
    ));
    assert_eq!(out, "GET /other auth=absent body=");
    let (_, _, err) = env.raw("/api/v1/nodes/absent-node/proxy/healthz");
    assert!(err.contains("nodes \"absent-node\" not found"), "{err}");
}

#[test]
fn discovery_lists_what_answers() {
    let env = &*ENV;
    let (ok_, out, err) = env.raw("/api/v1");
    assert!(ok_, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |name: &str| {
        doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    for (name, kind, verbs) in [
        ("pods/log", "Pod", vec!["get"]),
        ("pods/exec", "PodExecOptions", vec!["create", "get"]),
        ("pods/attach", "PodAttachOptions", vec!["create", "get"]),
        (
            "pods/portforward",
            "PodPortForwardOptions",
            vec!["create", "get"],
        ),
        (
            "pods/proxy",
            "PodProxyOptions",
            vec!["create", "delete", "get", "patch", "update"],
        ),
        (
            "nodes/proxy",
            "NodeProxyOptions",
            vec!["create", "delete", "get", "patch", "update"],
        ),
        (
            "services/proxy",
            "ServiceProxyOptions",
            vec!["create", "delete", "get", "patch", "update"],
        ),
    ] {
        let r = find(name);
        assert_eq!(r["kind"], kind, "{name}");
        assert_eq!(r["verbs"], serde_json::json!(verbs), "{name}");
    }
}
