//! Real nodes: two network namespaces, each with its own containerd and a
//! `keelson-node-agent`, under a control plane of real processes. Pods run for real;
//! the real kubectl reads their logs, execs into them, forwards ports and proxies to
//! them through the apiserver. Every test works in a namespace of its own on the
//! cluster shared by this test binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keelson_e2e::{json, kubectl_versions, NODE_CLUSTER};
use keelson_testkit::node_cluster::{eventually_or, NodeCluster};
use keelson_testkit::{fails, ok};
use serde_json::Value;

const BUSYBOX: &str = "keelson.local/busybox:1";

fn cluster() -> &'static NodeCluster {
    &NODE_CLUSTER
}

fn ns(name: &str) -> String {
    ok(cluster().kubectl(&["create", "namespace", name]));
    name.to_string()
}

fn apply(ns: &str, manifest: &str) {
    cluster().apply(ns, manifest)
}

fn pod_json(ns: &str, name: &str) -> Value {
    cluster().pod(ns, name)
}

fn wait_pod(ns: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    cluster().wait_pod(ns, name, what, pred)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn events_of(ns: &str, name: &str) -> Vec<(String, String)> {
    cluster().events(ns, name)
}

fn has_event(ns: &str, name: &str, reason: &str, message_part: &str) -> bool {
    events_of(ns, name)
        .iter()
        .any(|(r, m)| r == reason && m.contains(message_part))
}

#[test]
fn nodes_register_with_real_status_and_renew_their_leases() {
    let c = cluster();
    for n in &c.nodes {
        let node = json(&ok(c.kubectl(&["get", "node", n.name(), "-o", "json"])));
        let info = &node["status"]["nodeInfo"];
        assert!(
            info["containerRuntimeVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("containerd://1."),
            "{info}"
        );
        assert!(info["kubeletVersion"]
            .as_str()
            .unwrap_or_default()
            .starts_with("v1.33"));
        assert_eq!(info["operatingSystem"], "linux");
        assert!(!info["kernelVersion"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        let addresses = node["status"]["addresses"].as_array().expect("addresses");
        assert!(addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == n.host.ip.to_string()));
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        let cpus = std::thread::available_parallelism()
            .unwrap()
            .get()
            .to_string();
        assert_eq!(node["status"]["capacity"]["cpu"], cpus.as_str());
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        let conditions: Vec<(String, String)> = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().into(),
                    c["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        for (t, s) in [
            ("Ready", "True"),
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
        ] {
            assert!(
                conditions.contains(&(t.into(), s.into())),
                "{t}={s} in {conditions:?}"
            );
        }
        let images = node["status"]["images"].to_string();
        assert!(images.contains("keelson.local/pause:1"), "{images}");
        // The agent's own API, through the apiserver's nodes/proxy.
        let raw = |path: &str| {
            ok(c.kubectl(&[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{}/proxy/{path}", n.name()),
            ]))
        };
        assert_eq!(raw("healthz"), "ok");
        let metrics = raw("metrics");
        for m in [
            "kubelet_running_pods",
            "kubelet_pleg_relist_duration_seconds",
            "kubelet_pod_worker_duration_seconds",
        ] {
            assert!(metrics.contains(m), "{m} in\n{metrics}");
        }
        assert_eq!(json(&raw("pods"))["kind"], "PodList");
        assert_eq!(json(&raw("stats/summary"))["node"]["nodeName"], n.name());
        // Without a client certificate from the cluster CA the agent says 401.
        let anonymous = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("https://{}:10250/pods", n.host.ip),
            ])
            .output()
            .expect("curl (scripts/setup installs it)");
        assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");
        // The Lease is renewed every 10 s.
        let renew = |_: ()| {
            ok(c.kubectl(&[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                n.name(),
                "-o",
                "jsonpath={.spec.renewTime}",
            ]))
        };
        let first = renew(());
        let renewed = eventually_or(Duration::from_secs(25), || {
            let now = renew(());
            (now != first).then_some(now)
        });
        assert!(
            renewed.is_some(),
            "lease of {} not renewed since {first}",
            n.name()
        );
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_across_the_pod_network() {
    let c = cluster();
    let ns = ns("net");
    for (i, n) in c.nodes.iter().enumerate() {
        apply(
            &ns,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers:
  - name: web
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080}}]
"#,
                node = n.name()
            ),
        );
    }
    let pods: Vec<Value> = (0..c.nodes.len())
        .map(|i| c.wait_running(&ns, &format!("web-{i}"), true))
        .collect();
    let mut ips = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let ip = p["status"]["podIP"].as_str().expect("podIP").to_string();
        let cidr = ok(c.kubectl(&[
            "get",
            "node",
            c.nodes[i].name(),
            "-o",
            "jsonpath={.spec.podCIDR}",
        ]));
        let prefix = cidr.rsplit_once('.').unwrap().0;
        assert!(
            ip.starts_with(prefix),
            "pod IP {ip} is in its node's pod CIDR {cidr}"
        );
        assert_eq!(p["status"]["hostIP"], c.nodes[i].host.ip.to_string());
        assert_eq!(p["status"]["podIPs"][0]["ip"], ip.as_str());
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        ips.push(ip);
    }
    // Each pod fetches the other's page: pod to pod across nodes, not masqueraded.
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let body = ok(c.kubectl(&[
            // (no -T: Debian's static busybox wget crashes with it)
            "exec",
            "-n",
            &ns,
            &format!("web-{from}"),
            "--",
            "wget",
            "-qO-",
            &format!("http://{}:8080/", ips[to]),
        ]));
        assert_eq!(body.trim(), format!("web-{to}"), "web-{from} -> web-{to}");
    }
    // A host-network pod has the node's address.
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: on-host}}
spec:
  hostNetwork: true
  nodeName: {node}
  containers: [{{name: main, image: {BUSYBOX}, command: ["sleep", "3600"]}}]
