//! Bad input against the real apiserver: every request gets Kubernetes' status code and
//! reason, and the stored data is unchanged afterwards (each test reads the object back,
//! or checks that nothing was created). Raw HTTP goes through kube-rs' client (its TLS and
//! client certificate) so that malformed bodies reach the server as sent.

use crate::support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keelson_testkit::{fails, ok};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const JSON: Option<&str> = Some("application/json");

/// A namespace with one configmap `keep` (data k=v) that bad requests must not change.
async fn setup(client: &Client, ns: &str) -> (Api<ConfigMap>, ConfigMap) {
    namespace(client, ns).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let keep = api
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "keep", "labels": {"app": "keep"}}, "data": {"k": "v"}})))
        .await
        .expect("creating the configmap to keep");
    (api, keep)
}

/// The stored configmap is exactly `want`, and the namespace holds nothing else.
async fn unchanged(api: &Api<ConfigMap>, want: &ConfigMap) {
    let now = api
        .get(&want.name_any())
        .await
        .expect("the configmap is still there");
    assert_eq!(&now, want, "a rejected request changed the stored object");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        names,
        [want.name_any()],
        "a rejected request created something"
    );
}

fn cms(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// The causes of a Status, as (field, reason) pairs.
fn causes(s: &Value) -> Vec<(String, String)> {
    s.pointer("/details/causes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or("").to_string(),
                        c["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_bad_request() {
    let (_, client) = shared().await;
    let ns = "bad-json";
    let (api, keep) = setup(&client, ns).await;
    for bad in [
        &b"{\"metadata\": {\"name\": \"broken\""[..],
        b"not json at all",
        b"{\"metadata\": {\"name\": \"x\"}} trailing",
        b"",
    ] {
        let r = raw(&client, "POST", &cms(ns), JSON, bad.to_vec()).await;
        r.expect_status(400, "BadRequest");
    }
    // Valid JSON, but not an object, or of the wrong types.
    raw(&client, "POST", &cms(ns), JSON, b"[1, 2]".to_vec())
        .await
        .expect_status(400, "BadRequest");
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "typed"}, "data": {"k": 5}})),
    )
    .await;
    let s = r.expect_status(400, "BadRequest");
    assert!(s["message"].as_str().unwrap().contains("ConfigMap"), "{s}");
    // The same through update and patch of the existing object.
    let keep_path = format!("{}/keep", cms(ns));
    raw(
        &client,
        "PUT",
        &keep_path,
        JSON,
        b"{\"metadata\": ".to_vec(),
    )
    .await
    .expect_status(400, "BadRequest");
    raw(
        &client,
        "PATCH",
        &keep_path,
        Some("application/merge-patch+json"),
        b"{\"data\": ".to_vec(),
    )
    .await
    .expect_status(400, "BadRequest");
    raw(
        &client,
        "PATCH",
        &keep_path,
        Some("application/json-patch+json"),
        b"[{\"op\": ".to_vec(),
    )
    .await
    .expect_status(400, "BadRequest");
    unchanged(&api, &keep).await;
}

