//! Volumes (sig-storage): configMap, secret, downwardAPI, projected and emptyDir
//! contents, modes and updates (test/e2e/common/storage/*.go). The upstream tests read
//! files with agnhost's mounttest; here busybox's `cat` and `stat` print the same facts.

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;

const MOUNT: &str = "/etc/test-volume";

async fn make_configmap(ctx: &Ctx, name: &str, data: Value) {
    let cm: ConfigMap = obj(json!({"metadata": {"name": name}, "data": data}));
    ctx.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("creating the configmap");
}

async fn make_secret(ctx: &Ctx, name: &str, data: Value) {
    let s: Secret = obj(json!({"metadata": {"name": name}, "stringData": data}));
    ctx.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .expect("creating the secret");
}

/// A one-shot pod with `volume` mounted at MOUNT running `script`; its log must hold
/// every `expected` string. `pod_extra` merges into the pod spec (securityContext...).
async fn volume_output(
    ctx: &Ctx,
    volume: Value,
    pod_extra: Value,
    script: &str,
    expected: &[&str],
) {
    let mut c = ctx.sh("test-container", script);
    c["volumeMounts"] = json!([{"name": "test-volume", "mountPath": MOUNT}]);
    let mut spec =
        json!({"containers": [c], "volumes": [with(json!({"name": "test-volume"}), volume)]});
    merge(&mut spec, pod_extra);
    ctx.expect_output(ctx.pod("pod-volume-test", spec), "test-container", expected)
        .await;
}

/// Print a file's content and its permissions (following the AtomicWriter symlinks).
fn show(path: &str) -> String {
    format!("cat {MOUNT}/{path}; echo; stat -Lc 'perms %A' {MOUNT}/{path}")
}

fn non_root() -> Value {
    json!({"securityContext": {"runAsUser": 1000}})
}

// ---- configMap ------------------------------------------------------------------------

fn cm_volume(extra: Value) -> Value {
    json!({"configMap": with(json!({"name": "configmap-test-volume"}), extra)})
}

async fn cm_case(ctx: Ctx, volume: Value, pod: Value, path: &str, perms: &str) {
    make_configmap(
        &ctx,
        "configmap-test-volume",
        json!({"data-1": "value-1", "data-2": "value-2"}),
    )
    .await;
    let want = format!("perms {perms}");
    let value = if path.ends_with("data-2") {
        "value-2"
    } else {
        "value-1"
    };
    volume_output(&ctx, volume, pod, &show(path), &[value, &want]).await;
}

async fn cm_default(ctx: Ctx) {
    cm_case(ctx, cm_volume(json!({})), json!({}), "data-1", "-rw-r--r--").await;
}
async fn cm_non_root(ctx: Ctx) {
    cm_case(
        ctx,
        cm_volume(json!({})),
        non_root(),
        "data-1",
        "-rw-r--r--",
    )
    .await;
}
async fn cm_default_mode(ctx: Ctx) {
    cm_case(
        ctx,
        cm_volume(json!({"defaultMode": 0o400})),
        json!({}),
        "data-1",
        "-r--------",
    )
    .await;
}
fn cm_mapped(mode: Option<i32>) -> Value {
    let mut item = json!({"key": "data-2", "path": "path/to/data-2"});
    if let Some(m) = mode {
        item["mode"] = json!(m);
    }
    cm_volume(json!({"items": [item]}))
}
async fn cm_mappings(ctx: Ctx) {
    cm_case(
        ctx,
        cm_mapped(None),
        json!({}),
        "path/to/data-2",
        "-rw-r--r--",
    )
    .await;
}
async fn cm_mappings_mode(ctx: Ctx) {
    cm_case(
        ctx,
        cm_mapped(Some(0o400)),
        json!({}),
        "path/to/data-2",
        "-r--------",
    )
    .await;
}
async fn cm_mappings_non_root(ctx: Ctx) {
    cm_case(
        ctx,
        cm_mapped(None),
        non_root(),
        "path/to/data-2",
        "-rw-r--r--",
    )
    .await;
}

async fn cm_multiple_volumes(ctx: Ctx) {
    make_configmap(&ctx, "configmap-test-volume", json!({"data-1": "value-1"})).await;
    let mut c = ctx.sh(
        "test-container",
        "cat /etc/configmap-volume/data-1; echo; cat /etc/configmap-volume-2/data-1; echo",
    );
    c["volumeMounts"] = json!([
        {"name": "configmap-volume", "mountPath": "/etc/configmap-volume"},
        {"name": "configmap-volume-2", "mountPath": "/etc/configmap-volume-2"},
    ]);
    let pod = ctx.pod(
        "pod-configmaps",
        json!({
            "containers": [c],
            "volumes": [
                {"name": "configmap-volume", "configMap": {"name": "configmap-test-volume"}},
                {"name": "configmap-volume-2", "configMap": {"name": "configmap-test-volume"}},
            ],
        }),
    );
    ctx.expect_output(pod, "test-container", &["value-1\nvalue-1"])
        .await;
}