"#,
            node = c.nodes[0].name()
        ),
    );
    let on_host = c.wait_running(&ns, "on-host", true);
    assert_eq!(on_host["status"]["podIP"], c.nodes[0].host.ip.to_string());
    let addrs = ok(c.kubectl(&["exec", "-n", &ns, "on-host", "--", "ip", "-4", "addr"]));
    assert!(addrs.contains(&c.nodes[0].host.ip.to_string()), "{addrs}");
    // The apiserver's pods/proxy reaches the pod directly.
    let body = ok(c.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/web-0:8080/proxy/"),
    ]));
    assert_eq!(body.trim(), "web-0");
    // The Scheduled event is not there (nodeName was set), but the kubelet's are.
    assert!(has_event(&ns, "web-0", "Started", "Started container web"));
    assert!(has_event(&ns, "web-0", "Created", "Created container web"));
}

/// The certificate (DER) issued for node `node`'s own kubelet-serving request, once
/// csrapproving approved it and csrsigning signed it.
fn issued_serving_certificate(node: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use rustls::pki_types::pem::PemObject as _;
    let list = json(&ok(cluster().kubectl(&["get", "csr", "-o", "json"])));
    let requester = format!("system:node:{node}");
    list["items"].as_array()?.iter().rev().find_map(|csr| {
        let approved = csr["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved");
        if csr["spec"]["signerName"] != "kubernetes.io/kubelet-serving"
            || csr["spec"]["username"] != requester.as_str()
            || !approved
        {
            return None;
        }
        let pem = base64::engine::general_purpose::STANDARD
            .decode(csr["status"]["certificate"].as_str()?)
            .ok()?;
        let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()?
            .ok()?;
        Some(der.to_vec())
    })
}

