//! Two nodes in network namespaces on a test bridge: a pod on one reaches a pod on the
//! other through routes between the namespaces, the host reaches a pod through
//! `route_pod_cidr`, and nothing is left afterwards.

use crate::support::*;
use k8s_cri::v1::*;
use keelson_testkit::node::{NodeHost, TestNetwork};
use std::io::{Read, Write};
use std::time::Duration;

/// bridge + host-local on `subnet`, as the node agent will write it; host-local keeps
/// its leases in the node's directory, not in the machine-wide /var/lib/cni.
fn write_cni_config(node: &NodeHost, subnet: &str) {
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "keelson",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": node.dir().join("cni-ipam"),
                "ranges": [[{ "subnet": subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
            },
        }, { "type": "portmap", "capabilities": { "portMappings": true } }],
    });
    std::fs::write(
        node.cni_conf_dir().join("10-keelson.conflist"),
        serde_json::to_vec_pretty(&conf).unwrap(),
    )
    .unwrap();
}

async fn pod_ip(cri: &mut Cri, pod_id: &str) -> String {
    cri.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: pod_id.into(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
    .status
    .and_then(|s| s.network)
    .map(|n| n.ip)
    .expect("pod has an IP")
}

async fn run_pod(node: &NodeHost, name: &str, command: &[&str]) -> (Cri, String, String) {
    let mut cri = Cri::new(keelson_containerd::connect(node.socket()).await.unwrap());
    let pod = sandbox_config(name, false, &node.dir().join("pod-logs"));
    let pod_id = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RunPodSandbox on {}: {e}\n{}",
                node.name,
                node.containerd().log_tail()
            )
        })
        .into_inner()
        .pod_sandbox_id;
    let container = run_container(
        &mut cri,
        &pod_id,
        &pod,
        name,
        keelson_containerd::BUSYBOX_IMAGE,
        command,
    )
    .await;
    let ip = pod_ip(&mut cri, &pod_id).await;
    (cri, container, ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_reach_each_other() {
    let net = TestNetwork::create().expect("test network");
    let nodes = [
        net.add_node().expect("node 0"),
        net.add_node().expect("node 1"),
    ];
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.ip, net.node_ip(i));
        write_cni_config(n, &net.pod_cidr(i));
        // No default route: only the bridge's /24 (and later the pod routes).
        let routes = n.ip(&["route"]).unwrap();
        assert!(!routes.contains("default"), "{routes}");
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let dirs: Vec<std::path::PathBuf> = nodes.iter().map(|n| n.dir().to_path_buf()).collect();

    let (mut server_cri, server, server_ip) = run_pod(
        &nodes[0],
        "server",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-node-0 > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .await;
    let (mut client_cri, client, client_ip) =
        run_pod(&nodes[1], "client", &["sleep", "3600"]).await;
    assert!(
        server_ip.starts_with(&net.pod_cidr(0)[..net.pod_cidr(0).len() - 4]),
        "{server_ip}"
    );
    assert!(
        client_ip.starts_with(&net.pod_cidr(1)[..net.pod_cidr(1).len() - 4]),
        "{client_ip}"
    );

    // Without routes between the namespaces the server is unreachable, and fails fast.
    // (No `wget -T`: Debian's static busybox 1.35 wget crashes with it.)
    let url = format!("http://{server_ip}:8080/");
    let (code, _, _) = exec(&mut client_cri, &client, &["wget", "-q", "-O", "-", &url]).await;
    assert_ne!(code, 0, "reached the other node's pod without a route");

    nodes[0]
        .ip(&[
            "route",
            "add",
            &net.pod_cidr(1),
            "via",
            &nodes[1].ip.to_string(),
        ])
        .unwrap();
    nodes[1]
        .ip(&[
            "route",
            "add",
            &net.pod_cidr(0),
            "via",
            &nodes[0].ip.to_string(),
        ])
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, out, err) =
            exec(&mut client_cri, &client, &["wget", "-q", "-O", "-", &url]).await;
        if code == 0 {
            break out;
        }
        if std::time::Instant::now() > deadline {
            let mut facts = format!("wget: {err}\n");
            for n in &nodes {
                facts += &format!(
                    "{} routes:\n{}",
                    n.name,
                    n.ip(&["route"]).unwrap_or_default()
                );
                let fwd = n
                    .nsenter_command("cat")
                    .arg("/proc/sys/net/ipv4/ip_forward")
                    .output();
                facts += &format!(
                    "ip_forward: {:?}\n",
                    fwd.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                );
            }
            let (_, routes, _) = exec(&mut client_cri, &client, &["ip", "route"]).await;
            for target in [nodes[0].ip.to_string(), server_ip.clone()] {
                let r = exec(&mut client_cri, &client, &["ping", "-c1", "-W1", &target]).await;
                facts += &format!("client ping {target}: {r:?}\n");
            }
            let local = exec(
                &mut server_cri,
                &server,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
            )
            .await;
            facts += &format!("server's own wget: {local:?}\n");
            panic!("no answer from {url} across nodes\n{facts}client pod routes:\n{routes}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body, "hello-from-node-0\n");

    // The host side reaches the pod through the bridge once the pod CIDR is routed.
    net.route_pod_cidr(&net.pod_cidr(0), nodes[0].ip).unwrap();
    let addr: std::net::SocketAddr = format!("{server_ip}:8080").parse().unwrap();
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("host reaches the pod");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("hello-from-node-0"), "{reply}");

    // Teardown leaves nothing: pods, containerds, shims, mounts, namespaces, bridge.
    drop(client_cri);
    let bridge = net.bridge().to_string();
    drop(nodes);
    drop(net);
    let netns = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for (name, dir) in names.iter().zip(&dirs) {
        assert!(!netns.contains(name.as_str()), "{netns}");
        assert_eq!(mounts_under(dir), Vec::<String>::new());
        assert_eq!(
            processes_mentioning(&dir.to_string_lossy()),
            Vec::<String>::new()
        );
        assert!(!dir.exists());
    }
    let links = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-br", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!links.contains(&bridge), "{links}");
}

/// The child role of the tests below: start a node with a pod, report it, then leave
/// without dropping it, by `exit` (the exit hook runs) or by SIGKILL (nothing runs).
fn child_node_then(leave: &str) -> ! {
    let net = TestNetwork::create().expect("test network");
    let node = net.add_node().expect("node");
    write_cni_config(&node, &net.pod_cidr(0));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        run_pod(&node, "left-running", &["sleep", "3600"]).await;
    });
    println!(
        "CHILD-NODE {} {} {}",
        node.name,
        node.dir().display(),
        net.bridge()
    );
    use std::io::Write as _;
    std::io::stdout().flush().unwrap();
    drop(runtime);
    std::mem::forget(node);
    std::mem::forget(net);
    if leave == "kill" {
        kill_self();
    }
    std::process::exit(0);
}

