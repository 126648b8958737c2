//! The scheduler's writes to the apiserver: bindings, the `PodScheduled` condition of
//! pods that fit nowhere, preemption (victims and the nominated node) and Events.
//! Each is one call, run on a task of its own by the scheduling loop.

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::podinfo::PodInfo;

/// The field manager of the scheduler's writes, as Kubernetes names it.
pub const FIELD_MANAGER: &str = "kube-scheduler";

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pods(client: &Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

/// `pods/binding`: assign the pod to `node` (the apiserver sets `spec.nodeName` and
/// `PodScheduled=True`). The uid makes sure a recreated pod of the same name is not
/// bound by mistake.
pub async fn bind(client: Client, pod: &PodInfo, node: &str) -> keelson_client::Result<()> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    pods(&client, &pod.namespace)
        .create_subresource::<_, Value>(
            "binding",
            &pod.name,
            &PostParams::default().field_manager(FIELD_MANAGER),
            &binding,
        )
        .await
        .map(|_| ())
}

/// Whether the pod already shows `PodScheduled=False/Unschedulable` with `message` and
/// the given nominated node (then there is nothing to write).
pub fn status_is_current(pod: &Pod, message: &str, nominated: Option<&str>) -> bool {
    let status = pod.status.as_ref();
    let condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same = condition.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let current = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or("");
    same && nominated.is_none_or(|n| n == current)
}

/// Record why the pod fits nowhere: `PodScheduled=False`, reason `Unschedulable`, and
/// `status.nominatedNodeName` when preemption made room (`Some("")` clears it).
pub async fn mark_unschedulable(
    client: Client,
    pod: &PodInfo,
    message: String,
    nominated: Option<String>,
) -> keelson_client::Result<()> {
    let mut status = json!({"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": now(),
    }]});
    if let Some(n) = nominated {
        status["nominatedNodeName"] = if n.is_empty() { Value::Null } else { json!(n) };
    }
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    pods(&client, &pod.namespace)
        .patch_status(&pod.name, &pp, &Patch::Strategic(json!({"status": status})))
        .await
        .map(|_| ())
}

/// Preempt a victim: mark it `DisruptionTarget` (reason `PreemptionByScheduler`), then
/// delete it gracefully.
pub async fn preempt_victim(
    client: Client,
    victim: &PodInfo,
    scheduler_name: &str,
) -> keelson_client::Result<()> {
    let api = pods(&client, &victim.namespace);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{scheduler_name}: preempting to accommodate a higher priority pod"),
        "lastProbeTime": null,
        "lastTransitionTime": now(),
    }]}});
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&victim.name, &pp, &Patch::Strategic(condition))
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    }
    let dp = DeleteParams {
        preconditions: Some(keelson_client::Preconditions {
            uid: Some(victim.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&victim.name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A core/v1 Event about a pod, from `component`.
pub fn pod_event(pod: &PodInfo, kind: &str, reason: &str, message: &str, component: &str) -> Event {
    let ts = now();
    let mut event: Event = serde_json::from_value(json!({
        "metadata": {
            "name": format!("{}.{:x}", pod.name, Utc::now().timestamp_nanos_opt().unwrap_or(0)),
            "namespace": pod.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "resourceVersion": pod.pod.metadata.resource_version,
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "count": 1,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
    }))
    .expect("a valid Event");
    event.event_time = None;
    event
}

/// Create an Event; returns its name.
pub async fn create_event(client: Client, event: Event) -> keelson_client::Result<String> {
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    let created = Api::<Event>::namespaced(client, &ns)
        .create(&PostParams::default().field_manager(FIELD_MANAGER), &event)
        .await?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// The same Event happened again: bump its count.
pub async fn repeat_event(
    client: Client,
    ns: &str,
    name: &str,
    count: i32,
) -> keelson_client::Result<()> {
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    Api::<Event>::namespaced(client, ns)
        .patch(name, &pp, &keelson_component::events::repeat_patch(count))
        .await
        .map(|_| ())
}
