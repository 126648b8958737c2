//! Probing container (container_probe.go), Container Lifecycle Hook (lifecycle_hook.go)
//! and PreStop (node/pre_stop.go).
//!
//! The upstream tests wait minutes to be sure a container is *not* restarted; here the
//! observation windows are shorter (stated beside each) so a whole run stays short.

use super::Test;
use crate::framework::*;
use kube::api::DeleteParams;
use serde_json::{json, Value};
use std::time::Duration;

/// Watch the container's restart count as container_probe.go's `RunLivenessTest`: with
/// `expected > 0` it must reach that count within `within`; with 0 it must stay 0 for
/// the whole of `within`.
async fn expect_restarts(ctx: &Ctx, pod: &str, container: &str, expected: i32, within: Duration) {
    ctx.wait_pod(pod, "started", POD_START, |p| phase(p) != "Pending")
        .await;
    let deadline = tokio::time::Instant::now() + within;
    let mut last = 0;
    loop {
        let p = ctx.get_pod(pod).await;
        let n = restart_count(&p, container);
        assert!(n >= last, "restart count went down: {last} -> {n}");
        last = n;
        if expected > 0 && n >= expected {
            return;
        }
        assert!(
            expected > 0 || n == 0,
            "{pod}/{container} restarted {n} times; it must not be"
        );
        if tokio::time::Instant::now() >= deadline {
            assert_eq!(
                expected, 0,
                "{pod}/{container}: {n} restarts within {within:?}, want {expected}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A container serving /www over HTTP on 8080 with a /healthz page that disappears
/// after `healthy_for` seconds (never when None).
fn http_server(ctx: &Ctx, name: &str, healthy_for: Option<u32>) -> Value {
    let stop = match healthy_for {
        Some(s) => format!("sleep {s}; rm -f /www/healthz; "),
        None => String::new(),
    };
    ctx.sh(
        name,
        &format!(
            "mkdir -p /www && echo ok > /www/healthz && httpd -p 8080 -h /www; {stop}trap 'exit 0' TERM; while true; do sleep 1; done"
        ),
    )
}

fn exec_probe(cmd: &str, initial_delay: u32, failure_threshold: u32) -> Value {
    json!({"exec": {"command": ["sh", "-c", cmd]}, "initialDelaySeconds": initial_delay, "periodSeconds": 2, "failureThreshold": failure_threshold})
}

async fn readiness_initial_delay(ctx: Ctx) {
    let delay = 10;
    let c = with(
        ctx.sleeper("test-webserver"),
        json!({"readinessProbe": exec_probe("true", delay, 3)}),
    );
    ctx.create_pod(&ctx.pod(
        "test-webserver",
        json!({"restartPolicy": "Always", "containers": [c]}),
    ))
    .await;
    let p = ctx.wait_ready("test-webserver").await;
    let started = container_status(&p, "test-webserver")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone())
        .expect("running since");
    let ready_at = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.clone())
        .expect("Ready transition time");
    let waited = ready_at.0.as_second() - started.0.as_second();
    assert!(
        waited >= delay as i64,
        "ready {waited}s after the start, before the initial delay of {delay}s"
    );
    assert_eq!(restart_count(&p, "test-webserver"), 0);
}

async fn readiness_fails(ctx: Ctx) {
    let c = with(
        ctx.sleeper("test-webserver"),
        json!({"readinessProbe": exec_probe("false", 0, 1)}),
    );
    ctx.create_pod(&ctx.pod(
        "test-webserver",
        json!({"restartPolicy": "Always", "containers": [c]}),
    ))
    .await;
    ctx.wait_running("test-webserver").await;
    // Upstream watches for a minute; 15s here.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        let p = ctx.get_pod("test-webserver").await;
        assert_ne!(condition(&p, "Ready"), Some(true), "became ready");
        assert_eq!(restart_count(&p, "test-webserver"), 0, "restarted");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn liveness_pod(ctx: &Ctx, container: Value) {
    ctx.create_pod(&ctx.pod(
        "liveness",
        json!({"restartPolicy": "Always", "containers": [container]}),
    ))
    .await;
}

async fn liveness_exec_restart(ctx: Ctx) {
    let c = with(
        ctx.sh("agnhost-container", "echo ok > /tmp/health; sleep 10; rm -f /tmp/health; trap 'exit 0' TERM; while true; do sleep 1; done"),
        json!({"livenessProbe": exec_probe("cat /tmp/health", 15, 1)}),
    );
    liveness_pod(&ctx, c).await;
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        1,
        Duration::from_secs(60),
    )
    .await;
}

async fn liveness_exec_no_restart(ctx: Ctx) {
    let c = with(
        ctx.sh(
            "agnhost-container",
            "echo ok > /tmp/health; trap 'exit 0' TERM; while true; do sleep 1; done",
        ),
        json!({"livenessProbe": exec_probe("cat /tmp/health", 5, 1)}),
    );
    liveness_pod(&ctx, c).await;
    // Upstream watches for 4 minutes; 20s here (several probe periods).
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        0,
        Duration::from_secs(20),
    )
    .await;
}

fn http_probe(initial_delay: u32) -> Value {
    json!({"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": initial_delay, "periodSeconds": 2, "failureThreshold": 1})
}

async fn liveness_http_restart(ctx: Ctx) {
    let c = with(
        http_server(&ctx, "agnhost-container", Some(10)),
        json!({"livenessProbe": http_probe(15)}),
    );
    liveness_pod(&ctx, c).await;
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        1,
        Duration::from_secs(60),
    )
    .await;
}