async fn cm_binary_data(ctx: Ctx) {
    let cm: ConfigMap = obj(json!({
        "metadata": {"name": "configmap-test-upd"},
        "data": {"data-1": "value-1"},
        "binaryData": {"dump.bin": "3sr+utD+7Q=="},
    }));
    ctx.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    volume_output(
        &ctx,
        json!({"configMap": {"name": "configmap-test-upd"}}),
        json!({}),
        &format!("cat {MOUNT}/data-1; echo; od -An -tx1 {MOUNT}/dump.bin | tr -d ' \\n'; echo"),
        &["value-1", "decafebad0feed"],
    )
    .await;
}

/// A pod that prints `name=<content of MOUNT-name/key>` lines every second, for the
/// update tests.
async fn watcher_pod(ctx: &Ctx, volumes: &[(&str, Value, &str)]) {
    let mut script = String::from("while true; do ");
    let mut mounts = Vec::new();
    let mut vols = Vec::new();
    for (name, source, key) in volumes {
        script += &format!("echo \"{name}=$(cat /etc/{name}/{key} 2>/dev/null)\"; ");
        mounts.push(json!({"name": name, "mountPath": format!("/etc/{name}")}));
        vols.push(with(json!({"name": name}), source.clone()));
    }
    script += "sleep 1; done";
    let mut c = ctx.sh("test-container", &script);
    c["volumeMounts"] = json!(mounts);
    ctx.create_pod(&ctx.pod(
        "pod-updates",
        json!({"containers": [c], "volumes": vols, "terminationGracePeriodSeconds": 1}),
    ))
    .await;
    ctx.wait_running("pod-updates").await;
}

/// Wait until the latest few log lines of the watcher pod hold `line`.
async fn wait_line(ctx: &Ctx, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let lp = kube::api::LogParams {
            container: Some("test-container".into()),
            tail_lines: Some(6),
            ..Default::default()
        };
        let log = ctx
            .pods()
            .logs("pod-updates", &lp)
            .await
            .unwrap_or_default();
        if log.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the volume never showed {line:?}; last lines:\n{log}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn cm_updates(ctx: Ctx) {
    make_configmap(&ctx, "configmap-test-upd", json!({"data-1": "value-1"})).await;
    watcher_pod(
        &ctx,
        &[(
            "configmap-volume",
            json!({"configMap": {"name": "configmap-test-upd"}}),
            "data-1",
        )],
    )
    .await;
    wait_line(&ctx, "configmap-volume=value-1").await;
    ctx.api::<ConfigMap>()
        .patch(
            "configmap-test-upd",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"data-1": "value-2"}})),
        )
        .await
        .expect("updating the configmap");
    wait_line(&ctx, "configmap-volume=value-2").await;
}

/// "optional updates": an optional source created, one updated, one deleted while the
/// pod runs; the volumes follow.
async fn optional_updates(ctx: Ctx, secret: bool, projected: bool) {
    let source = |name: &str| {
        let s = if secret {
            json!({"secret": {"secretName": name, "optional": true}})
        } else {
            json!({"configMap": {"name": name, "optional": true}})
        };
        if projected {
            let inner = if secret {
                json!({"secret": {"name": name, "optional": true}})
            } else {
                s.clone()
            };
            json!({"projected": {"sources": [inner]}})
        } else {
            s
        }
    };
    let make = |name: &'static str, data: Value| {
        let ctx = ctx.clone();
        async move {
            if secret {
                make_secret(&ctx, name, data).await
            } else {
                make_configmap(&ctx, name, data).await
            }
        }
    };
    make("upd", json!({"data-1": "value-1"})).await;
    make("del", json!({"data-1": "value-1"})).await;
    watcher_pod(
        &ctx,
        &[
            ("create", source("cre"), "data-1"),
            ("update", source("upd"), "data-3"),
            ("delete", source("del"), "data-1"),
        ],
    )
    .await;
    wait_line(&ctx, "delete=value-1").await;
    wait_line(&ctx, "create=").await;
    make("cre", json!({"data-1": "value-1"})).await;
    let patch = Patch::Merge(if secret {
        json!({"stringData": {"data-3": "value-3"}})
    } else {
        json!({"data": {"data-3": "value-3"}})
    });
    if secret {
        ctx.api::<Secret>()
            .patch("upd", &PatchParams::default(), &patch)
            .await
            .expect("update");
        ctx.api::<Secret>()
            .delete("del", &Default::default())
            .await
            .expect("delete");
    } else {
        ctx.api::<ConfigMap>()
            .patch("upd", &PatchParams::default(), &patch)
            .await
            .expect("update");
        ctx.api::<ConfigMap>()
            .delete("del", &Default::default())
            .await
            .expect("delete");
    }
    wait_line(&ctx, "create=value-1").await;
    wait_line(&ctx, "update=value-3").await;
    wait_line(&ctx, "delete=").await;
}

