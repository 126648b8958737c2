//! Pods, Pods Extended, Container Runtime, Kubelet and InitContainer tests
//! (test/e2e/common/node/pods.go, runtime.go, kubelet.go, init_container.go,
//! node/pods.go).

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn submitted_and_removed(ctx: Ctx) {
    let pods = ctx.pods();
    let label = ListParams::default().labels("time=submitted-and-removed");
    assert!(pods.list(&label).await.unwrap().items.is_empty());
    let wp = WatchParams::default()
        .labels("time=submitted-and-removed")
        .disable_bookmarks();
    let rv = pods
        .list(&label)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut w = Watcher::start(&pods, &wp, &rv).await;
    let mut pod = ctx.pod(
        "pod-submit-remove",
        json!({"containers": [ctx.sleeper("main")]}),
    );
    pod.labels_mut()
        .insert("time".into(), "submitted-and-removed".into());
    ctx.create_pod(&pod).await;
    match w.next(WAIT).await {
        WatchEvent::Added(p) => assert_eq!(p.name_any(), "pod-submit-remove"),
        other => panic!("expected ADDED, got {}", describe(&other)),
    }
    assert_eq!(pods.list(&label).await.unwrap().items.len(), 1);
    ctx.wait_running("pod-submit-remove").await;
    pods.delete(
        "pod-submit-remove",
        &DeleteParams::default().grace_period(30),
    )
    .await
    .expect("graceful delete");
    // A graceful deletion: the pod gets a deletionTimestamp, then goes once the kubelet
    // has stopped its containers.
    let deadline = tokio::time::Instant::now() + POD_START;
    let mut saw_graceful = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match w.next(left).await {
            WatchEvent::Modified(p) => {
                saw_graceful |= p.metadata.deletion_timestamp.is_some();
            }
            WatchEvent::Deleted(p) => {
                assert!(
                    saw_graceful || p.metadata.deletion_timestamp.is_some(),
                    "deleted without a graceful phase: {p:?}"
                );
                break;
            }
            other => panic!("unexpected {}", describe(&other)),
        }
    }
    assert!(pods.list(&label).await.unwrap().items.is_empty());
}

async fn pods_updated(ctx: Ctx) {
    let pods = ctx.pods();
    let mut pod = ctx.pod("pod-update", json!({"containers": [ctx.sleeper("main")]}));
    pod.labels_mut().insert("time".into(), "original".into());
    ctx.create_pod(&pod).await;
    ctx.wait_running("pod-update").await;
    for attempt in 0.. {
        let mut p = ctx.get_pod("pod-update").await;
        p.labels_mut().insert("time".into(), "updated".into());
        match pods.replace("pod-update", &PostParams::default(), &p).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => continue,
            Err(e) => panic!("updating the pod: {e}"),
        }
    }
    let found = pods
        .list(&ListParams::default().labels("time=updated"))
        .await
        .unwrap();
    assert_eq!(
        found.items.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["pod-update"]
    );
}

async fn host_ip(ctx: Ctx) {
    ctx.create_pod(&ctx.pod("pod-hostip", json!({"containers": [ctx.sleeper("main")]})))
        .await;
    let p = ctx
        .wait_pod("pod-hostip", "a hostIP", POD_START, |p| {
            p.status.as_ref().and_then(|s| s.host_ip.as_ref()).is_some()
        })
        .await;
    let ip = p.status.unwrap().host_ip.unwrap();
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "hostIP {ip:?} is not an IP"
    );
}