/// The certificate (DER) the agent at `ip`:10250 presents, verified against `ca` for
/// that address as the apiserver verifies it.
fn served_certificate(ip: &str, ca: &std::path::Path) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in keelson_pki::load_certs(ca).ok()? {
        roots.add(c).ok()?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::IpAddress(ip.parse::<std::net::IpAddr>().ok()?.into());
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut tcp = std::net::TcpStream::connect((ip, 10250)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    Some(conn.peer_certificates()?.first()?.to_vec())
}

#[test]
fn logs_exec_attach_port_forward_and_cp_with_every_kubectl() {
    let c = cluster();
    let ns = ns("streams");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  containers:
  - name: talker
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && echo served > /www/index.html && httpd -p 8080 -h /www; i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.3; done"]
"#
        ),
    );
    let pod = c.wait_running(&ns, "talker", true);
    assert!(
        has_event(&ns, "talker", "Scheduled", "Successfully assigned"),
        "{:?}",
        events_of(&ns, "talker")
    );
    // The apiserver verifies agents against the cluster CA, and the talker's agent
    // serves the certificate its own kubelet-serving request got, approved because
    // the Node's addresses name it: the streams below go through that certificate.
    let node = pod["spec"]["nodeName"].as_str().unwrap().to_string();
    let host_ip = pod["status"]["hostIP"].as_str().unwrap().to_string();
    let issued = eventually_or(Duration::from_secs(60), || {
        issued_serving_certificate(&node)
    })
    .unwrap_or_else(|| {
        panic!(
            "no kubelet-serving certificate issued for {node}: {}",
            String::from_utf8_lossy(&c.kubectl(&["get", "csr"]).stdout)
        )
    });
    let served = eventually_or(Duration::from_secs(30), || {
        served_certificate(&host_ip, &c.cluster.pki.ca_cert).filter(|s| *s == issued)
    });
    assert!(
        served.is_some(),
        "{node} at {host_ip} does not serve its issued certificate"
    );
    for kubectl in kubectl_versions() {
        // logs, with options.
        let logs =
            ok(c.cluster
                .kubectl_with(&kubectl, &["logs", "-n", &ns, "talker", "--tail=2"], None));
        assert_eq!(logs.lines().count(), 2, "{kubectl}: {logs}");
        assert!(logs.lines().all(|l| l.starts_with("line-")), "{logs}");
        let logs = ok(c.cluster.kubectl_with(
            &kubectl,
            &[
                "logs",
                "-n",
                &ns,
                "talker",
                "--timestamps",
                "--limit-bytes=100",
            ],
            None,
        ));
        assert!(
            logs.len() <= 100 && logs.starts_with("20"),
            "{kubectl}: {logs:?}"
        );
        // logs -f streams lines written after it started.
        let mut follow = Command::new(&kubectl)
            .args(["logs", "-f", "-n", &ns, "talker", "--tail=1"])
            .env("KUBECONFIG", &c.cluster.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl logs -f");
        let mut reader = BufReader::new(follow.stdout.take().unwrap());
        let mut seen = Vec::new();
        let started = Instant::now();
        while seen.len() < 4 && started.elapsed() < Duration::from_secs(20) {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push(line.trim().to_string());
        }
        let _ = follow.kill();
        let _ = follow.wait();
        assert_eq!(seen.len(), 4, "{kubectl}: logs -f gave {seen:?}");
        let n = |s: &str| s.trim_start_matches("line-").parse::<u64>().unwrap();
        assert!(n(&seen[3]) > n(&seen[0]), "{seen:?}");

        // exec, with stdin, and the exit code.
        let out = ok(c.cluster.kubectl_with(
            &kubectl,
            &[
                "exec",
                "-n",
                &ns,
                "talker",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2",
            ],
            None,
        ));
        assert_eq!(out.trim(), "out");
        let out = ok(c.cluster.kubectl_with(
            &kubectl,
            &[
                "exec",
                "-i",
                "-n",
                &ns,
                "talker",
                "--",
                "sh",
                "-c",
                "read x; echo got-$x",
            ],
            Some("hello\n"),
        ));
        assert_eq!(out.trim(), "got-hello", "{kubectl}");
        let failed = c.cluster.kubectl_with(
            &kubectl,
            &["exec", "-n", &ns, "talker", "--", "sh", "-c", "exit 7"],
            None,
        );
        assert_eq!(
            failed.status.code(),
            Some(7),
            "{kubectl}: exec's exit code comes back"
        );

        // port-forward.
        let port = keelson_testkit::free_port();
        let mut pf = Command::new(&kubectl)
            .args([
                "port-forward",
                "-n",
                &ns,
                "pod/talker",
                &format!("{port}:8080"),
            ])
            .env("KUBECONFIG", &c.cluster.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let body = eventually_or(Duration::from_secs(15), || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).ok()?;
            buf.contains("served").then_some(buf)
        });
        let _ = pf.kill();
        let _ = pf.wait();
        assert!(body.is_some(), "{kubectl}: port-forward to the pod's 8080");
    }
    // attach sees the running process's output.
    let mut attach = Command::new("kubectl")
        .args(["attach", "-n", &ns, "talker"])
        .env("KUBECONFIG", &c.cluster.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl attach");
    let mut reader = BufReader::new(attach.stdout.take().unwrap());
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(line.starts_with("line-"), "attach: {line:?}");
    // cp in both directions (tar through exec).
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("up.txt");
    std::fs::write(&local, "copied up\n").unwrap();
    ok(c.kubectl(&[
        "cp",
        local.to_str().unwrap(),
        &format!("{ns}/talker:/tmp/up.txt"),
    ]));
    let back = dir.path().join("back.txt");
    ok(c.kubectl(&[
        "cp",
        &format!("{ns}/talker:/tmp/up.txt"),
        back.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(back).unwrap(), "copied up\n");
    // Bad input: a container that does not exist, a pod that does not exist.
    let err = fails(c.kubectl(&["logs", "-n", &ns, "talker", "-c", "nope"]));
    assert!(
        err.contains("container nope is not valid for pod talker"),
        "{err}"
    );
    let err = fails(c.kubectl(&["exec", "-n", &ns, "ghost", "--", "true"]));
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn restart_policies_crash_loops_and_previous_logs() {
    let c = cluster();
    let ns = ns("restarts");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: never-fails}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: {BUSYBOX}, command: ["sh", "-c", "echo bye; exit 3"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: never-succeeds}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: {BUSYBOX}, command: ["sh", "-c", "echo done > /dev/termination-log; exit 0"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: fallback}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: {BUSYBOX}, terminationMessagePolicy: FallbackToLogsOnError, command: ["sh", "-c", "echo last words; exit 4"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  containers:
  - {{name: main, image: {BUSYBOX}, command: ["sh", "-c", "echo run-$(date +%s%N); exit 1"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: on-failure}}
spec:
  restartPolicy: OnFailure
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "if [ -f /data/second ]; then exit 0; fi; touch /data/second; exit 1"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, emptyDir: {{}}}}]
"#
        ),
    );
    let failed = wait_pod(&ns, "never-fails", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &container_status(&failed, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert!(t["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    assert_eq!(
        ok(c.kubectl(&["logs", "-n", &ns, "never-fails"])).trim(),
        "bye"
    );
    let done = wait_pod(&ns, "never-succeeds", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let t = &container_status(&done, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "Completed");
    assert_eq!(
        t["message"], "done\n",
        "the termination message file is read back"
    );
    let fallback = wait_pod(&ns, "fallback", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(
        container_status(&fallback, "main")["state"]["terminated"]["message"],
        "last words\n"
    );
    let ready = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "PodCompleted");

    let crashing = wait_pod(&ns, "crasher", "CrashLoopBackOff after two restarts", |p| {
        let s = container_status(p, "main");
        s["restartCount"].as_i64().unwrap_or(0) >= 2
            && s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let s = container_status(&crashing, "main");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
    assert!(
        s["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("back-off"),
        "{s}"
    );
    assert_eq!(
        crashing["status"]["phase"], "Running",
        "crash looping under Always stays Running"
    );
    let previous = ok(c.kubectl(&["logs", "-n", &ns, "crasher", "--previous"]));
    let current = ok(c.kubectl(&["logs", "-n", &ns, "crasher"]));
    assert!(previous.starts_with("run-") && current.starts_with("run-"));
    assert_ne!(previous, current, "--previous reads the instance before");
    assert!(has_event(
        &ns,
        "crasher",
        "BackOff",
        "Back-off restarting failed container"
    ));

    let healed = wait_pod(&ns, "on-failure", "Succeeded after one restart", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(container_status(&healed, "main")["restartCount"], 1);
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let c = cluster();
    let ns = ns("init");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  initContainers:
  - {{name: first, image: {BUSYBOX}, command: ["sh", "-c", "echo first >> /work/log"], volumeMounts: [{{name: w, mountPath: /work}}]}}
  - {{name: second, image: {BUSYBOX}, command: ["sh", "-c", "echo second >> /work/log"], volumeMounts: [{{name: w, mountPath: /work}}]}}
  containers:
  - {{name: app, image: {BUSYBOX}, command: ["sh", "-c", "cat /work/log; sleep 3600"], volumeMounts: [{{name: w, mountPath: /work}}]}}
  volumes: [{{name: w, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: init-fails}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: broken, image: {BUSYBOX}, command: ["sh", "-c", "exit 2"]}}
  containers:
  - {{name: app, image: {BUSYBOX}, command: ["true"]}}
"#
        ),
    );
    let pod = c.wait_running(&ns, "ordered", true);
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    for s in inits {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let first_done = inits[0]["state"]["terminated"]["finishedAt"]
        .as_str()
        .unwrap();
    let second_started = inits[1]["state"]["terminated"]["startedAt"]
        .as_str()
        .unwrap();
    assert!(
        first_done <= second_started,
        "{first_done} <= {second_started}"
    );
    let logs = eventually_or(Duration::from_secs(10), || {
        let l = ok(c.kubectl(&["logs", "-n", &ns, "ordered"]));
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs.as_deref(), Some("first\nsecond\n"));
    let failed = wait_pod(&ns, "init-fails", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    let init = &failed["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 2);
    assert_eq!(
        container_status(&failed, "app")["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let initialized = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(initialized["status"], "False");
}

#[test]
fn probes_drive_readiness_and_restarts() {
    let c = cluster();
    let ns = ns("probes");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: gated}}
spec:
  containers:
  - name: web
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
    readinessProbe:
      httpGet: {{path: /ready, port: 8080}}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: unhealthy}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "touch /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
    startupProbe:
      tcpSocket: {{port: 1}}
      periodSeconds: 1
      failureThreshold: 600
"#
        ),
    );
    // Not ready until /ready exists; then ready; then not again.
    let pod = wait_pod(&ns, "gated", "running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(container_status(&pod, "web")["ready"], false);
    ok(c.kubectl(&[
        "exec",
        "-n",
        &ns,
        "gated",
        "--",
        "sh",
        "-c",
        "echo ok > /www/ready",
    ]));
    c.wait_running(&ns, "gated", true);
    ok(c.kubectl(&["exec", "-n", &ns, "gated", "--", "rm", "/www/ready"]));
    wait_pod(&ns, "gated", "unready again", |p| {
        container_status(p, "web")["ready"] == false
    });
    assert!(has_event(
        &ns,
        "gated",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 404"
    ));

    // The startup probe never passes (nothing listens on port 1): not started, not
    // ready, and liveness does not run yet.
    let pod = wait_pod(&ns, "unhealthy", "running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(container_status(&pod, "main")["started"], false);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        container_status(&pod_json(&ns, "unhealthy"), "main")["restartCount"],
        0
    );
    // Make startup pass by removing the probe is not possible (immutable); instead the
    // liveness check is exercised on a second pod without a startup probe.
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: liveness}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "touch /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
        ),
    );
    c.wait_running(&ns, "liveness", true);
    ok(c.kubectl(&["exec", "-n", &ns, "liveness", "--", "rm", "/tmp/alive"]));
    let restarted = wait_pod(&ns, "liveness", "restarted by liveness", |p| {
        container_status(p, "main")["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    assert!(container_status(&restarted, "main")["lastState"]["terminated"].is_object());
    assert!(has_event(
        &ns,
        "liveness",
        "Unhealthy",
        "Liveness probe failed"
    ));
    assert!(has_event(
        &ns,
        "liveness",
        "Killing",
        "failed liveness probe, will be restarted"
    ));
}

#[test]
fn environment_and_volumes_follow_the_api_objects() {
    let c = cluster();
    let ns = ns("config");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: hello, mode: fast}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader, labels: {{tier: backend}}}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "echo $(GREETING)-$(POD_NAME); sleep 3600"]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: COMBINED, value: "$(GREETING)/$(MODE)"}}
    envFrom:
    - {{configMapRef: {{name: settings}}, prefix: CM_}}
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: info, mountPath: /etc/info}}
  volumes:
  - {{name: cfg, configMap: {{name: settings}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 0400}}}}
  - name: info
    downwardAPI:
      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: missing-config}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
    env: [{{name: X, valueFrom: {{configMapKeyRef: {{name: nowhere, key: k}}}}}}]