/// SIGKILL this process (what a test runner's timeout does).
fn kill_self() {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(60));
}

const ROLE: &str = "KEELSON_NODE_CHILD";

/// Run `test` of this binary as a child in the role `leave`; what its node was.
fn run_child(test: &str, leave: &str) -> (String, std::path::PathBuf, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, leave)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-NODE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "no node reported ({}): {stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let fields: Vec<&str> = line.split(' ').collect();
    (fields[0].into(), fields[1].into(), fields[2].into())
}

fn assert_nothing_left(name: &str, dir: &std::path::Path, bridge: &str) {
    let netns = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!netns.contains(name), "{netns}");
    assert_eq!(mounts_under(dir), Vec::<String>::new());
    assert_eq!(
        processes_mentioning(&dir.to_string_lossy()),
        Vec::<String>::new()
    );
    assert!(!dir.exists(), "{} remains", dir.display());
    let links = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-br", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!links.contains(bridge), "{links}");
}

/// A node never dropped (kept until the process exits, like one in a `static`) is torn
/// down by the exit hook.
#[test]
fn a_node_never_dropped_is_torn_down_at_exit() {
    if let Ok(leave) = std::env::var(ROLE) {
        child_node_then(&leave);
    }
    let (name, dir, bridge) = run_child("nodes::a_node_never_dropped_is_torn_down_at_exit", "exit");
    assert_nothing_left(&name, &dir, &bridge);
}

/// A test process killed outright leaves its node (shims, mounts, namespace, bridge);
/// the next test network made on the machine sweeps it away.
#[test]
fn a_killed_process_leaves_what_the_next_network_sweeps() {
    if let Ok(leave) = std::env::var(ROLE) {
        child_node_then(&leave);
    }
    let (name, dir, bridge) = run_child(
        "nodes::a_killed_process_leaves_what_the_next_network_sweeps",
        "kill",
    );
    // The shims outlived their containerd, so the pod's mounts are still there.
    assert!(!mounts_under(&dir).is_empty(), "nothing was left to sweep");
    let _net = TestNetwork::create().expect("test network");
    assert_nothing_left(&name, &dir, &bridge);
    // Its image archives too (named after the child's pid, as its nodes are).
    let child_pid = name
        .trim_start_matches('k')
        .split('x')
        .next()
        .unwrap()
        .to_string();
    let images_left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("keelson-images-{child_pid}x-"))
        })
        .collect();
    assert!(images_left.is_empty(), "{images_left:?}");
}
