//! A Service without a selector, fronting a backend through an Endpoints object written
//! by hand (the classic way to reach a database outside the cluster), answers at its
//! ClusterIP from a pod on the other node: the EndpointSliceMirroring controller turns
//! the Endpoints into the EndpointSlice that keelson-proxy reads. Here the "external"
//! backend is a busybox httpd pod addressed by its IP only.

use std::time::Duration;

use keelson_e2e::net::{get_json, kubectl, until};
use keelson_e2e::NODE_CLUSTER;
use keelson_testkit::ok;

#[test]
fn a_selectorless_service_with_handwritten_endpoints_answers_at_its_cluster_ip() {
    let c = &*NODE_CLUSTER;
    let ns = "mirroring";
    kubectl(&["create", "namespace", ns]);
    let (server_node, client_node) = (c.nodes[0].name(), c.nodes[1].name());
    c.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: backend}}
spec:
  nodeName: {server_node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: keelson.local/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo mirrored-backend > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {client_node}
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: external-db}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#
        ),
    );
    let backend = c.wait_running(ns, "backend", true);
    let backend_ip = backend["status"]["podIP"].as_str().unwrap().to_string();
    c.wait_running(ns, "client", true);
    let svc = get_json(&["get", "service", "-n", ns, "external-db"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    // The Endpoints a user writes: the backend's IP, no targetRef (as for a host
    // outside the cluster).
    c.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Endpoints
metadata: {{name: external-db}}
subsets:
- addresses: [{{ip: "{backend_ip}"}}]
  ports: [{{name: http, port: 8080}}]
"#
        ),
    );
    let slice = until(
        "the mirrored EndpointSlice",
        Duration::from_secs(30),
        || {
            let v = get_json(&[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=external-db",
            ]);
            let items = v["items"].as_array().cloned().unwrap_or_default();
            match items.as_slice() {
                [s] if s["endpoints"][0]["addresses"][0] == backend_ip.as_str() => Ok(s.clone()),
                _ => Err(format!("{items:?}")),
            }
        },
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");

    // From the pod on the other node, through the ClusterIP.
    let url = format!("http://{cluster_ip}/");
    let started = std::time::Instant::now();
    until(
        &format!("{url} from the client"),
        Duration::from_secs(30),
        || {
            let out = c.kubectl(&[
                "exec", "-n", ns, "client", "--", "timeout", "5", "wget", "-qO-", &url,
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success() && text.contains("mirrored-backend"))
                .then_some(())
                .ok_or(text)
        },
    );
    println!(
        "the ClusterIP answered {:?} after the slice was seen",
        started.elapsed()
    );

    // Deleting the Endpoints takes the slice away, and the Service stops answering.
    kubectl(&["delete", "endpoints", "-n", ns, "external-db"]);
    until("the slice removed", Duration::from_secs(30), || {
        let v = get_json(&[
            "get",
            "endpointslices",
            "-n",
            ns,
            "-l",
            "kubernetes.io/service-name=external-db",
        ]);
        let n = v["items"].as_array().map_or(0, Vec::len);
        (n == 0).then_some(()).ok_or(format!("{n} slices"))
    });
    until("the ClusterIP refuses", Duration::from_secs(30), || {
        let out = c.kubectl(&[
            "exec", "-n", ns, "client", "--", "timeout", "5", "wget", "-qO-", &url,
        ]);
        (!out.status.success())
            .then_some(())
            .ok_or("still answering".to_string())
    });

    ok(c.kubectl(&["delete", "namespace", ns, "--wait=false"]));
}