"#
        ),
    );
    let pod = c.wait_running(&ns, "reader", true);
    let node = pod["spec"]["nodeName"].as_str().unwrap().to_string();
    let exec = |cmd: &str| ok(c.kubectl(&["exec", "-n", &ns, "reader", "--", "sh", "-c", cmd]));
    assert_eq!(
        exec("echo $GREETING $PASSWORD $POD_NAME $NODE"),
        format!("hello s3cret reader {node}\n")
    );
    assert_eq!(
        exec("echo $CM_greeting $CM_mode $COMBINED"),
        "hello fast hello/$(MODE)\n"
    );
    assert_eq!(exec("cat /etc/cfg/greeting"), "hello");
    assert_eq!(exec("stat -L -c %a /etc/sec/password"), "400\n");
    assert_eq!(exec("cat /etc/sec/password"), "s3cret");
    assert!(exec("cat /etc/info/labels").contains("tier=\"backend\""));
    assert!(exec("ls /var/run/secrets/kubernetes.io/serviceaccount").contains("token"));
    assert_eq!(
        exec("cat /var/run/secrets/kubernetes.io/serviceaccount/namespace"),
        ns
    );
    assert!(exec("env").contains("KUBERNETES_SERVICE_HOST="));
    assert_eq!(
        ok(c.kubectl(&["logs", "-n", &ns, "reader"])).trim(),
        "hello-reader",
        "$(VAR) in the command"
    );
    // ClusterFirst with the agent's --cluster-dns.
    let resolv = exec("cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains(&format!(
            "search {ns}.svc.cluster.local svc.cluster.local cluster.local"
        )),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = exec("cat /etc/hosts");
    assert!(
        hosts.contains("# Kubernetes-managed hosts file.") && hosts.contains("\treader"),
        "{hosts}"
    );
    // An update of the ConfigMap reaches the volume (atomic swap of ..data).
    ok(c.kubectl(&[
        "patch",
        "configmap",
        "-n",
        &ns,
        "settings",
        "-p",
        r#"{"data":{"greeting":"updated"}}"#,
    ]));
    let updated = eventually_or(Duration::from_secs(90), || {
        (exec("cat /etc/cfg/greeting") == "updated").then_some(())
    });
    assert!(updated.is_some(), "the configMap volume follows the update");
    // A missing ConfigMap: CreateContainerConfigError with the kubelet's message.
    let waiting = wait_pod(&ns, "missing-config", "CreateContainerConfigError", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = container_status(&waiting, "main")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("configmap \"nowhere\" not found"),
        "{message}"
    );
    // Once it exists, the pod starts.
    ok(c.kubectl(&[
        "create",
        "configmap",
        "-n",
        &ns,
        "nowhere",
        "--from-literal=k=v",
    ]));
    c.wait_running(&ns, "missing-config", true);
    // The security context reaches the process.
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: confined}}
spec:
  securityContext: {{runAsUser: 1234, runAsGroup: 2345, supplementalGroups: [3456]}}
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
"#
        ),
    );
    c.wait_running(&ns, "confined", true);
    let confined = |cmd: &str| c.kubectl(&["exec", "-n", &ns, "confined", "--", "sh", "-c", cmd]);
    let id = ok(confined("id -u; id -g; id -G"));
    assert_eq!(
        id.split_whitespace().collect::<Vec<_>>()[..3],
        ["1234", "2345", "2345"],
        "{id}"
    );
    assert!(id.contains("3456"), "{id}");
    let denied = fails(confined("touch /written"));
    assert!(denied.contains("Read-only file system"), "{denied}");
    let status = ok(confined("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"));
    assert!(
        status.contains("CapEff:\t0000000000000000") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
}

