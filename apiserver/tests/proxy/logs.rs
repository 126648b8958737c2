//! `pods/log`: `kubectl logs` through the apiserver to the node agent.

use crate::support::{ENV, NODE, RT};
use keelson_testkit::{fails, ok};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn kubectl_logs_reaches_the_agent_with_its_options() {
    let env = &*ENV;
    env.pod("logged", NODE, &["app"], &[], &[]);
    let out = ok(env.cluster.kubectl(&[
        "logs",
        "logged",
        "--tail=5",
        "--timestamps",
        "--limit-bytes=100",
    ]));
    assert_eq!(
        out,
        "log of default/logged/app ?timestamps=true&tailLines=5&limitBytes=100\n"
    );
    let out = ok(env.cluster.kubectl(&["logs", "logged", "--since=10s"]));
    assert_eq!(out, "log of default/logged/app ?sinceSeconds=10\n");
    // The agent was reached with the apiserver's kubelet client certificate.
    let seen = env.kubelet_clients.lock().unwrap().clone();
    assert!(
        seen.iter().any(|cn| cn == "kube-apiserver-kubelet-client"),
        "{seen:?}"
    );
}

#[test]
fn kubectl_logs_follow_streams() {
    let env = &*ENV;
    env.pod("follower", NODE, &["app"], &[], &[]);
    let mut child = Command::new("kubectl")
        .args(["logs", "-f", "follower"])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .env("HOME", env.cluster.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // The first line arrives while the agent holds the second back: the body streams.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send((line, stdout));
    });
    let (first, mut stdout) = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(x) => x,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no first log line while the stream was open");
        }
    };
    assert_eq!(first, "first line\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "kubectl logs -f ended early"
    );
    RT.block_on(async { env.follow_gate.notify_one() });
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(rest, "second line\n");
}

#[test]
fn log_errors_are_kubernetes_statuses() {
    let env = &*ENV;
    env.pod("multi", NODE, &["a", "waiting"], &["init"], &[]);
    env.pod("unscheduled", "", &["app"], &[], &[]);
    let base = "/api/v1/namespaces/default/pods";

    let err = fails(env.cluster.kubectl(&["logs", "nope"]));
    assert!(err.contains("pods \"nope\" not found"), "{err}");

    let (ok_, _, err) = env.raw(&format!("{base}/multi/log"));
    assert!(!ok_);
    assert!(
        err.contains("(BadRequest): a container name must be specified for pod multi, choose one of: [a waiting] or one of the init containers: [init]"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/multi/log?container=zzz"));
    assert!(
        err.contains("container zzz is not valid for pod multi"),
        "{err}"
    );
    // The init container's log is there to ask for.
    let (ok_, out, err) = env.raw(&format!("{base}/multi/log?container=init"));
    assert!(ok_, "{err}");
    assert_eq!(out, "log of default/multi/init ?\n");
    // The agent's own refusal comes back as a Status with its words.
    let err = fails(env.cluster.kubectl(&["logs", "multi", "-c", "waiting"]));
    assert!(
        err.contains("(BadRequest): container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating"),
        "{err}"
    );

    let (_, _, err) = env.raw(&format!("{base}/unscheduled/log"));
    assert!(
        err.contains("(BadRequest): pod unscheduled does not have a host assigned"),
        "{err}"
    );

    let (_, _, err) = env.raw(&format!("{base}/multi/log?container=a&tailLines=-1"));
    assert!(
        err.contains("PodLogOptions \"multi\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/multi/log?container=a&limitBytes=0"));
    assert!(
        err.contains("limitBytes: Invalid value: 0: must be greater than 0"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!(
        "{base}/multi/log?container=a&sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"
    ));
    assert!(
        err.contains("at most one of `sinceTime` or `sinceSeconds` may be specified"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/multi/log?container=a&sinceSeconds=0"));
    assert!(
        err.contains("sinceSeconds: Invalid value: 0: must be greater than 0"),
        "{err}"
    );
    let (_, _, err) = env.raw(&format!("{base}/multi/log?container=a&tailLines=many"));
    assert!(
        err.contains("(BadRequest)") && err.contains("tailLines"),
        "{err}"
    );
}

#[test]
fn an_unreachable_agent_is_a_status_naming_the_node() {
    let env = &*ENV;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.register_node("gone-node", port);
    env.pod("stranded", "gone-node", &["app"], &[], &[]);
    env.pod("nowhere", "no-such-node", &["app"], &[], &[]);

    let err = fails(env.cluster.kubectl(&["logs", "stranded"]));
    assert!(
        err.contains("(ServiceUnavailable)") && err.contains("node \"gone-node\""),
        "{err}"
    );
    let err = fails(env.cluster.kubectl(&["logs", "nowhere"]));
    assert!(err.contains("nodes \"no-such-node\" not found"), "{err}");
    // The apiserver carries on.
    ok(env.cluster.kubectl(&["get", "pods", "stranded"]));
}
