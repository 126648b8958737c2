//! Networking Granular Checks (upstream test/e2e/common/network/networking.go): a server
//! pod on every node, reached at its pod IP from a pod (intra-pod) and from a pod in the
//! node's own network namespace (`hostNetwork`, node-pod); each answer must name the
//! server it came from. Upstream's netexec `/dial` becomes busybox `wget` from the
//! client, and its `/hostname` is `httpd` serving the pod's hostname. The UDP variants
//! are not here: busybox has no UDP server (its `nc` has no `-u`).

use super::Test;
use crate::framework::*;
use serde_json::json;

const PORT: u16 = 8080;

/// One ready `netserver-<i>` pinned to each node; (pod name, pod IP) for each.
async fn netservers(ctx: &Ctx) -> Vec<(String, String)> {
    let nodes = node_internal_ips(&ctx.client).await;
    assert!(!nodes.is_empty(), "no node has an InternalIP");
    let mut names = Vec::new();
    for (i, (node, _)) in nodes.iter().enumerate() {
        let name = format!("netserver-{i}");
        let pod = ctx.pod(
            &name,
            json!({"restartPolicy": "Always", "nodeName": node,
                "containers": [ctx.hostname_server("webserver", PORT)]}),
        );
        ctx.create_pod(&pod).await;
        names.push(name);
    }
    let mut out = Vec::new();
    for name in names {
        let ip = pod_ip(&ctx.wait_ready(&name).await);
        out.push((name, ip));
    }
    out
}

/// From a client pod (spec `extra` merged in) every server answers with its own name.
async fn every_server_answers(ctx: &Ctx, client: &str, extra: serde_json::Value) {
    let servers = netservers(ctx).await;
    // The server's page is its hostname (netexec's `/hostname`).
    let urls: Vec<String> = servers
        .iter()
        .map(|(_, ip)| format!("http://{ip}:{PORT}/"))
        .collect();
    let log = ctx
        .script_output(client, &wget_script(&urls, 30), extra)
        .await;
    for ((name, _), url) in servers.iter().zip(&urls) {
        assert!(
            log.contains(&format!("OK {url} {name}")),
            "{url} did not answer with {name}:\n{log}"
        );
    }
}

async fn intra_pod_http(ctx: Ctx) {
    every_server_answers(&ctx, "test-container-pod", json!({})).await
}

async fn node_pod_http(ctx: Ctx) {
    every_server_answers(
        &ctx,
        "host-test-container-pod",
        json!({"hostNetwork": true}),
    )
    .await
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance] [Conformance]", intra_pod_http),
        test!("[sig-network] Networking Granular Checks: Pods should function for node-pod communication: http [LinuxOnly] [NodeConformance] [Conformance]", node_pod_http),
    ]
}