#[test]
fn failures_end_in_the_status_kubernetes_reports() {
    let ns = ns("failures");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: no-image}}
spec:
  containers: [{{name: main, image: "keelson.local/does-not-exist:1", imagePullPolicy: IfNotPresent}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: no-command}}
spec:
  containers: [{{name: main, image: {BUSYBOX}, command: ["/no/such/binary"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: never-pull}}
spec:
  containers: [{{name: main, image: "keelson.local/absent:2", imagePullPolicy: Never}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: no-volume}}
spec:
  containers: [{{name: main, image: {BUSYBOX}, command: ["sleep", "3600"], volumeMounts: [{{name: h, mountPath: /h}}]}}]
  volumes: [{{name: h, hostPath: {{path: /nonexistent/keelson-test, type: Directory}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    resources: {{limits: {{memory: 20Mi}}}}
"#
        ),
    );
    wait_pod(&ns, "no-image", "ErrImagePull or ImagePullBackOff", |p| {
        matches!(
            container_status(p, "main")["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    wait_pod(&ns, "no-image", "ImagePullBackOff", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert!(has_event(
        &ns,
        "no-image",
        "Failed",
        "Failed to pull image \"keelson.local/does-not-exist:1\""
    ));
    let p = wait_pod(&ns, "no-command", "a failed start", |p| {
        let s = container_status(p, "main");
        s["lastState"]["terminated"]["exitCode"].as_i64().is_some()
            || s["state"]["terminated"]["exitCode"].as_i64().is_some()
    });
    let s = container_status(&p, "main");
    let t = if s["state"]["terminated"].is_object() {
        &s["state"]["terminated"]
    } else {
        &s["lastState"]["terminated"]
    };
    assert_eq!(t["reason"], "StartError", "{s}");
    assert_eq!(t["exitCode"], 128);
    let p = wait_pod(&ns, "never-pull", "ErrImageNeverPull", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    assert!(container_status(&p, "main")["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("is not present with pull policy of Never"));
    let found = eventually_or(Duration::from_secs(60), || {
        has_event(
            &ns,
            "no-volume",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"h\"",
        )
        .then_some(())
    });
    assert!(found.is_some(), "{:?}", events_of(&ns, "no-volume"));
    let p = pod_json(&ns, "no-volume");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        container_status(&p, "main")["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    let p = wait_pod(&ns, "hog", "OOMKilled", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(
        container_status(&p, "main")["state"]["terminated"]["reason"],
        "OOMKilled",
        "{p}"
    );
    // Every other pod of the node was served meanwhile (the other tests share it).
}

#[test]
fn deletion_is_graceful_runs_prestop_and_removes_everything() {
    let c = cluster();
    let ns = ns("deletion");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: polite}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.2; done"]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop > /proc/1/fd/1; sleep 1"]}}
"#
        ),
    );
    let pod = c.wait_running(&ns, "polite", true);
    let node_name = pod["spec"]["nodeName"].as_str().unwrap().to_string();
    let node = c.nodes.iter().find(|n| n.name() == node_name).unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_dir = node.host.root_dir.join("pods").join(&uid);
    assert!(pod_dir.exists(), "{}", pod_dir.display());
    let started = Instant::now();
    ok(c.kubectl(&[
        "delete",
        "pod",
        "-n",
        &ns,
        "polite",
        "--wait=true",
        "--timeout=60s",
    ]));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "SIGTERM ends it long before the 20 s grace: {took:?}"
    );
    assert!(!pod_dir.exists(), "the pod's directory is removed");
    let logs_dir = node.host.dir().join("pod-logs");
    let leftover: Vec<_> = std::fs::read_dir(&logs_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.contains(&uid))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftover.is_empty(), "{leftover:?}");
}