async fn cm_optional_updates(ctx: Ctx) {
    optional_updates(ctx, false, false).await;
}
async fn secret_optional_updates(ctx: Ctx) {
    optional_updates(ctx, true, false).await;
}
async fn projected_cm_optional_updates(ctx: Ctx) {
    optional_updates(ctx, false, true).await;
}
async fn projected_secret_optional_updates(ctx: Ctx) {
    optional_updates(ctx, true, true).await;
}

async fn cm_immutable(ctx: Ctx) {
    let api = ctx.api::<ConfigMap>();
    let cm: ConfigMap = obj(
        json!({"metadata": {"name": "immutable"}, "data": {"data-1": "value-1"}, "immutable": true}),
    );
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let changed = api
        .patch(
            "immutable",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"data-1": "value-2"}})),
        )
        .await;
    assert_eq!(
        status_of(changed).code,
        422,
        "data of an immutable configmap changed"
    );
    let unlocked = api
        .patch(
            "immutable",
            &PatchParams::default(),
            &Patch::Merge(json!({"immutable": false})),
        )
        .await;
    assert_eq!(
        status_of(unlocked).code,
        422,
        "an immutable configmap became mutable"
    );
    api.patch(
        "immutable",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"label1": "value1"}}})),
    )
    .await
    .expect("metadata may still change");
    api.delete("immutable", &Default::default())
        .await
        .expect("delete");
}

async fn secret_immutable(ctx: Ctx) {
    let api = ctx.api::<Secret>();
    let s: Secret = obj(
        json!({"metadata": {"name": "immutable"}, "stringData": {"data-1": "value-1"}, "immutable": true}),
    );
    api.create(&PostParams::default(), &s)
        .await
        .expect("create");
    let changed = api
        .patch(
            "immutable",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"data-1": "value-2"}})),
        )
        .await;
    assert_eq!(
        status_of(changed).code,
        422,
        "data of an immutable secret changed"
    );
    let unlocked = api
        .patch(
            "immutable",
            &PatchParams::default(),
            &Patch::Merge(json!({"immutable": false})),
        )
        .await;
    assert_eq!(
        status_of(unlocked).code,
        422,
        "an immutable secret became mutable"
    );
    api.delete("immutable", &Default::default())
        .await
        .expect("delete");
}

// ---- secret ---------------------------------------------------------------------------

fn secret_volume(extra: Value) -> Value {
    json!({"secret": with(json!({"secretName": "secret-test"}), extra)})
}

async fn secret_case(ctx: Ctx, volume: Value, pod: Value, path: &str, perms: &str) {
    make_secret(
        &ctx,
        "secret-test",
        json!({"data-1": "value-1", "data-2": "value-2"}),
    )
    .await;
    let want = format!("perms {perms}");
    let value = if path.ends_with("data-2") {
        "value-2"
    } else {
        "value-1"
    };
    volume_output(&ctx, volume, pod, &show(path), &[value, &want]).await;
}

async fn secret_default(ctx: Ctx) {
    secret_case(
        ctx,
        secret_volume(json!({})),
        json!({}),
        "data-1",
        "-rw-r--r--",
    )
    .await;
}
async fn secret_default_mode(ctx: Ctx) {
    secret_case(
        ctx,
        secret_volume(json!({"defaultMode": 0o400})),
        json!({}),
        "data-1",
        "-r--------",
    )
    .await;
}
async fn secret_mappings(ctx: Ctx) {
    let v = secret_volume(json!({"items": [{"key": "data-2", "path": "new-path-data-2"}]}));
    secret_case(ctx, v, json!({}), "new-path-data-2", "-rw-r--r--").await;
}
async fn secret_mappings_mode(ctx: Ctx) {
    let v = secret_volume(
        json!({"items": [{"key": "data-2", "path": "new-path-data-2", "mode": 0o400}]}),
    );
    secret_case(ctx, v, json!({}), "new-path-data-2", "-r--------").await;
}
async fn secret_non_root_fsgroup(ctx: Ctx) {
    let pod = json!({"securityContext": {"runAsUser": 1000, "fsGroup": 1001}});
    make_secret(&ctx, "secret-test", json!({"data-1": "value-1"})).await;
    volume_output(
        &ctx,
        secret_volume(json!({"defaultMode": 0o440})),
        pod,
        &format!("{}; stat -Lc 'group %g' {MOUNT}/data-1", show("data-1")),
        &["value-1", "perms -r--r-----", "group 1001"],
    )
    .await;
}

