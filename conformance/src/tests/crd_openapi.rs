//! CustomResourcePublishOpenAPI conformance tests (crd_publish_openapi.go) that read
//! `/openapi/v2` only: a CRD's served versions appear there as definitions named
//! `<reversed group>.<version>.<Kind>` whose schema is the CRD's (less the envelope the
//! apiserver adds: `metadata`, `apiVersion`, `kind` and the group-version-kind
//! extension), across groups, versions and kinds, and follow a version's rename or its
//! `served: false`. The tests that drive `kubectl explain` and kubectl's client-side
//! validation are in the e2e suite (custom_resources.rs), since this runner is kube-rs
//! only.

use super::crds::{crds, create_established, delete_crd, json_patch, CRDS};
use super::Test;
use crate::framework::*;
use kube::api::PostParams;
use kube::Client;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a definition may take to appear or go (upstream: 60 s).
const WAIT: Duration = Duration::from_secs(60);
/// Consecutive reads that must agree before a wait succeeds (upstream asks ten, to
/// catch an HA apiserver lagging behind; one apiserver here, three is plenty).
const AGREEING_READS: usize = 3;

/// `schemaFoo` of the upstream test.
fn schema_foo() -> Value {
    json!({
        "description": "Foo CRD for Testing",
        "type": "object",
        "properties": {
            "spec": {"type": "object", "description": "Specification of Foo", "properties": {
                "bars": {"description": "List of Bars and their specs.", "type": "array", "items": {
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"description": "Name of Bar.", "type": "string"},
                        "age": {"description": "Age of Bar.", "type": "string"},
                        "feeling": {"description": "Whether Bar is feeling great.", "type": "string", "enum": ["Great", "Down"]},
                        "bazs": {"description": "List of Bazs.", "items": {"type": "string"}, "type": "array"}
                    }}}
            }},
            "status": {"description": "Status of Foo", "type": "object", "properties": {
                "bars": {"description": "List of Bars and their statuses.", "type": "array", "items": {
                    "type": "object", "properties": {
                        "name": {"description": "Name of Bar.", "type": "string"},
                        "available": {"description": "Whether the Bar is installed.", "type": "boolean"},
                        "quxType": {"description": "Indicates to external qux type.", "pattern": "in-tree|out-of-tree", "type": "string"}
                    }}}
            }}
        }
    })
}

/// `schemaWaldo` of the upstream test.
fn schema_waldo() -> Value {
    json!({
        "description": "Waldo CRD for Testing",
        "type": "object",
        "properties": {
            "spec": {"description": "Specification of Waldo", "type": "object", "properties": {
                "dummy": {"description": "Dummy property.", "type": "object"}
            }},
            "status": {"description": "Status of Waldo", "type": "object", "properties": {
                "bars": {"description": "List of Bars and their statuses.", "type": "array", "items": {"type": "object"}}
            }}
        }
    })
}

/// A CRD made as `setupCRD` makes it: group `crd-publish-openapi-<tag>-test-<suffix>.example.com`, the
/// given versions all served with `schema` (the first stored), a kind unique to the
/// test; waits until every version's definition is published.
struct TestCrd {
    name: String,
    group: String,
    kind: String,
}

impl TestCrd {
    fn definition(&self, version: &str) -> String {
        let reversed: Vec<&str> = self.group.split('.').rev().collect();
        format!("{}.{version}.{}", reversed.join("."), self.kind)
    }
}