/// A one-node cluster of its own for the test that kills the agent and crashes
/// containerd: on the shared cluster it would disturb every other test's pods.
static DISRUPTED: std::sync::LazyLock<NodeCluster> = std::sync::LazyLock::new(|| {
    NodeCluster::start(1).expect("starting a one-node cluster to disrupt")
});

#[test]
fn a_restarted_agent_adopts_its_running_containers() {
    let c = &*DISRUPTED;
    let ns = "adopt";
    ok(c.kubectl(&["create", "namespace", ns]));
    let node = &c.nodes[0];
    c.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: survivor}}
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "touch /tmp/ready; sleep 3600"]
    readinessProbe:
      exec: {{command: ["cat", "/tmp/ready"]}}
      periodSeconds: 1
      failureThreshold: 1
"#
        ),
    );
    let before = c.wait_running(ns, "survivor", true);
    let id = container_status(&before, "main")["containerID"].clone();
    node.stop_agent(libc::SIGKILL);
    node.restart_agent().expect("restarting the agent");
    std::thread::sleep(Duration::from_secs(3));
    let after = c.wait_running(ns, "survivor", true);
    let s = container_status(&after, "main");
    assert_eq!(s["containerID"], id, "the same container, adopted");
    assert_eq!(s["restartCount"], 0);
    // Its readiness probe runs again under the new agent.
    ok(c.kubectl(&["exec", "-n", ns, "survivor", "--", "rm", "/tmp/ready"]));
    c.wait_pod(ns, "survivor", "unready once the probe fails", |p| {
        container_status(p, "main")["ready"] == false
    });
    ok(c.kubectl(&["exec", "-n", ns, "survivor", "--", "touch", "/tmp/ready"]));
    c.wait_running(ns, "survivor", true);
    // containerd crashes and comes back: its containers ran on under their shims, and
    // the node goes on running pods.
    node.host
        .containerd()
        .crash_and_restart()
        .expect("restarting containerd");
    std::thread::sleep(Duration::from_secs(3));
    let after = c.wait_running(ns, "survivor", true);
    assert_eq!(
        container_status(&after, "main")["containerID"],
        id,
        "still the same container"
    );
    c.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: newcomer}}