async fn patch_status(ctx: Ctx) {
    ctx.create_pod(&ctx.pod(
        "pod-patch-status",
        json!({"containers": [ctx.sleeper("main")]}),
    ))
    .await;
    ctx.wait_running("pod-patch-status").await;
    // What pods.go sends to /status.
    let patch = json!({
        "metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"message": "Patched by e2e test", "reason": "E2E"},
    });
    let p = ctx
        .pods()
        .patch_status(
            "pod-patch-status",
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .expect("patching the pod status");
    let s = p.status.expect("status");
    assert_eq!(s.message.as_deref(), Some("Patched by e2e test"));
    assert_eq!(s.reason.as_deref(), Some("E2E"));
}

async fn delete_collection(ctx: Ctx) {
    let pods = ctx.pods();
    for i in 1..=3 {
        let mut pod = ctx.pod(
            &format!("test-pod-{i}"),
            json!({"containers": [ctx.sleeper("main")]}),
        );
        pod.labels_mut().insert("type".into(), "Testing".into());
        ctx.create_pod(&pod).await;
    }
    let set = ListParams::default().labels("type=Testing");
    assert_eq!(pods.list(&set).await.unwrap().items.len(), 3);
    pods.delete_collection(&DeleteParams::default(), &set)
        .await
        .expect("deletecollection");
    let deadline = tokio::time::Instant::now() + POD_START;
    loop {
        let left = pods.list(&set).await.unwrap().items;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods left after deletecollection: {:?}",
            left.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn qos_guaranteed(ctx: Ctx) {
    let res = json!({"cpu": "100m", "memory": "100Mi"});
    let pod = ctx.pod(
        "pod-qos-class",
        json!({"containers": [with(ctx.sleeper("agnhost"), json!({"resources": {"requests": res, "limits": res}}))]}),
    );
    ctx.create_pod(&pod).await;
    let p = ctx
        .wait_pod("pod-qos-class", "a qosClass", WAIT, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.qos_class.as_ref())
                .is_some()
        })
        .await;
    assert_eq!(p.status.unwrap().qos_class.as_deref(), Some("Guaranteed"));
}

// ---- Container Runtime (runtime.go) ---------------------------------------------------

/// "when starting a container that exits": a container that fails on its first run,
/// succeeds on its second and then keeps running, under each restart policy.
async fn container_exits_with_expected_status(ctx: Ctx) {
    // The run count survives restarts in an emptyDir.
    let script = "f=/restart-count/restartCount; echo x >> $f; count=$(wc -l < $f); \
                  if [ $count -eq 1 ]; then exit 1; fi; if [ $count -eq 2 ]; then exit 0; fi; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let cases = [
        ("terminate-cmd-rpa", "Always", 2, "Running"),
        ("terminate-cmd-rpof", "OnFailure", 1, "Succeeded"),
        ("terminate-cmd-rpn", "Never", 0, "Failed"),
    ];
    for (name, policy, _, _) in cases {
        let pod = ctx.pod(
            name,
            json!({
                "restartPolicy": policy,
                "containers": [with(ctx.sh(name, script), json!({"volumeMounts": [{"name": "count", "mountPath": "/restart-count"}]}))],
                "volumes": [{"name": "count", "emptyDir": {}}],
            }),
        );
        ctx.create_pod(&pod).await;
    }
    for (name, _, restarts, want_phase) in cases {
        let p = ctx
            .wait_pod(
                name,
                &format!("{want_phase} with {restarts} restarts"),
                Duration::from_secs(120),
                |p| phase(p) == want_phase && restart_count(p, name) == restarts,
            )
            .await;
        let ready = condition(&p, "Ready") == Some(true);
        assert_eq!(ready, want_phase == "Running", "{name}: Ready condition");
        let state = container_status(&p, name)
            .and_then(|c| c.state.clone())
            .expect("state");
        match want_phase {
            "Running" => assert!(state.running.is_some(), "{name}: {state:?}"),
            "Succeeded" => assert_eq!(state.terminated.map(|t| t.exit_code), Some(0)),
            _ => assert_eq!(state.terminated.map(|t| t.exit_code), Some(1)),
        }
    }
}

async fn termination_message(ctx: &Ctx, name: &str, container: serde_json::Value, want: &str) {
    ctx.create_pod(&ctx.pod(name, json!({"containers": [container]})))
        .await;
    let p = ctx.wait_finished(name).await;
    let t = container_status(&p, name)
        .and_then(|c| c.state.clone())
        .and_then(|s| s.terminated)
        .unwrap_or_else(|| panic!("{name} has not terminated: {:?}", p.status));
    assert_eq!(t.message.unwrap_or_default(), want, "termination message");
}

async fn termination_message_non_root_path(ctx: Ctx) {
    let c = with(
        ctx.sh(
            "termination-message-container",
            "echo -n DONE > /dev/termination-custom-log",
        ),
        json!({"terminationMessagePath": "/dev/termination-custom-log", "securityContext": {"runAsUser": 1000}}),
    );
    termination_message(&ctx, "termination-message-container", c, "DONE").await;
}

async fn termination_message_from_logs(ctx: Ctx) {
    let c = with(
        ctx.sh("termination-message-container", "echo -n DONE; exit 1"),
        json!({"terminationMessagePolicy": "FallbackToLogsOnError"}),
    );
    termination_message(&ctx, "termination-message-container", c, "DONE").await;
}

async fn termination_message_empty_on_success(ctx: Ctx) {
    let c = with(
        ctx.sh("termination-message-container", "echo -n DONE"),
        json!({"terminationMessagePolicy": "FallbackToLogsOnError"}),
    );
    termination_message(&ctx, "termination-message-container", c, "").await;
}