async fn setup_crd(ctx: &Ctx, schema: &Value, suffix: &str, versions: &[&str]) -> TestCrd {
    let mut rng = Rng::new();
    let id: String = (0..5)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect();
    // Unique to the test (its namespace's random suffix) and a DNS label however long
    // the namespace's name.
    let tag = &ctx.ns[ctx.ns.len().saturating_sub(5)..];
    let group = format!("crd-publish-openapi-{tag}-test-{suffix}.example.com");
    let plural = format!("e2e-test-crd-publish-openapi-{id}-crds");
    let kind = format!("E2e-test-crd-publish-openapi-{id}-crd");
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": v, "served": true, "storage": i == 0, "schema": {"openAPIV3Schema": schema}}))
        .collect();
    let crd = obj(json!({
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": format!("e2e-test-crd-publish-openapi-{id}-crd"), "kind": kind, "listKind": format!("{kind}List")},
            "versions": versions,
        },
    }));
    let created = create_established(&ctx.client, &crd).await;
    let test = TestCrd {
        name: format!("{plural}.{group}"),
        group,
        kind,
    };
    for v in &created.spec.versions {
        wait_for_definition(&ctx.client, &test.definition(&v.name), schema).await;
    }
    test
}

/// Delete the CRD and wait until none of `versions` is published any more.
async fn cleanup_crd(ctx: &Ctx, crd: &TestCrd, versions: &[&str]) {
    delete_crd(&ctx.client, &crd.name).await;
    for v in versions {
        wait_for_definition_cleanup(&ctx.client, &crd.definition(v)).await;
    }
}

async fn openapi_v2(client: &Client) -> Value {
    let req = http::Request::get("/openapi/v2").body(Vec::new()).unwrap();
    client
        .request::<Value>(req)
        .await
        .unwrap_or_else(|e| panic!("GET /openapi/v2: {e}"))
}

/// A published definition without what the apiserver adds to every custom resource
/// (`dropDefaults`).
fn without_envelope(mut def: Value) -> Value {
    if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
        for k in ["metadata", "apiVersion", "kind"] {
            props.remove(k);
        }
    }
    if let Some(o) = def.as_object_mut() {
        o.remove("x-kubernetes-group-version-kind");
        o.remove("x-kubernetes-selectable-fields");
    }
    def
}