spec:
  containers: [{{name: main, image: {BUSYBOX}, command: ["sleep", "3600"]}}]
"#
        ),
    );
    c.wait_running(ns, "newcomer", true);
    ok(c.kubectl(&[
        "delete",
        "pod",
        "-n",
        ns,
        "survivor",
        "newcomer",
        "--wait=true",
        "--timeout=60s",
    ]));
}

#[test]
fn static_pods_run_from_manifests_with_mirror_pods() {
    let c = cluster();
    let node = &c.nodes[0];
    let ns = ns("static");
    let dir = node.manifests_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pinned.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pinned, namespace: {ns}}}\nspec:\n  containers: [{{name: main, image: {BUSYBOX}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}]\n"
        ),
    )
    .unwrap();
    let name = format!("pinned-{}", node.name());
    let mirror = wait_pod(&ns, &name, "mirror pod running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(mirror["spec"]["nodeName"], node.name());
    let id = container_status(&mirror, "main")["containerID"].clone();
    assert!(id.is_string(), "{mirror}");
    // Deleting the mirror pod does not stop the static pod; the mirror comes back.
    ok(c.kubectl(&["delete", "pod", "-n", &ns, &name, "--wait=false"]));
    let back = wait_pod(&ns, &name, "mirror pod made again", |p| {
        p["metadata"]["uid"] != mirror["metadata"]["uid"]
            && container_status(p, "main")["containerID"].is_string()
    });
    assert_eq!(
        container_status(&back, "main")["containerID"],
        id,
        "the same container kept running"
    );
    // Removing the manifest stops the pod and removes its mirror.
    std::fs::remove_file(&manifest).unwrap();
    let gone = eventually_or(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "pod", "-n", &ns, &name]);
        (!out.status.success()).then_some(())
    });
    assert!(
        gone.is_some(),
        "mirror pod deleted once its manifest is gone\n{}",
        c.agent_logs()
    );
}

