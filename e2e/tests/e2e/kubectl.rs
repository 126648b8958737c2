//! The real kubectl (the default 1.32, plus 1.27 and 1.33 when installed) against a
//! real apiserver on a real etcd: every verb the README promises.

use keelson_e2e::{apply, json, kubectl_versions, namespace, CLUSTER};
use keelson_testkit::{fails, ok, Cluster};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - containerPort: 8080
        env:
        - {name: A, value: "1"}
"#;

fn run(c: &Cluster, k: &str, args: &[&str]) -> String {
    ok(c.kubectl_with(k, args, None))
}

fn scenario(k: &str, ns: &str) {
    let c = &*CLUSTER;
    namespace(c, ns);

    // create, then client-side apply twice with a change in between: the second apply
    // sends a strategic merge patch computed from last-applied-configuration.
    ok(c.kubectl_with(k, &["create", "-n", ns, "-f", "-"], Some(DEPLOYMENT)));
    let out = fails(c.kubectl_with(k, &["create", "-n", ns, "-f", "-"], Some(DEPLOYMENT)));
    assert!(
        out.contains("AlreadyExists") || out.contains("already exists"),
        "{out}"
    );
    apply(c, k, ns, DEPLOYMENT);
    let changed = DEPLOYMENT.replace(
        "{name: A, value: \"1\"}",
        "{name: A, value: \"2\"}\n        - {name: B, value: \"3\"}",
    );
    let out = apply(c, k, ns, &changed);
    assert!(out.contains("configured"), "{out}");
    let d = json(&run(
        c,
        k,
        &["get", "deploy", "web", "-n", ns, "-o", "json"],
    ));
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &serde_json::json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]),
        "{d}"
    );
    // Defaults as Kubernetes shows them.
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(d["metadata"]["generation"], 2);

    // get: table, yaml, jsonpath.
    let table = run(c, k, &["get", "deploy", "-n", ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.contains("web"));
    let yaml = run(c, k, &["get", "deploy", "web", "-n", ns, "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("name: web"),
        "{yaml}"
    );
    let jp = run(
        c,
        k,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(jp.trim(), "2");
    let wide = run(c, k, &["get", "deploy", "-n", ns, "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("busybox:1.36"),
        "{wide}"
    );

    // describe
    let desc = run(c, k, &["describe", "deploy", "web", "-n", ns]);
    assert!(
        desc.contains("Name:") && desc.contains("web") && desc.contains("RollingUpdate"),
        "{desc}"
    );

    // patch: strategic, merge, json.
    run(
        c,
        k,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#,
        ],
    );
    run(
        c,
        k,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
        ],
    );
    run(
        c,
        k,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/spec/minReadySeconds","value":5}]"#,
        ],
    );
    let d = json(&run(
        c,
        k,
        &["get", "deploy", "web", "-n", ns, "-o", "json"],
    ));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A",
        "strategic merge kept env"
    );
    assert_eq!(d["metadata"]["labels"]["patched"], "merge");
    assert_eq!(d["spec"]["minReadySeconds"], 5);
    let err = fails(c.kubectl_with(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":99}]"#,
        ],
        None,
    ));
    assert!(!err.is_empty());

    // label, annotate, scale.
    run(c, k, &["label", "deploy", "web", "-n", ns, "tier=frontend"]);
    run(
        c,
        k,
        &["annotate", "deploy", "web", "-n", ns, "owner=team-a"],
    );
    run(c, k, &["scale", "deploy", "web", "-n", ns, "--replicas=5"]);
    let d = json(&run(
        c,
        k,
        &["get", "deploy", "web", "-n", ns, "-o", "json"],
    ));
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(d["spec"]["replicas"], 5);
    let sel = run(
        c,
        k,
        &[
            "get",
            "deploy",
            "-n",
            ns,
            "-l",
            "tier=frontend",
            "-o",
            "name",
        ],
    );
    assert_eq!(sel.trim(), "deployment.apps/web");
    let none = run(
        c,
        k,
        &[
            "get",
            "deploy",
            "-n",
            ns,
            "-l",
            "tier=backend",
            "-o",
            "name",
        ],
    );
    assert_eq!(none.trim(), "");

    // edit with a scripted editor.
    let editor = c.dir.path().join(format!("editor-{ns}.sh"));
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 5/replicas: 3/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(k)
        .args(["edit", "deploy", "web", "-n", ns])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBE_EDITOR", &editor)
        .env("HOME", c.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        run(
            c,
            k,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        )
        .trim(),
        "3"
    );

    // diff: no difference exits 0, a difference exits 1.
    let same = c.kubectl_with(
        k,
        &["diff", "-n", ns, "-f", "-"],
        Some(
            &changed
                .replace("replicas: 2", "replicas: 3")
                .replace("busybox:1.36", "busybox:1.37"),
        ),
    );
    let diff = c.kubectl_with(
        k,
        &["diff", "-n", ns, "-f", "-"],
        Some(&changed.replace("replicas: 2", "replicas: 7")),
    );
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff: {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(String::from_utf8_lossy(&diff.stdout).contains("replicas: 7"));
    assert!(
        same.status.code() == Some(0) || same.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );

    // server-side dry run changes nothing.
    run(
        c,
        k,
        &[
            "scale",
            "deploy",
            "web",
            "-n",
            ns,
            "--replicas=9",
            "--dry-run=server",
        ],
    );
    assert_eq!(
        run(
            c,
            k,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        )
        .trim(),
        "3"
    );

    // get -w sees a change made while it watches.
    let watch = Command::new(k)
        .args(["get", "configmaps", "-n", ns, "-w", "--output-watch-events"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ok(c.kubectl_with(
        k,
        &["create", "-n", ns, "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: b}\n"),
    ));
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc_kill(watch.id()) };
    let out = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.contains("ADDED") && seen.contains("watched"),
        "watch output: {seen} / {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // wait, delete with a finalizer, delete.
    ok(c.kubectl_with(k, &["create", "-n", ns, "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n")));
    run(c, k, &["delete", "cm", "held", "-n", ns, "--wait=false"]);
    let held = json(&run(c, k, &["get", "cm", "held", "-n", ns, "-o", "json"]));
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    run(
        c,
        k,
        &[
            "patch",
            "cm",
            "held",
            "-n",
            ns,
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    run(
        c,
        k,
        &["wait", "--for=delete", "cm/held", "-n", ns, "--timeout=20s"],
    );
    run(
        c,
        k,
        &[
            "wait",
            "--for=jsonpath={.spec.replicas}=3",
            "deploy/web",
            "-n",
            ns,
            "--timeout=20s",
        ],
    );
    run(c, k, &["delete", "deploy", "web", "-n", ns]);
    let gone = fails(c.kubectl_with(k, &["get", "deploy", "web", "-n", ns], None));
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}

unsafe fn libc_kill(pid: u32) {
    // The watch process was started by this test; stop it by its pid.
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

#[test]
fn kubectl_verbs_with_every_installed_version() {
    for (i, k) in kubectl_versions().iter().enumerate() {
        scenario(k, &format!("verbs-{i}"));
    }
}

#[test]
fn discovery_explain_and_versions() {
    let c = &*CLUSTER;
    for k in kubectl_versions() {
        let versions = ok(c.kubectl_with(&k, &["api-versions"], None));
        for gv in [
            "v1",
            "apps/v1",
            "batch/v1",
            "coordination.k8s.io/v1",
            "discovery.k8s.io/v1",
            "events.k8s.io/v1",
        ] {
            assert!(
                versions.lines().any(|l| l == gv),
                "{k}: {gv} missing from {versions}"
            );
        }
        let resources = ok(c.kubectl_with(&k, &["api-resources"], None));
        for r in [
            "pods",
            "deployments",
            "configmaps",
            "leases",
            "endpointslices",
            "cronjobs",
        ] {
            assert!(resources.contains(r), "{k}: {r} missing from api-resources");
        }
        let version = ok(c.kubectl_with(&k, &["version", "-o", "json"], None));
        let v = json(&version);
        assert_eq!(v["serverVersion"]["major"], "1");
        assert!(v["serverVersion"]["minor"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok());
        let explain = ok(c.kubectl_with(&k, &["explain", "deployment.spec.replicas"], None));
        assert!(explain.contains("replicas"), "{k}: {explain}");
        let explain = ok(c.kubectl_with(&k, &["explain", "pods.spec.containers"], None));
        assert!(explain.to_lowercase().contains("image"), "{k}: {explain}");
    }
}

/// kubectl's `create <kind>` generators use client-go's typed clientset, which sends
/// protobuf bodies.
#[test]
fn create_generators_send_protobuf() {
    let c = &*CLUSTER;
    for (i, k) in kubectl_versions().iter().enumerate() {
        let ns = namespace(c, &format!("generators-{i}"));
        run(
            c,
            k,
            &[
                "create",
                "configmap",
                "settings",
                "-n",
                &ns,
                "--from-literal=mode=fast",
                "--from-literal=level=3",
            ],
        );
        run(
            c,
            k,
            &[
                "create",
                "secret",
                "generic",
                "creds",
                "-n",
                &ns,
                "--from-literal=password=s3cret",
            ],
        );
        run(
            c,
            k,
            &[
                "create",
                "deployment",
                "api",
                "-n",
                &ns,
                "--image=busybox:1.36",
                "--replicas=3",
                "--port=8080",
            ],
        );
        run(
            c,
            k,
            &[
                "create",
                "service",
                "clusterip",
                "api",
                "-n",
                &ns,
                "--tcp=80:8080",
            ],
        );
        run(c, k, &["create", "serviceaccount", "robot", "-n", &ns]);
        run(
            c,
            k,
            &[
                "create",
                "job",
                "once",
                "-n",
                &ns,
                "--image=busybox:1.36",
                "--",
                "true",
            ],
        );
        run(
            c,
            k,
            &[
                "create",
                "cronjob",
                "tick",
                "-n",
                &ns,
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
                "--",
                "true",
            ],
        );
        let cm = json(&run(
            c,
            k,
            &["get", "cm", "settings", "-n", &ns, "-o", "json"],
        ));
        assert_eq!(
            cm["data"],
            serde_json::json!({"level": "3", "mode": "fast"})
        );
        let secret = json(&run(
            c,
            k,
            &["get", "secret", "creds", "-n", &ns, "-o", "json"],
        ));
        assert_eq!(secret["data"]["password"], "czNjcmV0", "base64 of s3cret");
        let d = json(&run(
            c,
            k,
            &["get", "deploy", "api", "-n", &ns, "-o", "json"],
        ));
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
        let svc = json(&run(c, k, &["get", "svc", "api", "-n", &ns, "-o", "json"]));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
        assert!(
            svc["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .starts_with("10."),
            "{svc}"
        );
        let job = json(&run(c, k, &["get", "job", "once", "-n", &ns, "-o", "json"]));
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let cj = json(&run(
            c,
            k,
            &["get", "cronjob", "tick", "-n", &ns, "-o", "json"],
        ));
        assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
        // A bad generator input is still a clear error from the server.
        let err = fails(c.kubectl_with(k, &["create", "configmap", "Bad_Name", "-n", &ns], None));
        assert!(err.contains("Invalid") || err.contains("invalid"), "{err}");
    }
}
