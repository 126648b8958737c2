//! The DNS conformance tests (upstream test/e2e/network/dns.go). Upstream's probe pods loop
//! `dig` (UDP and TCP) and write one file per name that resolved, read back through
//! pods/proxy; here a one-shot pod loops busybox `nslookup` (UDP, through the pod's search
//! list) over the same names and record types until each answers with what is expected,
//! and its log is the result. `/etc/hosts` and `resolv.conf` are read from the pod.

use super::services::{cluster_ip, create_service};
use super::Test;
use crate::framework::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

/// One lookup: record type (`a`, `srv`, `cname`, `ptr`), name, and text its answer must hold.
struct Lookup {
    kind: &'static str,
    name: String,
    want: String,
}

fn lookup(kind: &'static str, name: impl Into<String>, want: impl Into<String>) -> Lookup {
    Lookup {
        kind,
        name: name.into(),
        want: want.into(),
    }
}

/// An A lookup answered with `ip` (busybox prints answers as `Address: <ip>`, the server's
/// own line with a tab).
fn a(name: impl Into<String>, ip: &str) -> Lookup {
    lookup("a", name, format!("Address: {ip}"))
}

/// A name resolved by the C library (busybox `wget` prints `Connecting to <name>
/// (<ip>:1)`): it walks the search list with `ndots:5` as `dig +search` does, where busybox
/// `nslookup` asks a dotted name as given first and stops at the SERVFAIL of a name the
/// cluster DNS cannot forward.
fn host(name: impl Into<String>, ip: &str) -> Lookup {
    lookup("host", name, format!("({ip}:1)"))
}

/// A script that retries each lookup for up to 30 s and prints `OK`/`FAIL` per name; it
/// exits 1 when one failed. `$POD_IP` and `$NS` are set from the downward API.
fn lookup_script(lookups: &[Lookup]) -> String {
    let mut s = String::from(
        "rc=0; check() { ok=; for i in $(seq 30); do \
         out=$(if [ $1 = host ]; then timeout 3 wget -O /dev/null \"http://$2:1/\" 2>&1; true; \
         else nslookup -type=$1 \"$2\" 2>&1; fi) && case \"$out\" in *\"$3\"*) ok=1; break;; esac; \
         sleep 1; done; if [ -n \"$ok\" ]; then echo \"OK $1 $2\"; \
         else echo \"FAIL $1 $2 (want $3): $out\"; rc=1; fi; }; ",
    );
    for l in lookups {
        s.push_str(&format!("check {} \"{}\" \"{}\"; ", l.kind, l.name, l.want));
    }
    s.push_str("exit $rc");
    s
}

/// Spec fragment giving the container `$POD_IP` and `$NS`.
fn downward_env() -> Value {
    json!([
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ])
}

/// Run the lookups from a pod (spec `extra` merged in, labels `labels`); every one must
/// resolve.
async fn expect_lookups(ctx: &Ctx, pod: &str, lookups: &[Lookup], extra: Value, labels: Value) {
    let container = with(
        ctx.sh("querier", &lookup_script(lookups)),
        json!({"env": downward_env()}),
    );
    let mut p = ctx.pod(pod, with(json!({"containers": [container]}), extra));
    p.metadata.labels = Some(obj(labels));
    let (ok, log) = ctx.run_to_end(p, "querier").await;
    assert!(ok, "lookups from {pod} failed:\n{log}");
}

fn reverse_name(ip: &str) -> String {
    let mut parts: Vec<&str> = ip.split('.').collect();
    parts.reverse();
    format!("{}.in-addr.arpa", parts.join("."))
}

async fn dns_for_the_cluster(ctx: Ctx) {
    let svc = Api::<Service>::namespaced(ctx.client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("default/kubernetes");
    let ip = cluster_ip(&svc);
    let lookups = [
        host("kubernetes.default", &ip),
        host("kubernetes.default.svc", &ip),
        a("kubernetes.default.svc.cluster.local", &ip),
        // The querier's own pod record, a-b-c-d.<ns>.pod.<domain>.
        lookup(
            "a",
            "$(echo $POD_IP | tr . -).$NS.pod.cluster.local",
            "Address: $POD_IP",
        ),
    ];
    expect_lookups(&ctx, "dns-querier", &lookups, json!({}), json!({})).await;
}

/// The headless `dns-test-service` and the ClusterIP `test-service-2`, both selecting
/// `dns-test=true` on a named port `http`; a ready pod behind them. Returns (the pod's IP,
/// the ClusterIP).
async fn services_and_target(ctx: &Ctx) -> (String, String) {
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}]);
    create_service(
        ctx,
        json!({"metadata": {"name": "dns-test-service"}, "spec": {"clusterIP": "None",
            "selector": {"dns-test": "true"}, "ports": ports}}),
    )
    .await;
    let regular = create_service(
        ctx,
        json!({"metadata": {"name": "test-service-2"}, "spec": {
            "selector": {"dns-test": "true"}, "ports": ports}}),
    )
    .await;
    let mut target = ctx.pod(
        "dns-target",
        json!({"restartPolicy": "Always", "containers": [ctx.hostname_server("server", 80)]}),
    );
    target.metadata.labels = Some([("dns-test".to_string(), "true".to_string())].into());
    ctx.create_pod(&target).await;
    let ip = pod_ip(&ctx.wait_ready("dns-target").await);
    (ip, cluster_ip(&regular))
}

