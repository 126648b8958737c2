//! The Services conformance tests (upstream test/e2e/network/service.go): the API ones
//! (status lifecycle, delete collection, listing all namespaces) and the ones whose traffic
//! goes through the cluster's service proxy (endpoints, multiple ports, NodePort, type
//! changes, session affinity). Upstream's exec pod becomes a one-shot client pod whose
//! script does the requests (busybox `wget`) and whose log is the result; agnhost's
//! `serve-hostname` becomes busybox `httpd` serving the pod's hostname.

use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// The name upstream's ExternalName Services point at before a change of type.
const EXTERNAL_NAME: &str = "foo.example.com";

/// Create the Service `v` (JSON) in the test's namespace.
pub(crate) async fn create_service(ctx: &Ctx, v: Value) -> Service {
    let svc: Service = obj(v);
    ctx.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .unwrap_or_else(|e| panic!("creating Service {}: {e}", svc.name_any()))
}

pub(crate) fn cluster_ip(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_default()
}

fn node_port(s: &Service) -> Option<i32> {
    s.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

/// `n` pods named `<prefix>-<i>` serving their hostname on `port`, labelled `labels`;
/// returns them once ready.
async fn hostname_pods(ctx: &Ctx, prefix: &str, n: usize, labels: Value, port: u16) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let mut pod = ctx.pod(
            &name,
            json!({"restartPolicy": "Always", "containers": [ctx.hostname_server("server", port)]}),
        );
        pod.metadata.labels = Some(obj(labels.clone()));
        ctx.create_pod(&pod).await;
        names.push(name);
    }
    for name in &names {
        ctx.wait_ready(name).await;
    }
    names
}

/// A client pod fetches every URL (retrying while the proxy catches up); all must answer.
async fn expect_reachable(ctx: &Ctx, client: &str, urls: &[String]) -> String {
    ctx.script_output(client, &wget_script(urls, 30), json!({}))
        .await
}

/// Endpoints as (ip, port) pairs.
fn endpoint_pairs(ep: &Endpoints) -> BTreeSet<(String, i32)> {
    let mut out = BTreeSet::new();
    for s in ep.subsets.iter().flatten() {
        for a in s.addresses.iter().flatten() {
            for p in s.ports.iter().flatten() {
                out.insert((a.ip.clone(), p.port));
            }
        }
    }
    out
}

