//! What a container's environment holds: Variable Expansion (expansion.go), Downward API
//! env (downwardapi.go), ConfigMap and Secrets as env (configmap.go, secrets.go).

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PostParams;
use serde_json::{json, Value};

fn env_pod(ctx: &Ctx, name: &str, container: Value) -> k8s_openapi::api::core::v1::Pod {
    ctx.pod(name, json!({"containers": [container]}))
}

async fn compose_env(ctx: Ctx) {
    let c = with(
        ctx.sh("dapi-container", "env"),
        json!({"env": [
            {"name": "FOO", "value": "foo-value"},
            {"name": "BAR", "value": "bar-value"},
            {"name": "FOOBAR", "value": "$(FOO);;$(BAR)"},
        ]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "var-expansion", c),
        "dapi-container",
        &[
            "FOO=foo-value",
            "BAR=bar-value",
            "FOOBAR=foo-value;;bar-value",
        ],
    )
    .await;
}

async fn substitute_args(ctx: Ctx) {
    let c = json!({
        "name": "dapi-container", "image": ctx.image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c"], "args": ["echo TEST_VAR is $(TEST_VAR)"],
        "env": [{"name": "TEST_VAR", "value": "test-value"}],
    });
    ctx.expect_output(
        env_pod(&ctx, "var-expansion", c),
        "dapi-container",
        &["TEST_VAR is test-value"],
    )
    .await;
}

async fn substitute_command(ctx: Ctx) {
    let c = with(
        ctx.sh("dapi-container", "echo test-value is $(TEST_VAR)"),
        json!({"env": [{"name": "TEST_VAR", "value": "test-value"}]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "var-expansion", c),
        "dapi-container",
        &["test-value is test-value"],
    )
    .await;
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// Run `env` with `vars`, then check the lines `want(pod)` computes from the ended pod.
async fn downward_env(
    ctx: Ctx,
    vars: Value,
    resources: Value,
    want: fn(&k8s_openapi::api::core::v1::Pod) -> Vec<String>,
) {
    let c = with(
        ctx.sh("dapi-container", "env"),
        json!({"env": vars, "resources": resources}),
    );
    let pod = env_pod(&ctx, "downward-api", c);
    ctx.create_pod(&pod).await;
    let done = ctx.wait_finished("downward-api").await;
    assert_eq!(phase(&done), "Succeeded", "{:?}", done.status);
    let log = ctx.logs("downward-api", "dapi-container").await;
    for line in want(&done) {
        assert!(log.lines().any(|l| l == line), "env lacks {line:?}:\n{log}");
    }
}

async fn downward_name_namespace_ip(ctx: Ctx) {
    let vars = json!([
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
    ]);
    downward_env(ctx, vars, json!({}), |p| {
        let s = p.status.clone().unwrap_or_default();
        vec![
            "POD_NAME=downward-api".into(),
            format!(
                "POD_NAMESPACE={}",
                p.metadata.namespace.clone().unwrap_or_default()
            ),
            format!("POD_IP={}", s.pod_ip.unwrap_or_default()),
        ]
    })
    .await;
}

async fn downward_host_ip(ctx: Ctx) {
    downward_env(
        ctx,
        json!([field_env("HOST_IP", "status.hostIP")]),
        json!({}),
        |p| {
            vec![format!(
                "HOST_IP={}",
                p.status
                    .clone()
                    .unwrap_or_default()
                    .host_ip
                    .unwrap_or_default()
            )]
        },
    )
    .await;
}

async fn downward_uid(ctx: Ctx) {
    downward_env(
        ctx,
        json!([field_env("POD_UID", "metadata.uid")]),
        json!({}),
        |p| {
            vec![format!(
                "POD_UID={}",
                p.metadata.uid.clone().unwrap_or_default()
            )]
        },
    )
    .await;
}

fn resource_env(name: &str, resource: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"containerName": "dapi-container", "resource": resource}}})
}

async fn downward_limits_requests(ctx: Ctx) {
    let vars = json!([
        resource_env("CPU_LIMIT", "limits.cpu"),
        resource_env("MEMORY_LIMIT", "limits.memory"),
        resource_env("CPU_REQUEST", "requests.cpu"),
        resource_env("MEMORY_REQUEST", "requests.memory"),
    ]);
    // CPU is rounded up to whole cores (the divisor defaults to 1).
    let resources = json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}});
    downward_env(ctx, vars, resources, |_| {
        [
            "CPU_LIMIT=1",
            "MEMORY_LIMIT=67108864",
            "CPU_REQUEST=1",
            "MEMORY_REQUEST=33554432",
        ]
        .map(String::from)
        .to_vec()
    })
    .await;
}

