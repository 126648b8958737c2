//! The EndpointSlice conformance tests (upstream test/e2e/network/endpointslice.go): the
//! discovery.k8s.io/v1 API operations, and the slices (with their Endpoints) that the
//! control plane keeps for the `kubernetes` Service and for Services with selectors;
//! and (upstream endpointslicemirroring.go) the slices mirrored from Endpoints written
//! by hand.

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::ResourceExt;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

async fn expect_endpointslice_discovery(ctx: &Ctx) {
    expect_discovery(&ctx.client, "discovery.k8s.io", "v1", "endpointslices").await;
}

fn by_service(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"))
}

/// Every address in a Service's slices.
fn slice_addresses(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

/// Every address in an Endpoints' subsets.
fn endpoints_addresses(ep: &Endpoints) -> BTreeSet<String> {
    ep.subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.ip.clone())
        .collect()
}

async fn kubernetes_endpoints_and_slices_point_to_apiserver(ctx: Ctx) {
    expect_endpointslice_discovery(&ctx).await;
    let client = ctx.client.clone();
    Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("the default/kubernetes Service");
    let ep = Api::<Endpoints>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("the default/kubernetes Endpoints");
    let subsets = ep.subsets.clone().unwrap_or_default();
    assert_eq!(subsets.len(), 1, "Endpoints subsets: {subsets:?}");
    let ep_ips = endpoints_addresses(&ep);
    assert!(
        !ep_ips.is_empty(),
        "the kubernetes Endpoints has no address"
    );
    let ep_ports: BTreeSet<i32> = subsets[0].ports.iter().flatten().map(|p| p.port).collect();

    let slices = Api::<EndpointSlice>::namespaced(client, "default")
        .list(&by_service("kubernetes"))
        .await
        .expect("listing the kubernetes EndpointSlices");
    assert_eq!(slices.items.len(), 1, "EndpointSlices: {:?}", slices.items);
    assert_eq!(
        slice_addresses(&slices.items),
        ep_ips,
        "the EndpointSlice and the Endpoints name different API servers"
    );
    let slice_ports: BTreeSet<i32> = slices.items[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port)
        .collect();
    assert_eq!(slice_ports, ep_ports, "ports differ");
}

fn service(name: &str, selector: serde_json::Value, target_port: serde_json::Value) -> Service {
    obj(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [{"name": "example", "port": 80, "protocol": "TCP", "targetPort": target_port}],
        },
    }))
}

async fn service_with_selector_gets_and_loses_endpoints_and_slices(ctx: Ctx) {
    expect_endpointslice_discovery(&ctx).await;
    let services: Api<Service> = ctx.api();
    let endpoints: Api<Endpoints> = ctx.api();
    let slices: Api<EndpointSlice> = ctx.api();
    let name = "example-empty-selector";
    let svc = service(
        name,
        json!({"does-not-match-anything": "endpoints-and-endpoint-slices"}),
        json!(80),
    );
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("creating the Service");

    let ep = poll("the Service's Endpoints", WAIT, || async {
        endpoints.get(name).await.map_err(|e| e.to_string())
    })
    .await;
    assert!(
        endpoints_addresses(&ep).is_empty(),
        "no pod matches, yet: {ep:?}"
    );
    let found = poll("the Service's EndpointSlice", WAIT, || async {
        let l = slices
            .list(&by_service(name))
            .await
            .map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            Err("none".into())
        } else {
            Ok(l.items)
        }
    })
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(slice_addresses(&found).is_empty(), "{found:?}");

    services
        .delete(name, &DeleteParams::default())
        .await
        .expect("deleting the Service");
    poll("the Endpoints to go", WAIT, || async {
        match endpoints.get(name).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    poll("the EndpointSlices to go", WAIT, || async {
        let l = slices
            .list(&by_service(name))
            .await
            .map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", l.items))
        }
    })
    .await;
}