async fn secret_other_namespace(ctx: Ctx) {
    // A secret of the same name elsewhere must not be what the pod mounts.
    let other = format!("{}-other", ctx.ns);
    create_namespace(&ctx.client, &other)
        .await
        .expect("second namespace");
    let other_ctx = Ctx::new(ctx.client.clone(), other.clone(), ctx.image.clone());
    make_secret(&other_ctx, "secret-test", json!({"data-1": "value-other"})).await;
    make_secret(&ctx, "secret-test", json!({"data-1": "value-1"})).await;
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            volume_output(
                &ctx,
                secret_volume(json!({})),
                json!({}),
                &show("data-1"),
                &["value-1\n"],
            )
            .await;
        }
    });
    let result = run.await;
    delete_namespace(&ctx.client, &other)
        .await
        .expect("deleting the second namespace");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn secret_multiple_volumes(ctx: Ctx) {
    make_secret(&ctx, "secret-test", json!({"data-1": "value-1"})).await;
    let mut c = ctx.sh(
        "secret-volume-test",
        "cat /etc/secret-volume/data-1; echo; cat /etc/secret-volume-2/data-1; echo",
    );
    c["volumeMounts"] = json!([
        {"name": "secret-volume", "mountPath": "/etc/secret-volume", "readOnly": true},
        {"name": "secret-volume-2", "mountPath": "/etc/secret-volume-2", "readOnly": true},
    ]);
    let pod = ctx.pod(
        "pod-secrets",
        json!({
            "containers": [c],
            "volumes": [
                {"name": "secret-volume", "secret": {"secretName": "secret-test"}},
                {"name": "secret-volume-2", "secret": {"secretName": "secret-test"}},
            ],
        }),
    );
    ctx.expect_output(pod, "secret-volume-test", &["value-1\nvalue-1"])
        .await;
}

// ---- downwardAPI ----------------------------------------------------------------------

fn downward_volume(items: Value, extra: Value) -> Value {
    json!({"downwardAPI": with(json!({"items": items}), extra)})
}

