//! networking.k8s.io/v1 NetworkPolicy through the real kubectl: discovery (legacy and
//! aggregated), OpenAPI v2 and v3, apply (create, then a strategic merge patch),
//! defaults, the NAME/POD-SELECTOR/AGE table, describe, delete; bad input is a 422
//! with field causes and leaves nothing stored.

use crate::support::ENV;
use keelson_testkit::{fails, ok};
use serde_json::{json, Value};

const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
  namespace: default
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16]
    ports:
    - port: 80
    - port: 8000
      endPort: 9000
      protocol: UDP
  egress:
  - to:
    - namespaceSelector: {}
    ports:
    - port: dns
"#;

#[test]
fn discovery_and_openapi_list_network_policies() {
    let env = &*ENV;
    let (okay, out, err) = env.raw("/apis/networking.k8s.io/v1");
    assert!(okay, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let netpol = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "networkpolicies")
        .unwrap_or_else(|| panic!("no networkpolicies in {out}"));
    assert_eq!(netpol["kind"], "NetworkPolicy");
    assert_eq!(netpol["namespaced"], true);
    assert_eq!(netpol["shortNames"], json!(["netpol"]));
    let resources = ok(env
        .cluster
        .kubectl(&["api-resources", "--api-group=networking.k8s.io"]));
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("networkpolicies") && l.contains("netpol")),
        "{resources}"
    );
    let explain = ok(env
        .cluster
        .kubectl(&["explain", "networkpolicy.spec.ingress.ports"]));
    assert!(explain.contains("endPort"), "{explain}");
    let (okay, v3, err) = env.raw("/openapi/v3/apis/networking.k8s.io/v1");
    assert!(okay, "{err}");
    assert!(
        v3.contains("io.k8s.api.networking.v1.NetworkPolicySpec"),
        "{v3:.300}"
    );
}

#[test]
fn kubectl_apply_get_describe_delete() {
    let env = &*ENV;
    let k = |args: &[&str]| ok(env.cluster.kubectl(args));
    ok(env
        .cluster
        .kubectl_with("kubectl", &["apply", "-f", "-"], Some(POLICY)));
    let obj: Value =
        serde_json::from_str(&k(&["get", "netpol", "web-allow", "-o", "json"])).unwrap();
    let spec = &obj["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]), "{spec}");
    assert_eq!(spec["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ingress"][0]["ports"][1]["protocol"], "UDP");
    assert_eq!(
        spec["egress"][0]["ports"][0],
        json!({"port": "dns", "protocol": "TCP"})
    );
    assert_eq!(obj["metadata"]["generation"], 1);

    let table = k(&["get", "networkpolicies"]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NAME", "POD-SELECTOR", "AGE"], "{table}");
    assert!(
        lines.any(|l| l.split_whitespace().take(2).eq(["web-allow", "app=web"])),
        "{table}"
    );

    // A second apply is a strategic merge patch: the lists are replaced whole.
    let changed = POLICY
        .replace("app: web", "app: api")
        .replace("    - port: 80\n", "");
    let out = ok(env
        .cluster
        .kubectl_with("kubectl", &["apply", "-f", "-"], Some(&changed)));
    assert!(out.contains("configured"), "{out}");
    let obj: Value =
        serde_json::from_str(&k(&["get", "netpol", "web-allow", "-o", "json"])).unwrap();
    assert_eq!(
        obj["spec"]["podSelector"],
        json!({"matchLabels": {"app": "api"}})
    );
    assert_eq!(
        obj["spec"]["ingress"][0]["ports"],
        json!([{"port": 8000, "endPort": 9000, "protocol": "UDP"}])
    );
    assert_eq!(obj["metadata"]["generation"], 2);

    let described = k(&["describe", "netpol", "web-allow"]);
    for needle in [
        "app=api",
        "role=client",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "Ingress, Egress",
    ] {
        assert!(
            described.contains(needle),
            "{needle:?} missing in:\n{described}"
        );
    }
    k(&["delete", "netpol", "web-allow"]);
    let err = fails(env.cluster.kubectl(&["get", "netpol", "web-allow"]));
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn invalid_policies_are_unprocessable_with_causes() {
    let env = &*ENV;
    let bad = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Ingress"],
            "ingress": [{
                "ports": [{"protocol": "ICMP", "port": 70000}, {"port": "http", "endPort": 90}],
                "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.2.0.0/24"]}, "podSelector": {}}],
            }],
        },
    })
    .to_string();
    let (mut conn, head) = env.raw_tls(&format!(
        "POST /apis/networking.k8s.io/v1/namespaces/default/networkpolicies HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    ));
    assert!(head.starts_with("HTTP/1.1 422"), "{head}");
    let mut body = head;
    for cause in [
        r#""field":"spec.ingress[0].ports[0].protocol""#,
        r#""field":"spec.ingress[0].ports[0].port""#,
        r#""field":"spec.ingress[0].ports[1].endPort""#,
        r#""field":"spec.ingress[0].from[0]""#,
        r#""field":"spec.ingress[0].from[1]""#,
        r#""field":"spec.ingress[0].from[1].ipBlock.except[0]""#,
        r#""field":"spec.policyTypes[1]""#,
        r#""reason":"Invalid""#,
    ] {
        body = conn.read_until(body, cause);
    }
    assert!(body.contains("must be a strict subset of `cidr`"), "{body}");
    assert!(
        body.contains("may not specify both ipBlock and another peer"),
        "{body}"
    );
    // kubectl shows the same, and nothing was stored.
    let err = fails(
        env.cluster
            .kubectl_with("kubectl", &["apply", "-f", "-"], Some(&bad)),
    );
    assert!(
        err.contains("spec.policyTypes[1]: Duplicate value"),
        "{err}"
    );
    let err = fails(env.cluster.kubectl(&["get", "netpol", "bad"]));
    assert!(err.contains("NotFound"), "{err}");
}