/// The slice(s) of `service` once they hold exactly `ips` on `port`.
async fn wait_slices(
    slices: &Api<EndpointSlice>,
    service: &str,
    ips: &BTreeSet<String>,
    port: i32,
) -> Vec<EndpointSlice> {
    poll(
        &format!("EndpointSlices of {service} with {ips:?} on {port}"),
        WAIT,
        || async {
            let l = slices
                .list(&by_service(service))
                .await
                .map_err(|e| e.to_string())?;
            let ports: BTreeSet<i32> = l
                .items
                .iter()
                .filter(|s| !s.endpoints.is_empty())
                .flat_map(|s| s.ports.iter().flatten())
                .filter_map(|p| p.port)
                .collect();
            let want_ports: BTreeSet<i32> = if ips.is_empty() {
                BTreeSet::new()
            } else {
                [port].into()
            };
            if !l.items.is_empty() && slice_addresses(&l.items) == *ips && ports == want_ports {
                Ok(l.items)
            } else {
                Err(format!("{:?}", l.items))
            }
        },
    )
    .await
}

async fn wait_endpoints(api: &Api<Endpoints>, service: &str, ips: &BTreeSet<String>, port: i32) {
    poll(
        &format!("Endpoints of {service} with {ips:?} on {port}"),
        WAIT,
        || async {
            let ep = api.get(service).await.map_err(|e| e.to_string())?;
            let ports: BTreeSet<i32> = ep
                .subsets
                .iter()
                .flatten()
                .flat_map(|s| s.ports.iter().flatten())
                .map(|p| p.port)
                .collect();
            let want_ports: BTreeSet<i32> = if ips.is_empty() {
                BTreeSet::new()
            } else {
                [port].into()
            };
            if endpoints_addresses(&ep) == *ips && ports == want_ports {
                Ok(())
            } else {
                Err(format!("{ep:?}"))
            }
        },
    )
    .await
}

async fn endpoints_and_slices_for_matching_pods(ctx: Ctx) {
    expect_endpointslice_discovery(&ctx).await;
    let services: Api<Service> = ctx.api();
    let endpoints: Api<Endpoints> = ctx.api();
    let slices: Api<EndpointSlice> = ctx.api();

    let mut pod1 = ctx.pod(
        "pod1",
        json!({"restartPolicy": "Always", "containers": [ctx.sleeper("c")]}),
    );
    pod1.metadata.labels = Some([("label-pod1".to_string(), "on".to_string())].into());
    let mut pod2 = ctx.pod(
        "pod2",
        json!({"restartPolicy": "Always", "containers": [with(ctx.sleeper("c"),
            json!({"ports": [{"name": "example-name", "containerPort": 3001, "protocol": "TCP"}]}))]}),
    );
    pod2.metadata.labels = Some([("label-pod2".to_string(), "on".to_string())].into());
    ctx.create_pod(&pod1).await;
    ctx.create_pod(&pod2).await;

    let pp = PostParams::default();
    for svc in [
        service("example-int-port", json!({"label-pod1": "on"}), json!(3000)),
        service(
            "example-named-port",
            json!({"label-pod2": "on"}),
            json!("example-name"),
        ),
        service("example-no-match", json!({"no-pod": "matches"}), json!(80)),
    ] {
        services
            .create(&pp, &svc)
            .await
            .expect("creating a Service");
    }
    let ip1 = pod_ip(&ctx.wait_ready("pod1").await);
    let ip2 = pod_ip(&ctx.wait_ready("pod2").await);

    let one = |ip: &str| BTreeSet::from([ip.to_string()]);
    wait_endpoints(&endpoints, "example-int-port", &one(&ip1), 3000).await;
    wait_endpoints(&endpoints, "example-named-port", &one(&ip2), 3001).await;
    wait_endpoints(&endpoints, "example-no-match", &BTreeSet::new(), 0).await;

    for (svc, ip, port, pod) in [
        ("example-int-port", &ip1, 3000, "pod1"),
        ("example-named-port", &ip2, 3001, "pod2"),
    ] {
        let got = wait_slices(&slices, svc, &one(ip), port).await;
        let s = got.iter().find(|s| !s.endpoints.is_empty()).unwrap();
        assert_eq!(s.address_type, "IPv4", "{s:?}");
        assert_eq!(
            s.labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io"),
            "{s:?}"
        );
        let target = s.endpoints[0].target_ref.as_ref().expect("targetRef");
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Pod"), Some(pod)),
            "{s:?}"
        );
    }
    wait_slices(&slices, "example-no-match", &BTreeSet::new(), 0).await;
}