/// downwardapi_volume.go's resources: CPU files hold whole cores, rounded up.
fn resources() -> Value {
    json!({"limits": {"cpu": "1250m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}})
}

async fn downward_resource(ctx: Ctx, resource: &str, want: &str, projected: bool) {
    let item = json!([{"path": "value", "resourceFieldRef": {"containerName": "test-container", "resource": resource}}]);
    let volume = if projected {
        json!({"projected": {"sources": [{"downwardAPI": {"items": item}}]}})
    } else {
        downward_volume(item, json!({}))
    };
    let mut c = ctx.sh("test-container", &format!("cat {MOUNT}/value; echo"));
    c["volumeMounts"] = json!([{"name": "test-volume", "mountPath": MOUNT}]);
    c["resources"] = resources();
    let pod = ctx.pod(
        "downwardapi-volume",
        json!({"containers": [c], "volumes": [with(json!({"name": "test-volume"}), volume)]}),
    );
    ctx.expect_output(pod, "test-container", &[&format!("{want}\n")])
        .await;
}

macro_rules! resource_tests {
    ($($f:ident: $res:expr, $want:expr, $projected:expr;)*) => {
        $(async fn $f(ctx: Ctx) { downward_resource(ctx, $res, $want, $projected).await; })*
    };
}
resource_tests! {
    dv_cpu_limit: "limits.cpu", "2", false;
    dv_cpu_request: "requests.cpu", "1", false;
    dv_memory_limit: "limits.memory", "67108864", false;
    dv_memory_request: "requests.memory", "33554432", false;
    pd_cpu_limit: "limits.cpu", "2", true;
    pd_cpu_request: "requests.cpu", "1", true;
    pd_memory_limit: "limits.memory", "67108864", true;
    pd_memory_request: "requests.memory", "33554432", true;
}

fn podname_item(mode: Option<i32>) -> Value {
    let mut i = json!({"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}});
    if let Some(m) = mode {
        i["mode"] = json!(m);
    }
    json!([i])
}

fn projected_downward(items: Value, extra: Value) -> Value {
    json!({"projected": with(json!({"sources": [{"downwardAPI": {"items": items}}]}), extra)})
}

async fn podname_case(ctx: Ctx, volume: Value, perms: &str) {
    volume_output(
        &ctx,
        volume,
        json!({}),
        &show("podname"),
        &["pod-volume-test", &format!("perms {perms}")],
    )
    .await;
}

async fn dv_podname(ctx: Ctx) {
    podname_case(
        ctx,
        downward_volume(podname_item(None), json!({})),
        "-rw-r--r--",
    )
    .await;
}
async fn dv_default_mode(ctx: Ctx) {
    podname_case(
        ctx,
        downward_volume(podname_item(None), json!({"defaultMode": 0o400})),
        "-r--------",
    )
    .await;
}
async fn dv_item_mode(ctx: Ctx) {
    podname_case(
        ctx,
        downward_volume(podname_item(Some(0o400)), json!({})),
        "-r--------",
    )
    .await;
}
async fn pd_podname(ctx: Ctx) {
    podname_case(
        ctx,
        projected_downward(podname_item(None), json!({})),
        "-rw-r--r--",
    )
    .await;
}
async fn pd_default_mode(ctx: Ctx) {
    podname_case(
        ctx,
        projected_downward(podname_item(None), json!({"defaultMode": 0o400})),
        "-r--------",
    )
    .await;
}
async fn pd_item_mode(ctx: Ctx) {
    podname_case(
        ctx,
        projected_downward(podname_item(Some(0o400)), json!({})),
        "-r--------",
    )
    .await;
}

/// Labels or annotations changed on a running pod show up in its downwardAPI file.
async fn downward_updates(ctx: Ctx, field: &str, projected: bool) {
    let items = json!([{"path": field, "fieldRef": {"fieldPath": format!("metadata.{field}")}}]);
    let source = if projected {
        projected_downward(items, json!({}))
    } else {
        downward_volume(items, json!({}))
    };
    let mut c = ctx.sh("client-container", &format!("while true; do echo \"seen: $(cat /etc/podinfo/{field} | tr '\\n' ' ')\"; sleep 1; done"));
    c["volumeMounts"] = json!([{"name": "podinfo", "mountPath": "/etc/podinfo"}]);
    let pod = ctx.pod("labelsupdate", json!({"containers": [c], "volumes": [with(json!({"name": "podinfo"}), source)], "terminationGracePeriodSeconds": 1}));
    let mut pod_v = serde_json::to_value(&pod).expect("pod");
    pod_v["metadata"][field] = json!({"key1": "value1"});
    ctx.create_pod(&obj(pod_v)).await;
    ctx.wait_running("labelsupdate").await;
    ctx.wait_log(
        "labelsupdate",
        "client-container",
        "key1=\"value1\"",
        Duration::from_secs(60),
    )
    .await;
    ctx.pods()
        .patch(
            "labelsupdate",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {field: {"key1": "value2"}}})),
        )
        .await
        .expect("patching the pod");
    ctx.wait_log(
        "labelsupdate",
        "client-container",
        "key1=\"value2\"",
        Duration::from_secs(120),
    )
    .await;
}

async fn dv_update_labels(ctx: Ctx) {
    downward_updates(ctx, "labels", false).await;
}
async fn dv_update_annotations(ctx: Ctx) {
    downward_updates(ctx, "annotations", false).await;
}
async fn pd_update_labels(ctx: Ctx) {
    downward_updates(ctx, "labels", true).await;
}
async fn pd_update_annotations(ctx: Ctx) {
    downward_updates(ctx, "annotations", true).await;
}

// ---- projected configMap / secret -----------------------------------------------------

fn projected(source: Value, extra: Value) -> Value {
    json!({"projected": with(json!({"sources": [source]}), extra)})
}

async fn pcm_default(ctx: Ctx) {
    cm_case(
        ctx,
        projected(
            json!({"configMap": {"name": "configmap-test-volume"}}),
            json!({}),
        ),
        json!({}),
        "data-1",
        "-rw-r--r--",
    )
    .await;
}
async fn pcm_non_root(ctx: Ctx) {
    cm_case(
        ctx,
        projected(
            json!({"configMap": {"name": "configmap-test-volume"}}),
            json!({}),
        ),
        non_root(),
        "data-1",
        "-rw-r--r--",
    )
    .await;
}
async fn pcm_default_mode(ctx: Ctx) {
    cm_case(
        ctx,
        projected(
            json!({"configMap": {"name": "configmap-test-volume"}}),
            json!({"defaultMode": 0o400}),
        ),
        json!({}),
        "data-1",
        "-r--------",
    )
    .await;
}
async fn pcm_mappings(ctx: Ctx) {
    let s = json!({"configMap": {"name": "configmap-test-volume", "items": [{"key": "data-2", "path": "path/to/data-2"}]}});
    cm_case(
        ctx,
        projected(s, json!({})),
        json!({}),
        "path/to/data-2",
        "-rw-r--r--",
    )
    .await;
}
async fn pcm_mappings_mode(ctx: Ctx) {
    let s = json!({"configMap": {"name": "configmap-test-volume", "items": [{"key": "data-2", "path": "path/to/data-2", "mode": 0o400}]}});
    cm_case(
        ctx,
        projected(s, json!({})),
        json!({}),
        "path/to/data-2",
        "-r--------",
    )
    .await;
}
async fn pcm_mappings_non_root(ctx: Ctx) {
    let s = json!({"configMap": {"name": "configmap-test-volume", "items": [{"key": "data-2", "path": "path/to/data-2"}]}});
    cm_case(
        ctx,
        projected(s, json!({})),
        non_root(),
        "path/to/data-2",
        "-rw-r--r--",
    )
    .await;
}
async fn psecret_default(ctx: Ctx) {
    secret_case(
        ctx,
        projected(json!({"secret": {"name": "secret-test"}}), json!({})),
        json!({}),
        "data-1",
        "-rw-r--r--",
    )
    .await;
}
async fn psecret_default_mode(ctx: Ctx) {
    secret_case(
        ctx,
        projected(
            json!({"secret": {"name": "secret-test"}}),
            json!({"defaultMode": 0o400}),
        ),
        json!({}),
        "data-1",
        "-r--------",
    )
    .await;
}
async fn psecret_mappings(ctx: Ctx) {
    let s = json!({"secret": {"name": "secret-test", "items": [{"key": "data-2", "path": "new-path-data-2"}]}});
    secret_case(
        ctx,
        projected(s, json!({})),
        json!({}),
        "new-path-data-2",
        "-rw-r--r--",
    )
    .await;
}
async fn psecret_mappings_mode(ctx: Ctx) {
    let s = json!({"secret": {"name": "secret-test", "items": [{"key": "data-2", "path": "new-path-data-2", "mode": 0o400}]}});
    secret_case(
        ctx,
        projected(s, json!({})),
        json!({}),
        "new-path-data-2",
        "-r--------",
    )
    .await;
}

async fn projected_combined(ctx: Ctx) {
    make_configmap(
        &ctx,
        "configmap-projected-all-test-volume",
        json!({"configmap-data": "configmap-value-1"}),
    )
    .await;
    make_secret(
        &ctx,
        "secret-projected-all-test-volume",
        json!({"secret-data": "secret-value-1"}),
    )
    .await;
    let volume = json!({"projected": {"sources": [
        {"downwardAPI": {"items": [{"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"secret": {"name": "secret-projected-all-test-volume", "items": [{"key": "secret-data", "path": "secret-data"}]}},
        {"configMap": {"name": "configmap-projected-all-test-volume", "items": [{"key": "configmap-data", "path": "configmap-data"}]}},
    ]}});
    volume_output(
        &ctx,
        volume,
        json!({}),
        &format!("cat {MOUNT}/podname; echo; cat {MOUNT}/secret-data; echo; cat {MOUNT}/configmap-data; echo"),
        &["pod-volume-test", "secret-value-1", "configmap-value-1"],
    )
    .await;
}

// ---- emptyDir -------------------------------------------------------------------------

/// empty_dir.go's `(user,mode,medium)` tests: a new file with `mode` in the volume.
async fn empty_dir_file(ctx: Ctx, non_root_user: bool, mode: &str, tmpfs: bool) {
    let perms = match mode {
        "0644" => "-rw-r--r--",
        "0666" => "-rw-rw-rw-",
        _ => "-rwxrwxrwx",
    };
    let medium = if tmpfs {
        json!({"medium": "Memory"})
    } else {
        json!({})
    };
    let pod = if non_root_user {
        json!({"securityContext": {"runAsUser": 1001}})
    } else {
        json!({})
    };
    let script = format!(
        "f={MOUNT}/test-file; echo mount-tester new file > $f; chmod {mode} $f; stat -c 'perms %A' $f; cat $f; echo \"fstype $(grep ' {MOUNT} ' /proc/mounts | cut -d' ' -f3)\""
    );
    let want_perms = format!("perms {perms}");
    let mut expected = vec![want_perms.as_str(), "mount-tester new file"];
    if tmpfs {
        expected.push("fstype tmpfs");
    }
    volume_output(&ctx, json!({"emptyDir": medium}), pod, &script, &expected).await;
}

macro_rules! empty_dir_tests {
    ($($f:ident: $non_root:expr, $mode:expr, $tmpfs:expr;)*) => {
        $(async fn $f(ctx: Ctx) { empty_dir_file(ctx, $non_root, $mode, $tmpfs).await; })*
    };
}
empty_dir_tests! {
    ed_root_0644_default: false, "0644", false;
    ed_root_0666_default: false, "0666", false;
    ed_root_0777_default: false, "0777", false;
    ed_root_0644_tmpfs: false, "0644", true;
    ed_root_0666_tmpfs: false, "0666", true;
    ed_root_0777_tmpfs: false, "0777", true;
    ed_user_0644_default: true, "0644", false;
    ed_user_0666_default: true, "0666", false;
    ed_user_0777_default: true, "0777", false;
    ed_user_0644_tmpfs: true, "0644", true;
    ed_user_0666_tmpfs: true, "0666", true;
    ed_user_0777_tmpfs: true, "0777", true;
}

async fn empty_dir_mode(ctx: Ctx, tmpfs: bool) {
    let medium = if tmpfs {
        json!({"medium": "Memory"})
    } else {
        json!({})
    };
    // The permission bits only (mounttest prints `Mode().Perm()`): tmpfs adds the sticky bit.
    let script = format!("echo \"perms $(stat -c %a {MOUNT} | tail -c 4)\"; echo \"fstype $(grep ' {MOUNT} ' /proc/mounts | cut -d' ' -f3)\"");
    let mut expected = vec!["perms 777"];
    if tmpfs {
        expected.push("fstype tmpfs");
    }
    volume_output(
        &ctx,
        json!({"emptyDir": medium}),
        json!({}),
        &script,
        &expected,
    )
    .await;
}
async fn ed_mode_default(ctx: Ctx) {
    empty_dir_mode(ctx, false).await;
}
async fn ed_mode_tmpfs(ctx: Ctx) {
    empty_dir_mode(ctx, true).await;
}

async fn ed_shared(ctx: Ctx) {
    let mount = json!([{"name": "shared-data", "mountPath": "/usr/share/volumeshare"}]);
    let mut writer = ctx.sh(
        "busybox-main-container",
        "echo Hello from the busy-box sub-container > /usr/share/volumeshare/shareddata.txt",
    );
    writer["volumeMounts"] = mount.clone();
    let mut reader = ctx.sh("busybox-sub-container", "while [ ! -s /usr/share/volumeshare/shareddata.txt ]; do sleep 0.2; done; cat /usr/share/volumeshare/shareddata.txt");
    reader["volumeMounts"] = mount;
    let pod = ctx.pod("pod-sharedvolume", json!({"containers": [writer, reader], "volumes": [{"name": "shared-data", "emptyDir": {}}]}));
    ctx.expect_output(
        pod,
        "busybox-sub-container",
        &["Hello from the busy-box sub-container"],
    )
    .await;
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-storage] ConfigMap should be consumable from pods in volume [NodeConformance] [Conformance]", cm_default),
        test!("[sig-storage] ConfigMap should be consumable from pods in volume as non-root [NodeConformance] [Conformance]", cm_non_root),
        test!("[sig-storage] ConfigMap should be consumable from pods in volume with defaultMode set [LinuxOnly] [NodeConformance] [Conformance]", cm_default_mode),
        test!("[sig-storage] ConfigMap should be consumable from pods in volume with mappings [NodeConformance] [Conformance]", cm_mappings),
        test!("[sig-storage] ConfigMap should be consumable from pods in volume with mappings and Item mode set [LinuxOnly] [NodeConformance] [Conformance]", cm_mappings_mode),
        test!("[sig-storage] ConfigMap should be consumable from pods in volume with mappings as non-root [NodeConformance] [Conformance]", cm_mappings_non_root),
        test!("[sig-storage] ConfigMap should be consumable in multiple volumes in the same pod [NodeConformance] [Conformance]", cm_multiple_volumes),
        test!("[sig-storage] ConfigMap binary data should be reflected in volume [NodeConformance] [Conformance]", cm_binary_data),
        test!("[sig-storage] ConfigMap updates should be reflected in volume [NodeConformance] [Conformance]", cm_updates),
        test!("[sig-storage] ConfigMap optional updates should be reflected in volume [NodeConformance] [Conformance]", cm_optional_updates),
        test!("[sig-storage] ConfigMap should be immutable if `immutable` field is set [Conformance]", cm_immutable),
        test!("[sig-storage] Secrets should be consumable from pods in volume [NodeConformance] [Conformance]", secret_default),
        test!("[sig-storage] Secrets should be consumable from pods in volume with defaultMode set [LinuxOnly] [NodeConformance] [Conformance]", secret_default_mode),
        test!("[sig-storage] Secrets should be consumable from pods in volume with mappings [NodeConformance] [Conformance]", secret_mappings),
        test!("[sig-storage] Secrets should be consumable from pods in volume with mappings and Item Mode set [LinuxOnly] [NodeConformance] [Conformance]", secret_mappings_mode),
        test!("[sig-storage] Secrets should be consumable from pods in volume as non-root with defaultMode and fsGroup set [LinuxOnly] [NodeConformance] [Conformance]", secret_non_root_fsgroup),
        test!("[sig-storage] Secrets should be able to mount in a volume regardless of a different secret existing with same name in different namespace [NodeConformance] [Conformance]", secret_other_namespace),
        test!("[sig-storage] Secrets should be consumable in multiple volumes in a pod [NodeConformance] [Conformance]", secret_multiple_volumes),
        test!("[sig-storage] Secrets optional updates should be reflected in volume [NodeConformance] [Conformance]", secret_optional_updates),
        test!("[sig-storage] Secrets should be immutable if `immutable` field is set [Conformance]", secret_immutable),
        test!("[sig-storage] Downward API volume should provide container's cpu limit [NodeConformance] [Conformance]", dv_cpu_limit),
        test!("[sig-storage] Downward API volume should provide container's cpu request [NodeConformance] [Conformance]", dv_cpu_request),
        test!("[sig-storage] Downward API volume should provide container's memory limit [NodeConformance] [Conformance]", dv_memory_limit),
        test!("[sig-storage] Downward API volume should provide container's memory request [NodeConformance] [Conformance]", dv_memory_request),
        test!("[sig-storage] Downward API volume should provide podname only [NodeConformance] [Conformance]", dv_podname),
        test!("[sig-storage] Downward API volume should set DefaultMode on files [LinuxOnly] [NodeConformance] [Conformance]", dv_default_mode),
        test!("[sig-storage] Downward API volume should set mode on item file [LinuxOnly] [NodeConformance] [Conformance]", dv_item_mode),
        test!("[sig-storage] Downward API volume should update labels on modification [NodeConformance] [Conformance]", dv_update_labels),
        test!("[sig-storage] Downward API volume should update annotations on modification [NodeConformance] [Conformance]", dv_update_annotations),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume [NodeConformance] [Conformance]", pcm_default),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume as non-root [NodeConformance] [Conformance]", pcm_non_root),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume with defaultMode set [LinuxOnly] [NodeConformance] [Conformance]", pcm_default_mode),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume with mappings [NodeConformance] [Conformance]", pcm_mappings),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume with mappings and Item mode set [LinuxOnly] [NodeConformance] [Conformance]", pcm_mappings_mode),
        test!("[sig-storage] Projected configMap should be consumable from pods in volume with mappings as non-root [NodeConformance] [Conformance]", pcm_mappings_non_root),
        test!("[sig-storage] Projected configMap optional updates should be reflected in volume [NodeConformance] [Conformance]", projected_cm_optional_updates),
        test!("[sig-storage] Projected secret should be consumable from pods in volume [NodeConformance] [Conformance]", psecret_default),
        test!("[sig-storage] Projected secret should be consumable from pods in volume with defaultMode set [LinuxOnly] [NodeConformance] [Conformance]", psecret_default_mode),
        test!("[sig-storage] Projected secret should be consumable from pods in volume with mappings [NodeConformance] [Conformance]", psecret_mappings),
        test!("[sig-storage] Projected secret should be consumable from pods in volume with mappings and Item Mode set [LinuxOnly] [NodeConformance] [Conformance]", psecret_mappings_mode),
        test!("[sig-storage] Projected secret optional updates should be reflected in volume [NodeConformance] [Conformance]", projected_secret_optional_updates),
        test!("[sig-storage] Projected downwardAPI should provide container's cpu limit [NodeConformance] [Conformance]", pd_cpu_limit),
        test!("[sig-storage] Projected downwardAPI should provide container's cpu request [NodeConformance] [Conformance]", pd_cpu_request),
        test!("[sig-storage] Projected downwardAPI should provide container's memory limit [NodeConformance] [Conformance]", pd_memory_limit),
        test!("[sig-storage] Projected downwardAPI should provide container's memory request [NodeConformance] [Conformance]", pd_memory_request),
        test!("[sig-storage] Projected downwardAPI should provide podname only [NodeConformance] [Conformance]", pd_podname),
        test!("[sig-storage] Projected downwardAPI should set DefaultMode on files [LinuxOnly] [NodeConformance] [Conformance]", pd_default_mode),
        test!("[sig-storage] Projected downwardAPI should set mode on item file [LinuxOnly] [NodeConformance] [Conformance]", pd_item_mode),
        test!("[sig-storage] Projected downwardAPI should update labels on modification [NodeConformance] [Conformance]", pd_update_labels),
        test!("[sig-storage] Projected downwardAPI should update annotations on modification [NodeConformance] [Conformance]", pd_update_annotations),
        test!("[sig-storage] Projected combined should project all components that make up the projection API [Projection] [NodeConformance] [Conformance]", projected_combined),
        test!("[sig-storage] EmptyDir volumes should support (root,0644,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0644_default),
        test!("[sig-storage] EmptyDir volumes should support (root,0666,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0666_default),
        test!("[sig-storage] EmptyDir volumes should support (root,0777,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0777_default),
        test!("[sig-storage] EmptyDir volumes should support (root,0644,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0644_tmpfs),
        test!("[sig-storage] EmptyDir volumes should support (root,0666,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0666_tmpfs),
        test!("[sig-storage] EmptyDir volumes should support (root,0777,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_root_0777_tmpfs),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0644,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0644_default),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0666,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0666_default),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0777,default) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0777_default),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0644,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0644_tmpfs),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0666,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0666_tmpfs),
        test!("[sig-storage] EmptyDir volumes should support (non-root,0777,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]", ed_user_0777_tmpfs),
        test!("[sig-storage] EmptyDir volumes volume on default medium should have the correct mode [LinuxOnly] [NodeConformance] [Conformance]", ed_mode_default),
        test!("[sig-storage] EmptyDir volumes volume on tmpfs should have the correct mode [LinuxOnly] [NodeConformance] [Conformance]", ed_mode_tmpfs),
        test!("[sig-storage] EmptyDir volumes pod should support shared volumes between containers [Conformance]", ed_shared),
    ]
}
