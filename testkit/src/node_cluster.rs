//! A whole cluster with real nodes on one machine: etcd, the apiserver, the scheduler
//! and the controller-manager as processes in the host namespace, and N nodes, each a
//! network namespace ([`NodeHost`]) with its own containerd and a `keelson-node-agent`
//! process started inside it.
//!
//! The apiserver listens on every address of the host namespace: tests reach it on
//! loopback, node agents on the test bridge's address. Pod CIDRs come from the
//! controller-manager's node IPAM out of a range unique to the test network, and the
//! host namespace routes each node's pod CIDR via that node (the apiserver's
//! `pods/proxy` reaches pods that way); the agents route between the nodes themselves.

use crate::node::{NodeHost, TestNetwork};
use crate::{binary, eventually, free_port, ok, spawn, ApiserverOptions, Cluster, Proc};
use anyhow::Context;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// A process the test runs inside a node's namespace (the agent, the proxy, the DNS
/// server), restartable with the same flags, stopped by its pid.
pub struct NodeProcess {
    program: &'static str,
    args: Vec<String>,
    log: std::path::PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl NodeProcess {
    fn new(program: &'static str, args: Vec<String>, log: std::path::PathBuf) -> Self {
        NodeProcess {
            program,
            args,
            log,
            proc: Mutex::new(None),
        }
    }

    fn start(&self, host: &NodeHost) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = host.nsenter_command(binary(self.program)?);
        cmd.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(&mut cmd)?;
        *self.proc.lock().unwrap_or_else(|e| e.into_inner()) = Some(Proc {
            child,
            name: format!("{} {}", self.program, host.name),
        });
        Ok(())
    }

    /// Stop it with `signal` (SIGKILL, or SIGTERM with a grace of 10 s).
    pub fn stop(&self, signal: i32) {
        if let Some(mut p) = self.proc.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if signal == libc::SIGKILL {
                p.kill();
            } else {
                p.terminate(Duration::from_secs(10));
            }
        }
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Proc::pid)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// One real node: its host (namespace, containerd) and the processes in it: the
/// node agent, keelson-proxy and keelson-dns.
pub struct RealNode {
    /// Declared before the host: dropped (killed) before the host is torn down.
    pub agent: NodeProcess,
    pub proxy: NodeProcess,
    pub dns: NodeProcess,
    pub host: NodeHost,
}

impl RealNode {
    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// The agent's `--pod-manifest-path` (static pods).
    pub fn manifests_dir(&self) -> std::path::PathBuf {
        self.host.dir().join("manifests")
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        self.agent.log()
    }

    /// Stop the agent with `signal` (SIGKILL, or SIGTERM with a grace of 10 s); pods
    /// keep running.
    pub fn stop_agent(&self, signal: i32) {
        self.agent.stop(signal)
    }

    /// Start the agent again with the same flags.
    pub fn restart_agent(&self) -> anyhow::Result<()> {
        self.agent.stop(libc::SIGTERM);
        self.agent.start(&self.host)
    }

    /// The agent's pid, while it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.pid()
    }

    /// Start the proxy again with the same flags (after [`NodeProcess::stop`]).
    pub fn restart_proxy(&self) -> anyhow::Result<()> {
        self.proxy.stop(libc::SIGTERM);
        self.proxy.start(&self.host)
    }

    /// Start the DNS server again with the same flags.
    pub fn restart_dns(&self) -> anyhow::Result<()> {
        self.dns.stop(libc::SIGTERM);
        self.dns.start(&self.host)
    }
}

/// The apiserver's default Service range, and the kube-dns address in it.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const CLUSTER_DNS: &str = "10.96.0.10";

/// The control plane plus real nodes. Field order is drop order: nodes (agents, then
/// their containerd and namespace) go first, then the bridge, then the control plane.
pub struct NodeCluster {
    pub nodes: Vec<RealNode>,
    pub network: TestNetwork,
    pub scheduler: Proc,
    pub controller_manager: Proc,
    pub cluster: Cluster,
    /// The pod range the controller-manager hands node CIDRs out of.
    pub cluster_cidr: String,
}

/// How the controller-manager carves pod CIDRs for the nodes.
#[derive(Debug, Clone)]
pub struct NodeClusterOptions {
    /// `--node-cidr-mask-size`: each node's pod CIDR. The default /26 (62 pods) keeps
    /// several nodes in the cluster range; a node that must run 100 pods needs a /25
    /// or a /24.
    pub node_cidr_mask: u8,
    /// `--cluster-cidr`. `None`: a /24 of this test network's own, which holds
    /// 2^(mask-24) nodes (one at /24).
    pub cluster_cidr: Option<String>,
}

impl Default for NodeClusterOptions {
    fn default() -> Self {
        NodeClusterOptions {
            node_cidr_mask: 26,
            cluster_cidr: None,
        }
    }
}

impl NodeCluster {
    /// Start the control plane and `nodes` real nodes, and wait until every node is
    /// Ready with a pod CIDR.
    pub fn start(nodes: usize) -> anyhow::Result<NodeCluster> {
        Self::start_with(nodes, NodeClusterOptions::default())
    }

