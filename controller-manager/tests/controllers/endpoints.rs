//! Endpoints and EndpointSlices against a real apiserver and etcd: they follow pods
//! becoming ready, not ready, terminating and deleted; named target ports resolve per
//! pod; Services without a selector are left alone.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{eventually, start};

fn pod(name: &str, http_port: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
            "ports": [{"name": "http", "containerPort": http_port}]}]}
    }))
    .unwrap()
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": status}]}}),
        ),
    )
    .await
    .unwrap();
}

/// `subsets` as (ready IPs, not-ready IPs, ports) per subset, for compact assertions.
fn subsets(ep: &Endpoints) -> Vec<(Vec<String>, Vec<String>, Vec<i32>)> {
    let ips = |a: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
    };
    let mut out: Vec<_> = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            let mut ports: Vec<i32> = s.ports.iter().flatten().map(|p| p.port).collect();
            ports.sort();
            (ips(&s.addresses), ips(&s.not_ready_addresses), ports)
        })
        .collect();
    out.sort();
    out
}

async fn slices(api: &Api<EndpointSlice>, service: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap()
        .items
}

/// Every endpoint of the Service's slices as (ip, ready, serving, terminating, ports).
async fn slice_endpoints(
    api: &Api<EndpointSlice>,
    service: &str,
) -> Vec<(String, bool, bool, bool, Vec<i32>)> {
    let mut out = Vec::new();
    for s in slices(api, service).await {
        let mut ports: Vec<i32> = s.ports.iter().flatten().filter_map(|p| p.port).collect();
        ports.sort();
        for e in s.endpoints {
            let c = e.conditions.unwrap_or_default();
            out.push((
                e.addresses[0].clone(),
                c.ready == Some(true),
                c.serving == Some(true),
                c.terminating == Some(true),
                ports.clone(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pods() {
    let (_cluster, client, _cm) = start(&["endpoints", "endpointslice"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1",
                "labels": {"topology.kubernetes.io/zone": "zone-a"}}}))
            .unwrap(),
        )
        .await
        .unwrap();

    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9100}]}
    }))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();

    // No pods yet: an empty Endpoints and one placeholder slice.
    let ep = eventually("empty endpoints", || async {
        endpoints.get("web").await.ok()
    })
    .await;
    assert!(ep.subsets.is_none());
    assert_eq!(ep.metadata.labels.unwrap()["team"], "a");
    let placeholder = eventually("placeholder slice", || async {
        let s = slices(&slice_api, "web").await;
        (s.len() == 1).then(|| s.into_iter().next().unwrap())
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    assert_eq!(placeholder.address_type, "IPv4");
    let labels = placeholder.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(placeholder
        .metadata
        .name
        .as_deref()
        .unwrap()
        .starts_with("web-"));
    let owner = &placeholder.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), &owner.uid),
        ("Service", svc.metadata.uid.as_ref().unwrap())
    );

    // Two pods whose named port differs; one without an IP yet is skipped.
    for (name, port) in [("a", 8080), ("b", 8081), ("c", 8082)] {
        pods.create(&PostParams::default(), &pod(name, port))
            .await
            .unwrap();
    }
    set_status(&pods, "a", "10.1.0.1", true).await;
    set_status(&pods, "b", "10.1.0.2", false).await;
    let ep = eventually("a ready, b not ready", || async {
        let ep = endpoints.get("web").await.ok()?;
        (subsets(&ep)
            == vec![
                (vec![], vec!["10.1.0.2".into()], vec![8081, 9100]),
                (vec!["10.1.0.1".into()], vec![], vec![8080, 9100]),
            ])
        .then_some(ep)
    })
    .await;
    let annotations = ep.metadata.annotations.clone().unwrap();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    let address = ep
        .subsets
        .iter()
        .flatten()
        .find_map(|s| s.addresses.as_ref())
        .map(|a| &a[0])
        .unwrap();
    assert_eq!(address.node_name.as_deref(), Some("n1"));
    let target = address.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );

    eventually("slices per port set", || async {
        let e = slice_endpoints(&slice_api, "web").await;
        (e == vec![
            ("10.1.0.1".into(), true, true, false, vec![8080, 9100]),
            ("10.1.0.2".into(), false, false, false, vec![8081, 9100]),
        ])
        .then_some(())
    })
    .await;
    let all = slices(&slice_api, "web").await;
    assert_eq!(all.len(), 2, "the placeholder is reused or removed");
    for s in &all {
        assert_eq!(s.endpoints[0].zone.as_deref(), Some("zone-a"));
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        let names: Vec<_> = s
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["http", "metrics"]);
    }

    // b becomes ready, a stops being ready.
    set_status(&pods, "b", "10.1.0.2", true).await;
    set_status(&pods, "a", "10.1.0.1", false).await;
    eventually("b ready, a not ready", || async {
        let ep = endpoints.get("web").await.ok()?;
        (subsets(&ep)
            == vec![
                (vec![], vec!["10.1.0.1".into()], vec![8080, 9100]),
                (vec!["10.1.0.2".into()], vec![], vec![8081, 9100]),
            ])
        .then_some(())
    })
    .await;
    eventually("slice conditions follow", || async {
        let e = slice_endpoints(&slice_api, "web").await;
        (e == vec![
            ("10.1.0.1".into(), false, false, false, vec![8080, 9100]),
            ("10.1.0.2".into(), true, true, false, vec![8081, 9100]),
        ])
        .then_some(())
    })
    .await;

    // b is deleted gracefully (it is on a node): out of Endpoints, terminating in slices.
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    eventually("b out of endpoints", || async {
        let ep = endpoints.get("web").await.ok()?;
        (subsets(&ep) == vec![(vec![], vec!["10.1.0.1".into()], vec![8080, 9100])]).then_some(())
    })
    .await;
    eventually("b terminating in slices", || async {
        let e = slice_endpoints(&slice_api, "web").await;
        e.contains(&("10.1.0.2".into(), false, true, true, vec![8081, 9100]))
            .then_some(())
    })
    .await;
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("b", &force).await.unwrap();
    eventually("b gone from slices", || async {
        let e = slice_endpoints(&slice_api, "web").await;
        (e == vec![("10.1.0.1".into(), false, false, false, vec![8080, 9100])]).then_some(())
    })
    .await;
    eventually("one slice left", || async {
        (slices(&slice_api, "web").await.len() == 1).then_some(())
    })
    .await;

    // Deleting the Service deletes its Endpoints.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("endpoints deleted", || async {
        endpoints
            .get("web")
            .await
            .err()?
            .is_not_found()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_selector_are_left_alone() {
    let (_cluster, client, _cm) = start(&["endpoints", "endpointslice"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.168.1.1"}], "ports": [{"port": 80}]}]
    }))
    .unwrap();
    let written = endpoints.create(&PostParams::default(), &ep).await.unwrap();
    // A selected Service next to it proves the controllers are running.
    let selected: Service = serde_json::from_value(json!({
        "metadata": {"name": "selected"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &selected)
        .await
        .unwrap();
    eventually("selected service's endpoints", || async {
        endpoints.get("selected").await.ok()
    })
    .await;
    eventually("selected service's slice", || async {
        (!slices(&slice_api, "selected").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = endpoints.get("manual").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        written.metadata.resource_version
    );
    assert!(slices(&slice_api, "manual").await.is_empty());
    // The apiserver's own `default/kubernetes` Endpoints are not rewritten either.
    let kubernetes: Value =
        serde_json::to_value(endpoints.get("kubernetes").await.ok()).unwrap_or_default();
    if !kubernetes.is_null() {
        assert!(kubernetes["metadata"]["annotations"]
            .get("endpoints.kubernetes.io/last-change-trigger-time")
            .is_none());
    }
}
