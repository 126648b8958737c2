//! Never fall over on input: schemathesis (PyPI, installed by `scripts/setup`) fuzzes a
//! real apiserver from its own `/openapi/v3` documents for `api/v1`, `apis/apps/v1`,
//! `apis/batch/v1` and a custom resource's group (its schema from its CRD), and the inputs that used to panic a handler (the connection was
//! dropped) or that were accepted where kube-apiserver refuses them are checked one by
//! one against the shared cluster.

use crate::support::*;

use keelson_testkit::{start_process, Cluster, Proc};
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JSON: Option<&str> = Some("application/json");

/// The documents fuzzed, by their `/openapi/v3/<path>`.
const DOCUMENTS: [&str; 3] = ["api/v1", "apis/apps/v1", "apis/batch/v1"];

/// The custom resource fuzzed: its group's document is built from this CRD's schema.
const CUSTOM_GROUP: &str = "fuzz.keelson.dev";

fn custom_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{CUSTOM_GROUP}")},
        "spec": {"group": CUSTOM_GROUP, "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        "size": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "required": ["name"], "properties": {
                                      "name": {"type": "string"}, "port": {"type": "integer"}}}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                 "items": {"type": "string"}}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

/// Every `{namespace}` and `{name}` the fuzzer fills in is one of these, so that its
/// writes reach objects that exist (seeded below) instead of answering 404.
const NAMESPACE: &str = "fuzz";
const NAME: &str = "fuzzed";

/// schemathesis' configuration. `watch` and `follow` are pinned off (a watch runs until
/// its timeout, not a fuzzing request); the coverage phase (boundary values of every
/// parameter) runs for the operations without a body, the bodies of writes are fuzzed
/// only (coverage of a PodSpec's schema takes minutes). The connect operations (exec,
/// attach, port-forward, proxy) relay to nodes this cluster does not have.
const CONFIG: &str = r#"
[parameters]
"watch" = false
"follow" = false
"namespace" = "fuzz"
"name" = "fuzzed"

[[operations]]
include-method-regex = "^(POST|PUT|PATCH)$"
phases.coverage.enabled = false

[[operations]]
include-path-regex = "/(attach|exec|portforward|proxy)(/|$)"
enabled = false
"#;

/// Examples per operation and phase: the three documents take about two minutes
/// against a debug build on two cores.
const MAX_EXAMPLES: &str = "5";
/// A stuck run's limit, not a speed check: a pass took 300 s on a loaded machine.
const PASS_TIMEOUT: Duration = Duration::from_secs(900);

