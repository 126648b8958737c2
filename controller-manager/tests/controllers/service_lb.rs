//! service-lb against a real apiserver and etcd: pool addresses handed out lowest
//! first, kept across resyncs and a controller restart, never shared (also when many
//! Services arrive at once), `loadBalancerIP` honoured or refused with an event, the
//! class honoured, addresses freed on delete and type change and handed out again;
//! without a pool, the ingress follows the Ready nodes.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Service};
use keelson_client::{Api, Client, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use keelson_controller_manager::ControllerManagerOptions;
use serde_json::{json, Value};
use support::{context, create, eventually, start_with};

fn options(pool: &str) -> ControllerManagerOptions {
    ControllerManagerOptions {
        service_lb_pool: pool.to_string(),
        ..support::options(&["service-lb"])
    }
}

/// A LoadBalancer Service with extra `spec` fields.
fn lb(name: &str, extra: Value) -> Value {
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": name},
        "ports": [{"port": 80, "targetPort": 8080}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// `status.loadBalancer.ingress` as (ip, ipMode) pairs.
async fn ingress(api: &Api<Service>, name: &str) -> Vec<(String, String)> {
    let svc = api.get(name).await.unwrap();
    svc.status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default()))
        .collect()
}

/// Waits until `name`'s ingress is exactly `ips` (each with ipMode VIP).
async fn expect_ingress(api: &Api<Service>, name: &str, ips: &[&str]) {
    let want: Vec<(String, String)> = ips
        .iter()
        .map(|ip| (ip.to_string(), "VIP".to_string()))
        .collect();
    let mut last = Vec::new();
    let what = format!("{name} to have ingress {ips:?}");
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            last = ingress(api, name).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}; last {last:?}");
}

/// Events about `name` as (type, reason, message).
async fn events(client: &Client, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits for a Warning AllocationFailed about `name` whose message has `why`.
async fn expect_refusal(client: &Client, name: &str, why: &str) {
    eventually(&format!("AllocationFailed ({why}) for {name}"), || async {
        events(client, name)
            .await
            .iter()
            .any(|(t, r, m)| t == "Warning" && r == "AllocationFailed" && m.contains(why))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn pool_addresses_are_allocated_refused_freed_and_kept() {
    let (cluster, client, task) = start_with(options("10.77.0.1-10.77.0.3, 10.77.0.4/32")).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");

    // Lowest free first, with Kubernetes' service controller events.
    create(&api, lb("a", json!({}))).await;
    expect_ingress(&api, "a", &["10.77.0.1"]).await;
    eventually("Ensuring/Ensured events for a", || async {
        let reasons: Vec<String> = events(&client, "a")
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        (reasons.contains(&"EnsuringLoadBalancer".to_string())
            && reasons.contains(&"EnsuredLoadBalancer".to_string()))
        .then_some(())
    })
    .await;

    // loadBalancerIP honoured when free and in the pool; refused when taken or outside.
    create(&api, lb("b", json!({"loadBalancerIP": "10.77.0.3"}))).await;
    expect_ingress(&api, "b", &["10.77.0.3"]).await;
    create(&api, lb("c", json!({"loadBalancerIP": "10.77.0.3"}))).await;
    expect_refusal(
        &client,
        "c",
        "loadBalancerIP 10.77.0.3 is in use by Service default/b",
    )
    .await;
    create(&api, lb("d", json!({"loadBalancerIP": "10.99.0.1"}))).await;
    expect_refusal(&client, "d", "outside the pool").await;

    // Our class is served; another class is never touched.
    create(
        &api,
        lb(
            "ours",
            json!({"loadBalancerClass": "keelson.dev/service-lb"}),
        ),
    )
    .await;
    expect_ingress(&api, "ours", &["10.77.0.2"]).await;
    create(
        &api,
        lb("theirs", json!({"loadBalancerClass": "example.com/metal"})),
    )
    .await;

    // The last address, then exhaustion.
    create(&api, lb("e", json!({}))).await;
    expect_ingress(&api, "e", &["10.77.0.4"]).await;
    create(&api, lb("f", json!({}))).await;
    expect_refusal(&client, "f", "no address left in the pool").await;
    assert!(ingress(&api, "theirs").await.is_empty());
    assert!(events(&client, "theirs").await.is_empty());
    assert!(ingress(&api, "c").await.is_empty() && ingress(&api, "d").await.is_empty());

    // Deleting a frees its address for the waiting Service.
    api.delete("a", &DeleteParams::default()).await.unwrap();
    expect_ingress(&api, "f", &["10.77.0.1"]).await;
    // b stops being a LoadBalancer: its status is cleared, and c gets the address it
    // asked for.
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "ClusterIP", "loadBalancerIP": null,
            "allocateLoadBalancerNodePorts": null, "ports": [{"port": 80, "targetPort": 8080, "nodePort": null}]}})),
    )
    .await
    .unwrap();
    expect_ingress(&api, "b", &[]).await;
    expect_ingress(&api, "c", &["10.77.0.3"]).await;

    // A restarted controller keeps every address (rebuilt from the statuses).
    let before: Vec<_> = futures::future::join_all(["c", "ours", "e", "f"].map(|n| {
        let api = api.clone();
        async move { (n, ingress(&api, n).await) }
    }))
    .await;
    task.abort();
    let _ = task.await;
    let task = tokio::spawn(keelson_controller_manager::run(context(
        &client,
        options("10.77.0.1-10.77.0.4"),
    )));
    // g waits for an address; the restarted controller has seen it (its refusal), so it
    // has seen every status as well.
    create(&api, lb("g", json!({}))).await;
    expect_refusal(&client, "g", "no address left in the pool").await;
    for (name, ips) in before {
        assert_eq!(ingress(&api, name).await, ips, "{name} after a restart");
    }
    api.delete("ours", &DeleteParams::default()).await.unwrap();
    expect_ingress(&api, "g", &["10.77.0.2"]).await;
    task.abort();
    drop(cluster);
}