/// Poll `/openapi/v2` until `pred` holds for [`AGREEING_READS`] reads in a row.
async fn wait_for_openapi(
    client: &Client,
    what: &str,
    pred: impl Fn(&Value) -> Result<(), String>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        let mut agreed = 0;
        while agreed < AGREEING_READS {
            match pred(&openapi_v2(client).await) {
                Ok(()) => agreed += 1,
                Err(why) => {
                    last = why;
                    break;
                }
            }
        }
        if agreed == AGREEING_READS {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {WAIT:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_for_definition(client: &Client, name: &str, schema: &Value) {
    wait_for_openapi(
        client,
        &format!("definition {name} published"),
        |doc| match doc["definitions"].get(name) {
            None => Err(format!("definitions[{name:?}] not found")),
            Some(def) => {
                let def = without_envelope(def.clone());
                if def == *schema {
                    Ok(())
                } else {
                    Err(format!(
                        "definitions[{name:?}] does not match; expected {schema}, got {def}"
                    ))
                }
            }
        },
    )
    .await
}

async fn wait_for_definition_cleanup(client: &Client, name: &str) {
    wait_for_openapi(
        client,
        &format!("definition {name} removed"),
        |doc| match doc["definitions"].get(name) {
            Some(_) => Err(format!("definitions[{name:?}] still exists")),
            None => Ok(()),
        },
    )
    .await
}

async fn varying_groups(ctx: Ctx) {
    let foo_crd = setup_crd(&ctx, &schema_foo(), "foo", &["v1"]).await;
    let waldo_crd = setup_crd(&ctx, &schema_waldo(), "waldo", &["v1beta1"]).await;
    assert_ne!(foo_crd.group, waldo_crd.group);
    wait_for_definition(
        &ctx.client,
        &waldo_crd.definition("v1beta1"),
        &schema_waldo(),
    )
    .await;
    wait_for_definition(&ctx.client, &foo_crd.definition("v1"), &schema_foo()).await;
    cleanup_crd(&ctx, &foo_crd, &["v1"]).await;
    cleanup_crd(&ctx, &waldo_crd, &["v1beta1"]).await;
}

async fn varying_versions(ctx: Ctx) {
    let multi = setup_crd(&ctx, &schema_foo(), "multi-ver", &["v2", "v3"]).await;
    wait_for_definition(&ctx.client, &multi.definition("v3"), &schema_foo()).await;
    wait_for_definition(&ctx.client, &multi.definition("v2"), &schema_foo()).await;
    cleanup_crd(&ctx, &multi, &["v2", "v3"]).await;

    let foo_crd = setup_crd(&ctx, &schema_foo(), "common-group", &["v4"]).await;
    let waldo_crd = setup_crd(&ctx, &schema_waldo(), "common-group", &["v5"]).await;
    assert_eq!(foo_crd.group, waldo_crd.group);
    wait_for_definition(&ctx.client, &waldo_crd.definition("v5"), &schema_waldo()).await;
    wait_for_definition(&ctx.client, &foo_crd.definition("v4"), &schema_foo()).await;
    cleanup_crd(&ctx, &foo_crd, &["v4"]).await;
    cleanup_crd(&ctx, &waldo_crd, &["v5"]).await;
}

async fn varying_kinds(ctx: Ctx) {
    let foo_crd = setup_crd(&ctx, &schema_foo(), "common-group", &["v6"]).await;
    let waldo_crd = setup_crd(&ctx, &schema_waldo(), "common-group", &["v6"]).await;
    assert_eq!(foo_crd.group, waldo_crd.group);
    wait_for_definition(&ctx.client, &waldo_crd.definition("v6"), &schema_waldo()).await;
    wait_for_definition(&ctx.client, &foo_crd.definition("v6"), &schema_foo()).await;
    cleanup_crd(&ctx, &foo_crd, &["v6"]).await;
    cleanup_crd(&ctx, &waldo_crd, &["v6"]).await;
}

async fn version_rename(ctx: Ctx) {
    let multi = setup_crd(&ctx, &schema_foo(), "multi-ver", &["v2", "v3"]).await;
    json_patch(
        &ctx.client,
        &format!("{CRDS}/{}", multi.name),
        json!([
            {"op": "test", "path": "/spec/versions/1/name", "value": "v3"},
            {"op": "replace", "path": "/spec/versions/1/name", "value": "v4"}
        ]),
    )
    .await;
    wait_for_definition(&ctx.client, &multi.definition("v4"), &schema_foo()).await;
    wait_for_definition_cleanup(&ctx.client, &multi.definition("v3")).await;
    wait_for_definition(&ctx.client, &multi.definition("v2"), &schema_foo()).await;
    cleanup_crd(&ctx, &multi, &["v2", "v4"]).await;
}

async fn stop_serving_version(ctx: Ctx) {
    let crd = setup_crd(
        &ctx,
        &schema_foo(),
        "multi-to-single-ver",
        &["v5", "v6alpha1"],
    )
    .await;
    let api = crds(&ctx.client);
    let mut now = api.get(&crd.name).await.expect("get CRD");
    now.spec.versions[1].served = false;
    api.replace(&crd.name, &PostParams::default(), &now)
        .await
        .expect("update CRD");
    wait_for_definition_cleanup(&ctx.client, &crd.definition("v6alpha1")).await;
    wait_for_definition(&ctx.client, &crd.definition("v5"), &schema_foo()).await;
    cleanup_crd(&ctx, &crd, &["v5", "v6alpha1"]).await;
}

pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] works for multiple CRDs of different groups [Conformance]", varying_groups),
        test!("[sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] works for multiple CRDs of same group but different versions [Conformance]", varying_versions),
        test!("[sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] works for multiple CRDs of same group and version but different kinds [Conformance]", varying_kinds),
        test!("[sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] updates the published spec when one version gets renamed [Conformance]", version_rename),
        test!("[sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] removes definition from spec when one version gets changed to not be served [Conformance]", stop_serving_version),
    ]
}
