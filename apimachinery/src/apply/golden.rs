//! The exact output (every byte, key order included) of [`track_update`], [`apply`]
//! and [`apply_to_subresource`] over a few objects and write sequences, compared with
//! outputs recorded from the first implementation (`testdata/golden.json`), so that
//! reworking the machinery for speed cannot change what is stored.
//!
//! Uses only the public functions, so that the same scenarios can be run against
//! another build of this module to record the outputs again.

use serde_json::{json, Value};

use crate::apply::{apply, apply_to_subresource, track_update_in_place};
use crate::patch::schema::Root;

/// [`crate::apply::track_update`], checked to give what the in-place variant gives.
#[allow(clippy::too_many_arguments)]
fn track_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    sub: &str,
    merge: Option<Root>,
    api_version: &str,
    ignore_status: bool,
    now: &str,
) -> Value {
    let out = crate::apply::track_update(
        old,
        new,
        manager,
        sub,
        merge,
        api_version,
        ignore_status,
        now,
    );
    let mut in_place = new.clone();
    track_update_in_place(
        old,
        &mut in_place,
        manager,
        sub,
        merge,
        api_version,
        ignore_status,
        now,
    );
    assert_eq!(
        serde_json::to_string(&in_place).ok(),
        serde_json::to_string(&out).ok()
    );
    out
}

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

/// A defaulted pod, as the apiserver stores it.
fn pod() -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"bench","labels":{"app":"bench","tier":"backend","pod-template-hash":"7c5ddbdf54"},"annotations":{"kubernetes.io/psp":"restricted","prometheus.io/scrape":"true"},"uid":"5f0c6e2a-6a3b-4c1e-9d7a-2b8f0e4c1a9d","creationTimestamp":"2024-05-01T10:00:00Z","resourceVersion":"","finalizers":["b.example/x","a.example/y"]},"spec":{"containers":[{"name":"app","image":"registry.example/bench/app:1.2.3","command":["/app","--port=8080","--log-level=info"],"ports":[{"containerPort":8080,"name":"http","protocol":"TCP"},{"containerPort":53,"protocol":"UDP"},{"containerPort":53,"protocol":"TCP"}],"env":[{"name":"MODE","value":"production"},{"name":"REGION","value":"eu<west>&"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"periodSeconds":5,"timeoutSeconds":1,"successThreshold":1,"failureThreshold":3},"volumeMounts":[{"name":"config","mountPath":"/etc/app"}],"imagePullPolicy":"IfNotPresent","terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"},{"name":"sidecar","image":"proxy:2","env":[]}],"volumes":[{"name":"config","configMap":{"name":"app-config","defaultMode":420}}],"nodeSelector":{"kubernetes.io/os":"linux"},"dnsPolicy":"ClusterFirst","restartPolicy":"Always","securityContext":{},"terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","enableServiceLinks":true,"serviceAccountName":"default","serviceAccount":"default","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable","conditions":[{"type":"PodScheduled","status":"True"}]}})
}

fn deployment_config(replicas: i64, image: &str, sidecar: bool) -> Value {
    let mut containers = vec![json!({"name": "nginx", "image": image,
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": null}]})];
    if sidecar {
        containers.push(json!({"name": "log", "image": "busybox", "args": ["tail"]}));
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
            "creationTimestamp": null},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}}}})
}

fn show(r: Result<Value, Value>) -> String {
    match r {
        Ok(v) => serde_json::to_string(&v).unwrap_or_default(),
        Err(status) => format!("error {status}"),
    }
}

fn upd(old: Option<&Value>, new: &Value, manager: &str, sub: &str, now: &str) -> Value {
    track_update(
        old,
        new,
        manager,
        sub,
        Some(Root::Pod),
        "v1",
        sub.is_empty(),
        now,
    )
}