async fn wait_endpoint_pairs(ctx: &Ctx, service: &str, want: BTreeSet<(String, i32)>) {
    let api: Api<Endpoints> = ctx.api();
    poll(
        &format!("Endpoints {service} to be {want:?}"),
        WAIT,
        || async {
            let ep = api.get(service).await.map_err(|e| e.to_string())?;
            let got = endpoint_pairs(&ep);
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await
}

async fn delete_pod(ctx: &Ctx, name: &str) {
    ctx.pods()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting pod {name}: {e}"));
}

async fn serve_basic_endpoint(ctx: Ctx) {
    let name = "endpoint-test2";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"selector": {"name": name},
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )
    .await;
    wait_endpoint_pairs(&ctx, name, BTreeSet::new()).await;

    let labels = json!({"name": name});
    hostname_pods(&ctx, "pod1", 1, labels.clone(), 80).await;
    let ip1 = pod_ip(&ctx.get_pod("pod1-0").await);
    wait_endpoint_pairs(&ctx, name, [(ip1.clone(), 80)].into()).await;

    hostname_pods(&ctx, "pod2", 1, labels, 80).await;
    let ip2 = pod_ip(&ctx.get_pod("pod2-0").await);
    wait_endpoint_pairs(&ctx, name, [(ip1, 80), (ip2.clone(), 80)].into()).await;
    expect_reachable(
        &ctx,
        "client",
        &[
            format!("http://{}:80/", cluster_ip(&svc)),
            format!("http://{name}:80/"),
        ],
    )
    .await;

    delete_pod(&ctx, "pod1-0").await;
    wait_endpoint_pairs(&ctx, name, [(ip2, 80)].into()).await;
    delete_pod(&ctx, "pod2-0").await;
    wait_endpoint_pairs(&ctx, name, BTreeSet::new()).await;
}

async fn serve_multiport_endpoints(ctx: Ctx) {
    let name = "multi-endpoint-test";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"selector": {"name": name}, "ports": [
            {"name": "portname1", "port": 80, "targetPort": "svc1", "protocol": "TCP"},
            {"name": "portname2", "port": 81, "targetPort": "svc2", "protocol": "TCP"},
        ]}}),
    )
    .await;
    wait_endpoint_pairs(&ctx, name, BTreeSet::new()).await;

    for (pod, port_name, port) in [("pod1", "svc1", 100u16), ("pod2", "svc2", 101)] {
        let server = with(
            ctx.hostname_server("server", port),
            json!({"ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}]}),
        );
        let mut p = ctx.pod(
            pod,
            json!({"restartPolicy": "Always", "containers": [server]}),
        );
        p.metadata.labels = Some([("name".to_string(), name.to_string())].into());
        ctx.create_pod(&p).await;
    }
    let ip1 = pod_ip(&ctx.wait_ready("pod1").await);
    let ip2 = pod_ip(&ctx.wait_ready("pod2").await);
    wait_endpoint_pairs(&ctx, name, [(ip1, 100), (ip2.clone(), 101)].into()).await;

    let ip = cluster_ip(&svc);
    let log = expect_reachable(
        &ctx,
        "client",
        &[format!("http://{ip}:80/"), format!("http://{ip}:81/")],
    )
    .await;
    assert!(
        log.contains(&format!("OK http://{ip}:80/ pod1")),
        "port 80 must reach pod1's port svc1:\n{log}"
    );
    assert!(
        log.contains(&format!("OK http://{ip}:81/ pod2")),
        "port 81 must reach pod2's port svc2:\n{log}"
    );

    delete_pod(&ctx, "pod1").await;
    wait_endpoint_pairs(&ctx, name, [(ip2, 101)].into()).await;
    delete_pod(&ctx, "pod2").await;
    wait_endpoint_pairs(&ctx, name, BTreeSet::new()).await;
}

/// URLs at every node's InternalIP and the NodePort.
async fn node_port_urls(ctx: &Ctx, port: i32) -> Vec<String> {
    let nodes = node_internal_ips(&ctx.client).await;
    assert!(!nodes.is_empty(), "no node has an InternalIP");
    nodes
        .iter()
        .map(|(_, ip)| format!("http://{ip}:{port}/"))
        .collect()
}

async fn functioning_node_port(ctx: Ctx) {
    let name = "nodeport-test";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "selector": {"name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 9376, "protocol": "TCP"}]}}),
    )
    .await;
    let np = node_port(&svc).expect("a NodePort Service gets a nodePort");
    hostname_pods(&ctx, name, 2, json!({"name": name}), 9376).await;
    let mut urls = vec![
        format!("http://{name}:80/"),
        format!("http://{}:80/", cluster_ip(&svc)),
    ];
    urls.extend(node_port_urls(&ctx, np).await);
    expect_reachable(&ctx, "client", &urls).await;
}

/// Read, change and write the Service back (upstream's `UpdateService`).
async fn update_service(ctx: &Ctx, name: &str, f: impl Fn(&mut Service)) -> Service {
    let api: Api<Service> = ctx.api();
    let mut last = String::new();
    for _ in 0..5 {
        let mut s = api.get(name).await.expect("reading the Service");
        f(&mut s);
        match api.replace(name, &PostParams::default(), &s).await {
            Ok(s) => return s,
            Err(kube::Error::Api(e)) if e.code == 409 => last = e.message,
            Err(e) => panic!("updating Service {name}: {e}"),
        }
    }
    panic!("updating Service {name}: conflicts: {last}")
}

fn to_external_name(target: String) -> impl Fn(&mut Service) {
    move |s: &mut Service| {
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(target.clone());
        spec.cluster_ip = None;
        spec.cluster_ips = None;
    }
}

fn from_external_name(type_: &'static str) -> impl Fn(&mut Service) {
    move |s: &mut Service| {
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.type_ = Some(type_.into());
        spec.external_name = None;
        spec.ports = Some(vec![obj(
            json!({"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}),
        )]);
    }
}

/// The Service `externalsvc` with two pods behind it: what an ExternalName points to.
/// Returns its FQDN and ClusterIP.
async fn external_service(ctx: &Ctx) -> (String, String) {
    let svc = create_service(
        ctx,
        json!({"metadata": {"name": "externalsvc"}, "spec": {"selector": {"name": "externalsvc"},
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )
    .await;
    hostname_pods(ctx, "externalsvc", 2, json!({"name": "externalsvc"}), 80).await;
    (
        format!("externalsvc.{}.svc.cluster.local", ctx.ns),
        cluster_ip(&svc),
    )
}

/// Upstream's `checkExternalServiceReachability`: the ExternalName Service's FQDN must
/// resolve (through its CNAME) to an address, here the target Service's ClusterIP.
async fn expect_resolves(ctx: &Ctx, name: &str, ip: &str) {
    let fqdn = format!("{name}.{}.svc.cluster.local", ctx.ns);
    let script = format!(
        "for i in $(seq 30); do out=$(nslookup {fqdn} 2>&1) && \
         case \"$out\" in *\"Address: {ip}\"*) echo OK; exit 0;; esac; sleep 1; done; \
         echo \"$out\"; exit 1"
    );
    ctx.script_output("client", &script, json!({})).await;
}

fn assert_external_name(s: &Service, target: &str) {
    let spec = s.spec.as_ref().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
    assert_eq!(spec.external_name.as_deref(), Some(target));
    assert!(
        spec.cluster_ip.as_deref().unwrap_or("").is_empty(),
        "an ExternalName Service has no ClusterIP: {:?}",
        spec.cluster_ip
    );
    assert!(
        spec.ports.iter().flatten().all(|p| p.node_port.is_none()),
        "the nodePort must be released: {:?}",
        spec.ports
    );
}

/// The ExternalName names an in-cluster Service: its name must resolve to that Service's
/// address (the DNS server follows the CNAME inside the cluster domain).
async fn cluster_ip_to_external_name(ctx: Ctx) {
    let (target, target_ip) = external_service(&ctx).await;
    let name = "clusterip-service";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"selector": {"name": "externalsvc"},
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )
    .await;
    assert!(
        cluster_ip(&svc).parse::<std::net::IpAddr>().is_ok(),
        "no ClusterIP: {svc:?}"
    );
    let svc = update_service(&ctx, name, to_external_name(target.clone())).await;
    assert_external_name(&svc, &target);
    expect_resolves(&ctx, name, &target_ip).await;
}

/// As [`cluster_ip_to_external_name`], from a NodePort Service (its nodePort released).
async fn node_port_to_external_name(ctx: Ctx) {
    let (target, target_ip) = external_service(&ctx).await;
    let name = "nodeport-service";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "selector": {"name": "externalsvc"},
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )
    .await;
    assert!(node_port(&svc).is_some(), "no nodePort: {svc:?}");
    assert!(!cluster_ip(&svc).is_empty(), "no ClusterIP: {svc:?}");
    let svc = update_service(&ctx, name, to_external_name(target.clone())).await;
    assert_external_name(&svc, &target);
    expect_resolves(&ctx, name, &target_ip).await;
}

async fn external_name_service(ctx: &Ctx, name: &str) {
    let svc = create_service(
        ctx,
        json!({"metadata": {"name": name}, "spec": {"type": "ExternalName",
            "externalName": EXTERNAL_NAME, "selector": {"name": name}}}),
    )
    .await;
    assert!(
        cluster_ip(&svc).is_empty(),
        "an ExternalName Service gets no ClusterIP: {svc:?}"
    );
}

async fn external_name_to_cluster_ip(ctx: Ctx) {
    let name = "externalname-service";
    external_name_service(&ctx, name).await;
    let svc = update_service(&ctx, name, from_external_name("ClusterIP")).await;
    let ip = cluster_ip(&svc);
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "no ClusterIP after the change: {svc:?}"
    );
    hostname_pods(&ctx, name, 2, json!({"name": name}), 80).await;
    expect_reachable(
        &ctx,
        "client",
        &[format!("http://{name}:80/"), format!("http://{ip}:80/")],
    )
    .await;
}

async fn external_name_to_node_port(ctx: Ctx) {
    let name = "externalname-service";
    external_name_service(&ctx, name).await;
    let svc = update_service(&ctx, name, from_external_name("NodePort")).await;
    let ip = cluster_ip(&svc);
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "no ClusterIP after the change: {svc:?}"
    );
    let np = node_port(&svc).expect("a nodePort after the change");
    hostname_pods(&ctx, name, 2, json!({"name": name}), 80).await;
    let mut urls = vec![format!("http://{name}:80/"), format!("http://{ip}:80/")];
    urls.extend(node_port_urls(&ctx, np).await);
    expect_reachable(&ctx, "client", &urls).await;
}

/// Rounds of 15 requests to `url` until one round shows affinity (`sticky`: every answer
/// from one pod) or its absence (answers from more than one pod); upstream's
/// `checkAffinity`. The pod fails when no round does within 20 rounds.
fn affinity_script(url: &str, sticky: bool) -> String {
    let done = if sticky {
        "[ \"$n\" -eq 1 ]"
    } else {
        "[ \"$n\" -gt 1 ]"
    };
    format!(
        "for r in $(seq 20); do : > /tmp/h; \
         for i in $(seq 15); do timeout 3 wget -qO- {url} >> /tmp/h 2>/dev/null || echo ERR >> /tmp/h; done; \
         n=$(sort -u /tmp/h | wc -l); echo \"ROUND $r distinct=$n $(sort /tmp/h | uniq -c | tr '\\n' ' ')\"; \
         if ! grep -q ERR /tmp/h && {done}; then echo MET; exit 0; fi; sleep 1; done; exit 1"
    )
}

async fn check_affinity(ctx: &Ctx, client: &str, url: &str, sticky: bool) {
    let log = ctx
        .script_output(client, &affinity_script(url, sticky), json!({}))
        .await;
    assert!(log.contains("MET"), "{log}");
}

/// Upstream's `execAffinityTestForNonLBServiceWithOptionalTransition`: three pods behind a
/// Service with `sessionAffinity: ClientIP`; with `transition`, switch to None (answers
/// spread) and back (one pod again).
async fn affinity_test(ctx: Ctx, type_: &str, transition: bool) {
    let name = "affinity-svc";
    let svc = create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"type": type_, "selector": {"name": name},
            "sessionAffinity": "ClientIP",
            "ports": [{"port": 80, "targetPort": 9376, "protocol": "TCP"}]}}),
    )
    .await;
    let pods = hostname_pods(&ctx, name, 3, json!({"name": name}), 9376).await;
    let mut want = BTreeSet::new();
    for p in &pods {
        want.insert((pod_ip(&ctx.get_pod(p).await), 9376));
    }
    wait_endpoint_pairs(&ctx, name, want).await;

    let ip = cluster_ip(&svc);
    let mut urls = vec![format!("http://{name}:80/"), format!("http://{ip}:80/")];
    let target = if type_ == "NodePort" {
        let np_urls = node_port_urls(&ctx, node_port(&svc).expect("nodePort")).await;
        urls.extend(np_urls.iter().cloned());
        np_urls[0].clone()
    } else {
        format!("http://{ip}:80/")
    };
    expect_reachable(&ctx, "reach", &urls).await;
    check_affinity(&ctx, "affinity", &target, true).await;
    if transition {
        update_service(&ctx, name, |s| {
            s.spec.get_or_insert_with(Default::default).session_affinity = Some("None".into());
        })
        .await;
        check_affinity(&ctx, "no-affinity", &target, false).await;
        update_service(&ctx, name, |s| {
            s.spec.get_or_insert_with(Default::default).session_affinity = Some("ClientIP".into());
        })
        .await;
        check_affinity(&ctx, "affinity-again", &target, true).await;
    }
}