    /// [`NodeCluster::start`] with other pod CIDRs.
    pub fn start_with(nodes: usize, options: NodeClusterOptions) -> anyhow::Result<NodeCluster> {
        let network = TestNetwork::create()?;
        let gateway = network.gateway_ip();
        let cluster = Cluster::start_with(
            1,
            ApiserverOptions {
                bind_address: Some("0.0.0.0".into()),
                extra_sans: vec![gateway.to_string()],
                extra_args: vec![
                    // As keelson up and the documented installs run it.
                    "--authorization-mode=Node,RBAC".into(),
                    // The gateway, which pods reach and the certificate names: the
                    // `kubernetes` Service's endpoint and the OIDC document's jwks_uri.
                    format!("--advertise-address={gateway}"),
                ],
                // The agents serve certificates from the cluster CA (their first from
                // issue_node_credentials, then ones they requested): verified.
                verify_kubelets: true,
            },
        )?;
        // Every component under its own identity; the admin kubeconfig is the tests'.
        let local = format!("https://127.0.0.1:{}", cluster.apiservers[0].port);
        let identities =
            cluster.component_kubeconfigs(&cluster.dir.path().join("components"), &local)?;
        // A /24 of its own for this network's pods, a /26 per node unless told.
        let block = gateway.octets()[2];
        let cluster_cidr = options
            .cluster_cidr
            .clone()
            .unwrap_or_else(|| format!("10.201.{block}.0/24"));
        let scheduler = cluster.start_component_as(
            "keelson-scheduler",
            "scheduler",
            &[format!("--port={}", free_port())],
            &identities.scheduler,
        )?;
        let controller_manager = cluster.start_component_as(
            "keelson-controller-manager",
            "controller-manager",
            &[
                format!("--port={}", free_port()),
                "--use-service-account-credentials".into(),
                format!("--cluster-cidr={cluster_cidr}"),
                format!("--node-cidr-mask-size={}", options.node_cidr_mask),
                // LoadBalancer addresses on the node network, above the nodes' own.
                format!("--service-lb-pool={}", network.load_balancer_pool()),
                format!(
                    "--service-account-private-key-file={}",
                    cluster.pki.sa_key.display()
                ),
                // The agents' serving certificate requests, signed by the cluster CA
                // and approved when their names are the Node's addresses.
                format!(
                    "--cluster-signing-cert-file={}",
                    cluster.pki.ca_cert.display()
                ),
                format!(
                    "--cluster-signing-key-file={}",
                    cluster.pki.ca_key.display()
                ),
                "--approve-kubelet-serving-certificates".into(),
            ],
            &identities.controller_manager,
        )?;
        let server = format!("https://{gateway}:{}", cluster.apiservers[0].port);
        let mut real = Vec::new();
        for _ in 0..nodes {
            let host = network.add_node()?;
            let creds = keelson_pki::issue_node_credentials(
                &cluster.pki,
                &host.dir().join("pki"),
                &host.name,
                &[host.ip.to_string(), host.name.clone()],
                &server,
            )?;
            // The proxy's and the DNS server's own identities, reaching the apiserver
            // from the node's network.
            let node_identities =
                cluster.component_kubeconfigs(&host.dir().join("components"), &server)?;
            let args = vec![
                format!("--kubeconfig={}", creds.kubeconfig.display()),
                // Callers of the agent's API are authorized by the apiserver.
                "--authentication-token-webhook".into(),
                "--authorization-mode=Webhook".into(),
                format!("--hostname-override={}", host.name),
                format!("--node-ip={}", host.ip),
                format!("--container-runtime-endpoint={}", host.runtime_endpoint()),
                format!("--root-dir={}", host.root_dir.display()),
                format!("--pod-logs-dir={}", host.dir().join("pod-logs").display()),
                format!("--cni-conf-dir={}", host.cni_conf_dir().display()),
                // Served until the agent's own serving certificate request is issued.
                format!("--tls-cert-file={}", creds.serving.cert.display()),
                format!("--tls-private-key-file={}", creds.serving.key.display()),
                "--rotate-server-certificates".into(),
                format!("--client-ca-file={}", creds.ca_cert.display()),
                // Each node's pod cgroups apart from the other's and the machine's.
                format!("--cgroup-root=/keelson-{}", host.name),
                "--node-status-update-frequency=2s".into(),
                format!(
                    "--pod-manifest-path={}",
                    host.dir().join("manifests").display()
                ),
                "--file-check-frequency=1s".into(),
                format!("--cluster-dns={CLUSTER_DNS}"),
            ];
            let proxy_args = vec![
                format!("--kubeconfig={}", node_identities.proxy.display()),
                format!("--hostname-override={}", host.name),
                format!("--cluster-cidr={cluster_cidr}"),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                format!("--healthz-bind-address={}:10256", host.ip),
                "--metrics-bind-address=127.0.0.1:10249".into(),
            ];
            // No upstream resolver: names outside the cluster get SERVFAIL at once
            // instead of leaving the machine.
            let no_upstream = host.dir().join("resolv.conf");
            std::fs::write(&no_upstream, "# no upstream resolvers in tests\n")?;
            let dns_args = vec![
                format!("--kubeconfig={}", node_identities.dns.display()),
                format!("--node-name={}", host.name),
                format!("--bind-address={}", host.ip),
                format!("--publish-address={}", host.ip),
                format!("--metrics-bind-address={}:9153", host.ip),
                format!("--resolv-conf={}", no_upstream.display()),
                format!("--service-ip={CLUSTER_DNS}"),
            ];
            let dir = host.dir().to_path_buf();
            let node = RealNode {
                agent: NodeProcess::new("keelson-node-agent", args, host.log_path()),
                proxy: NodeProcess::new("keelson-proxy", proxy_args, dir.join("proxy.log")),
                dns: NodeProcess::new("keelson-dns", dns_args, dir.join("dns.log")),
                host,
            };
            node.agent.start(&node.host)?;
            node.proxy.start(&node.host)?;
            node.dns.start(&node.host)?;
            real.push(node);
        }
        let c = NodeCluster {
            nodes: real,
            network,
            scheduler,
            controller_manager,
            cluster,
            cluster_cidr,
        };
        for n in &c.nodes {
            let cidr = eventually(
                Duration::from_secs(60),
                &format!("node {} ready with a pod CIDR", n.name()),
                || {
                    let out = c.cluster.kubectl(&[
                    "get",
                    "node",
                    n.name(),
                    "-o",
                    "jsonpath={.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    let mut parts = text.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some(cidr), Some("True")) => Some(cidr.to_string()),
                        _ => None,
                    }
                },
            );
            c.network
                .route_pod_cidr(&cidr, n.host.ip)
                .with_context(|| format!("routing {cidr} via {}", n.host.ip))?;
        }
        Ok(c)
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cluster.kubectl(args)
    }

    /// Every node's agent, proxy and DNS logs (their tails), for failure messages.
    pub fn agent_logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- agent {0} ---\n{1}\n--- proxy {0} ---\n{2}\n--- dns {0} ---\n{3}",
                    n.name(),
                    n.agent.log_tail(40),
                    n.proxy.log_tail(15),
                    n.dns.log_tail(10),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `kubectl apply -n NS -f -` with `manifest`.
    pub fn apply(&self, ns: &str, manifest: &str) {
        ok(self
            .cluster
            .kubectl_with("kubectl", &["apply", "-n", ns, "-f", "-"], Some(manifest)));
    }

    /// The pod's JSON (panics when kubectl cannot get it).
    pub fn pod(&self, ns: &str, name: &str) -> serde_json::Value {
        let out = ok(self.kubectl(&["get", "pod", "-n", ns, name, "-o", "json"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("pod JSON ({e}): {out}"))
    }

    /// Poll the pod until `pred` holds and return its JSON; on time-out panic with the
    /// pod's description, the agents' logs and `more()`.
    pub fn wait_pod_or(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
        more: impl Fn() -> String,
    ) -> serde_json::Value {
        let found = eventually_or(Duration::from_secs(90), || {
            let out = self.kubectl(&["get", "pod", "-n", ns, name, "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            pred(&v).then_some(v)
        });
        found.unwrap_or_else(|| {
            panic!(
                "pod {ns}/{name}: {what}: timed out\n{}\n{}\n{}",
                String::from_utf8_lossy(&self.kubectl(&["describe", "pod", "-n", ns, name]).stdout),
                self.agent_logs(),
                more()
            )
        })
    }

    /// [`NodeCluster::wait_pod_or`] without more to say.
    pub fn wait_pod(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_pod_or(ns, name, what, pred, String::new)
    }

    /// The (reason, message) of every Event about the object `name` in `ns`.
    pub fn events(&self, ns: &str, name: &str) -> Vec<(String, String)> {
        let out = ok(self.kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "json",
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// `program` run in the pod's network namespace (found through a process in the
    /// pod's cgroup, `.../pod<uid>/...`): host tools such as `dig` as if in the pod.
    pub fn pod_netns_command(
        &self,
        ns: &str,
        pod: &str,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> std::process::Command {
        let uid = self.pod(ns, pod)["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let needle = format!("pod{uid}");
        let pid = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&needle))
            })
            .unwrap_or_else(|| panic!("no process of pod {ns}/{pod} ({needle})"));
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("--")
            .arg(program);
        c
    }

    /// Wait until the pod is Running (and Ready when `ready`); returns its JSON.
    pub fn wait_running(&self, ns: &str, pod: &str, ready: bool) -> serde_json::Value {
        self.wait_pod(ns, pod, "running", |v| {
            let is_ready = v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            v["status"]["phase"] == "Running" && (!ready || is_ready)
        })
    }
}

/// Poll `f` every 200 ms until it gives a value or `timeout` passes.
pub fn eventually_or<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