async fn termination_message_from_file(ctx: Ctx) {
    let c = with(
        ctx.sh(
            "termination-message-container",
            "echo -n OK > /dev/termination-log",
        ),
        json!({"terminationMessagePolicy": "FallbackToLogsOnError"}),
    );
    termination_message(&ctx, "termination-message-container", c, "OK").await;
}

// ---- Kubelet (kubelet.go) -------------------------------------------------------------

async fn prints_output_to_logs(ctx: Ctx) {
    let pod = ctx.pod(
        "busybox-scheduling",
        json!({"containers": [ctx.sh("busybox", "echo 'Hello World'")]}),
    );
    ctx.expect_output(pod, "busybox", &["Hello World"]).await;
}

fn always_fails(ctx: &Ctx) -> Pod {
    ctx.pod(
        "bin-false",
        json!({"restartPolicy": "Always", "containers": [ctx.sh("bin-false", "/bin/false")]}),
    )
}

async fn failing_has_terminated_reason(ctx: Ctx) {
    ctx.create_pod(&always_fails(&ctx)).await;
    let p = ctx
        .wait_pod("bin-false", "a terminated container", POD_START, |p| {
            container_status(p, "bin-false").is_some_and(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
                    || c.last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .is_some()
            })
        })
        .await;
    let c = container_status(&p, "bin-false").unwrap();
    let t = c
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.clone()))
        .unwrap();
    assert_ne!(t.exit_code, 0, "{t:?}");
    assert_eq!(t.reason.as_deref(), Some("Error"), "{t:?}");
}

async fn failing_can_be_deleted(ctx: Ctx) {
    ctx.create_pod(&always_fails(&ctx)).await;
    ctx.pods()
        .delete("bin-false", &DeleteParams::default())
        .await
        .expect("deleting the pod");
    ctx.wait_pod_gone("bin-false").await;
}

async fn read_only_root_filesystem(ctx: Ctx) {
    let pod = ctx.pod(
        "busybox-readonly-fs",
        json!({"containers": [with(
            ctx.sh("busybox", "echo test > /file; echo exit=$?"),
            json!({"securityContext": {"readOnlyRootFilesystem": true}}),
        )]}),
    );
    ctx.expect_output(pod, "busybox", &["Read-only file system", "exit=1"])
        .await;
}

async fn host_aliases(ctx: Ctx) {
    let pod = ctx.pod(
        "busybox-host-aliases",
        json!({
            "hostAliases": [{"ip": "123.45.67.89", "hostnames": ["foo", "bar"]}],
            "containers": [ctx.sh("busybox", "cat /etc/hosts")],
        }),
    );
    ctx.expect_output(pod, "busybox", &["123.45.67.89\tfoo\tbar"])
        .await;
}

// ---- InitContainer (init_container.go) ------------------------------------------------

fn init_pod(ctx: &Ctx, policy: &str, first: &str, app: serde_json::Value) -> Pod {
    ctx.pod(
        "pod-init",
        json!({
            "restartPolicy": policy,
            "initContainers": [ctx.sh("init1", first), ctx.sh("init2", "true")],
            "containers": [app],
        }),
    )
}