async fn affinity_cluster_ip(ctx: Ctx) {
    affinity_test(ctx, "ClusterIP", false).await
}

async fn affinity_node_port(ctx: Ctx) {
    affinity_test(ctx, "NodePort", false).await
}

async fn affinity_switch_cluster_ip(ctx: Ctx) {
    affinity_test(ctx, "ClusterIP", true).await
}

async fn affinity_switch_node_port(ctx: Ctx) {
    affinity_test(ctx, "NodePort", true).await
}

async fn service_status_lifecycle(ctx: Ctx) {
    let api: Api<Service> = ctx.api();
    let name = "test-service";
    let created = create_service(
        &ctx,
        json!({"metadata": {"name": name, "labels": {"test-service-static": "true"}},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/internal-vip",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    let listed = api
        .list(&ListParams::default().labels("test-service-static=true"))
        .await
        .expect("listing Services");
    assert!(listed.items.iter().any(|s| s.name_any() == name));
    let wp = kube::api::WatchParams::default().labels("test-service-static=true");
    let mut w = Watcher::start(&api, &wp, &created.resource_version().unwrap()).await;

    let status = api.get_status(name).await.expect("GET /status");
    assert_eq!(status.name_any(), name);

    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}}),
            ),
        )
        .await
        .expect("patching /status");
    let ingress_ip = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone())
    };
    assert_eq!(ingress_ip(&patched).as_deref(), Some("203.0.113.1"));
    expect_modified(&mut w, "the status patch", |s| {
        ingress_ip(s).as_deref() == Some("203.0.113.1")
    })
    .await;

    let mut fresh = api.get_status(name).await.expect("GET /status");
    fresh.status.get_or_insert_with(Default::default).conditions = Some(vec![obj(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "Set from e2e test", "lastTransitionTime": "2024-01-01T00:00:00Z",
    }))]);
    let updated = api
        .replace_status(name, &PostParams::default(), &fresh)
        .await
        .expect("updating /status");
    let has_condition = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "StatusUpdate" && c.reason == "E2E")
            })
    };
    assert!(has_condition(&updated), "{updated:?}");
    expect_modified(&mut w, "the status update", has_condition).await;

    let relabelled = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"test-service": "patched"}}})),
        )
        .await
        .expect("patching the Service");
    assert_eq!(
        relabelled.labels().get("test-service").map(String::as_str),
        Some("patched")
    );
    expect_modified(&mut w, "the label patch", |s| {
        s.labels().get("test-service").map(String::as_str) == Some("patched")
    })
    .await;

    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleting the Service");
    loop {
        match w.next(WAIT).await {
            WatchEvent::Deleted(s) if s.name_any() == name => break,
            WatchEvent::Modified(_) => continue,
            other => panic!("expected DELETED, got {}", describe(&other)),
        }
    }
}

