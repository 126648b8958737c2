//! Audit logging end to end: a real apiserver started with `--audit-policy-file` and
//! `--audit-log-path`, the real kubectl, and the log read back line by line as an
//! operator's tools would read it. Each test has its own cluster and log.

use keelson_testkit::{eventually, fails, ok, ApiserverOptions, Cluster};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One rule per level, by namespace; RequestReceived is written only for `audit-request`.
const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
  - level: None
    namespaces: ["audit-none"]
  - level: Metadata
    namespaces: ["audit-metadata"]
    omitStages: ["RequestReceived"]
  - level: Request
    namespaces: ["audit-request"]
  - level: RequestResponse
    namespaces: ["audit-rr"]
    omitStages: ["RequestReceived"]
    omitManagedFields: true
  - level: Metadata
    omitStages: ["RequestReceived"]
"#;

struct Env {
    cluster: Cluster,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    fn start(policy: &str, args: &[&str]) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("keelson-audit-")
            .tempdir()
            .expect("tempdir");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).expect("write policy");
        let log = dir.path().join("logs").join("audit.log");
        let mut extra_args = vec![
            format!("--audit-policy-file={}", policy_path.display()),
            format!("--audit-log-path={}", log.display()),
        ];
        extra_args.extend(args.iter().map(|a| a.to_string()));
        let cluster = Cluster::start_with(
            1,
            ApiserverOptions {
                extra_args,
                ..Default::default()
            },
        )
        .expect("cluster");
        Env {
            cluster,
            log,
            _dir: dir,
        }
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cluster.kubectl(args)
    }

    /// Every event in the log and its backups, oldest file first.
    fn events(&self) -> Vec<Value> {
        let mut files = log_files(&self.log);
        files.sort();
        files.push(self.log.clone());
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("each line is a JSON event"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The events `pick` selects, once there are at least `n` of them.
    fn wait_for(&self, n: usize, what: &str, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        eventually(Duration::from_secs(10), what, || {
            let found: Vec<Value> = self.events().into_iter().filter(|e| pick(e)).collect();
            (found.len() >= n).then_some(found)
        })
    }
}

/// The rotated backups of `log`: `audit-<timestamp>.log`.
fn log_files(log: &Path) -> Vec<PathBuf> {
    // The directory appears when the apiserver opens the log.
    let Ok(dir) = std::fs::read_dir(log.parent().unwrap()) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("audit-") && name.ends_with(".log")
        })
        .collect()
}

fn is_create_of(e: &Value, ns: &str, name: &str) -> bool {
    e["verb"] == "create"
        && e["objectRef"]["resource"] == "configmaps"
        && e["objectRef"]["namespace"] == ns
        && e["objectRef"]["name"] == name
}

fn micro_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    // 2024-05-01T10:20:30.123456Z
    s.len() == 27 && s.ends_with('Z') && s.as_bytes()[19] == b'.'
}

