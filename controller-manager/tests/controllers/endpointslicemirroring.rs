//! EndpointSliceMirroring against a real apiserver and etcd: hand-written Endpoints of a
//! selector-less Service become EndpointSlices that follow updates and deletion; the
//! skip-mirror label, a missing Service, a Service gaining a selector or going away all
//! leave no mirrored slice; over 1000 addresses in a subset are cut with a Warning.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{create, eventually, start};

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";

async fn slices(api: &Api<EndpointSlice>, service: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap()
        .items
}

/// Each slice as (addressType, ports, [(address, ready)]), sorted.
type Shape = (String, Vec<(String, i32)>, Vec<(String, bool)>);

async fn shapes(api: &Api<EndpointSlice>, service: &str) -> Vec<Shape> {
    let mut out: Vec<Shape> = slices(api, service)
        .await
        .into_iter()
        .map(|s| {
            let ports = s
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0)))
                .collect();
            let mut eps: Vec<(String, bool)> = s
                .endpoints
                .iter()
                .map(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                    (e.addresses[0].clone(), ready)
                })
                .collect();
            eps.sort();
            (s.address_type, ports, eps)
        })
        .collect();
    out.sort();
    out
}

fn shape(family: &str, ports: &[(&str, i32)], eps: &[(&str, bool)]) -> Shape {
    (
        family.into(),
        ports.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        eps.iter().map(|(a, r)| (a.to_string(), *r)).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_mirrored_through_create_update_and_delete() {
    let (_cluster, client, _cm) = start(&["endpointslicemirroring", "endpointslice"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    create(
        &services,
        json!({"metadata": {"name": "db"}, "spec": {"ports": [{"name": "sql", "port": 5432}]}}),
    )
    .await;
    let ep: Endpoints = create(
        &endpoints,
        json!({
            "metadata": {"name": "db", "labels": {"team": "data"}, "annotations": {
                "note": "external", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.10", "hostname": "primary", "nodeName": "n1"}],
                 "notReadyAddresses": [{"ip": "192.0.2.11"}],
                 "ports": [{"name": "sql", "port": 5432}]},
                {"addresses": [{"ip": "2001:db8::10"}], "ports": [{"name": "sql", "port": 5432}]}
            ]
        }),
    )
    .await;

    // One slice per address family, ready and not-ready addresses with their condition.
    eventually("mirrored slices", || async {
        let s = shapes(&slice_api, "db").await;
        (s == vec![
            shape(
                "IPv4",
                &[("sql", 5432)],
                &[("192.0.2.10", true), ("192.0.2.11", false)],
            ),
            shape("IPv6", &[("sql", 5432)], &[("2001:db8::10", true)]),
        ])
        .then_some(())
    })
    .await;
    let all = slices(&slice_api, "db").await;
    for s in &all {
        let meta = &s.metadata;
        assert!(meta.name.as_deref().unwrap().starts_with("db-"), "{meta:?}");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY], MIRRORING);
        assert_eq!(labels["team"], "data");
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations,
            BTreeMap::from([("note".to_string(), "external".to_string())])
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), &owner.uid, owner.controller),
            ("Endpoints", ep.metadata.uid.as_ref().unwrap(), Some(true))
        );
    }
    let v4 = all.iter().find(|s| s.address_type == "IPv4").unwrap();
    let primary = v4
        .endpoints
        .iter()
        .find(|e| e.addresses[0] == "192.0.2.10")
        .unwrap();
    assert_eq!(primary.hostname.as_deref(), Some("primary"));
    assert_eq!(primary.node_name.as_deref(), Some("n1"));
    let v4_name = v4.metadata.name.clone().unwrap();

    // An update: the same slice is rewritten, the IPv6 one goes with its address.
    let mut changed = endpoints.get("db").await.unwrap();
    changed.subsets = Some(
        serde_json::from_value(json!([{
            "addresses": [{"ip": "192.0.2.20"}, {"ip": "192.0.2.21"}],
            "ports": [{"name": "sql", "port": 5432}]}]))
        .unwrap(),
    );
    endpoints
        .replace("db", &PostParams::default(), &changed)
        .await
        .unwrap();
    eventually("the update mirrored", || async {
        let s = shapes(&slice_api, "db").await;
        (s == vec![shape(
            "IPv4",
            &[("sql", 5432)],
            &[("192.0.2.20", true), ("192.0.2.21", true)],
        )])
        .then_some(())
    })
    .await;
    assert_eq!(
        slices(&slice_api, "db").await[0].metadata.name.as_deref(),
        Some(v4_name.as_str()),
        "the slice is updated in place"
    );

    // A slice changed by someone else is written back.
    let mut tampered = slices(&slice_api, "db").await.remove(0);
    tampered.endpoints.truncate(1);
    slice_api
        .replace(&v4_name, &PostParams::default(), &tampered)
        .await
        .unwrap();
    eventually("the tampered slice restored", || async {
        let s = shapes(&slice_api, "db").await;
        (s == vec![shape(
            "IPv4",
            &[("sql", 5432)],
            &[("192.0.2.20", true), ("192.0.2.21", true)],
        )])
        .then_some(())
    })
    .await;

    // Deleting the Endpoints deletes the slices (without a garbage collector running).
    endpoints
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    eventually("slices deleted with the Endpoints", || async {
        slices(&slice_api, "db").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_endpoints_of_selectorless_services_are_mirrored() {
    let (_cluster, client, _cm) = start(&["endpointslicemirroring", "endpointslice"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let endpoints_json = |name: &str, ip: &str| {
        json!({"metadata": {"name": name},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]})
    };

    // Endpoints before their Service: nothing until the Service exists.
    create(&endpoints, endpoints_json("late", "192.0.2.1")).await;
    // Labelled skip-mirror: never mirrored.
    let mut skipped = endpoints_json("skipped", "192.0.2.2");
    skipped["metadata"]["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    create(&endpoints, skipped).await;
    create(
        &services,
        json!({"metadata": {"name": "skipped"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    // A mirrored one next to them shows the controller at work.
    create(
        &services,
        json!({"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create(&endpoints, endpoints_json("plain", "192.0.2.3")).await;
    eventually("plain mirrored", || async {
        (slices(&slice_api, "plain").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(slices(&slice_api, "late").await.is_empty());
    assert!(slices(&slice_api, "skipped").await.is_empty());

    // The Service arrives: mirrored.
    create(
        &services,
        json!({"metadata": {"name": "late"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    eventually("late mirrored once its Service exists", || async {
        let s = shapes(&slice_api, "late").await;
        (s == vec![shape("IPv4", &[("", 80)], &[("192.0.2.1", true)])]).then_some(())
    })
    .await;

    // The skip-mirror label removed: mirrored; put back: the slice goes.
    let patch = |v: &str| {
        Patch::Merge(
            json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": v}}}),
        )
    };
    endpoints
        .patch("skipped", &PatchParams::default(), &patch("false"))
        .await
        .unwrap();
    eventually("skipped mirrored once the label is false", || async {
        (slices(&slice_api, "skipped").await.len() == 1).then_some(())
    })
    .await;
    endpoints
        .patch("skipped", &PatchParams::default(), &patch("true"))
        .await
        .unwrap();
    eventually("skipped's slice removed", || async {
        slices(&slice_api, "skipped").await.is_empty().then_some(())
    })
    .await;

    // The Service gains a selector: our slice goes, the EndpointSlice controller's
    // (empty, nothing selected) takes its place.
    services
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app": "none"}}})),
        )
        .await
        .unwrap();
    eventually("the mirrored slice replaced", || async {
        let s = slices(&slice_api, "late").await;
        let managers: Vec<_> = s
            .iter()
            .map(|s| s.metadata.labels.as_ref().unwrap()[MANAGED_BY].clone())
            .collect();
        (managers == ["endpointslice-controller.k8s.io"]).then_some(())
    })
    .await;

    // The Service goes (its Endpoints stay): the mirrored slice goes too.
    services
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    eventually("plain's slice removed with its Service", || async {
        slices(&slice_api, "plain").await.is_empty().then_some(())
    })
    .await;
    assert!(endpoints.get("plain").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_1000_addresses_in_a_subset_are_cut_with_a_warning() {
    let (_cluster, client, _cm) = start(&["endpointslicemirroring"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    create(
        &services,
        json!({"metadata": {"name": "big"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let addresses: Vec<_> = (0..1005)
        .map(|i| json!({"ip": format!("10.50.{}.{}", i / 200, i % 200 + 1)}))
        .collect();
    create(
        &endpoints,
        json!({"metadata": {"name": "big"},
            "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]}),
    )
    .await;
    let s = eventually("a full slice", || async {
        let s = slices(&slice_api, "big").await;
        (s.len() == 1).then_some(s)
    })
    .await;
    assert_eq!(s[0].endpoints.len(), 1000);
    let event = eventually("the TooManyAddressesToMirror event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TooManyAddressesToMirror"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Endpoints"));
    assert_eq!(event.involved_object.name.as_deref(), Some("big"));
    let message = event.message.unwrap_or_default();
    assert!(message.contains("5 addresses were skipped"), "{message}");
}