async fn liveness_http_no_restart(ctx: Ctx) {
    let c = with(
        http_server(&ctx, "agnhost-container", None),
        json!({"livenessProbe": http_probe(5)}),
    );
    liveness_pod(&ctx, c).await;
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        0,
        Duration::from_secs(20),
    )
    .await;
}

async fn liveness_tcp_no_restart(ctx: Ctx) {
    let c = with(
        http_server(&ctx, "agnhost-container", None),
        json!({"livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 1}}),
    );
    liveness_pod(&ctx, c).await;
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        0,
        Duration::from_secs(20),
    )
    .await;
}

async fn monotonic_restart_count(ctx: Ctx) {
    let c = with(
        http_server(&ctx, "agnhost-container", Some(5)),
        json!({"livenessProbe": http_probe(5)}),
    );
    liveness_pod(&ctx, c).await;
    // Upstream counts up to 5 restarts (minutes of back-off); 3 here. expect_restarts
    // fails if the count ever goes down.
    expect_restarts(
        &ctx,
        "liveness",
        "agnhost-container",
        3,
        Duration::from_secs(150),
    )
    .await;
}

// ---- lifecycle hooks ------------------------------------------------------------------

/// A CGI script for busybox httpd: `?msg=X` records `GET msg=X`; without a query it
/// returns what was recorded. The handler's main process prints the record to its log.
const HANDLER_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nif [ -n \"$QUERY_STRING\" ]; then echo \"GET $QUERY_STRING\" >> /tmp/log; echo ok; else cat /tmp/log; fi";

/// The pod that hooks call (lifecycle_hook.go's `pod-handle-http-request`); its IP.
async fn start_handler(ctx: &Ctx) -> String {
    let c = with(
        ctx.sh(
            "container-handle-http-request",
            "mkdir -p /www/cgi-bin && printf '%s\\n' \"$HANDLER_CGI\" > /www/cgi-bin/echo && chmod 755 /www/cgi-bin/echo && touch /tmp/log && httpd -p 8080 -h /www && exec tail -f /tmp/log",
        ),
        json!({
            "env": [{"name": "HANDLER_CGI", "value": HANDLER_CGI}],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        }),
    );
    ctx.create_pod(&ctx.pod(
        "pod-handle-http-request",
        json!({"restartPolicy": "Always", "containers": [c]}),
    ))
    .await;
    let p = ctx.wait_ready("pod-handle-http-request").await;
    p.status
        .and_then(|s| s.pod_ip)
        .expect("the handler pod's IP")
}

fn url(ip: &str, msg: &str) -> String {
    format!("http://{ip}:8080/cgi-bin/echo?msg={msg}")
}

fn exec_hook(ip: &str, msg: &str) -> Value {
    json!({"exec": {"command": ["sh", "-c", format!("wget -qO- '{}'", url(ip, msg))]}})
}

fn http_hook(ip: &str, msg: &str) -> Value {
    json!({"httpGet": {"host": ip, "port": 8080, "path": format!("/cgi-bin/echo?msg={msg}")}})
}

async fn hooked_pod(ctx: &Ctx, name: &str, lifecycle: Value) {
    let c = with(ctx.sleeper(name), json!({"lifecycle": lifecycle}));
    ctx.create_pod(&ctx.pod(name, json!({"restartPolicy": "Always", "containers": [c]})))
        .await;
    ctx.wait_running(name).await;
}

async fn handler_saw(ctx: &Ctx, msg: &str) {
    ctx.wait_log(
        "pod-handle-http-request",
        "container-handle-http-request",
        &format!("GET msg={msg}"),
        Duration::from_secs(30),
    )
    .await;
}

async fn delete_and_wait(ctx: &Ctx, name: &str) {
    ctx.pods()
        .delete(name, &DeleteParams::default().grace_period(15))
        .await
        .expect("deleting the hooked pod");
    ctx.wait_pod_gone(name).await;
}

async fn poststart_exec(ctx: Ctx) {
    let ip = start_handler(&ctx).await;
    hooked_pod(
        &ctx,
        "pod-with-poststart-exec-hook",
        json!({"postStart": exec_hook(&ip, "poststart")}),
    )
    .await;
    handler_saw(&ctx, "poststart").await;
}

async fn poststart_http(ctx: Ctx) {
    let ip = start_handler(&ctx).await;
    hooked_pod(
        &ctx,
        "pod-with-poststart-http-hook",
        json!({"postStart": http_hook(&ip, "poststart")}),
    )
    .await;
    handler_saw(&ctx, "poststart").await;
}

async fn prestop_exec(ctx: Ctx) {
    let ip = start_handler(&ctx).await;
    hooked_pod(
        &ctx,
        "pod-with-prestop-exec-hook",
        json!({"preStop": exec_hook(&ip, "prestop")}),
    )
    .await;
    delete_and_wait(&ctx, "pod-with-prestop-exec-hook").await;
    handler_saw(&ctx, "prestop").await;
}

async fn prestop_http(ctx: Ctx) {
    let ip = start_handler(&ctx).await;
    hooked_pod(
        &ctx,
        "pod-with-prestop-http-hook",
        json!({"preStop": http_hook(&ip, "prestop")}),
    )
    .await;
    delete_and_wait(&ctx, "pod-with-prestop-http-hook").await;
    handler_saw(&ctx, "prestop").await;
}

/// pre_stop.go: a tester pod's preStop hook reports to a server pod; the server's state
/// is read back through the apiserver's pods/proxy.
async fn prestop_reaches_server(ctx: Ctx) {
    let ip = start_handler(&ctx).await;
    hooked_pod(
        &ctx,
        "tester",
        json!({"preStop": exec_hook(&ip, "prestop")}),
    )
    .await;
    delete_and_wait(&ctx, "tester").await;
    let path = format!(
        "/api/v1/namespaces/{}/pods/pod-handle-http-request:8080/proxy/cgi-bin/echo",
        ctx.ns
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let req = http::Request::get(&path).body(Vec::new()).expect("request");
        let state = ctx.client.request_text(req).await;
        match state {
            Ok(body) if body.contains("GET msg=prestop") => return,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("the server never recorded the preStop call: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-node] Probing container with readiness probe should not be ready before initial delay and never restart [NodeConformance] [Conformance]", readiness_initial_delay),
        test!("[sig-node] Probing container with readiness probe that fails should never be ready and never restart [NodeConformance] [Conformance]", readiness_fails),
        test!("[sig-node] Probing container should be restarted with a exec \"cat /tmp/health\" liveness probe [NodeConformance] [Conformance]", liveness_exec_restart),
        test!("[sig-node] Probing container should *not* be restarted with a exec \"cat /tmp/health\" liveness probe [NodeConformance] [Conformance]", liveness_exec_no_restart),
        test!("[sig-node] Probing container should be restarted with a /healthz http liveness probe [NodeConformance] [Conformance]", liveness_http_restart),
        test!("[sig-node] Probing container should *not* be restarted with a /healthz http liveness probe [NodeConformance] [Conformance]", liveness_http_no_restart),
        test!("[sig-node] Probing container should *not* be restarted with a tcp:8080 liveness probe [NodeConformance] [Conformance]", liveness_tcp_no_restart),
        test!("[sig-node] Probing container should have monotonically increasing restart count [NodeConformance] [Conformance]", monotonic_restart_count),
        test!("[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly [NodeConformance] [Conformance]", poststart_exec),
        test!("[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart http hook properly [NodeConformance] [Conformance]", poststart_http),
        test!("[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute prestop exec hook properly [NodeConformance] [Conformance]", prestop_exec),
        test!("[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute prestop http hook properly [NodeConformance] [Conformance]", prestop_http),
        test!("[sig-node] PreStop should call prestop when killing a pod [Conformance]", prestop_reaches_server),
    ]
}