fn example_slice(label: &str) -> EndpointSlice {
    obj(json!({
        "metadata": {"generateName": "e2e-example-ing", "labels": {"special-label": label}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["1.2.3.4", "5.6.7.8"]}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }))
}

async fn endpointslice_api_operations(ctx: Ctx) {
    expect_endpointslice_discovery(&ctx).await;
    let api: Api<EndpointSlice> = ctx.api();
    let all: Api<EndpointSlice> = Api::all(ctx.client.clone());
    let label = ctx.ns.clone();
    let selected = ListParams::default().labels(&format!("special-label={label}"));

    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(
            api.create(&PostParams::default(), &example_slice(&label))
                .await
                .expect("creating an EndpointSlice"),
        );
    }
    let first = created[0].name_any();
    let got = api.get(&first).await.expect("getting an EndpointSlice");
    assert_eq!(got.endpoints, created[0].endpoints);

    let listed = api.list(&selected).await.expect("listing");
    assert_eq!(listed.items.len(), 3);
    let cluster_wide = all
        .list(&selected)
        .await
        .expect("listing in all namespaces");
    assert_eq!(cluster_wide.items.len(), 3);

    let wp = kube::api::WatchParams::default().labels(&format!("special-label={label}"));
    let rv = listed.metadata.resource_version.clone().unwrap_or_default();
    let mut w = Watcher::start(&api, &wp, &rv).await;

    let patched = api
        .patch(
            &first,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .expect("patching");
    assert_eq!(
        patched.annotations().get("patched").map(String::as_str),
        Some("true")
    );
    match w.next(WAIT).await {
        WatchEvent::Modified(s) => assert_eq!(
            s.annotations().get("patched").map(String::as_str),
            Some("true")
        ),
        other => panic!(
            "expected MODIFIED after the patch, got {}",
            describe(&other)
        ),
    }

    let mut fresh = api.get(&first).await.expect("getting");
    fresh
        .annotations_mut()
        .insert("updated".into(), "true".into());
    let updated = api
        .replace(&first, &PostParams::default(), &fresh)
        .await
        .expect("updating");
    assert_eq!(
        updated.annotations().get("updated").map(String::as_str),
        Some("true")
    );
    match w.next(WAIT).await {
        WatchEvent::Modified(s) => assert_eq!(
            s.annotations().get("updated").map(String::as_str),
            Some("true")
        ),
        other => panic!(
            "expected MODIFIED after the update, got {}",
            describe(&other)
        ),
    }

    api.delete(&first, &DeleteParams::default())
        .await
        .expect("deleting");
    match w.next(WAIT).await {
        WatchEvent::Deleted(s) => assert_eq!(s.name_any(), first),
        other => panic!("expected DELETED, got {}", describe(&other)),
    }
    match api.get(&first).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        other => panic!("the deleted EndpointSlice is still there: {other:?}"),
    }
    assert_eq!(api.list(&selected).await.expect("listing").items.len(), 2);

    api.delete_collection(&DeleteParams::default(), &selected)
        .await
        .expect("deleting the collection");
    assert_eq!(api.list(&selected).await.expect("listing").items.len(), 0);
}