async fn dns_for_services(ctx: Ctx) {
    let (pod_ip, svc_ip) = services_and_target(&ctx).await;
    let ns = &ctx.ns;
    let lookups = [
        a(format!("dns-test-service.{ns}.svc.cluster.local"), &pod_ip),
        lookup(
            "srv",
            format!("_http._tcp.dns-test-service.{ns}.svc.cluster.local"),
            "service = ",
        ),
        a(format!("test-service-2.{ns}.svc.cluster.local"), &svc_ip),
        lookup(
            "srv",
            format!("_http._tcp.test-service-2.{ns}.svc.cluster.local"),
            format!("80 test-service-2.{ns}.svc.cluster.local"),
        ),
        lookup(
            "ptr",
            reverse_name(&svc_ip),
            format!("test-service-2.{ns}.svc.cluster.local"),
        ),
    ];
    expect_lookups(&ctx, "dns-querier", &lookups, json!({}), json!({})).await;
}

/// Not in the catalog yet: its SRV lookups of dotted partial names need a client that
/// walks the search list first (`dig +search`); busybox `nslookup` asks them as given and
/// stops at the SERVFAIL keelson-dns answers without an upstream (docs/conformance.md).
#[allow(dead_code)]
async fn dns_for_partial_names(ctx: Ctx) {
    let (pod_ip, svc_ip) = services_and_target(&ctx).await;
    let ns = &ctx.ns;
    let mut lookups = Vec::new();
    for (svc, ip) in [("dns-test-service", &pod_ip), ("test-service-2", &svc_ip)] {
        for name in [
            svc.to_string(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
        ] {
            lookups.push(a(name.clone(), ip));
            lookups.push(lookup("srv", format!("_http._tcp.{name}"), "service = "));
        }
    }
    expect_lookups(&ctx, "dns-querier", &lookups, json!({}), json!({})).await;
}

async fn dns_for_external_name(ctx: Ctx) {
    let name = "dns-test-service-3";
    let api: Api<Service> = ctx.api();
    create_service(
        &ctx,
        json!({"metadata": {"name": name}, "spec": {"type": "ExternalName",
            "externalName": "foo.example.com"}}),
    )
    .await;
    let fqdn = format!("{name}.{}.svc.cluster.local", ctx.ns);
    let cname = |target: &str| lookup("cname", fqdn.clone(), format!("canonical name = {target}"));
    expect_lookups(
        &ctx,
        "querier-foo",
        &[cname("foo.example.com")],
        json!({}),
        json!({}),
    )
    .await;

    let mut svc = api.get(name).await.expect("reading the Service");
    svc.spec.as_mut().unwrap().external_name = Some("bar.example.com".into());
    api.replace(name, &PostParams::default(), &svc)
        .await
        .expect("changing externalName");
    expect_lookups(
        &ctx,
        "querier-bar",
        &[cname("bar.example.com")],
        json!({}),
        json!({}),
    )
    .await;

    let mut svc = api.get(name).await.expect("reading the Service");
    let spec = svc.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.external_name = None;
    spec.ports = Some(vec![obj(
        json!({"name": "http", "port": 80, "protocol": "TCP"}),
    )]);
    let svc = api
        .replace(name, &PostParams::default(), &svc)
        .await
        .expect("changing the type to ClusterIP");
    let ip = cluster_ip(&svc);
    assert!(!ip.is_empty(), "no ClusterIP after the change: {svc:?}");
    expect_lookups(&ctx, "querier-a", &[a(fqdn, &ip)], json!({}), json!({})).await;
}

/// A headless Service `dns-test-service-2` selecting `dns-test-hostname=true`.
async fn headless_for_hostname(ctx: &Ctx) {
    create_service(
        ctx,
        json!({"metadata": {"name": "dns-test-service-2"}, "spec": {"clusterIP": "None",
            "selector": {"dns-test-hostname": "true"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .await;
}

/// The pod `dns-querier-2` in subdomain `dns-test-service-2` (behind the headless Service).
fn querier_2() -> (Value, Value) {
    (
        json!({"hostname": "dns-querier-2", "subdomain": "dns-test-service-2"}),
        json!({"dns-test-hostname": "true"}),
    )
}

async fn dns_for_pod_hostname(ctx: Ctx) {
    headless_for_hostname(&ctx).await;
    let fqdn = format!(
        "dns-querier-2.dns-test-service-2.{}.svc.cluster.local",
        ctx.ns
    );
    // The kubelet's /etc/hosts names the pod by FQDN and hostname; DNS has the FQDN.
    let script = format!(
        "awk -v ip=\"$POD_IP\" '$1 == ip {{ for (i = 2; i <= NF; i++) \
         {{ if ($i == \"{fqdn}\") f++; if ($i == \"dns-querier-2\") f++ }} }} END {{ exit (f != 2) }}' /etc/hosts && \
         [ \"$(hostname)\" = dns-querier-2 ] || {{ cat /etc/hosts; hostname; exit 1; }}; "
    );
    let lookups = [lookup("a", fqdn, "Address: $POD_IP")];
    let (extra, labels) = querier_2();
    let container = with(
        ctx.sh("querier", &(script + &lookup_script(&lookups))),
        json!({"env": downward_env()}),
    );
    let mut p = ctx.pod(
        "dns-querier-2",
        with(json!({"containers": [container]}), extra),
    );
    p.metadata.labels = Some(obj(labels));
    let (ok, log) = ctx.run_to_end(p, "querier").await;
    assert!(ok, "hostname checks failed:\n{log}");
}

async fn dns_for_pod_subdomain(ctx: Ctx) {
    headless_for_hostname(&ctx).await;
    let ns = &ctx.ns;
    let lookups = [
        lookup(
            "a",
            format!("dns-querier-2.dns-test-service-2.{ns}.svc.cluster.local"),
            "Address: $POD_IP",
        ),
        lookup(
            "a",
            format!("dns-test-service-2.{ns}.svc.cluster.local"),
            "Address: $POD_IP",
        ),
    ];
    let (extra, labels) = querier_2();
    expect_lookups(&ctx, "dns-querier-2", &lookups, extra, labels).await;
}

async fn etc_hosts_entries(ctx: Ctx) {
    let container = with(
        ctx.sh("c", "echo POD_IP=$POD_IP; cat /etc/hosts"),
        json!({"env": downward_env()}),
    );
    let pod = ctx.pod(
        "dns-querier-1",
        json!({"hostname": "dns-querier-1", "subdomain": "dns-test-service",
            "containers": [container]}),
    );
    let (ok, log) = ctx.run_to_end(pod, "c").await;
    assert!(ok, "{log}");
    let ip = log
        .lines()
        .find_map(|l| l.strip_prefix("POD_IP="))
        .unwrap_or_else(|| panic!("no pod IP in:\n{log}"))
        .trim();
    let fqdn = format!(
        "dns-querier-1.dns-test-service.{}.svc.cluster.local",
        ctx.ns
    );
    let own: Vec<&str> = log
        .lines()
        .find(|l| l.split_whitespace().next() == Some(ip))
        .unwrap_or_else(|| panic!("/etc/hosts has no line for {ip}:\n{log}"))
        .split_whitespace()
        .collect();
    assert!(
        own.contains(&fqdn.as_str()) && own.contains(&"dns-querier-1"),
        "/etc/hosts line for {ip} lacks {fqdn} or dns-querier-1:\n{log}"
    );
    assert!(
        log.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"127.0.0.1") && f.contains(&"localhost")
        }),
        "/etc/hosts lacks localhost:\n{log}"
    );
}

async fn configurable_nameservers(ctx: Ctx) {
    let log = ctx
        .script_output(
            "dns-config",
            "cat /etc/resolv.conf",
            json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["resolv.conf.local"]}}),
        )
        .await;
    let field = |key: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|rest| rest.split_whitespace().map(String::from))
            .collect()
    };
    assert_eq!(field("nameserver "), ["1.1.1.1"], "resolv.conf:\n{log}");
    assert_eq!(
        field("search "),
        ["resolv.conf.local"],
        "resolv.conf:\n{log}"
    );
}

pub fn tests() -> Vec<Test> {
    vec![
        test!(
            "[sig-network] DNS should provide DNS for the cluster [Conformance]",
            dns_for_the_cluster
        ),
        test!(
            "[sig-network] DNS should provide DNS for services [Conformance]",
            dns_for_services
        ),
        test!(
            "[sig-network] DNS should provide DNS for ExternalName services [Conformance]",
            dns_for_external_name
        ),
        test!(
            "[sig-network] DNS should provide DNS for pods for Hostname [Conformance]",
            dns_for_pod_hostname
        ),
        test!(
            "[sig-network] DNS should provide DNS for pods for Subdomain [Conformance]",
            dns_for_pod_subdomain
        ),
        test!(
            "[sig-network] DNS should provide /etc/hosts entries for the cluster [Conformance]",
            etc_hosts_entries
        ),
        test!(
            "[sig-network] DNS should support configurable pod DNS nameservers [Conformance]",
            configurable_nameservers
        ),
    ]
}