#[test]
fn levels_stages_403_and_401() {
    let env = Env::start(POLICY, &["--authorization-mode=RBAC"]);
    for ns in ["audit-none", "audit-metadata", "audit-request", "audit-rr"] {
        ok(env.kubectl(&["create", "namespace", ns]));
    }
    // The Metadata create with kubectl's verbose log, for the Audit-Id it was answered with.
    let out = env.kubectl(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "audit-metadata",
        "--from-literal=colour=metadata-blue",
        "-v=8",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    // The Audit-Id header kubectl shows after its POST (discovery requests come first).
    let after_post = &stderr[stderr.find("POST").expect("kubectl logs its POST")..];
    let audit_id = after_post
        .lines()
        .find_map(|l| l.split("Audit-Id: ").nth(1))
        .map(|s| s.trim().trim_matches('"').to_string())
        .expect("kubectl shows the Audit-Id response header");
    for ns in ["audit-none", "audit-request", "audit-rr"] {
        ok(env.kubectl(&[
            "create",
            "configmap",
            "cm",
            "-n",
            ns,
            &format!("--from-literal=colour={ns}-blue"),
        ]));
    }

    // Metadata: who, what, the answer; no bodies.
    let m = env.wait_for(1, "the Metadata create", |e| {
        is_create_of(e, "audit-metadata", "cm")
    });
    assert_eq!(m.len(), 1, "RequestReceived is omitted: {m:?}");
    let m = &m[0];
    assert_eq!(m["kind"], "Event");
    assert_eq!(m["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(m["level"], "Metadata");
    assert_eq!(m["stage"], "ResponseComplete");
    assert_eq!(m["auditID"], audit_id.as_str());
    assert_eq!(
        m["requestURI"].as_str().unwrap().split('?').next(),
        Some("/api/v1/namespaces/audit-metadata/configmaps")
    );
    assert_eq!(m["user"]["username"], "kubernetes-admin");
    assert!(
        m["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "system:masters"),
        "{m}"
    );
    assert!(m.get("impersonatedUser").is_none());
    assert_eq!(m["sourceIPs"], serde_json::json!(["127.0.0.1"]));
    assert!(
        m["userAgent"].as_str().unwrap().starts_with("kubectl"),
        "{m}"
    );
    assert_eq!(m["objectRef"]["apiVersion"], "v1");
    assert!(m["objectRef"].get("apiGroup").is_none());
    assert_eq!(
        m["responseStatus"],
        serde_json::json!({"metadata": {}, "code": 201})
    );
    assert_eq!(m["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(m["annotations"]
        .get("authorization.k8s.io/reason")
        .is_some());
    assert!(
        micro_time(&m["requestReceivedTimestamp"]) && micro_time(&m["stageTimestamp"]),
        "{m}"
    );
    assert!(m["stageTimestamp"].as_str() >= m["requestReceivedTimestamp"].as_str());
    assert!(
        m.get("requestObject").is_none() && m.get("responseObject").is_none(),
        "{m}"
    );

    // Request: RequestReceived (no bodies yet, no decision yet), then the request
    // object without the response.
    let r = env.wait_for(2, "the Request create", |e| {
        is_create_of(e, "audit-request", "cm")
            || (e["verb"] == "create"
                && e["objectRef"]["namespace"] == "audit-request"
                && e["stage"] == "RequestReceived")
    });
    let received = r
        .iter()
        .find(|e| e["stage"] == "RequestReceived")
        .expect("RequestReceived");
    assert_eq!(
        received["stageTimestamp"],
        received["requestReceivedTimestamp"]
    );
    assert!(received.get("requestObject").is_none() && received.get("responseStatus").is_none());
    let done = r
        .iter()
        .find(|e| e["stage"] == "ResponseComplete")
        .expect("ResponseComplete");
    assert_eq!(done["auditID"], received["auditID"]);
    assert_eq!(done["level"], "Request");
    assert_eq!(
        done["requestObject"]["data"]["colour"],
        "audit-request-blue"
    );
    assert_eq!(done["requestObject"]["kind"], "ConfigMap");
    assert!(done.get("responseObject").is_none(), "{done}");

    // RequestResponse: both, managedFields left out.
    let rr = env.wait_for(1, "the RequestResponse create", |e| {
        is_create_of(e, "audit-rr", "cm")
    });
    assert_eq!(rr.len(), 1);
    let rr = &rr[0];
    assert_eq!(rr["level"], "RequestResponse");
    assert_eq!(rr["requestObject"]["data"]["colour"], "audit-rr-blue");
    assert_eq!(rr["responseObject"]["data"]["colour"], "audit-rr-blue");
    assert!(rr["responseObject"]["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    assert!(
        rr["responseObject"]["metadata"]
            .get("managedFields")
            .is_none(),
        "{rr}"
    );

    // A watch is long-running: ResponseStarted, then ResponseComplete when it ends.
    ok(env.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/audit-rr/configmaps?watch=1&timeoutSeconds=1",
    ]));
    let w = env.wait_for(2, "the watch's stages", |e| {
        e["verb"] == "watch" && e["objectRef"]["namespace"] == "audit-rr"
    });
    let stages: Vec<&str> = w.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["ResponseStarted", "ResponseComplete"]);
    assert_eq!(w[0]["responseStatus"]["code"], 200);

    // 403: the admin acting as jane, whom no role binds; the admin is the user.
    let denied = fails(env.kubectl(&["--as", "jane", "get", "configmaps", "-n", "audit-metadata"]));
    assert!(denied.contains("forbidden"), "{denied}");
    let f = env.wait_for(1, "the 403", |e| {
        e["impersonatedUser"]["username"] == "jane" && e["objectRef"]["resource"] == "configmaps"
    });
    let f = &f[0];
    assert_eq!(f["user"]["username"], "kubernetes-admin");
    assert_eq!(f["verb"], "list");
    assert_eq!(f["responseStatus"]["code"], 403);
    assert_eq!(f["responseStatus"]["reason"], "Forbidden");
    assert_eq!(f["responseStatus"]["status"], "Failure");
    assert!(
        f["responseStatus"]["message"]
            .as_str()
            .unwrap()
            .contains("User \"jane\" cannot list resource \"configmaps\""),
        "{f}"
    );
    assert_eq!(f["annotations"]["authorization.k8s.io/decision"], "forbid");

    // 401: a token nobody issued. One event, as Kubernetes writes it: no user, the
    // credentials tried, the code.
    let kubeconfig = env.cluster.dir.path().join("bad-token.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: not-a-token\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            env.cluster.server_url(),
            env.cluster.pki.ca_cert.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .args([
            "get",
            "--raw",
            "/api/v1/namespaces/audit-metadata/configmaps",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", env.cluster.dir.path())
        .output()
        .expect("kubectl");
    let refused = fails(out);
    assert!(
        refused.contains("Unauthorized") || refused.contains("provide credentials"),
        "{refused}"
    );
    let u = env.wait_for(1, "the 401", |e| {
        e["responseStatus"]["code"] == 401 && e["objectRef"]["resource"] == "configmaps"
    });
    let u = &u[0];
    assert_eq!(u["stage"], "ResponseStarted");
    assert_eq!(u["user"], serde_json::json!({}));
    assert_eq!(u["verb"], "list");
    assert_eq!(u["objectRef"]["namespace"], "audit-metadata");
    assert_eq!(
        u["responseStatus"]["message"],
        "Authentication failed, attempted: bearer"
    );

    // Pod Security's audit annotations ride on the create's event.
    ok(env.kubectl(&[
        "label",
        "namespace",
        "audit-metadata",
        "pod-security.kubernetes.io/audit=restricted",
    ]));
    ok(env.kubectl(&[
        "run",
        "p",
        "-n",
        "audit-metadata",
        "--image=busybox",
        "--restart=Never",
    ]));
    let p = env.wait_for(1, "the Pod's create", |e| {
        e["verb"] == "create"
            && e["objectRef"]["resource"] == "pods"
            && e["objectRef"]["name"] == "p"
    });
    let ann = &p[0]["annotations"];
    assert_eq!(
        ann["pod-security.kubernetes.io/enforce-policy"], "privileged:latest",
        "{ann}"
    );
    assert!(
        ann["pod-security.kubernetes.io/audit-violations"]
            .as_str()
            .is_some_and(|v| v.starts_with("would violate PodSecurity \"restricted:latest\"")),
        "{ann}"
    );
    assert_eq!(ann["authorization.k8s.io/decision"], "allow");

    // None: never logged; nor are health checks.
    ok(env.kubectl(&["get", "--raw", "/readyz"]));
    ok(env.kubectl(&["get", "--raw", "/version"]));
    env.wait_for(1, "/version", |e| e["requestURI"] == "/version");
    let all = env.events();
    assert!(
        !all.iter()
            .any(|e| e["objectRef"]["namespace"] == "audit-none"),
        "audit-none was logged"
    );
    assert!(!all
        .iter()
        .any(|e| e["requestURI"].as_str().unwrap().starts_with("/readyz")));
    // Every event of one request shares its ID; every line is a complete event.
    for e in &all {
        assert!(
            e["auditID"].as_str().is_some_and(|id| !id.is_empty())
                && e["stage"].is_string()
                && e["level"].is_string(),
            "{e}"
        );
    }
}

#[test]
fn the_default_policy_never_logs_secret_bodies() {
    let env = Env::start(keelson_apiserver::audit::default_policy_yaml(), &[]);
    let password = "hunter2-in-the-audit-log";
    ok(env.kubectl(&[
        "create",
        "secret",
        "generic",
        "s",
        &format!("--from-literal=password={password}"),
    ]));
    ok(env.kubectl(&[
        "create",
        "configmap",
        "c",
        &format!("--from-literal=password={password}"),
    ]));
    let shown = ok(env.kubectl(&["get", "secret", "s", "-o", "yaml"]));
    assert!(shown.contains("password:"));
    ok(env.kubectl(&[
        "patch",
        "secret",
        "s",
        "-p",
        &format!("{{\"stringData\":{{\"other\":\"{password}\"}}}}"),
    ]));
    ok(env.kubectl(&["create", "deployment", "d", "--image=busybox"]));
    let secret_events = env.wait_for(3, "the Secret's create, get and patch", |e| {
        e["objectRef"]["resource"] == "secrets" && e["objectRef"]["name"] == "s"
    });
    for e in &secret_events {
        assert_eq!(e["level"], "Metadata", "{e}");
        assert_ne!(e["stage"], "RequestReceived");
    }
    env.wait_for(1, "the Deployment's create at Metadata", |e| {
        e["objectRef"]["resource"] == "deployments"
            && e["verb"] == "create"
            && e["level"] == "Metadata"
    });
    env.wait_for(1, "the ConfigMap's create", |e| {
        e["objectRef"]["resource"] == "configmaps" && e["objectRef"]["name"] == "c"
    });
    let text = std::fs::read_to_string(&env.log).unwrap();
    assert!(
        !text.contains(password),
        "a secret value reached the audit log"
    );
    assert!(
        !text.contains("aHVudGVyMi1pbi10aGUtYXVkaXQtbG9n"),
        "a base64 secret value reached the audit log"
    );
    for e in env.events() {
        assert!(
            e.get("requestObject").is_none() && e.get("responseObject").is_none(),
            "{e}"
        );
        assert_ne!(e["stage"], "RequestReceived");
        let uri = e["requestURI"].as_str().unwrap();
        assert!(
            !uri.starts_with("/healthz")
                && !uri.starts_with("/readyz")
                && !uri.starts_with("/livez")
        );
        assert_ne!(e["objectRef"]["resource"], "events");
        assert_ne!(e["objectRef"]["resource"], "leases");
    }
}

#[test]
fn rotation_by_size_keeps_maxbackup_files() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [configmaps]\n";
    let env = Env::start(
        policy,
        &["--audit-log-maxsize=1", "--audit-log-maxbackup=2"],
    );
    // Each create's ResponseComplete carries its ~300 KB body twice (request and
    // response): two never fit in one 1 MB file, so each create starts a new file.
    let big = env.cluster.dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(300 * 1024)).unwrap();
    for i in 0..6 {
        ok(env.kubectl(&[
            "create",
            "configmap",
            &format!("big-{i}"),
            &format!("--from-file=blob={}", big.display()),
        ]));
    }
    env.wait_for(1, "the last create", |e| {
        is_create_of(e, "default", "big-5") && e["stage"] == "ResponseComplete"
    });
    let backups = log_files(&env.log);
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in backups.iter().chain([&env.log]) {
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        if b != &env.log {
            // audit-2024-05-01T10-20-30.123.log
            let stamp = &name["audit-".len()..name.len() - ".log".len()];
            assert!(
                chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S%.3f").is_ok(),
                "{name}"
            );
        }
        let size = std::fs::metadata(b).unwrap().len();
        assert!(size <= 1024 * 1024, "{name} is {size} bytes");
    }
    // The oldest creates were rotated away; the newest is whole.
    let events = env.events();
    assert!(!events.iter().any(|e| is_create_of(e, "default", "big-0")));
    assert!(events.iter().any(|e| is_create_of(e, "default", "big-5")
        && e["responseObject"]["data"]["blob"].as_str().map(str::len) == Some(300 * 1024)));
}

#[test]
fn grpc_calls_are_audited() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";
    let env = Env::start(policy, &[]);
    // A real component: keelson-scheduler speaks gRPC (lists and watches, and its
    // leader-election Lease).
    let _scheduler = env
        .cluster
        .start_component(
            "keelson-scheduler",
            "scheduler",
            &[format!("--port={}", keelson_testkit::free_port())],
        )
        .expect("scheduler");
    let grpc = |e: &Value| {
        e["requestURI"]
            .as_str()
            .unwrap_or("")
            .starts_with("/keelson")
    };
    let lease = env.wait_for(1, "the scheduler's Lease written over gRPC", |e| {
        grpc(e)
            && e["objectRef"]["resource"] == "leases"
            && (e["verb"] == "create" || e["verb"] == "update")
    });
    let lease = &lease[0];
    assert_eq!(lease["objectRef"]["apiGroup"], "coordination.k8s.io");
    assert_eq!(lease["objectRef"]["apiVersion"], "v1");
    assert_eq!(lease["objectRef"]["namespace"], "kube-system");
    assert_eq!(lease["user"]["username"], "kubernetes-admin");
    assert_eq!(lease["stage"], "ResponseComplete");
    assert!(
        lease["responseStatus"]["code"]
            .as_u64()
            .is_some_and(|c| c == 200 || c == 201),
        "{lease}"
    );
    assert_eq!(
        lease["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    // Watches are long-running: they start (and stay open).
    let watch = env.wait_for(1, "a gRPC watch of pods", |e| {
        grpc(e) && e["verb"] == "watch" && e["objectRef"]["resource"] == "pods"
    });
    assert_eq!(watch[0]["stage"], "ResponseStarted");
    assert_eq!(watch[0]["responseStatus"]["code"], 200);
}
