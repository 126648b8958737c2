//! The Proxy conformance tests (upstream test/e2e/network/proxy.go): requests with each
//! HTTP method through `pods/proxy` and `services/proxy`, with and without a path, reach
//! an echo server that answers `{"Method": ..., "Body": "foo"}` (agnhost `porter
//! --json-response`); here the echo server is a shell handler behind busybox `nc -ll -e`.

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use serde_json::{json, Value};
use std::time::Duration;

const POD: &str = "agnhost";
const SERVICE: &str = "test-service";

/// Reads the request line and headers, answers with the method as JSON.
const ECHO_HANDLER: &str = r#"read -r method path version
while read -r line; do line=$(printf %s "$line" | tr -d '\r'); [ -z "$line" ] && break; done
body="{\"Method\":\"$method\",\"Path\":\"$path\",\"Body\":\"foo\"}"
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#body}" "$body""#;

async fn echo_pod_and_service(ctx: &Ctx) {
    let script = format!(
        "cat > /handler.sh <<'EOF'\n#!/bin/sh\n{ECHO_HANDLER}\nEOF\n\
         chmod +x /handler.sh; trap 'exit 0' TERM; nc -ll -p 80 -e /handler.sh & wait"
    );
    let server = with(
        ctx.sh("agnhost", &script),
        json!({"ports": [{"containerPort": 80, "protocol": "TCP"}]}),
    );
    let mut pod = ctx.pod(
        POD,
        json!({"restartPolicy": "Always", "containers": [server]}),
    );
    pod.metadata.labels = Some([("test".to_string(), "response".to_string())].into());
    ctx.create_pod(&pod).await;
    let svc: Service = obj(json!({"metadata": {"name": SERVICE}, "spec": {
        "selector": {"test": "response"},
        "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}));
    ctx.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .expect("creating the Service");
    ctx.wait_ready(POD).await;
}

/// Send `method` to `path` through the apiserver: (status, body).
async fn request(ctx: &Ctx, method: &str, path: &str) -> Result<(u16, String), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| e.to_string())?;
    let resp = ctx.client.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Upstream's `validateProxyVerbRequest`: 200 with the method echoed (retried while the
/// pod's endpoint becomes reachable).
async fn expect_echo(ctx: &Ctx, url: &str, method: &str) {
    poll(
        &format!("{method} {url}"),
        Duration::from_secs(30),
        || async {
            let (status, body) = request(ctx, method, url).await?;
            if status != 200 {
                return Err(format!("{status}: {body}"));
            }
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if v["Method"] == method && v["Body"] == "foo" {
                Ok(())
            } else {
                Err(body)
            }
        },
    )
    .await
}

/// Status only, for GET and HEAD (HEAD has no body).
async fn expect_ok(ctx: &Ctx, url: &str, method: &str) {
    poll(
        &format!("{method} {url}"),
        Duration::from_secs(30),
        || async {
            match request(ctx, method, url).await? {
                (200, _) => Ok(()),
                (s, body) => Err(format!("{s}: {body}")),
            }
        },
    )
    .await
}

async fn proxy_verbs(ctx: Ctx, with_path: bool) {
    echo_pod_and_service(&ctx).await;
    let ns = &ctx.ns;
    let bases = [
        format!("/api/v1/namespaces/{ns}/pods/{POD}/proxy"),
        format!("/api/v1/namespaces/{ns}/services/{SERVICE}/proxy"),
    ];
    for base in &bases {
        for method in ["DELETE", "OPTIONS", "PATCH", "POST", "PUT"] {
            let url = if with_path {
                format!("{base}/some/path/with/{method}")
            } else {
                format!("{base}?method={method}")
            };
            expect_echo(&ctx, &url, method).await;
        }
        for method in ["GET", "HEAD"] {
            let url = if with_path {
                format!("{base}/some/path/with/{method}")
            } else {
                format!("{base}?method={method}")
            };
            expect_ok(&ctx, &url, method).await;
        }
    }
}

async fn proxy_responses(ctx: Ctx) {
    proxy_verbs(ctx, false).await
}

async fn proxy_with_path_responses(ctx: Ctx) {
    proxy_verbs(ctx, true).await
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-network] Proxy version v1 A set of valid responses are returned for both pod and service Proxy [Conformance]", proxy_responses),
        test!("[sig-network] Proxy version v1 A set of valid responses are returned for both pod and service ProxyWithPath [Conformance]", proxy_with_path_responses),
    ]
}