#[tokio::test]
async fn many_services_at_once_never_share_an_address() {
    let (cluster, client, task) = start_with(options("10.88.0.0/28")).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let names: Vec<String> = (0..24).map(|i| format!("s{i}")).collect();
    futures::future::join_all(names.iter().map(|n| {
        let api = api.clone();
        let obj: Service = serde_json::from_value(lb(n, json!({}))).unwrap();
        async move { api.create(&PostParams::default(), &obj).await.unwrap() }
    }))
    .await;
    let all = eventually("16 Services with an address, 8 refused", || async {
        let mut given = Vec::new();
        for n in &names {
            given.extend(ingress(&api, n).await.into_iter().map(|(ip, _)| ip));
        }
        let mut refused = 0;
        for n in &names {
            let ev = events(&client, n).await;
            refused += usize::from(ev.iter().any(|e| e.1 == "AllocationFailed"));
        }
        (given.len() == 16 && refused == 8).then_some(given)
    })
    .await;
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 16, "an address was given twice: {all:?}");
    assert!(all.iter().all(|ip| ip.starts_with("10.88.0.")), "{all:?}");
    task.abort();
    drop(cluster);
}

/// Registers a node with `ip` as its InternalIP and the given readiness.
async fn node(client: &Client, name: &str, ip: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(name).await.unwrap().is_none() {
        create(&nodes, json!({"metadata": {"name": name}})).await;
    }
    let status = if ready { "True" } else { "False" };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": status}]}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_pool_the_ingress_follows_the_ready_nodes() {
    let (cluster, client, task) = start_with(options("")).await;
    node(&client, "n1", "192.168.50.12", true).await;
    node(&client, "n2", "192.168.50.11", true).await;
    node(&client, "n3", "192.168.50.13", false).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    create(&api, lb("web", json!({}))).await;
    create(
        &api,
        lb("other", json!({"loadBalancerClass": "example.com/metal"})),
    )
    .await;
    expect_ingress(&api, "web", &["192.168.50.11", "192.168.50.12"]).await;

    node(&client, "n3", "192.168.50.13", true).await;
    expect_ingress(
        &api,
        "web",
        &["192.168.50.11", "192.168.50.12", "192.168.50.13"],
    )
    .await;
    node(&client, "n2", "192.168.50.11", false).await;
    expect_ingress(&api, "web", &["192.168.50.12", "192.168.50.13"]).await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    expect_ingress(&api, "web", &["192.168.50.13"]).await;
    assert!(ingress(&api, "other").await.is_empty());
    task.abort();
    drop(cluster);
}
