//! Services that answer, on the two real nodes with keelson-proxy (nftables) and
//! keelson-dns on each: the seed scenario users start with (a LoadBalancer Service in
//! front of a Deployment of `httpd:latest` pulled through the docker.io mirror), reached
//! from a host outside the cluster at its EXTERNAL-IP and each node's NodePort, and
//! from a pod on each node at its ClusterIP and DNS name; then the proxy's behaviours
//! one by one (affinity, no endpoints, hairpin, node-local traffic policies, the node
//! itself as a client, a restarted proxy).

use std::time::Duration;

use keelson_e2e::net::{
    get_json, hostname_server_pod, kubectl, network_diagnostics, proxy_logs, sleeper_pod, until,
    wget_in_pod,
};
use keelson_e2e::{DOCKER_IO, NODE_CLUSTER};
use keelson_testkit::node::OutsideHost;
use keelson_testkit::{eventually, ok};
use serde_json::Value;

/// `curl URL` from the outside host; `None` when it fails.
fn curl_outside(host: &OutsideHost, url: &str) -> Option<String> {
    let out = host
        .command("curl")
        .args(["-sS", "--max-time", "3", url])
        .output()
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `curl URL` from the outside host where it must succeed: a generous time-out (the
/// machine may be loaded), and curl's own error with the proxies' logs when it fails.
fn must_get(host: &OutsideHost, url: &str, what: &str) -> String {
    let out = host
        .command("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .expect("curl");
    if !out.status.success() {
        let host_part = url.trim_start_matches("http://");
        let address = host_part.split([':', '/']).next().unwrap_or_default();
        panic!(
            "{what}: curl {url}: {} ({})\n{}\n{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status,
            proxy_logs(),
            network_diagnostics(address)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The HTTP status `URL` answers the outside host with; `None` when nothing answers.
fn status_outside(host: &OutsideHost, url: &str) -> Option<u16> {
    let out = host
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|c| *c != 0)
}

/// The ready endpoints' addresses in the Service's EndpointSlices.
fn ready_endpoints(ns: &str, service: &str) -> Vec<String> {
    let v = get_json(&[
        "get",
        "endpointslices",
        "-n",
        ns,
        "-l",
        &format!("kubernetes.io/service-name={service}"),
    ]);
    let mut out = Vec::new();
    for s in v["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] != false {
                out.extend(
                    e["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(String::from)),
                );
            }
        }
    }
    out.sort();
    out
}

/// The seed scenario, as a user applies it.
const SEED: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector:
    app: web
    tier: frontend
  ports:
  - port: 80
    targetPort: web
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app: web
      tier: frontend
  template:
    metadata:
      labels:
        app: web
        tier: frontend
    spec:
      containers:
      - name: httpd
        image: httpd:latest
        ports:
        - containerPort: 80
          name: web
"#;

/// Which pod answered (the test httpd page names its hostname, the pod's name).
fn answered_by(page: &str) -> String {
    page.split("<p>")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_load_balancer_service_answers_from_outside_every_node_and_every_pod() {
    let c = &*NODE_CLUSTER;
    let _mirror = &*DOCKER_IO;
    let ns = "seed";
    kubectl(&["create", "namespace", ns]);
    ok(c.cluster
        .kubectl_with("kubectl", &["apply", "-n", ns, "-f", "-"], Some(SEED)));
    for n in &c.nodes {
        NODE_CLUSTER.apply(
            ns,
            &sleeper_pod(
                &format!("client-{}", n.host.index),
                "{role: client}",
                n.name(),
            ),
        );
    }
    ok(c.kubectl(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        ns,
        "--timeout=180s",
    ]));
    let svc = get_json(&["get", "service", "web", "-n", ns]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let external_ip = eventually(Duration::from_secs(30), "an EXTERNAL-IP", || {
        let v = get_json(&["get", "service", "web", "-n", ns]);
        v["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(String::from)
    });
    assert!(
        external_ip.starts_with(&c.network.cidr()[..c.network.cidr().len() - 4]),
        "the EXTERNAL-IP {external_ip} comes from the pool on the node network"
    );

    // From outside the cluster: the EXTERNAL-IP (one node answers ARP for it) and
    // every node's NodePort.
    let outside = c.network.add_outside_host().expect("an outside host");
    let page = until("the EXTERNAL-IP answers", Duration::from_secs(30), || {
        curl_outside(&outside, &format!("http://{external_ip}/"))
            .filter(|p| p.contains("It works!"))
            .ok_or_else(|| "no page".to_string())
    });
    assert!(!answered_by(&page).is_empty(), "{page}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let p = must_get(&outside, &format!("http://{external_ip}/"), "spreading");
        seen.insert(answered_by(&p));
    }
    assert!(
        seen.len() >= 2,
        "requests are spread over the endpoints: {seen:?}"
    );
    for n in &c.nodes {
        let url = format!("http://{}:{node_port}/", n.host.ip);
        until(
            &format!("NodePort on {}", n.name()),
            Duration::from_secs(15),
            || {
                curl_outside(&outside, &url)
                    .filter(|p| p.contains("It works!"))
                    .ok_or_else(|| url.clone())
            },
        );
    }

    // From a pod on each node: the ClusterIP, the full DNS name and the short one
    // through the search list.
    for n in &c.nodes {
        let pod = format!("client-{}", n.host.index);
        c.wait_running(ns, &pod, true);
        for url in [
            format!("http://{cluster_ip}/"),
            "http://web.seed.svc.cluster.local/".to_string(),
            "http://web/".to_string(),
        ] {
            until(
                &format!("{url} from {pod}"),
                Duration::from_secs(20),
                || {
                    let (ok, text) = wget_in_pod(ns, &pod, &url);
                    (ok && text.contains("It works!")).then_some(()).ok_or(text)
                },
            );
        }
    }

    // Scale down: once the slice has one endpoint and the proxies synced, only that
    // pod answers, although the others are still terminating (and still serving).
    ok(c.kubectl(&["scale", "deployment/web", "-n", ns, "--replicas=1"]));
    let left = until("one ready endpoint", Duration::from_secs(60), || {
        let eps = ready_endpoints(ns, "web");
        (eps.len() == 1)
            .then(|| eps[0].clone())
            .ok_or(format!("{eps:?}"))
    });
    let pods = get_json(&["get", "pods", "-n", ns, "-l", "app=web"]);
    let survivor = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"]["podIP"] == left.as_str())
        .and_then(|p| p["metadata"]["name"].as_str())
        .expect("the endpoint's pod")
        .to_string();
    // Once the proxy on the announcing node synced (at most a second or two, more on
    // a loaded machine), only the survivor answers.
    let mut streak = 0;
    until("only the survivor answers", Duration::from_secs(20), || {
        let p = must_get(
            &outside,
            &format!("http://{external_ip}/"),
            "after a scale-down",
        );
        streak = if answered_by(&p) == survivor {
            streak + 1
        } else {
            0
        };
        (streak >= 5)
            .then_some(())
            .ok_or(format!("{streak} in a row"))
    });
    for _ in 0..20 {
        let p = must_get(
            &outside,
            &format!("http://{external_ip}/"),
            "after a scale-down",
        );
        assert_eq!(answered_by(&p), survivor, "only the remaining pod answers");
    }

    // Delete a pod while requests run: they keep succeeding (the deleted pod drains
    // while its endpoint goes), and once the proxies synced it gets none.
    ok(c.kubectl(&["scale", "deployment/web", "-n", ns, "--replicas=2"]));
    until("two ready endpoints", Duration::from_secs(60), || {
        let eps = ready_endpoints(ns, "web");
        (eps.len() == 2).then_some(()).ok_or(format!("{eps:?}"))
    });
    std::thread::sleep(Duration::from_millis(2500));
    ok(c.kubectl(&["delete", "pod", "-n", ns, &survivor, "--wait=false"]));
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let p = must_get(
            &outside,
            &format!("http://{external_ip}/"),
            "while a pod was deleted",
        );
        answers.push((started.elapsed(), answered_by(&p)));
        std::thread::sleep(Duration::from_millis(100));
    }
    let late: Vec<_> = answers
        .iter()
        .filter(|(t, who)| *t > Duration::from_secs(5) && *who == survivor)
        .collect();
    assert!(
        late.is_empty(),
        "the deleted pod still got requests after the sync: {late:?}"
    );

    ok(c.kubectl(&["delete", "namespace", ns, "--wait=false"]));
}

/// Two echo pods (one per node) serving their own name on 8080.
fn echo_pods(ns: &str) {
    for n in &NODE_CLUSTER.nodes {
        let i = n.host.index;
        let labels = format!("{{app: echo, index: \"{i}\"}}");
        NODE_CLUSTER.apply(
            ns,
            &hostname_server_pod(&format!("echo-{i}"), &labels, n.name(), &[]),
        );
    }
}

fn service(ns: &str, name: &str, spec: &str) -> (String, Value) {
    NODE_CLUSTER.apply(
        ns,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {spec}\n"),
    );
    let v = get_json(&["get", "service", "-n", ns, name]);
    (v["spec"]["clusterIP"].as_str().unwrap().to_string(), v)
}

#[test]
fn proxy_behaviours_affinity_no_endpoints_hairpin_local_policies_node_and_restart() {
    let c = &*NODE_CLUSTER;
    let ns = "proxy-behaviours";
    kubectl(&["create", "namespace", ns]);
    echo_pods(ns);
    c.apply(
        ns,
        &sleeper_pod("client", "{role: client}", c.nodes[0].name()),
    );
    let (spread_ip, _) = service(
        ns,
        "spread",
        "{selector: {app: echo}, ports: [{port: 80, targetPort: http}]}",
    );
    let (sticky_ip, _) = service(
        ns,
        "sticky",
        "{selector: {app: echo}, sessionAffinity: ClientIP, ports: [{port: 80, targetPort: 8080}]}",
    );
    let (nobody_ip, _) = service(
        ns,
        "nobody",
        "{selector: {app: nobody}, ports: [{port: 80, targetPort: 8080}]}",
    );
    let (self_ip, _) = service(
        ns,
        "self",
        "{selector: {app: echo, index: \"0\"}, ports: [{port: 80, targetPort: 8080}]}",
    );
    let (local_ip, _) = service(
        ns,
        "internal-local",
        "{selector: {app: echo}, internalTrafficPolicy: Local, ports: [{port: 80, targetPort: 8080}]}",
    );
    for i in 0..c.nodes.len() {
        c.wait_running(ns, &format!("echo-{i}"), true);
    }
    c.wait_running(ns, "client", true);
    until("both echo endpoints", Duration::from_secs(30), || {
        let eps = ready_endpoints(ns, "spread");
        (eps.len() == 2).then_some(()).ok_or(format!("{eps:?}"))
    });
    let fetch = |ip: &str| -> String {
        let url = format!("http://{ip}/");
        until(
            &format!("{url} from the client"),
            Duration::from_secs(20),
            || {
                let (ok, text) = wget_in_pod(ns, "client", &url);
                ok.then(|| text.trim().to_string()).ok_or(text)
            },
        )
    };

    // Without affinity both endpoints answer; with ClientIP one keeps the client.
    let spread: std::collections::BTreeSet<String> = (0..20).map(|_| fetch(&spread_ip)).collect();
    assert_eq!(
        spread.len(),
        2,
        "random endpoint choice reaches both: {spread:?}"
    );
    let sticky: std::collections::BTreeSet<String> = (0..12).map(|_| fetch(&sticky_ip)).collect();
    assert_eq!(
        sticky.len(),
        1,
        "ClientIP affinity keeps one endpoint: {sticky:?}"
    );

    // No endpoints: refused at once, not a time-out.
    let (okay, text) = wget_in_pod(ns, "client", &format!("http://{nobody_ip}/"));
    assert!(!okay && text.contains("refused"), "{text}");

    // Hairpin: a pod reaching itself through its Service.
    let url = format!("http://{self_ip}/");
    let me = until("hairpin", Duration::from_secs(20), || {
        let (ok, text) = wget_in_pod(ns, "echo-0", &url);
        ok.then(|| text.trim().to_string()).ok_or(text)
    });
    assert_eq!(me, "echo-0");

    // internalTrafficPolicy: Local keeps the client (on node 0) on node 0's endpoint.
    let local: std::collections::BTreeSet<String> = (0..10).map(|_| fetch(&local_ip)).collect();
    assert_eq!(
        local.into_iter().collect::<Vec<_>>(),
        ["echo-0"],
        "internalTrafficPolicy: Local"
    );

    // The node itself as a client of a ClusterIP.
    let node = &c.nodes[1];
    until(
        "a ClusterIP from the node itself",
        Duration::from_secs(10),
        || {
            let out = node
                .host
                .nsenter_command("curl")
                .args(["-sS", "--max-time", "3", &format!("http://{spread_ip}/")])
                .output()
                .expect("curl");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.starts_with("echo-"))
                .then_some(())
                .ok_or(text + &String::from_utf8_lossy(&out.stderr))
        },
    );

    // externalTrafficPolicy: Local: only the node with an endpoint announces and
    // answers, its health check node port says so, and the client's address is kept.
    let (_, lb) = service(
        ns,
        "external-local",
        "{type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: echo, index: \"1\"}, ports: [{port: 80, targetPort: 8080}]}",
    );
    let hc_port = lb["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("healthCheckNodePort");
    let node_port = lb["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let lb_ip = eventually(Duration::from_secs(30), "an ingress IP", || {
        get_json(&["get", "service", "-n", ns, "external-local"])["status"]["loadBalancer"]
            ["ingress"][0]["ip"]
            .as_str()
            .map(String::from)
    });
    let outside = c.network.add_outside_host().expect("an outside host");
    let page = until(
        "the Local LoadBalancer answers",
        Duration::from_secs(30),
        || curl_outside(&outside, &format!("http://{lb_ip}/")).ok_or_else(|| "no answer".into()),
    );
    assert_eq!(page.trim(), "echo-1");
    let health = |node: usize| {
        curl_outside(
            &outside,
            &format!("http://{}:{hc_port}/", c.nodes[node].host.ip),
        )
    };
    let with = until(
        "health check on the endpoint's node",
        Duration::from_secs(10),
        || health(1).ok_or_else(|| "no answer".into()),
    );
    assert!(with.contains("\"localEndpoints\":1"), "{with}");
    until(
        "node 0's health check says it has no local endpoint",
        Duration::from_secs(10),
        || {
            let code = status_outside(
                &outside,
                &format!("http://{}:{hc_port}/", c.nodes[0].host.ip),
            );
            (code == Some(503)).then_some(()).ok_or(format!("{code:?}"))
        },
    );
    assert!(
        curl_outside(
            &outside,
            &format!("http://{}:{node_port}/", c.nodes[0].host.ip)
        )
        .is_none(),
        "a node without a local endpoint does not forward external traffic"
    );
    // The echo server cannot print the client's address; the LB address lives on
    // node 1's announce interface and nowhere else.
    let holds = |i: usize| {
        c.nodes[i]
            .host
            .ip(&["-4", "addr", "show", "dev", "keelson-lb0"])
            .unwrap_or_default()
            .contains(&format!("{lb_ip}/32"))
    };
    assert!(holds(1) && !holds(0), "only node 1 announces {lb_ip}");

    // A proxy killed outright leaves working rules; restarted, it rebuilds exactly
    // the same table.
    let list = || {
        let out = node
            .host
            .nsenter_command("nft")
            .args(["list", "table", "ip", "keelson-proxy"])
            .output()
            .expect("nft");
        // nft lists objects in creation order, which differs between a table built up
        // by partial syncs and one loaded whole: compare the objects, sorted.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut blocks: Vec<String> = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.contains("expires") && !l.trim().is_empty() && *l != "}")
        {
            let starts_object = ["\tchain ", "\tset ", "\tmap "]
                .iter()
                .any(|p| line.starts_with(p));
            if starts_object || blocks.is_empty() {
                blocks.push(String::new());
            }
            let last = blocks.last_mut().expect("a block");
            last.push_str(line);
            last.push('\n');
        }
        blocks.sort();
        blocks.concat()
    };
    let before = list();
    assert!(before.contains(&spread_ip), "{before}");
    node.proxy.stop(libc::SIGKILL);
    assert_eq!(
        curl_outside(&outside, &format!("http://{}:{node_port}/", node.host.ip))
            .map(|p| p.trim().to_string()),
        Some("echo-1".to_string()),
        "rules outlive the proxy"
    );
    node.restart_proxy().expect("restarting the proxy");
    until(
        "the restarted proxy is healthy",
        Duration::from_secs(20),
        || {
            curl_outside(&outside, &format!("http://{}:10256/healthz", node.host.ip))
                .ok_or_else(|| "no healthz".into())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(list(), before, "a restarted proxy rebuilds the same table");
    let metrics = node
        .host
        .nsenter_command("curl")
        .args(["-sS", "--max-time", "3", "http://127.0.0.1:10249/metrics"])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"),
        "{metrics}"
    );

    // externalIPs: traffic to the address (routed to a node by the operator; here a
    // pod's, through its node) goes to the Service's endpoints.
    let net = c.network.cidr();
    let external_ip = format!("{}252", &net[..net.len() - 4]);
    service(
        ns,
        "external-ip",
        &format!("{{selector: {{app: echo}}, externalIPs: [\"{external_ip}\"], ports: [{{port: 80, targetPort: 8080}}]}}"),
    );
    assert!(fetch(&external_ip).starts_with("echo-"));

    // Terminating endpoints are used when no ready one is left: the only pod of a
    // Service is deleted and keeps serving through its grace period (busybox httpd as
    // PID 1 ignores SIGTERM), and so does the Service.
    NODE_CLUSTER.apply(
        ns,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: draining, labels: {app: draining}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: keelson.local/busybox:1
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"#,
    );
    let (draining_ip, _) = service(
        ns,
        "draining",
        "{selector: {app: draining}, ports: [{port: 80, targetPort: 8080}]}",
    );
    c.wait_running(ns, "draining", true);
    assert_eq!(fetch(&draining_ip), "draining");
    kubectl(&["delete", "pod", "-n", ns, "draining", "--wait=false"]);
    until(
        "the endpoint is terminating",
        Duration::from_secs(20),
        || {
            let v = get_json(&[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=draining",
            ]);
            let e = &v["items"][0]["endpoints"][0]["conditions"];
            (e["terminating"] == true && e["ready"] == false)
                .then_some(())
                .ok_or(e.to_string())
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fetch(&draining_ip),
        "draining",
        "a serving, terminating endpoint answers when no ready one is left"
    );

    // Removing a Service removes its rules.
    kubectl(&["delete", "service", "-n", ns, "spread"]);
    until(
        "the Service's rules are gone",
        Duration::from_secs(10),
        || {
            let now = list();
            (!now.contains(&spread_ip)).then_some(()).ok_or(now)
        },
    );

    // The LoadBalancer address moves when its only endpoint does: the new owner
    // announces it with a gratuitous ARP, so the outside host (whose ARP entry still
    // names node 1) follows at once instead of after its entry goes stale.
    assert!(curl_outside(&outside, &format!("http://{lb_ip}/")).is_some());
    kubectl(&[
        "patch",
        "service",
        "-n",
        ns,
        "external-local",
        "-p",
        r#"{"spec":{"selector":{"app":"echo","index":"0"}}}"#,
    ]);
    until("node 0 holds the address", Duration::from_secs(10), || {
        (holds(0) && !holds(1))
            .then_some(())
            .ok_or_else(|| "not moved".into())
    });
    let moved = std::time::Instant::now();
    let page = until("the moved address answers", Duration::from_secs(10), || {
        curl_outside(&outside, &format!("http://{lb_ip}/")).ok_or_else(|| "no answer".into())
    });
    assert_eq!(page.trim(), "echo-0");
    assert!(
        moved.elapsed() < Duration::from_secs(8),
        "the outside host followed the move only after {:?} (ARP entry stale, no gratuitous ARP?)",
        moved.elapsed()
    );

    ok(c.kubectl(&["delete", "namespace", ns, "--wait=false"]));
}