/// RuntimeClass end to end: admission gives a pod its class's overhead and node
/// selector, the node agent asks containerd for the class's handler (`runc`, the one
/// configured, runs the pod; a handler containerd lacks fails the sandbox with an Event
/// and the pod stays Pending), and a pod naming no existing class is refused.
#[test]
fn runtime_classes_choose_the_handler_and_add_overhead() {
    let c = cluster();
    let ns = ns("runtimeclass");
    apply(
        &ns,
        &format!(
            r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: e2e-runc}}
handler: runc
overhead: {{podFixed: {{cpu: 10m, memory: 1Mi}}}}
scheduling: {{nodeSelector: {{kubernetes.io/os: linux}}}}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: e2e-unconfigured}}
handler: e2e-unconfigured-handler
---
apiVersion: v1
kind: Pod
metadata: {{name: with-runc}}
spec:
  runtimeClassName: e2e-runc
  restartPolicy: Never
  containers: [{{name: app, image: {BUSYBOX}, command: ["true"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: unconfigured}}
spec:
  runtimeClassName: e2e-unconfigured
  restartPolicy: Never
  containers: [{{name: app, image: {BUSYBOX}, command: ["true"]}}]
"#
        ),
    );
    let done = wait_pod(&ns, "with-runc", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(done["spec"]["overhead"]["cpu"], "10m", "{}", done["spec"]);
    assert_eq!(done["spec"]["overhead"]["memory"], "1Mi");
    assert_eq!(done["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    let failed = eventually_or(Duration::from_secs(60), || {
        has_event(
            &ns,
            "unconfigured",
            "FailedCreatePodSandBox",
            "e2e-unconfigured-handler",
        )
        .then_some(())
    });
    assert!(
        failed.is_some(),
        "no FailedCreatePodSandBox event naming the handler: {:?}",
        events_of(&ns, "unconfigured")
    );
    assert_eq!(pod_json(&ns, "unconfigured")["status"]["phase"], "Pending");
    let refused = fails(c.kubectl(&[
        "run",
        "-n",
        &ns,
        "no-class",
        "--image",
        BUSYBOX,
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"runtimeClassName":"e2e-missing"}}"#,
        "--",
        "true",
    ]));
    assert!(
        refused.contains(r#"pod rejected: RuntimeClass "e2e-missing" not found"#),
        "{refused}"
    );
    ok(c.kubectl(&["delete", "runtimeclass", "e2e-runc", "e2e-unconfigured"]));
}