/// The single address of every mirrored slice of `service` on port 80 (upstream checks
/// each slice has one port, 80, and one endpoint with one address).
fn mirrored_addresses(slices: &[EndpointSlice]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in slices {
        let ports: Vec<i32> = s.ports.iter().flatten().filter_map(|p| p.port).collect();
        if ports != [80] {
            return Err(format!("expected one port, 80, got {ports:?} in {s:?}"));
        }
        match s.endpoints.as_slice() {
            [e] if e.addresses.len() == 1 => out.push(e.addresses[0].clone()),
            other => return Err(format!("expected one endpoint with one address: {other:?}")),
        }
    }
    Ok(out)
}

/// Upstream test/e2e/network/endpointslicemirroring.go: Endpoints written by hand for a
/// Service without a selector are mirrored to EndpointSlices, through create, update
/// and delete.
async fn endpointslicemirroring_mirrors_custom_endpoints(ctx: Ctx) {
    expect_endpointslice_discovery(&ctx).await;
    let services: Api<Service> = ctx.api();
    let endpoints: Api<Endpoints> = ctx.api();
    let slices: Api<EndpointSlice> = ctx.api();
    let name = "example-custom-endpoints";
    let svc: Service = obj(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "example", "port": 80, "protocol": "TCP"}]},
    }));
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("creating the Service");
    let mut ep: Endpoints = obj(json!({
        "metadata": {"name": name},
        "subsets": [{"ports": [{"port": 80}], "addresses": [{"ip": "10.1.2.3"}]}],
    }));

    // Created: at least one slice, every one of them right (a controller whose cache
    // lags may briefly make two).
    endpoints
        .create(&PostParams::default(), &ep)
        .await
        .expect("creating the Endpoints");
    poll("a mirrored EndpointSlice with 10.1.2.3", WAIT, || async {
        let l = slices
            .list(&by_service(name))
            .await
            .map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            return Err("no EndpointSlice yet".into());
        }
        let addresses = mirrored_addresses(&l.items).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            addresses.iter().all(|a| a == "10.1.2.3"),
            "expected 10.1.2.3 in every slice, got {addresses:?}"
        );
        Ok(())
    })
    .await;

    // Updated: exactly one slice, with the new address.
    ep = endpoints.get(name).await.expect("reading the Endpoints");
    ep.subsets = Some(obj(json!([
        {"ports": [{"port": 80}], "addresses": [{"ip": "10.2.3.4"}]}
    ])));
    endpoints
        .replace(name, &PostParams::default(), &ep)
        .await
        .expect("updating the Endpoints");
    poll("one mirrored EndpointSlice with 10.2.3.4", WAIT, || async {
        let l = slices
            .list(&by_service(name))
            .await
            .map_err(|e| e.to_string())?;
        match mirrored_addresses(&l.items)?.as_slice() {
            [a] if a == "10.2.3.4" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Deleted: no slice left.
    endpoints
        .delete(name, &DeleteParams::default())
        .await
        .expect("deleting the Endpoints");
    poll("the mirrored EndpointSlices to go", WAIT, || async {
        let l = slices
            .list(&by_service(name))
            .await
            .map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", l.items))
        }
    })
    .await;
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-network] EndpointSlice should have Endpoints and EndpointSlices pointing to API Server [Conformance]", kubernetes_endpoints_and_slices_point_to_apiserver),
        test!("[sig-network] EndpointSlice should create and delete Endpoints and EndpointSlices for a Service with a selector specified [Conformance]", service_with_selector_gets_and_loses_endpoints_and_slices),
        test!("[sig-network] EndpointSlice should create Endpoints and EndpointSlices for Pods matching a Service [Conformance]", endpoints_and_slices_for_matching_pods),
        test!("[sig-network] EndpointSlice should support creating EndpointSlice API operations [Conformance]", endpointslice_api_operations),
        test!("[sig-network] EndpointSliceMirroring should mirror a custom Endpoints resource through create update and delete [Conformance]", endpointslicemirroring_mirrors_custom_endpoints),
    ]
}