/// One object of each kind, all named [`NAME`], for the fuzzer's writes to land on.
fn seeds() -> Vec<(String, Value)> {
    let ns = NAMESPACE;
    let labels = json!({"app": NAME});
    let pod_spec =
        json!({"restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox"}]});
    let template = json!({"metadata": {"labels": labels}, "spec": pod_spec});
    let job_template = json!({"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    let meta = json!({"name": NAME, "labels": labels});
    vec![
        (
            "/api/v1/namespaces".into(),
            json!({"metadata": {"name": NAME}}),
        ),
        ("/api/v1/nodes".into(), json!({"metadata": meta})),
        (
            format!("/api/v1/namespaces/{ns}/configmaps"),
            json!({"metadata": meta, "data": {"k": "v"}}),
        ),
        (
            format!("/api/v1/namespaces/{ns}/secrets"),
            json!({"metadata": meta, "stringData": {"k": "v"}}),
        ),
        (
            format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"metadata": meta}),
        ),
        (
            format!("/api/v1/namespaces/{ns}/pods"),
            json!({"metadata": meta, "spec": pod_spec}),
        ),
        (
            format!("/api/v1/namespaces/{ns}/services"),
            json!({"metadata": meta, "spec": {"selector": labels, "ports": [{"port": 80}]}}),
        ),
        (
            format!("/api/v1/namespaces/{ns}/replicationcontrollers"),
            json!({"metadata": meta, "spec": {"replicas": 1, "selector": labels, "template": template}}),
        ),
        (
            format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            json!({"metadata": meta, "spec": {"selector": {"matchLabels": labels}, "template": template}}),
        ),
        (
            format!("/apis/apps/v1/namespaces/{ns}/statefulsets"),
            json!({"metadata": meta, "spec": {"serviceName": NAME, "selector": {"matchLabels": labels}, "template": template}}),
        ),
        (
            format!("/apis/apps/v1/namespaces/{ns}/daemonsets"),
            json!({"metadata": meta, "spec": {"selector": {"matchLabels": labels}, "template": template}}),
        ),
        (
            format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            json!({"metadata": meta, "spec": {"template": job_template}}),
        ),
        (
            format!("/apis/batch/v1/namespaces/{ns}/cronjobs"),
            json!({"metadata": meta, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
        (
            format!("/apis/{CUSTOM_GROUP}/v1/namespaces/{ns}/gadgets"),
            json!({"metadata": meta, "spec": {"ports": [{"name": "http", "port": 80}], "tags": ["a"]}}),
        ),
    ]
}

/// Run schemathesis on one document (a child process, stopped by its pid); `methods` is
/// `--include-method` or `--exclude-method` with its value. Returns its log.
fn schemathesis(c: &Cluster, dir: &Path, doc: &Path, methods: [&str; 2]) -> String {
    let log_path = dir.join(format!(
        "{}-{}.log",
        doc.file_stem().unwrap().to_string_lossy(),
        methods[0].trim_start_matches("--")
    ));
    let log = std::fs::File::create(&log_path).expect("schemathesis log");
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir)
        .args([
            "-m",
            "schemathesis.cli",
            "--config-file",
            "schemathesis.toml",
            "run",
        ])
        .arg(doc)
        .args(["--url", &c.server_url()])
        .arg("--request-cert")
        .arg(&c.pki.admin_cert)
        .arg("--request-cert-key")
        .arg(&c.pki.admin_key)
        .arg("--tls-verify")
        .arg(&c.pki.ca_cert)
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        // Reproducible runs; one worker (hypothesis' strategy building is not
        // thread-safe: two workers failed on its own AST cache).
        .args(["--seed", "1", "--workers", "1"])
        // Hypothesis's health check that data generation is fast enough fails on a
        // loaded 2-core machine (one CI run: 3,383 cases passed, then `too_slow`); it
        // says nothing about the server, which the checks above are about.
        .args(["--suppress-health-check", "too_slow"])
        .args(["--request-timeout", "30", "--no-color"])
        .args(methods)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let mut proc_: Proc = start_process(&mut cmd, "schemathesis").expect("starting schemathesis");
    let started = Instant::now();
    let status = proc_.wait_for_exit(PASS_TIMEOUT);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        proc_.kill();
        panic!(
            "schemathesis ran past {PASS_TIMEOUT:?} on {}:\n{}",
            doc.display(),
            tail(&text, 60)
        )
    });
    // Network errors (a dropped connection) and 5xx answers both fail the run.
    assert!(
        status.success(),
        "schemathesis on {} {methods:?} ({status}, {:.0?}):\n{}\napiserver log:\n{}",
        doc.display(),
        started.elapsed(),
        tail(&text, 120),
        c.log_tail("apiserver-0.log")
    );
    eprintln!(
        "schemathesis {} {methods:?}: {:.0?}, {}",
        doc.display(),
        started.elapsed(),
        text.lines()
            .skip_while(|l| !l.starts_with("Test cases:"))
            .nth(1)
            .unwrap_or("(no summary)")
            .trim()
    );
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every collection the documents list across namespaces (`/api/v1/pods`, ...).
fn list_paths(docs: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in docs {
        for (path, item) in d["paths"].as_object().expect("paths") {
            let is_list = item["get"]["operationId"]
                .as_str()
                .is_some_and(|id| id.starts_with("list"));
            if is_list && !path.contains('{') {
                out.insert(path.clone());
            }
        }
    }
    out
}

