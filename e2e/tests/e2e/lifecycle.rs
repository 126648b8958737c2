//! Process lifecycle: readiness follows etcd, SIGTERM shuts down cleanly, and a restart
//! loses nothing that was acknowledged.

use keelson_testkit::{eventually, fails, ok, signal, Cluster};
use std::time::Duration;

#[test]
fn readyz_follows_etcd_and_sigterm_exits_cleanly_without_losing_writes() {
    let mut c = Cluster::start().expect("cluster");
    assert_eq!(ok(c.kubectl(&["get", "--raw", "/readyz"])).trim(), "ok");
    ok(c.kubectl(&["create", "configmap", "kept", "--from-literal=k=v"]));

    // etcd paused: not ready (liveness is unaffected).
    c.etcd.proc_.signal(signal::SIGSTOP);
    eventually(
        Duration::from_secs(20),
        "/readyz to fail while etcd is stopped",
        || {
            let out = c.kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"]);
            (!out.status.success()).then_some(())
        },
    );
    assert_eq!(ok(c.kubectl(&["get", "--raw", "/livez"])).trim(), "ok");
    c.etcd.proc_.signal(signal::SIGCONT);
    eventually(Duration::from_secs(20), "/readyz to recover", || {
        c.kubectl(&["get", "--raw", "/readyz"])
            .status
            .success()
            .then_some(())
    });

    // SIGTERM: the apiserver exits by itself, successfully.
    let status = c.apiservers[0]
        .proc_
        .terminate(Duration::from_secs(15))
        .expect("exited within 15s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let err = fails(c.kubectl(&["get", "cm", "kept", "--request-timeout=3s"]));
    assert!(!err.is_empty());

    // A new apiserver on the same etcd has every acknowledged write.
    c.add_apiserver().expect("restart");
    let server = format!("https://127.0.0.1:{}", c.apiservers[1].port);
    let kc = c.kubeconfig.clone();
    c.write_kubeconfig(&kc, &server).unwrap();
    assert_eq!(
        ok(c.kubectl(&["get", "cm", "kept", "-o", "jsonpath={.data.k}"])),
        "v"
    );
}