const BAD_YAML: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n data: [unclosed\n  k: v\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_yaml_is_rejected() {
    let (c, client) = shared().await;
    let ns = "bad-yaml";
    let (api, keep) = setup(&client, ns).await;
    // kubectl refuses it on the client side; nothing reaches the store.
    let err = fails(c.kubectl_with("kubectl", &["apply", "-n", ns, "-f", "-"], Some(BAD_YAML)));
    assert!(
        err.to_lowercase().contains("yaml") || err.contains("error"),
        "{err}"
    );
    // Sent as application/yaml, the server answers 400.
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        Some("application/yaml"),
        BAD_YAML.as_bytes().to_vec(),
    )
    .await;
    let s = r.expect_status(400, "BadRequest");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("yaml"),
        "{s}"
    );
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        Some("application/yaml"),
        b"- just\n- a list\n".to_vec(),
    )
    .await;
    r.expect_status(400, "BadRequest");
    let r = raw(
        &client,
        "PUT",
        &format!("{}/keep", cms(ns)),
        Some("application/yaml"),
        b"metadata: {name: keep\n".to_vec(),
    )
    .await;
    r.expect_status(400, "BadRequest");
    // Well-formed YAML is accepted (so the 400s above are about the syntax).
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n";
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        Some("application/yaml"),
        good.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.body);
    api.delete("from-yaml", &DeleteParams::default())
        .await
        .unwrap();
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kind_or_api_version_for_the_url_is_a_bad_request() {
    let (_, client) = shared().await;
    let ns = "bad-kind";
    let (api, keep) = setup(&client, ns).await;
    let cases = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-kind"}, "data": {"k": "dg=="}}),
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "wrong-group"}}),
        json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "wrong-version"}}),
        json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "wrong-kind-2"}}),
    ];
    for case in &cases {
        let r = raw(&client, "POST", &cms(ns), JSON, body(case.clone())).await;
        r.expect_status(400, "BadRequest");
    }
    // An update of the existing object with another kind or version.
    for (av, kind) in [("v1", "Secret"), ("apps/v1", "ConfigMap")] {
        let b = json!({"apiVersion": av, "kind": kind, "metadata": {"name": "keep", "resourceVersion": keep.resource_version()}, "data": {"k": "changed"}});
        raw(&client, "PUT", &format!("{}/keep", cms(ns)), JSON, body(b))
            .await
            .expect_status(400, "BadRequest");
    }
    // A deployment body to the deployments URL of another group.
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    raw(
        &client,
        "POST",
        &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
        JSON,
        body(dep),
    )
    .await
    .expect_status(400, "BadRequest");
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_unprocessable() {
    let (_, client) = shared().await;
    let ns = "bad-names";
    let (api, keep) = setup(&client, ns).await;
    let long = "a".repeat(254);
    for name in [
        "Bad_Name",
        "-leading-dash",
        "trailing-dash-",
        "UPPER",
        "white space",
        long.as_str(),
    ] {
        let r = raw(
            &client,
            "POST",
            &cms(ns),
            JSON,
            body(json!({"metadata": {"name": name}})),
        )
        .await;
        let s = r.expect_status(422, "Invalid");
        assert!(
            causes(&s).iter().any(|(f, _)| f == "metadata.name"),
            "{name}: {s}"
        );
        assert_eq!(s["details"]["kind"], "ConfigMap", "{s}");
    }
    // Neither name nor generateName.
    let s = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {}})),
    )
    .await
    .expect_status(422, "Invalid");
    assert!(
        causes(&s).contains(&("metadata.name".into(), "FieldValueRequired".into())),
        "{s}"
    );
    // generateName that cannot make a valid name.
    let s = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"generateName": "Bad_"}})),
    )
    .await
    .expect_status(422, "Invalid");
    assert!(
        causes(&s).iter().any(|(f, _)| f == "metadata.generateName"),
        "{s}"
    );
    // Namespaces are DNS labels: no dots.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let s = status_of(
        namespaces
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "has.dots"}})),
            )
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(s
        .details
        .unwrap()
        .causes
        .iter()
        .any(|c| c.field == "metadata.name"));
    assert_eq!(status_of(namespaces.get("has.dots").await).code, 404);
    // A name in the body that differs from the URL's.
    let b = json!({"metadata": {"name": "other", "resourceVersion": keep.resource_version()}, "data": {"k": "changed"}});
    raw(&client, "PUT", &format!("{}/keep", cms(ns)), JSON, body(b))
        .await
        .expect_status(400, "BadRequest");
    // Renaming through a patch.
    let p = json!({"metadata": {"name": "renamed"}});
    let r = raw(
        &client,
        "PATCH",
        &format!("{}/keep", cms(ns)),
        Some("application/merge-patch+json"),
        body(p),
    )
    .await;
    assert!(r.code == 400 || r.code == 422, "{}: {}", r.code, r.body);
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_labels_are_unprocessable() {
    let (_, client) = shared().await;
    let ns = "bad-labels";
    let (api, keep) = setup(&client, ns).await;
    let long_value = "v".repeat(64);
    let cases = [
        json!({"app": "bad value!"}),
        json!({"app": long_value}),
        json!({"app": "-starts-with-dash"}),
        json!({"bad key": "v"}),
        json!({"too/many/slashes": "v"}),
    ];
    for labels in cases {
        let r = raw(
            &client,
            "POST",
            &cms(ns),
            JSON,
            body(json!({"metadata": {"name": "labelled", "labels": labels}})),
        )
        .await;
        let s = r.expect_status(422, "Invalid");
        assert!(
            causes(&s)
                .iter()
                .any(|(f, _)| f.starts_with("metadata.labels")),
            "{labels}: {s}"
        );
    }
    // Through update and patch of the existing object.
    let mut bad = keep.clone();
    bad.labels_mut().insert("app".into(), "bad value!".into());
    let s = status_of(api.replace("keep", &PostParams::default(), &bad).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    let s = status_of(
        api.patch(
            "keep",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "bad value!"}}})),
        )
        .await,
    );
    assert_eq!(s.code, 422, "{s:?}");
    // Annotations: invalid key.
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "annotated", "annotations": {"bad key": "v"}}})),
    )
    .await;
    r.expect_status(422, "Invalid");
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_rejected() {
    let (_, client) = shared().await;
    let ns = "bad-size";
    let (api, keep) = setup(&client, ns).await;
    // Over the 3 MiB request limit: 413 before anything is decoded.
    let big = "x".repeat(3 * 1024 * 1024 + 1024);
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "huge"}, "data": {"k": big}})),
    )
    .await;
    r.expect_status(413, "RequestEntityTooLarge");
    let r = raw(
        &client,
        "PUT",
        &format!("{}/keep", cms(ns)),
        JSON,
        body(json!({"metadata": {"name": "keep"}, "data": {"k": big}})),
    )
    .await;
    r.expect_status(413, "RequestEntityTooLarge");
    // Under the request limit but over a ConfigMap's 1 MiB: 422.
    let mib = "x".repeat(1024 * 1024 + 1);
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "big"}, "data": {"k": mib}})),
    )
    .await;
    r.expect_status(422, "Invalid");
    // The connection still works after the 413s.
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_versions_conflict() {
    let (_, client) = shared().await;
    let ns = "bad-stale";
    let (api, keep) = setup(&client, ns).await;
    // Move the object on, then write with the old resourceVersion.
    let mut moved = keep.clone();
    moved
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "moved".into());
    let moved = api
        .replace("keep", &PostParams::default(), &moved)
        .await
        .unwrap();
    let stale = keep.resource_version().unwrap();

    let b = json!({"metadata": {"name": "keep", "resourceVersion": stale}, "data": {"k": "stale"}});
    let s = raw(&client, "PUT", &format!("{}/keep", cms(ns)), JSON, body(b))
        .await
        .expect_status(409, "Conflict");
    assert_eq!(s["details"]["name"], "keep", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{s}"
    );
    let p = json!({"metadata": {"resourceVersion": stale}, "data": {"k": "stale"}});
    raw(
        &client,
        "PATCH",
        &format!("{}/keep", cms(ns)),
        Some("application/merge-patch+json"),
        body(p),
    )
    .await
    .expect_status(409, "Conflict");
    let p = json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": stale}, {"op": "replace", "path": "/data/k", "value": "stale"}]);
    raw(
        &client,
        "PATCH",
        &format!("{}/keep", cms(ns)),
        Some("application/json-patch+json"),
        body(p),
    )
    .await
    .expect_status(409, "Conflict");
    // A delete with a stale resourceVersion precondition.
    let d = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": stale}});
    raw(
        &client,
        "DELETE",
        &format!("{}/keep", cms(ns)),
        JSON,
        body(d),
    )
    .await
    .expect_status(409, "Conflict");
    // A resourceVersion that is not a number.
    let b = json!({"metadata": {"name": "keep", "resourceVersion": "abc"}, "data": {"k": "stale"}});
    let r = raw(&client, "PUT", &format!("{}/keep", cms(ns)), JSON, body(b)).await;
    assert!(r.code == 400 || r.code == 409, "{}: {}", r.code, r.body);
    // And one set on create.
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "with-rv", "resourceVersion": "5"}})),
    )
    .await;
    r.expect_status(400, "BadRequest");
    unchanged(&api, &moved).await;
}