/// List every collection and GET every item it holds: no 5xx, each item reads back as
/// itself. Returns the (collection, namespace, name) of every object read.
async fn read_everything_back(
    client: &Client,
    collections: &BTreeSet<String>,
) -> BTreeSet<(String, String, String)> {
    let mut read = BTreeSet::new();
    for path in collections {
        let list = raw(client, "GET", path, None, Vec::new()).await;
        assert_eq!(list.code, 200, "GET {path}: {}", list.body);
        let (prefix, plural) = path.rsplit_once('/').expect("a collection path");
        for item in list.json()["items"].as_array().expect("items") {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or("");
            let name = item["metadata"]["name"].as_str().expect("a name");
            let one = if ns.is_empty() {
                format!("{prefix}/{plural}/{name}")
            } else {
                format!("{prefix}/namespaces/{ns}/{plural}/{name}")
            };
            let got = raw(client, "GET", &one, None, Vec::new()).await;
            assert_eq!(got.code, 200, "GET {one}: {}", got.body);
            let got = got.json();
            assert_eq!(got["metadata"]["uid"], item["metadata"]["uid"], "{one}");
            read.insert((plural.to_string(), ns.to_string(), name.to_string()));
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_and_everything_reads_back() {
    // Its own cluster: the fuzzer deletes what it finds.
    let c = tokio::task::spawn_blocking(|| Cluster::start().expect("starting a cluster"))
        .await
        .expect("cluster");
    let client = client_for(&c).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG).expect("config");
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for d in DOCUMENTS {
        let doc = get_json(&client, &format!("/openapi/v3/{d}")).await;
        assert_eq!(doc["openapi"], "3.0.0", "{d}");
        let file: PathBuf = dir.path().join(format!("{}.json", d.replace('/', "_")));
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).expect("document");
        docs.push(doc);
        files.push(file);
    }
    namespace(&client, NAMESPACE).await;
    let custom_key = format!("apis/{CUSTOM_GROUP}/v1");
    let r = raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        JSON,
        serde_json::to_vec(&custom_crd()).unwrap(),
    )
    .await;
    assert_eq!(r.code, 201, "creating the CRD: {}", r.body);
    // Its document appears once the CRD is served (a deadline, not a speed check).
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&client, "/openapi/v3").await["paths"]
        .get(&custom_key)
        .is_none()
    {
        assert!(Instant::now() < deadline, "no /openapi/v3/{custom_key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let doc = get_json(&client, &format!("/openapi/v3/{custom_key}")).await;
    assert_eq!(doc["openapi"], "3.0.0", "{custom_key}");
    let file: PathBuf = dir.path().join("custom.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).expect("document");
    docs.push(doc);
    files.push(file);
    for (path, obj) in seeds() {
        let r = raw(
            &client,
            "POST",
            &path,
            JSON,
            serde_json::to_vec(&obj).unwrap(),
        )
        .await;
        assert_eq!(r.code, 201, "seeding {path}: {}", r.body);
    }
    let collections = list_paths(&docs);
    assert!(
        collections.contains("/api/v1/pods")
            && collections.contains("/apis/batch/v1/cronjobs")
            && collections.contains(&format!("/apis/{CUSTOM_GROUP}/v1/gadgets")),
        "{collections:?}"
    );

    // Writes and reads first: every seeded object is still there afterwards, whatever
    // the fuzzer made of it, and reads back.
    let started = Instant::now();
    for file in &files {
        tokio::task::block_in_place(|| {
            schemathesis(&c, dir.path(), file, ["--exclude-method", "DELETE"])
        });
    }
    let read = read_everything_back(&client, &collections).await;
    for (path, _) in seeds() {
        let plural = path.rsplit('/').next().unwrap().to_string();
        let ns = if path.contains("/namespaces/") {
            NAMESPACE
        } else {
            ""
        };
        assert!(
            read.contains(&(plural.clone(), ns.to_string(), NAME.to_string())),
            "{plural} {NAME} did not survive the fuzzer's writes; read back: {read:?}"
        );
    }
    eprintln!("after the writes: {} objects read back", read.len());
    // Then the deletes (one object, and collections), and everything left reads back.
    for file in &files {
        tokio::task::block_in_place(|| {
            schemathesis(&c, dir.path(), file, ["--include-method", "DELETE"])
        });
    }
    let left = read_everything_back(&client, &collections).await;
    eprintln!(
        "after the deletes: {} objects read back; fuzzing took {:.0?}",
        left.len(),
        started.elapsed()
    );
    // The system namespaces outlive it all (there is no deletecollection of
    // namespaces, as in Kubernetes).
    for ns in ["default", "kube-system"] {
        assert!(
            left.contains(&("namespaces".into(), String::new(), ns.into())),
            "{left:?}"
        );
    }
}

/// 62 ASCII characters and a two-byte one: the character spans bytes 62 and 63.
fn across_byte_63() -> String {
    format!("{}\u{e9}a", "a".repeat(62))
}

fn message(s: &Value) -> &str {
    s["message"].as_str().unwrap_or_default()
}

/// Label values, label keys and annotation keys with a character across byte 63, and a
/// list with such a label selector, used to panic the handler (a string cut at byte 63)
/// and drop the connection. Each now gets Kubernetes' answer; `raw` would fail on a
/// dropped connection before any status could be checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_byte_characters_across_byte_63_are_refused_not_fatal() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "fall-over-bytes").await;
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let long = across_byte_63();
    for (what, metadata) in [
        ("label value", json!({"name": "v", "labels": {"app": long}})),
        (
            "label key",
            json!({"name": "k", "labels": {long.clone(): "x"}}),
        ),
        (
            "prefixed label key",
            json!({"name": "p", "labels": {format!("example.com/{long}"): "x"}}),
        ),
        (
            "annotation key",
            json!({"name": "a", "annotations": {long.clone(): "x"}}),
        ),
    ] {
        let body = serde_json::to_vec(&json!({"metadata": metadata})).unwrap();
        let s = raw(&client, "POST", &cms, JSON, body)
            .await
            .expect_status(422, "Invalid");
        assert!(
            message(&s).contains("must be no more than 63 characters"),
            "{what}: {s}"
        );
        assert!(
            message(&s).contains("consist of alphanumeric characters"),
            "{what}: {s}"
        );
    }
    let encoded = format!("{}%C3%A9a", "a".repeat(62));
    for q in [
        format!("labelSelector=a%3D{encoded}"),
        format!("labelSelector={encoded}%3Dx"),
        format!("labelSelector=a%20in%20(x,{encoded})"),
        format!("labelSelector=a%3D{encoded}&watch=true"),
    ] {
        let s = raw(&client, "GET", &format!("{cms}?{q}"), None, Vec::new())
            .await
            .expect_status(400, "BadRequest");
        assert!(
            message(&s).starts_with("unable to parse requirement: ")
                && message(&s).contains("must be no more than 63 characters"),
            "{q}: {s}"
        );
    }
    // The same client goes on working, and nothing was stored.
    let list = get_json(&client, &cms).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

/// Parameters kube-apiserver refuses, refused with its code and words; and what it
/// accepts (`notin ()`, a continue token at resourceVersion -1) accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_parsed_as_strictly_as_kubernetes() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "fall-over-params").await;
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    for name in ["a", "b", "c"] {
        let body = serde_json::to_vec(&json!({"metadata": {"name": name, "labels": {"x": name}}}))
            .unwrap();
        raw(&client, "POST", &cms, JSON, body).await;
    }
    let get = |q: &str| format!("{cms}?{q}");
    // fieldSelector=== is the selector "==": an empty field, which no kind has.
    let s = raw(&client, "GET", &get("fieldSelector==="), None, Vec::new())
        .await
        .expect_status(400, "BadRequest");
    assert_eq!(
        message(&s),
        r#""" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    let s = raw(
        &client,
        "GET",
        &get("fieldSelector=%3D%3D%3D"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    assert_eq!(
        message(&s),
        "invalid field selector: unescaped character in value: 61"
    );
    // A resourceVersion is an unsigned decimal, whatever the match.
    for q in [
        "resourceVersion=abc&resourceVersionMatch=NotOlderThan",
        "resourceVersion=abc",
        "resourceVersion=-1&resourceVersionMatch=Exact",
        "resourceVersion=abc&watch=true",
    ] {
        let s = raw(&client, "GET", &get(q), None, Vec::new())
            .await
            .expect_status(400, "BadRequest");
        assert!(
            message(&s).starts_with("resourceVersion: Invalid value: ")
                && message(&s).contains("strconv.ParseUint: parsing "),
            "{q}: {s}"
        );
    }
    // Continue tokens, checked as storage.DecodeContinue checks them.
    let token = |raw: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    let from_start = token(r#"{"v":"meta.k8s.io/v1","rv":-1,"start":"a\u0000"}"#);
    let page = get_json(&client, &get(&format!("limit=1&continue={from_start}"))).await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["b"],
        "rv -1 continues at the latest revision: {page}"
    );
    for (raw_token, want) in [
        (
            r#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#,
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ),
        (
            r#"{"v":"meta.k8s.io/v1","rv":5,"start":""}"#,
            "encoded start key empty (version meta.k8s.io/v1)",
        ),
        (
            r#"{"v":"meta.k8s.io/v1","rv":5,"start":"../../secrets"}"#,
            "../../secrets",
        ),
        (
            r#"{"v":"v9","rv":5,"start":"a"}"#,
            "server does not recognize this encoded version v9",
        ),
    ] {
        let s = raw(
            &client,
            "GET",
            &get(&format!("continue={}", token(raw_token))),
            None,
            Vec::new(),
        )
        .await
        .expect_status(400, "BadRequest");
        assert_eq!(
            message(&s),
            format!("invalid continue token: continue key is not valid: {want}"),
            "{raw_token}"
        );
    }
    let s = raw(
        &client,
        "GET",
        &get(&format!("continue={from_start}&resourceVersion=5")),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    assert_eq!(
        message(&s),
        "specifying resource version is not allowed when using continue"
    );
    // `notin ()` is `notin ("")` to Kubernetes: every object here has a non-empty x.
    let all = get_json(&client, &get("labelSelector=x%20notin%20()")).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3), "{all}");
    // limit past what a page can hold is no limit (it overflowed the page arithmetic).
    let all = get_json(&client, &get("limit=9223372036854775807")).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3), "{all}");
    let some = get_json(
        &client,
        &get("limit=9223372036854775807&labelSelector=x%21%3Da"),
    )
    .await;
    assert_eq!(some["items"].as_array().map(Vec::len), Some(2), "{some}");

    // fieldManager: at most 128 bytes, on create, update and patch (422 naming the
    // options kind), and nothing is written.
    let long = "m".repeat(129);
    let a = get_json(&client, &format!("{cms}/a")).await;
    for (method, path, ct, body, kind) in [
        (
            "POST",
            cms.clone(),
            "application/json",
            json!({"metadata": {"name": "d"}}),
            "CreateOptions",
        ),
        (
            "PUT",
            format!("{cms}/a"),
            "application/json",
            a.clone(),
            "UpdateOptions",
        ),
        (
            "PATCH",
            format!("{cms}/a"),
            "application/merge-patch+json",
            json!({"data": {"k": "v"}}),
            "PatchOptions",
        ),
        (
            "PATCH",
            format!("{cms}/a"),
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            "PatchOptions",
        ),
    ] {
        let s = raw(
            &client,
            method,
            &format!("{path}?fieldManager={long}"),
            Some(ct),
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .expect_status(422, "Invalid");
        assert_eq!(
            message(&s),
            format!("{kind}.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"),
            "{method} {ct}"
        );
        assert_eq!(
            s["details"]["causes"][0]["reason"], "FieldValueTooLong",
            "{s}"
        );
    }
    let ok = raw(
        &client,
        "PATCH",
        &format!("{cms}/a?fieldManager={}", "m".repeat(128)),
        Some("application/merge-patch+json"),
        br#"{"data":{"k":"v"}}"#.to_vec(),
    )
    .await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    let managers: Vec<String> = ok.json()["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect();
    assert!(managers.contains(&"m".repeat(128)), "{managers:?}");
    let names: Vec<String> = get_json(&client, &cms).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// What else fuzzing found: Namespaces have no deletecollection in Kubernetes (one
/// request deleted every namespace, `kube-system` included), a huge grace period
/// overflowed the deletion timestamp, and a huge `@every` overflowed a Duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_fuzzing_found_is_answered() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "fall-over-found").await;
    let s = raw(&client, "DELETE", "/api/v1/namespaces", None, Vec::new())
        .await
        .expect_status(405, "MethodNotAllowed");
    assert_eq!(
        message(&s),
        "the server does not allow this method on the requested resource"
    );
    let discovery = get_json(&client, "/api/v1").await;
    let verbs = discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "namespaces")
        .map(|r| r["verbs"].clone())
        .unwrap();
    assert!(
        !verbs
            .as_array()
            .unwrap()
            .contains(&json!("deletecollection")),
        "{verbs}"
    );
    get_json(&client, &format!("/api/v1/namespaces/{ns}")).await;
    get_json(&client, "/api/v1/namespaces/kube-system").await;

    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "2e-100"}}}]}});
    let r = raw(
        &client,
        "POST",
        &pods,
        JSON,
        serde_json::to_vec(&pod).unwrap(),
    )
    .await;
    assert!(r.code < 500, "{}", r.body);
    let r = raw(&client, "POST", &pods, JSON, serde_json::to_vec(&json!({"metadata": {"name": "q"}, "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox"}]}})).unwrap()).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = raw(
        &client,
        "DELETE",
        &format!("{pods}/q?gracePeriodSeconds=9223372036854775807"),
        None,
        Vec::new(),
    )
    .await;
    assert!(r.code == 200 || r.code == 202, "{}", r.body);
    let q = get_json(&client, &format!("{pods}/q")).await;
    assert_eq!(
        q["metadata"]["deletionTimestamp"], "9999-12-31T23:59:59Z",
        "{q}"
    );

    let cronjob = json!({"metadata": {"name": "every"}, "spec": {"schedule": "@every 99999999999999999999999h", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    let s = raw(
        &client,
        "POST",
        &format!("/apis/batch/v1/namespaces/{ns}/cronjobs"),
        JSON,
        serde_json::to_vec(&cronjob).unwrap(),
    )
    .await
    .expect_status(422, "Invalid");
    assert!(message(&s).contains("time: invalid duration"), "{s}");
}