async fn configmap_env_var(ctx: Ctx) {
    let cm: ConfigMap =
        obj(json!({"metadata": {"name": "configmap-test"}, "data": {"data-1": "value-1"}}));
    ctx.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let c = with(
        ctx.sh("env-test", "env"),
        json!({"env": [{"name": "CONFIG_DATA_1", "valueFrom": {"configMapKeyRef": {"name": "configmap-test", "key": "data-1"}}}]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "pod-configmaps", c),
        "env-test",
        &["CONFIG_DATA_1=value-1"],
    )
    .await;
}

async fn configmap_env_from(ctx: Ctx) {
    let cm: ConfigMap = obj(
        json!({"metadata": {"name": "configmap-test"}, "data": {"data-1": "value-1", "data-2": "value-2", "data-3": "value-3"}}),
    );
    ctx.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let c = with(
        // `env` itself, not `sh -c env`: busybox's ash drops variables whose names are
        // not shell identifiers (`data-1`) before running a child.
        ctx.sh("env-test", "env"),
        json!({"command": ["env"], "envFrom": [{"configMapRef": {"name": "configmap-test"}}, {"prefix": "p-", "configMapRef": {"name": "configmap-test"}}]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "pod-configmaps", c),
        "env-test",
        &[
            "data-1=value-1",
            "data-2=value-2",
            "data-3=value-3",
            "p-data-1=value-1",
            "p-data-2=value-2",
            "p-data-3=value-3",
        ],
    )
    .await;
}

async fn secret_env_var(ctx: Ctx) {
    let s: Secret =
        obj(json!({"metadata": {"name": "secret-test"}, "stringData": {"data-1": "value-1"}}));
    ctx.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    let c = with(
        ctx.sh("secret-env-test", "env"),
        json!({"env": [{"name": "SECRET_DATA", "valueFrom": {"secretKeyRef": {"name": "secret-test", "key": "data-1"}}}]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "pod-secrets", c),
        "secret-env-test",
        &["SECRET_DATA=value-1"],
    )
    .await;
}

async fn secret_env_from(ctx: Ctx) {
    let s: Secret = obj(
        json!({"metadata": {"name": "secret-test"}, "stringData": {"data-1": "value-1", "data-2": "value-2", "data-3": "value-3"}}),
    );
    ctx.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    let c = with(
        // `env` itself, not `sh -c env`: busybox's ash drops variables whose names are
        // not shell identifiers (`data-1`) before running a child.
        ctx.sh("env-test", "env"),
        json!({"command": ["env"], "envFrom": [{"secretRef": {"name": "secret-test"}}, {"prefix": "p-", "secretRef": {"name": "secret-test"}}]}),
    );
    ctx.expect_output(
        env_pod(&ctx, "pod-secrets", c),
        "env-test",
        &[
            "data-1=value-1",
            "data-2=value-2",
            "data-3=value-3",
            "p-data-1=value-1",
            "p-data-2=value-2",
            "p-data-3=value-3",
        ],
    )
    .await;
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-node] Variable Expansion should allow composing env vars into new env vars [NodeConformance] [Conformance]", compose_env),
        test!("[sig-node] Variable Expansion should allow substituting values in a container's args [NodeConformance] [Conformance]", substitute_args),
        test!("[sig-node] Variable Expansion should allow substituting values in a container's command [NodeConformance] [Conformance]", substitute_command),
        test!("[sig-node] Downward API should provide pod name, namespace and IP address as env vars [NodeConformance] [Conformance]", downward_name_namespace_ip),
        test!("[sig-node] Downward API should provide host IP as an env var [NodeConformance] [Conformance]", downward_host_ip),
        test!("[sig-node] Downward API should provide pod UID as env vars [NodeConformance] [Conformance]", downward_uid),
        test!("[sig-node] Downward API should provide container's limits.cpu/memory and requests.cpu/memory as env vars [NodeConformance] [Conformance]", downward_limits_requests),
        test!("[sig-node] ConfigMap should be consumable via environment variable [NodeConformance] [Conformance]", configmap_env_var),
        test!("[sig-node] ConfigMap should be consumable via the environment [NodeConformance] [Conformance]", configmap_env_from),
        test!("[sig-node] Secrets should be consumable from pods in env vars [NodeConformance] [Conformance]", secret_env_var),
        test!("[sig-node] Secrets should be consumable via the environment [NodeConformance] [Conformance]", secret_env_from),
    ]
}
