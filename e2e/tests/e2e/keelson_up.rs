//! `keelson up`, the README's first command, on a machine of its own: a network
//! namespace on a test bridge (no default route) runs the single binary with its etcd,
//! containerd, node agent, proxy and DNS server. A Deployment behind a LoadBalancer
//! Service answers from another host on the bridge at the machine's address (no pool:
//! the EXTERNAL-IP is the node's own, as k3s's servicelb), names resolve from pods, and
//! stopping `keelson up` removes its pods and its rules.

use std::time::Duration;

use keelson_testkit::node::TestNetwork;
use keelson_testkit::{binary, free_port, start_process};

struct Machine {
    up: keelson_testkit::Proc,
    kubeconfig: std::path::PathBuf,
    log: std::path::PathBuf,
    /// `<data-dir>/containerd`: keelson up's containerd lives here.
    containerd_dir: std::path::PathBuf,
}

/// On every path: SIGTERM, so that keelson up stops its pods, containerd and etcd itself
/// (SIGKILL only after a minute), then whatever its containerd left running or mounted.
impl Drop for Machine {
    fn drop(&mut self) {
        if self.up.is_running() {
            self.up.terminate(Duration::from_secs(60));
        }
        keelson_testkit::node::clean_up_containerd_leftovers(
            &self.containerd_dir,
            &self.containerd_dir.join("containerd.sock"),
        );
    }
}

impl Machine {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("kubectl stdin");
        }
        drop(input);
        child.wait_with_output().expect("kubectl")
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n--- keelson up log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `f` until it gives a value; on time-out panic with the machine's log.
    fn until<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "{what}: timed out\n--- keelson up log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: web}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: httpd:latest
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 80, name: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: keelson.local/busybox:1, command: ["sleep", "3600"]}]
"#;