fn terminated_ok(p: &Pod, name: &str) -> bool {
    init_status(p, name)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

async fn init_restart_never(ctx: Ctx) {
    ctx.create_pod(&init_pod(&ctx, "Never", "true", ctx.sh("run1", "true")))
        .await;
    let p = ctx.wait_finished("pod-init").await;
    assert_eq!(phase(&p), "Succeeded", "{:?}", p.status);
    for n in ["init1", "init2"] {
        assert!(terminated_ok(&p, n), "{n}: {:?}", init_status(&p, n));
        assert!(init_status(&p, n).unwrap().ready, "{n} is ready once done");
    }
    assert_eq!(condition(&p, "Initialized"), Some(true));
}

async fn init_restart_always(ctx: Ctx) {
    ctx.create_pod(&init_pod(&ctx, "Always", "true", ctx.sleeper("run1")))
        .await;
    let p = ctx.wait_ready("pod-init").await;
    for n in ["init1", "init2"] {
        assert!(terminated_ok(&p, n), "{n}: {:?}", init_status(&p, n));
        assert!(init_status(&p, n).unwrap().ready, "{n} is ready once done");
    }
    assert_eq!(condition(&p, "Initialized"), Some(true));
}

async fn init_fails_restart_never(ctx: Ctx) {
    ctx.create_pod(&init_pod(&ctx, "Never", "false", ctx.sh("run1", "true")))
        .await;
    let p = ctx.wait_finished("pod-init").await;
    assert_eq!(phase(&p), "Failed", "{:?}", p.status);
    let t = init_status(&p, "init1")
        .and_then(|c| c.state.clone())
        .and_then(|s| s.terminated)
        .expect("init1 terminated");
    assert_ne!(t.exit_code, 0);
    let waiting = |c: Option<&k8s_openapi::api::core::v1::ContainerStatus>| {
        c.and_then(|c| c.state.as_ref())
            .is_none_or(|s| s.waiting.is_some())
    };
    assert!(
        waiting(init_status(&p, "init2")),
        "init2 never ran: {:?}",
        init_status(&p, "init2")
    );
    assert!(
        waiting(container_status(&p, "run1")),
        "run1 never ran: {:?}",
        container_status(&p, "run1")
    );
    assert_eq!(condition(&p, "Initialized"), Some(false));
}

async fn init_fails_restart_always(ctx: Ctx) {
    ctx.create_pod(&init_pod(&ctx, "Always", "false", ctx.sleeper("run1")))
        .await;
    // init_container.go waits for 3 restarts of the failing init container.
    let p = ctx
        .wait_pod(
            "pod-init",
            "init1 restarted 3 times",
            Duration::from_secs(150),
            |p| init_status(p, "init1").is_some_and(|c| c.restart_count >= 3),
        )
        .await;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(condition(&p, "Initialized"), Some(false));
    let running = |c: Option<&k8s_openapi::api::core::v1::ContainerStatus>| {
        c.and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    };
    assert!(!running(init_status(&p, "init2")), "init2 started");
    assert!(!running(container_status(&p, "run1")), "run1 started");
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-node] Pods should be submitted and removed [NodeConformance] [Conformance]", submitted_and_removed),
        test!("[sig-node] Pods should be updated [NodeConformance] [Conformance]", pods_updated),
        test!("[sig-node] Pods should get a host IP [NodeConformance] [Conformance]", host_ip),
        test!("[sig-node] Pods should patch a pod status [Conformance]", patch_status),
        test!("[sig-node] Pods should delete a collection of pods [Conformance]", delete_collection),
        test!("[sig-node] Pods Extended Pods Set QOS Class should be set on Pods with matching resource requests and limits for memory and cpu [Conformance]", qos_guaranteed),
        test!("[sig-node] Container Runtime blackbox test when starting a container that exits should run with the expected status [NodeConformance] [Conformance]", container_exits_with_expected_status),
        test!("[sig-node] Container Runtime blackbox test on terminated container should report termination message if TerminationMessagePath is set as non-root user and at a non-default path [NodeConformance] [Conformance]", termination_message_non_root_path),
        test!("[sig-node] Container Runtime blackbox test on terminated container should report termination message from log output if TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]", termination_message_from_logs),
        test!("[sig-node] Container Runtime blackbox test on terminated container should report termination message as empty when pod succeeds and TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]", termination_message_empty_on_success),
        test!("[sig-node] Container Runtime blackbox test on terminated container should report termination message from file when pod succeeds and TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]", termination_message_from_file),
        test!("[sig-node] Kubelet when scheduling a busybox command in a pod should print the output to logs [NodeConformance] [Conformance]", prints_output_to_logs),
        test!("[sig-node] Kubelet when scheduling a busybox command that always fails in a pod should have an terminated reason [NodeConformance] [Conformance]", failing_has_terminated_reason),
        test!("[sig-node] Kubelet when scheduling a busybox command that always fails in a pod should be possible to delete [NodeConformance] [Conformance]", failing_can_be_deleted),
        test!("[sig-node] Kubelet when scheduling a read only busybox container should not write to root filesystem [LinuxOnly] [NodeConformance] [Conformance]", read_only_root_filesystem),
        test!("[sig-node] Kubelet when scheduling an agnhost Pod with hostAliases should write entries to /etc/hosts [NodeConformance] [Conformance]", host_aliases),
        test!("[sig-node] InitContainer [NodeConformance] should invoke init containers on a RestartNever pod [Conformance]", init_restart_never),
        test!("[sig-node] InitContainer [NodeConformance] should invoke init containers on a RestartAlways pod [Conformance]", init_restart_always),
        test!("[sig-node] InitContainer [NodeConformance] should not start app containers and fail the pod if init containers fail on a RestartNever pod [Conformance]", init_fails_restart_never),
        test!("[sig-node] InitContainer [NodeConformance] should not start app containers if init containers fail on a RestartAlways pod [Conformance]", init_fails_restart_always),
    ]
}