/// The next MODIFIED event whose object satisfies `pred` (others may come first: a
/// controller may touch the Service too).
async fn expect_modified(w: &mut Watcher<Service>, after: &str, pred: impl Fn(&Service) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match w.next(left).await {
            WatchEvent::Modified(s) if pred(&s) => return,
            WatchEvent::Modified(_) => continue,
            other => panic!("after {after}: expected MODIFIED, got {}", describe(&other)),
        }
    }
}

async fn delete_collection_of_services(ctx: Ctx) {
    let api: Api<Service> = ctx.api();
    let selector = ListParams::default().labels("e2e-test-service=delete");
    for (name, labelled, port) in [
        ("e2e-svc-a", true, 8001),
        ("e2e-svc-b", true, 8002),
        ("e2e-svc-c", false, 8003),
    ] {
        let labels = if labelled {
            json!({"e2e-test-service": "delete"})
        } else {
            json!({})
        };
        create_service(
            &ctx,
            json!({"metadata": {"name": name, "labels": labels}, "spec": {
                "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}]}}),
        )
        .await;
    }
    let all = api.list(&ListParams::default()).await.expect("listing");
    assert_eq!(all.items.len(), 3, "{:?}", all.items);
    let selected = api.list(&selector).await.expect("listing by label");
    assert_eq!(selected.items.len(), 2, "{:?}", selected.items);

    api.delete_collection(&DeleteParams::default(), &selector)
        .await
        .expect("deleting the collection");
    poll("the labelled Services to go", WAIT, || async {
        let l = api.list(&selector).await.map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", l.items.len()))
        }
    })
    .await;
    let left = api.list(&ListParams::default()).await.expect("listing");
    let names: Vec<String> = left.items.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, ["e2e-svc-c"]);
}

async fn find_kubernetes_service_in_all_namespaces(ctx: Ctx) {
    let all = Api::<Service>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing Services in all namespaces");
    assert!(
        all.items
            .iter()
            .any(|s| s.name_any() == "kubernetes" && s.namespace().as_deref() == Some("default")),
        "no default/kubernetes among {} Services",
        all.items.len()
    );
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-network] Services should complete a service status lifecycle [Conformance]", service_status_lifecycle),
        test!("[sig-network] Services should delete a collection of services [Conformance]", delete_collection_of_services),
        test!("[sig-network] Services should find a service from listing all namespaces [Conformance]", find_kubernetes_service_in_all_namespaces),
        test!("[sig-network] Services should serve a basic endpoint from pods [Conformance]", serve_basic_endpoint),
        test!("[sig-network] Services should serve multiport endpoints from pods [Conformance]", serve_multiport_endpoints),
        test!("[sig-network] Services should be able to create a functioning NodePort service [Conformance]", functioning_node_port),
        test!("[sig-network] Services should be able to change the type from ExternalName to ClusterIP [Conformance]", external_name_to_cluster_ip),
        test!("[sig-network] Services should be able to change the type from ExternalName to NodePort [Conformance]", external_name_to_node_port),
        test!("[sig-network] Services should be able to change the type from ClusterIP to ExternalName [Conformance]", cluster_ip_to_external_name),
        test!("[sig-network] Services should be able to change the type from NodePort to ExternalName [Conformance]", node_port_to_external_name),
        test!("[sig-network] Services should have session affinity work for service with type clusterIP [LinuxOnly] [Conformance]", affinity_cluster_ip),
        test!("[sig-network] Services should have session affinity work for NodePort service [LinuxOnly] [Conformance]", affinity_node_port),
        test!("[sig-network] Services should be able to switch session affinity for service with type clusterIP [LinuxOnly] [Conformance]", affinity_switch_cluster_ip),
        test!("[sig-network] Services should be able to switch session affinity for NodePort service [LinuxOnly] [Conformance]", affinity_switch_node_port),
    ]
}