#[test]
fn keelson_up_runs_services_dns_and_load_balancers_on_one_machine() {
    let network = TestNetwork::create().expect("a test network");
    let host = network.add_outside_host().expect("the machine");
    let client = network
        .add_outside_host()
        .expect("a client on the same network");
    let dir = tempfile::tempdir().expect("data dir");
    let data = dir.path().join("data");
    // An air-gapped image: archives in <data-dir>/images are imported at start.
    let images = data.join("images");
    std::fs::create_dir_all(&images).unwrap();
    keelson_containerd::image::build(
        &keelson_containerd::image::ImageSpec::httpd("docker.io/library/httpd:latest"),
        std::path::Path::new(keelson_containerd::image::HOST_BUSYBOX),
    )
    .unwrap()
    .write_archive(&images.join("httpd.tar"))
    .unwrap();
    let log = dir.path().join("up.log");
    let port = free_port();
    let mut cmd = host.nsenter_command(binary("keelson").unwrap());
    cmd.args(["up", "--data-dir"])
        .arg(&data)
        .args([
            &format!("--bind-address={}", host.ip),
            &format!("--node-ip={}", host.ip),
            &format!("--port={port}"),
            "--node-name=machine",
            // Ports inside the machine's own namespace.
            "--etcd-port=2379",
        ])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut machine = Machine {
        up: start_process(&mut cmd, "keelson up").expect("keelson up"),
        kubeconfig: data.join("admin.kubeconfig"),
        log,
        containerd_dir: data.join("containerd"),
    };

    machine.until("the node Ready", Duration::from_secs(120), || {
        let out = machine.kubectl(
            &[
                "get",
                "node",
                "machine",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            None,
        );
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
    // The agent's serving certificate comes from its own kubelet-serving request,
    // approved because the Node's addresses name it; the apiserver verifies it against
    // the cluster CA, so the execs below go through it.
    machine.until(
        "the agent's serving certificate issued",
        Duration::from_secs(60),
        || {
            let out = machine.kubectl(
                &[
                    "get",
                    "csr",
                    "-o",
                    "jsonpath={range .items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")]}{.spec.username} {.status.conditions[0].reason} {.status.certificate}{\"\\n\"}{end}",
                ],
                None,
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() == 3 && f[0] == "system:node:machine" && f[1] == "AutoApproved"
                })
                .then_some(())
        },
    );
    machine.ok(&["apply", "-f", "-"], Some(WEB));
    machine.ok(
        &["rollout", "status", "deployment/web", "--timeout=120s"],
        None,
    );
    machine.ok(
        &[
            "wait",
            "--for=condition=Ready",
            "pod/client",
            "--timeout=60s",
        ],
        None,
    );
    let external = machine.until("an EXTERNAL-IP", Duration::from_secs(30), || {
        let out = machine.kubectl(
            &[
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            None,
        );
        let ip = String::from_utf8_lossy(&out.stdout).into_owned();
        (!ip.is_empty()).then_some(ip)
    });
    assert_eq!(
        external,
        host.ip.to_string(),
        "no pool: the node's own address"
    );

    // From another host on the network, at the EXTERNAL-IP.
    let page = machine.until("the LoadBalancer answers", Duration::from_secs(30), || {
        let out = client
            .command("curl")
            .args(["-sS", "--max-time", "3", &format!("http://{external}/")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("It works!").then_some(text)
    });
    assert!(page.contains("web-"), "{page}");

    // Names resolve from a pod (through the search list) and from the machine itself.
    let cluster_ip = machine.ok(
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );
    let answer = machine.until("web resolves in a pod", Duration::from_secs(30), || {
        let out = machine.kubectl(&["exec", "client", "--", "nslookup", "web"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&cluster_ip).then_some(text)
    });
    assert!(answer.contains("web.default.svc.cluster.local"), "{answer}");
    machine.until("web by name from a pod", Duration::from_secs(20), || {
        let out = machine.kubectl(
            &[
                "exec",
                "client",
                "--",
                "timeout",
                "5",
                "wget",
                "-qO-",
                "http://web/",
            ],
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("It works!").then_some(())
    });
    let dig = host
        .command("dig")
        .args(["+short", "@10.96.0.10", "web.default.svc.cluster.local"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), cluster_ip);

    // Secrets are ciphertext in etcd; the audit log says who did what, each component
    // as itself, and keeps Secrets' bodies out.
    machine.ok(
        &[
            "create",
            "secret",
            "generic",
            "hush",
            "--from-literal=word=swordfish",
        ],
        None,
    );
    let stored = host
        .command("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints=http://127.0.0.1:2379",
            "get",
            "/registry/secrets/default/hush",
            "--print-value-only",
        ])
        .output()
        .unwrap();
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(stored.starts_with("k8s:enc:secretbox:v1:key1:"), "{stored}");
    assert!(
        !stored.contains("swordfish") && !stored.contains("c3dvcmRmaXNo"),
        "{stored}"
    );
    let audit = std::fs::read_to_string(data.join("audit.log")).expect("the audit log");
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
        .collect();
    let secret_create = events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "secrets"
                && e["objectRef"]["name"] == "hush"
        })
        .unwrap_or_else(|| panic!("no audit event for the Secret's create"));
    assert_eq!(secret_create["level"], "Metadata", "{secret_create}");
    assert!(
        secret_create.get("requestObject").is_none(),
        "{secret_create}"
    );
    assert!(!audit.contains("swordfish"));
    // (user, resource, subresource, verb)
    for (user, resource, sub, verb) in [
        ("system:kube-scheduler", "pods", "binding", "create"),
        ("system:node:machine", "pods", "status", "patch"),
        (
            "system:serviceaccount:kube-system:deployment-controller",
            "replicasets",
            "",
            "create",
        ),
    ] {
        assert!(
            events.iter().any(|e| e["user"]["username"] == user
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].as_str().unwrap_or("") == sub
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)),
            "no successful {verb} of {resource}/{sub} by {user} in the audit log"
        );
    }

    // Stopping keelson up removes its pods and the proxy's rules and addresses.
    let status = machine.up.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "keelson up exits cleanly on SIGTERM: {status:?}\n{}",
        machine.log_tail()
    );
    let tables = host
        .command("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.contains("keelson-proxy"), "{tables}");
    drop(client);
    drop(host);
}