/// Each step's name and output.
pub(crate) fn scenarios() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut record = |name: &str, v: &Value| {
        out.push((
            name.to_string(),
            serde_json::to_string(v).unwrap_or_default(),
        ));
    };

    // Pods: create, updates, status, resets, client-written entries.
    let created = upd(None, &pod(), "kubectl-create", "", T1);
    record("pod create", &created);
    let mut edited = created.clone();
    edited["spec"]["containers"][0]["image"] = json!("registry.example/bench/app:1.2.4");
    edited["metadata"]["labels"]["tier"] = json!("frontend");
    edited["metadata"]["annotations"]
        .as_object_mut()
        .map(|a| a.shift_remove("kubernetes.io/psp"));
    let by_editor = upd(Some(&created), &edited, "kubectl-edit", "", T2);
    record("pod update by another manager", &by_editor);
    record(
        "pod update by the owner",
        &upd(Some(&created), &edited, "kubectl-create", "", T2),
    );
    let mut status = by_editor.clone();
    status["status"]["phase"] = json!("Running");
    if let Some(c) = status["status"]["conditions"].as_array_mut() {
        c.push(json!({"type": "Ready", "status": "True"}));
    }
    status["status"]["podIP"] = json!("10.0.0.7");
    let by_kubelet = upd(Some(&by_editor), &status, "kubelet", "status", T3);
    record("pod status", &by_kubelet);
    let mut status2 = by_kubelet.clone();
    status2["status"]["phase"] = json!("Succeeded");
    status2["spec"]["activeDeadlineSeconds"] = json!(5);
    record(
        "pod status again",
        &upd(Some(&by_kubelet), &status2, "kubelet", "status", T3),
    );
    let mut same = by_kubelet.clone();
    same["metadata"]["resourceVersion"] = json!("42");
    record("pod no-op", &upd(Some(&by_kubelet), &same, "noop", "", T3));
    let mut without = edited.clone();
    without["metadata"]
        .as_object_mut()
        .map(|m| m.shift_remove("managedFields"));
    without["spec"]["containers"][1]
        .as_object_mut()
        .map(|c| c.shift_remove("env"));
    record(
        "pod update without managedFields",
        &upd(Some(&by_kubelet), &without, "ctl", "", T3),
    );
    let mut reset = edited.clone();
    reset["metadata"]["managedFields"] = json!([]);
    record("pod reset", &upd(Some(&by_kubelet), &reset, "ctl", "", T3));
    let mut reset_one = edited.clone();
    reset_one["metadata"]["managedFields"] = json!([{}]);
    record(
        "pod reset with [{}]",
        &upd(Some(&by_kubelet), &reset_one, "ctl", "", T3),
    );

    // Entries written by a client, in forms this code does not write itself.
    let mut client = by_kubelet.clone();
    client["metadata"]["managedFields"] = json!([
        {"operation": "Update", "manager": "z", "apiVersion": "v1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:nodeSelector": {}, "f:dnsPolicy": {}}}},
        {"manager": "y", "operation": "Update", "apiVersion": "v1", "time": null,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}, ".": {}}}}},
        {"manager": "x", "operation": "Update", "apiVersion": "v1", "time": T2,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {
            "k:{\"name\":\"app\"}": {"f:ports": {
                "k:{\"protocol\":\"TCP\",\"containerPort\":8080}": {".": {}, "f:name": {}},
                "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {}}}}},
            "z:unknown": {}, "f:status": {".": {}}}},
        {"manager": "w", "operation": "Update", "apiVersion": "v1", "time": T2,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:finalizers": {
            "v:\"b.example/x\"": {}, "v:\"a.example/y\"": {}}}}, "extra": 1},
        {"manager": "w", "operation": "Update", "apiVersion": "v1beta1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:priority": {}}}},
        {"manager": "v", "operation": "Apply", "apiVersion": "v1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:schedulerName": {}}}, "subresource": ""}
    ]);
    client["spec"]["containers"][0]["ports"][0]["name"] = json!("web");
    client["spec"]["dnsPolicy"] = json!("Default");
    record(
        "pod client entries",
        &upd(Some(&by_kubelet), &client, "ctl", "", T3),
    );
    let mut bad = edited.clone();
    bad["metadata"]["managedFields"] = json!([{"manager": "q", "operation": "Update"}]);
    record(
        "pod undecodable client entries",
        &upd(Some(&by_kubelet), &bad, "ctl", "", T3),
    );
    let mut sent_on_create = pod();
    sent_on_create["metadata"]["managedFields"] = json!([
        {"manager": "importer", "operation": "Update", "apiVersion": "v1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}]);
    record(
        "pod create with entries",
        &upd(None, &sent_on_create, "kubectl-create", "", T2),
    );
    record(
        "pod create with status owned",
        &track_update(None, &pod(), "c", "", Some(Root::Pod), "v1", false, T1),
    );

    // More Update managers than are kept.
    let mut obj = created.clone();
    for i in 0..13 {
        let mut next = obj.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!(i.to_string());
        let now = [T1, T2, T3][i % 3];
        obj = upd(Some(&obj), &next, &format!("m{i:02}"), "", now);
    }
    record("pod many managers", &obj);

    // Server-side apply of a deployment.
    let ap = |live: Option<&Value>, cfg: &Value, manager: &str, force: bool, now: &str| {
        apply(
            live,
            cfg,
            manager,
            force,
            "apps",
            "Deployment",
            Some(Root::Deployment),
            true,
            now,
        )
        .map_err(|e| e.to_status())
    };
    let cfg = deployment_config(3, "nginx:1.25", true);
    let live = ap(None, &cfg, "kubectl", false, T1);
    out.push(("apply create".into(), show(live.clone())));
    let Ok(live) = live else {
        return out;
    };
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["status"] = json!({"replicas": 5});
    let live = track_update(
        Some(&live),
        &scaled,
        "hpa",
        "",
        Some(Root::Deployment),
        "apps/v1",
        true,
        T2,
    );
    out.push((
        "apply update by hpa".into(),
        serde_json::to_string(&live).unwrap_or_default(),
    ));
    let changed = deployment_config(3, "nginx:1.26", false);
    out.push((
        "apply conflict".into(),
        show(ap(Some(&live), &changed, "kubectl", false, T3)),
    ));
    let forced = ap(Some(&live), &changed, "kubectl", true, T3);
    out.push(("apply forced".into(), show(forced.clone())));
    let shared = ap(
        Some(&live),
        &deployment_config(5, "nginx:1.25", true),
        "kubectl",
        false,
        T3,
    );
    out.push(("apply shared".into(), show(shared)));
    let Ok(forced) = forced else {
        return out;
    };
    out.push((
        "apply no-op".into(),
        show(ap(Some(&forced), &changed, "kubectl", false, T3)),
    ));
    out.push((
        "apply by another manager".into(),
        show(ap(
            Some(&forced),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "annotations": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "extra", "image": "x"}]}}}}),
            "other",
            false,
            T3,
        )),
    ));
    let status_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "status": {"replicas": 2, "conditions": []}});
    out.push((
        "apply status".into(),
        show(
            apply_to_subresource(
                &forced,
                &status_cfg,
                "controller",
                "status",
                false,
                "apps",
                "Deployment",
                Some(Root::Deployment),
                T3,
            )
            .map_err(|e| e.to_status()),
        ),
    ));
    let dup = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
    out.push((
        "apply duplicate".into(),
        show(ap(Some(&forced), &dup, "kubectl", false, T3)),
    ));
    out
}

#[cfg(test)]
#[test]
fn outputs_match_the_recorded_ones() {
    let recorded: Vec<(String, String)> =
        serde_json::from_str(include_str!("testdata/golden.json")).expect("golden.json");
    let now = scenarios();
    assert_eq!(now.len(), recorded.len());
    for ((name, out), (recorded_name, recorded_out)) in now.iter().zip(&recorded) {
        assert_eq!(name, recorded_name);
        assert_eq!(out, recorded_out, "{name}");
    }
}
