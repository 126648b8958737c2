//! Several apiservers on one etcd: they agree on state, accept each other's
//! service-account tokens, never hand out one ClusterIP or NodePort twice, and
//! `default/kubernetes` Endpoints follow which ones are alive.

use keelson_e2e::json;
use keelson_testkit::{eventually, ok, ApiserverOptions, Cluster};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

fn kubeconfig_for(c: &Cluster, i: usize) -> PathBuf {
    let path = c.dir.path().join(format!("apiserver-{i}.kubeconfig"));
    c.write_kubeconfig(
        &path,
        &format!("https://127.0.0.1:{}", c.apiservers[i].port),
    )
    .unwrap();
    path
}

fn kubectl_at(
    c: &Cluster,
    kubeconfig: &PathBuf,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", c.dir.path())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn endpoint_ports(c: &Cluster, kc: &PathBuf) -> HashSet<u64> {
    let out = kubectl_at(
        c,
        kc,
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-n",
            "default",
            "-o",
            "json",
        ],
        None,
    );
    if !out.status.success() {
        return HashSet::new();
    }
    let eps = json(&String::from_utf8_lossy(&out.stdout));
    eps["subsets"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["ports"][0]["port"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_apiservers_share_state_allocations_and_endpoints() {
    let mut c = Cluster::start_with(2, ApiserverOptions::default()).expect("cluster");
    let a = kubeconfig_for(&c, 0);
    let b = kubeconfig_for(&c, 1);
    let ports: HashSet<u64> = c.apiservers.iter().map(|s| u64::from(s.port)).collect();

    // Both apiservers appear in default/kubernetes Endpoints.
    eventually(
        Duration::from_secs(30),
        "both apiservers in endpoints",
        || (endpoint_ports(&c, &a) == ports).then_some(()),
    );

    // A write through one is read and watched through the other.
    ok(kubectl_at(&c, &a, &["create", "namespace", "ha"], None));

    // A service-account token one apiserver signs, the other accepts (same sa.key).
    ok(kubectl_at(
        &c,
        &a,
        &["create", "serviceaccount", "app", "-n", "ha"],
        None,
    ));
    let token = ok(kubectl_at(
        &c,
        &a,
        &["create", "token", "app", "-n", "ha"],
        None,
    ));
    let server_b = format!("--server=https://127.0.0.1:{}", c.apiservers[1].port);
    let ca = format!("--certificate-authority={}", c.pki.ca_cert.display());
    let as_token = format!("--token={}", token.trim());
    let who = ok(kubectl_at(
        &c,
        &b,
        &[
            "--kubeconfig=/dev/null",
            &server_b,
            &ca,
            &as_token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    ));
    assert_eq!(who, "system:serviceaccount:ha:app");
    let watch = std::process::Command::new("kubectl")
        .args([
            "get",
            "configmaps",
            "-n",
            "ha",
            "-w",
            "--output-watch-events",
            "-o",
            "name",
        ])
        .env("KUBECONFIG", &b)
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ok(kubectl_at(
        &c,
        &a,
        &[
            "create",
            "configmap",
            "shared",
            "-n",
            "ha",
            "--from-literal=k=v",
        ],
        None,
    ));
    let got = json(&ok(kubectl_at(
        &c,
        &b,
        &["get", "cm", "shared", "-n", "ha", "-o", "json"],
        None,
    )));
    assert_eq!(got["data"]["k"], "v");
    std::thread::sleep(Duration::from_millis(1000));
    let _ = std::process::Command::new("kill")
        .arg(watch.id().to_string())
        .status();
    let out = watch.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configmap/shared"),
        "watch through B saw the write through A"
    );

    // Services created concurrently through both apiservers never share an address or
    // a node port.
    let handles: Vec<_> = (0..2)
        .map(|side| {
            let kc = if side == 0 { a.clone() } else { b.clone() };
            let home = c.dir.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let manifest = format!(
                        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{side}-{i}, namespace: ha}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n"
                    );
                    let mut child = std::process::Command::new("kubectl")
                        .args(["create", "-f", "-"])
                        .env("KUBECONFIG", &kc)
                        .env("HOME", &home)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
                    assert!(child.wait().unwrap().success());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let list = json(&ok(kubectl_at(
        &c,
        &a,
        &["get", "svc", "-n", "ha", "-o", "json"],
        None,
    )));
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 30);
    let ips: HashSet<&str> = items
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    let node_ports: HashSet<u64> = items
        .iter()
        .map(|s| s["spec"]["ports"][0]["nodePort"].as_u64().unwrap())
        .collect();
    assert_eq!(ips.len(), 30, "ClusterIPs are unique");
    assert_eq!(node_ports.len(), 30, "NodePorts are unique");

    // kill -9 one apiserver: the other keeps serving and the dead one leaves the
    // endpoints when its lease expires.
    let dead_port = u64::from(c.apiservers[1].port);
    c.apiservers[1].proc_.kill();
    ok(kubectl_at(&c, &a, &["get", "ns", "ha"], None));
    eventually(
        Duration::from_secs(40),
        "the killed apiserver to leave the endpoints",
        || {
            let now = endpoint_ports(&c, &a);
            (!now.is_empty() && !now.contains(&dead_port)).then_some(())
        },
    );
}

/// A CRD created through one apiserver is served by the other as soon as its watch
/// cache shows it, and objects written through one are read through the other.
#[test]
fn a_crd_created_through_one_apiserver_is_served_by_the_other() {
    let c = Cluster::start_with(2, ApiserverOptions::default()).expect("cluster");
    let a = kubeconfig_for(&c, 0);
    let b = kubeconfig_for(&c, 1);
    let group = "ha.keelson.dev";
    let manifest = crate::custom_resources::crd(group, "widgets", "Widget");
    ok(kubectl_at(&c, &a, &["apply", "-f", "-"], Some(&manifest)));
    let applied = std::time::Instant::now();
    let path = format!("/apis/{group}/v1");
    eventually(
        Duration::from_secs(10),
        "the other apiserver serving it",
        || {
            kubectl_at(&c, &b, &["get", "--raw", &path], None)
                .status
                .success()
                .then_some(())
        },
    );
    let took = applied.elapsed();
    // kubectl itself takes a good part of this on a loaded machine.
    assert!(
        took < Duration::from_secs(3),
        "served by the other after {took:?}"
    );
    ok(kubectl_at(&c, &b, &["create", "namespace", "crd"], None));
    let widget = format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: crd\nspec:\n  image: x\n"
    );
    ok(kubectl_at(&c, &b, &["create", "-f", "-"], Some(&widget)));
    let got = ok(kubectl_at(
        &c,
        &a,
        &[
            "get",
            &format!("widgets.{group}"),
            "w",
            "-n",
            "crd",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    ));
    assert_eq!(got, "1", "defaulted, and read through the other apiserver");
    println!("CRD served by the second apiserver {took:?} after kubectl apply returned");
}