const DEPLOYMENT_WITH_UNKNOWN: &str = r#"{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "my-dep", "labels": {"app": "nginx"}},
    "spec": {
        "unknownField": "foo",
        "replicas": 2,
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
        }
    }
}"#;

/// fieldValidation=Strict names unknown (and duplicate) fields in a 400; Warn stores the
/// object without them and says so in Warning headers; Ignore is silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_with_field_validation() {
    let (_, client) = shared().await;
    let ns = "bad-fields";
    let (api, keep) = setup(&client, ns).await;
    let unknown = body(
        json!({"metadata": {"name": "strict", "bogusMeta": 1}, "data": {"k": "v"}, "bogus": true}),
    );
    let r = raw(
        &client,
        "POST",
        &format!("{}?fieldValidation=Strict", cms(ns)),
        JSON,
        unknown.clone(),
    )
    .await;
    let s = r.expect_status(400, "BadRequest");
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"unknown field "bogus""#)
            && msg.contains(r#"unknown field "metadata.bogusMeta""#),
        "{msg}"
    );

    // Strict on update and on a merge patch.
    let b = json!({"metadata": {"name": "keep"}, "data": {"k": "changed"}, "bogus": true});
    raw(
        &client,
        "PUT",
        &format!("{}/keep?fieldValidation=Strict", cms(ns)),
        JSON,
        body(b),
    )
    .await
    .expect_status(400, "BadRequest");
    let p = json!({"data": {"k": "changed"}, "bogus": true});
    let r = raw(
        &client,
        "PATCH",
        &format!("{}/keep?fieldValidation=Strict", cms(ns)),
        Some("application/merge-patch+json"),
        body(p),
    )
    .await;
    r.expect_status(400, "BadRequest");
    // An unknown fieldValidation value.
    raw(
        &client,
        "POST",
        &format!("{}?fieldValidation=Sometimes", cms(ns)),
        JSON,
        unknown.clone(),
    )
    .await
    .expect_status(400, "BadRequest");
    unchanged(&api, &keep).await;

    // Warn (the default for kubectl and for no parameter): created, with warnings.
    let r = raw(
        &client,
        "POST",
        &format!("{}?fieldValidation=Warn", cms(ns)),
        JSON,
        unknown.clone(),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let warnings = r.warnings().join("\n");
    assert!(
        warnings.contains(r#"unknown field \"bogus\""#) && warnings.contains("299"),
        "{warnings}"
    );
    let stored: Value = serde_json::to_value(api.get("strict").await.unwrap()).unwrap();
    assert!(
        stored.get("bogus").is_none() && stored["metadata"].get("bogusMeta").is_none(),
        "{stored}"
    );
    // Ignore: created, silently.
    let ignored = body(json!({"metadata": {"name": "ignored"}, "bogus": true}));
    let r = raw(
        &client,
        "POST",
        &format!("{}?fieldValidation=Ignore", cms(ns)),
        JSON,
        ignored,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());

    // FieldValidation conformance: a typed object with unknown and duplicate fields.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments?fieldManager=field_validation_mgr&fieldValidation=Strict");
    let s = raw(
        &client,
        "POST",
        &path,
        JSON,
        DEPLOYMENT_WITH_UNKNOWN.as_bytes().to_vec(),
    )
    .await
    .expect_status(400, "BadRequest");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains(r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#), "{msg}");
    assert_eq!(status_of(deps.get("my-dep").await).code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_terminating_namespaces() {
    let (_, client) = shared().await;
    // A namespace that does not exist: 404 naming the namespace.
    let r = raw(
        &client,
        "POST",
        &cms("no-such-namespace"),
        JSON,
        body(json!({"metadata": {"name": "orphan"}})),
    )
    .await;
    let s = r.expect_status(404, "NotFound");
    assert_eq!(
        (s["details"]["kind"].as_str(), s["details"]["name"].as_str()),
        (Some("namespaces"), Some("no-such-namespace")),
        "{s}"
    );
    let r = raw(
        &client,
        "GET",
        &format!("{}/orphan", cms("no-such-namespace")),
        None,
        Vec::new(),
    )
    .await;
    r.expect_status(404, "NotFound");
    // Writes that create on the way (server-side apply; update of a kind that allows
    // create-on-update) are refused before anything is stored.
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "orphan"}});
    let orphans: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-namespace");
    let s = status_of(
        orphans
            .patch(
                "orphan",
                &PatchParams::apply("orphan"),
                &Patch::Apply(apply),
            )
            .await,
    );
    assert_eq!(s.code, 404, "{s:?}");
    let event = |ns: &str| {
        body(
            json!({"metadata": {"name": "orphan-event"}, "involvedObject": {"namespace": ns}, "reason": "Test", "message": "m", "type": "Normal"}),
        )
    };
    let events = "/api/v1/namespaces/no-such-namespace/events/orphan-event";
    raw(&client, "PUT", events, JSON, event("no-such-namespace"))
        .await
        .expect_status(404, "NotFound");
    let everywhere = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().fields("metadata.namespace=no-such-namespace"))
        .await
        .unwrap();
    assert!(
        everywhere.items.is_empty(),
        "stored in a namespace that does not exist: {:?}",
        everywhere.items
    );
    raw(&client, "GET", events, None, Vec::new())
        .await
        .expect_status(404, "NotFound");

    // A namespace being deleted: 403, and what it holds is untouched.
    let ns = "bad-terminating";
    let (api, keep) = setup(&client, ns).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .expect("deleting the namespace");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = namespaces
            .get(ns)
            .await
            .expect("namespace (terminating, no namespace controller)");
        if n.status.and_then(|s| s.phase).as_deref() == Some("Terminating") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace never became Terminating"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        JSON,
        body(json!({"metadata": {"name": "late"}})),
    )
    .await;
    let s = r.expect_status(403, "Forbidden");
    assert_eq!(
        s["message"],
        format!("configmaps \"late\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"),
        "{s}"
    );
    assert_eq!(s["details"]["name"], "late", "{s}");
    // Server-side apply would create too: also refused.
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}});
    let s = status_of(
        api.patch("late", &PatchParams::apply("late"), &Patch::Apply(apply))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}");
    let late_event = format!("/api/v1/namespaces/{ns}/events/late-event");
    let e = json!({"metadata": {"name": "late-event"}, "involvedObject": {"namespace": ns}, "reason": "Test", "message": "m", "type": "Normal"});
    raw(&client, "PUT", &late_event, JSON, body(e))
        .await
        .expect_status(403, "Forbidden");
    raw(&client, "GET", &late_event, None, Vec::new())
        .await
        .expect_status(404, "NotFound");
    // What the namespace holds can still be updated.
    let mut changed = keep.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "updated while terminating".into());
    let keep = api
        .replace("keep", &PostParams::default(), &changed)
        .await
        .expect("updating inside a terminating namespace");
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_media_types() {
    let (_, client) = shared().await;
    let ns = "bad-media";
    let (api, keep) = setup(&client, ns).await;
    let keep_path = format!("{}/keep", cms(ns));
    let p = body(json!({"data": {"k": "changed"}}));
    for ct in [
        "text/plain",
        "application/json",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let r = raw(&client, "PATCH", &keep_path, Some(ct), p.clone()).await;
        r.expect_status(415, "UnsupportedMediaType");
    }
    raw(&client, "PATCH", &keep_path, None, p.clone())
        .await
        .expect_status(415, "UnsupportedMediaType");
    let r = raw(
        &client,
        "POST",
        &cms(ns),
        Some("text/plain"),
        body(json!({"metadata": {"name": "plain"}})),
    )
    .await;
    r.expect_status(415, "UnsupportedMediaType");
    // A response format nobody serves.
    let mut req = http::Request::builder()
        .method("GET")
        .uri(keep_path.as_str())
        .header("accept", "text/html");
    req = req.header("content-type", "application/json");
    let resp = client
        .send(req.body(kube::client::Body::from(Vec::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 406);
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_json_patch_test_is_unprocessable() {
    let (_, client) = shared().await;
    let ns = "bad-json-patch";
    let (api, keep) = setup(&client, ns).await;
    let keep_path = format!("{}/keep", cms(ns));
    let jp = Some("application/json-patch+json");
    // A failing test stops the whole patch, even the operations before it.
    let p = json!([{"op": "replace", "path": "/data/k", "value": "changed"}, {"op": "test", "path": "/data/k", "value": "nope"}]);
    raw(&client, "PATCH", &keep_path, jp, body(p))
        .await
        .expect_status(422, "Invalid");
    let p = json!([{"op": "test", "path": "/data/missing", "value": "x"}]);
    raw(&client, "PATCH", &keep_path, jp, body(p))
        .await
        .expect_status(422, "Invalid");
    // Operations on paths that do not exist.
    let p = json!([{"op": "remove", "path": "/data/missing"}]);
    raw(&client, "PATCH", &keep_path, jp, body(p))
        .await
        .expect_status(422, "Invalid");
    let p = json!([{"op": "replace", "path": "/nothing/here", "value": 1}]);
    raw(&client, "PATCH", &keep_path, jp, body(p))
        .await
        .expect_status(422, "Invalid");
    // An operation Kubernetes' JSON patch does not know fails when applied: 422 too.
    raw(
        &client,
        "PATCH",
        &keep_path,
        jp,
        body(json!([{"op": "frobnicate", "path": "/data/k"}])),
    )
    .await
    .expect_status(422, "Invalid");
    // Not a JSON patch at all: it does not decode.
    raw(&client, "PATCH", &keep_path, jp, body(json!({"op": "add"})))
        .await
        .expect_status(400, "BadRequest");
    // A passing test with a change goes through (so the failures are about the test).
    let p = json!([{"op": "test", "path": "/data/k", "value": "v"}]);
    let r = raw(&client, "PATCH", &keep_path, jp, body(p)).await;
    assert_eq!(r.code, 200, "{}", r.body);
    unchanged(&api, &keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_selectors_are_bad_requests() {
    let (c, client) = shared().await;
    let ns = "bad-selectors";
    let (api, keep) = setup(&client, ns).await;
    let list = |q: &str| format!("{}?{q}", cms(ns));
    for q in [
        "fieldSelector=spec.bogus%3Dx",
        "fieldSelector=data.k%3Dv",
        "fieldSelector=status.phase%3DRunning",
    ] {
        let s = raw(&client, "GET", &list(q), None, Vec::new())
            .await
            .expect_status(400, "BadRequest");
        assert!(s["message"].as_str().unwrap().contains("field"), "{q}: {s}");
    }
    for q in [
        "labelSelector=app%20in%20(a",
        "labelSelector=%21%21",
        "labelSelector=a%3D%3D%3Db",
        "labelSelector=bad%20key%3Dv",
        "labelSelector=app%3D-bad-",
    ] {
        raw(&client, "GET", &list(q), None, Vec::new())
            .await
            .expect_status(400, "BadRequest");
    }
    // Watches and deletecollection check them too; deletecollection deletes nothing.
    raw(
        &client,
        "GET",
        &list("watch=true&labelSelector=app%20in%20(a"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    raw(
        &client,
        "GET",
        &list("watch=true&fieldSelector=spec.bogus%3Dx"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    raw(
        &client,
        "DELETE",
        &list("labelSelector=app%20in%20(a"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    raw(
        &client,
        "DELETE",
        &list("fieldSelector=spec.bogus%3Dx"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    // Other list parameters.
    raw(&client, "GET", &list("limit=abc"), None, Vec::new())
        .await
        .expect_status(400, "BadRequest");
    raw(
        &client,
        "GET",
        &list("limit=1&continue=not-a-token"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(400, "BadRequest");
    // Combinations of list options Kubernetes' ValidateListOptions refuses: 422.
    for q in [
        "resourceVersion=1&resourceVersionMatch=Sometimes",
        "resourceVersionMatch=Exact",
        "resourceVersion=0&resourceVersionMatch=Exact",
        "sendInitialEvents=true",
        "watch=true&resourceVersionMatch=Exact&sendInitialEvents=true&allowWatchBookmarks=true",
        "watch=true&sendInitialEvents=true&allowWatchBookmarks=true",
    ] {
        let s = raw(&client, "GET", &list(q), None, Vec::new())
            .await
            .expect_status(422, "Invalid");
        assert_eq!(s["details"]["kind"], "ListOptions", "{q}: {s}");
    }
    // kubectl surfaces the same errors.
    let err = fails(c.kubectl_with(
        "kubectl",
        &["get", "cm", "-n", ns, "--field-selector", "spec.bogus=x"],
        None,
    ));
    assert!(
        err.contains("BadRequest")
            || err.contains("not a known field selector")
            || err.contains("field label"),
        "{err}"
    );
    let out = ok(c.kubectl_with(
        "kubectl",
        &["get", "cm", "-n", ns, "-l", "app=keep", "-o", "name"],
        None,
    ));
    assert_eq!(out.trim(), "configmap/keep");
    unchanged(&api, &keep).await;
}

/// Other malformed query parameters of writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_write_options_are_bad_requests() {
    let (_, client) = shared().await;
    let ns = "bad-options";
    let (api, keep) = setup(&client, ns).await;
    let create = body(json!({"metadata": {"name": "opt"}}));
    raw(
        &client,
        "POST",
        &format!("{}?dryRun=Some", cms(ns)),
        JSON,
        create.clone(),
    )
    .await
    .expect_status(400, "BadRequest");
    let keep_path = format!("{}/keep", cms(ns));
    let r = raw(
        &client,
        "DELETE",
        &format!("{keep_path}?propagationPolicy=Sometimes"),
        None,
        Vec::new(),
    )
    .await;
    let s = r.expect_status(422, "Invalid");
    assert!(
        causes(&s).iter().any(|(f, _)| f == "propagationPolicy"),
        "{s}"
    );
    raw(
        &client,
        "DELETE",
        &format!("{keep_path}?gracePeriodSeconds=-5"),
        None,
        Vec::new(),
    )
    .await
    .expect_status(422, "Invalid");
    // Server-side apply without a field manager.
    let apply = body(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"k": "applied"}}),
    );
    raw(
        &client,
        "PATCH",
        &keep_path,
        Some("application/apply-patch+yaml"),
        apply,
    )
    .await
    .expect_status(422, "Invalid");
    // A namespace in the body that differs from the URL's.
    let other = body(json!({"metadata": {"name": "elsewhere", "namespace": "default"}}));
    raw(&client, "POST", &cms(ns), JSON, other)
        .await
        .expect_status(400, "BadRequest");
    unchanged(&api, &keep).await;
}
