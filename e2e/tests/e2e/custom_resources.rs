//! CustomResourceDefinitions with the real kubectl and kube-rs against the shared
//! cluster: a CRD with two versions (one stored), printer columns, a default, the
//! status and scale subresources; its objects created, applied twice, patched, scaled,
//! listed with columns and deleted; bad schemas and bad objects refused with a 422
//! that stores nothing; deleting a CRD deletes its objects first; with the
//! controller-manager running, custom resources are garbage collected and deleted
//! with their namespace.

use crate::support;
use keelson_e2e::{json, kubectl_versions, namespace, CLUSTER, CONTROL_PLANE};
use keelson_testkit::{eventually, fails, ok, Cluster};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A CRD named `<plural>.<group>` with v1 (stored) and a deprecated v1beta1.
pub(crate) fn crd(group: &str, plural: &str, kind: &str) -> String {
    // Short names are global across groups in kubectl's lookups: one per group.
    let short = group.split('.').next().unwrap_or("");
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: {plural}
    kind: {kind}
    shortNames: [{plural}{short}]
    categories: [keelson-e2e]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [image]
            properties:
              image: {{type: string, minLength: 1}}
              replicas: {{type: integer, minimum: 0, maximum: 10, default: 1}}
              mode: {{type: string, enum: [fast, safe], default: safe}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              selector: {{type: string}}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {{name: Image, type: string, jsonPath: .spec.image}}
    - {{name: Replicas, type: integer, jsonPath: .spec.replicas}}
    - {{name: Age, type: date, jsonPath: .metadata.creationTimestamp}}
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#
    )
}

fn run(c: &Cluster, k: &str, args: &[&str]) -> String {
    ok(c.kubectl_with(k, args, None))
}

fn condition(crd: &Value, type_: &str) -> (String, String) {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

/// Apply the CRD and wait until discovery serves it; returns how long that took.
fn install(c: &Cluster, k: &str, group: &str, plural: &str, kind: &str) -> Duration {
    let started = Instant::now();
    ok(c.kubectl_with(k, &["apply", "-f", "-"], Some(&crd(group, plural, kind))));
    eventually(Duration::from_secs(10), "the CRD in discovery", || {
        let out = c.kubectl_with(k, &["get", "--raw", &format!("/apis/{group}/v1")], None);
        out.status.success().then_some(())
    });
    started.elapsed()
}

fn scenario(k: &str, suffix: &str) {
    let c = &*CLUSTER;
    let group = format!("{suffix}.keelson.dev");
    let (plural, kind) = ("widgets", "Widget");
    let resource = format!("{plural}.{group}");
    let took = install(c, k, &group, plural, kind);
    // Two kubectl runs (apply, then polling gets) are part of this; Keelson's own share
    // is a watch event (ha.rs measures the other apiserver at about 150 ms).
    assert!(took < Duration::from_secs(3), "served after {took:?}");
    let crd_obj = json(&run(c, k, &["get", "crd", &resource, "-o", "json"]));
    assert_eq!(
        condition(&crd_obj, "NamesAccepted"),
        ("True".into(), "NoConflicts".into())
    );
    assert_eq!(
        condition(&crd_obj, "Established"),
        ("True".into(), "InitialNamesAccepted".into())
    );
    assert_eq!(crd_obj["status"]["acceptedNames"]["kind"], kind);
    assert_eq!(
        crd_obj["status"]["storedVersions"],
        serde_json::json!(["v1"])
    );
    // Applying the CRD again changes nothing.
    let again = ok(c.kubectl_with(k, &["apply", "-f", "-"], Some(&crd(&group, plural, kind))));
    assert!(again.contains("unchanged"), "{again}");

    let ns = namespace(c, &format!("crd-{suffix}"));
    let widget = format!(
        "apiVersion: {group}/v1\nkind: {kind}\nmetadata:\n  name: w1\nspec:\n  image: nginx\n"
    );
    let out = ok(c.kubectl_with(k, &["apply", "-n", &ns, "-f", "-"], Some(&widget)));
    assert!(out.contains("created"), "{out}");
    let out = ok(c.kubectl_with(k, &["apply", "-n", &ns, "-f", "-"], Some(&widget)));
    assert!(out.contains("unchanged"), "{out}");
    let changed = widget.replace("image: nginx", "image: nginx:1.27\n  replicas: 2");
    let out = ok(c.kubectl_with(k, &["apply", "-n", &ns, "-f", "-"], Some(&changed)));
    assert!(out.contains("configured"), "{out}");
    let w = json(&run(
        c,
        k,
        &["get", &resource, "w1", "-n", &ns, "-o", "json"],
    ));
    assert_eq!(w["spec"]["image"], "nginx:1.27");
    assert_eq!(w["spec"]["replicas"], 2);
    // The default came from the schema.
    assert_eq!(w["spec"]["mode"], "safe");
    assert_eq!(w["metadata"]["generation"], 2);

    // Printer columns, by the short name too.
    let table = run(c, k, &["get", &format!("{plural}{suffix}"), "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "IMAGE", "REPLICAS", "AGE"], "{table}");
    assert!(
        table.contains("w1") && table.contains("nginx:1.27"),
        "{table}"
    );
    // The category finds it.
    let by_category = run(c, k, &["get", "keelson-e2e", "-n", &ns, "-o", "name"]);
    assert!(
        by_category.contains(&format!("widget.{group}/w1")),
        "{by_category}"
    );

    // Merge patch works; strategic merge patch is refused as Kubernetes refuses it.
    run(
        c,
        k,
        &[
            "patch",
            &resource,
            "w1",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"mode":"fast"}}"#,
        ],
    );
    let err = fails(c.kubectl_with(
        k,
        &[
            "patch",
            &resource,
            "w1",
            "-n",
            &ns,
            "-p",
            r#"{"spec":{"mode":"safe"}}"#,
        ],
        None,
    ));
    assert!(
        err.contains("UnsupportedMediaType") || err.contains("not supported"),
        "{err}"
    );

    // Scale through /scale, status through /status.
    run(c, k, &["scale", &resource, "w1", "-n", &ns, "--replicas=5"]);
    let scale = json(&run(
        c,
        k,
        &[
            "get",
            "--raw",
            &format!("/apis/{group}/v1/namespaces/{ns}/{plural}/w1/scale"),
        ],
    ));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    let raw = format!("/apis/{group}/v1/namespaces/{ns}/{plural}/w1/status");
    let mut current = json(&run(c, k, &["get", "--raw", &raw]));
    current["status"] = serde_json::json!({"replicas": 5, "selector": "app=w1"});
    current["spec"]["image"] = serde_json::json!("ignored-by-status");
    ok(c.kubectl_with(
        k,
        &["replace", "--subresource=status", "-f", "-"],
        Some(&current.to_string()),
    )
    .clone());
    let w = json(&run(
        c,
        k,
        &["get", &resource, "w1", "-n", &ns, "-o", "json"],
    ));
    assert_eq!(w["status"]["replicas"], 5);
    assert_eq!(w["spec"]["image"], "nginx:1.27", "/status keeps spec");
    let generation = w["metadata"]["generation"].as_i64().unwrap();
    let scale = json(&run(
        c,
        k,
        &[
            "get",
            "--raw",
            &format!("/apis/{group}/v1/namespaces/{ns}/{plural}/w1/scale"),
        ],
    ));
    assert_eq!(
        scale["status"],
        serde_json::json!({"replicas": 5, "selector": "app=w1"})
    );
    // A main-resource update keeps status.
    run(
        c,
        k,
        &[
            "patch",
            &resource,
            "w1",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3},"status":{"replicas":0}}"#,
        ],
    );
    let w = json(&run(
        c,
        k,
        &["get", &resource, "w1", "-n", &ns, "-o", "json"],
    ));
    assert_eq!(w["status"]["replicas"], 5);
    assert_eq!(
        w["metadata"]["generation"].as_i64().unwrap(),
        generation + 1
    );

    // The other version shows the same object, with a deprecation warning.
    let out = c.kubectl_with(
        k,
        &[
            "get",
            &format!("{plural}.v1beta1.{group}"),
            "w1",
            "-n",
            &ns,
            "-o",
            "json",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let beta = json(&ok(out));
    assert_eq!(beta["apiVersion"], format!("{group}/v1beta1"));
    assert_eq!(beta["spec"]["replicas"], 3);
    assert!(
        stderr.contains(&format!("{group}/v1beta1 {kind} is deprecated")),
        "{stderr}"
    );

    // Bad objects: a clear 422, nothing stored.
    let bad = format!(
        "apiVersion: {group}/v1\nkind: {kind}\nmetadata:\n  name: bad\nspec:\n  image: x\n  replicas: 11\n  mode: slow\n"
    );
    let err = fails(c.kubectl_with(k, &["create", "-n", &ns, "-f", "-"], Some(&bad)));
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"), "{err}");
    assert!(
        err.contains(
            "spec.mode: Unsupported value: \"slow\": supported values: \"fast\", \"safe\""
        ),
        "{err}"
    );
    let missing = fails(c.kubectl_with(k, &["get", &resource, "bad", "-n", &ns], None));
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
    // Unknown fields: kubectl asks for strict field validation.
    let unknown = widget
        .replace("name: w1", "name: w2")
        .replace("image: nginx", "image: nginx\n  bogus: 1");
    let err = fails(c.kubectl_with(k, &["create", "-n", &ns, "-f", "-"], Some(&unknown)));
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");

    ok(c.kubectl_with(k, &["delete", &resource, "w1", "-n", &ns], None));
    let gone = fails(c.kubectl_with(k, &["get", &resource, "w1", "-n", &ns], None));
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );

    // Applying a changed CRD (a strategic merge patch from kubectl) changes what is
    // served at once: a new printer column and a tighter schema.
    let changed_crd = crd(&group, plural, kind)
        .replace(
            "    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}\n",
            "    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}\n    - {name: Mode, type: string, jsonPath: .spec.mode}\n",
        )
        .replace("maximum: 10", "maximum: 4");
    let out = ok(c.kubectl_with(k, &["apply", "-f", "-"], Some(&changed_crd)));
    assert!(out.contains("configured"), "{out}");
    ok(c.kubectl_with(k, &["apply", "-n", &ns, "-f", "-"], Some(&widget)));
    let five = widget
        .replace("name: w1", "name: w5")
        .replace("image: nginx", "image: nginx\n  replicas: 5");
    let (header, err) = eventually(Duration::from_secs(5), "the new column and schema", || {
        let table = run(c, k, &["get", &resource, "-n", &ns]);
        let header: Vec<String> = table
            .lines()
            .next()?
            .split_whitespace()
            .map(String::from)
            .collect();
        let out = c.kubectl_with(k, &["create", "-n", &ns, "-f", "-"], Some(&five));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (header.len() == 5 && !out.status.success()).then_some((header, err))
    });
    assert_eq!(header, ["NAME", "IMAGE", "REPLICAS", "AGE", "MODE"]);
    assert!(err.contains("should be less than or equal to 4"), "{err}");
}

#[test]
fn kubectl_drives_a_crd_and_its_objects() {
    for (i, k) in kubectl_versions().iter().enumerate() {
        scenario(k, &format!("k{i}"));
    }
}

#[test]
fn invalid_crds_are_refused_and_conflicting_names_not_accepted() {
    let c = &*CLUSTER;
    let bad = crd("bad.keelson.dev", "things", "Thing")
        .replace(
            "type: object\n        properties:\n          spec:",
            "properties:\n          spec:",
        )
        .replace("storage: false", "storage: true");
    let err = fails(c.kubectl_with("kubectl", &["create", "-f", "-"], Some(&bad)));
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root"), "{err}");
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let none = fails(c.kubectl_with("kubectl", &["get", "crd", "things.bad.keelson.dev"], None));
    assert!(
        none.contains("NotFound") || none.contains("not found"),
        "{none}"
    );

    // Two CRDs of one group asking for one kind: the second's names are not accepted.
    install(c, "kubectl", "names.keelson.dev", "alphas", "Alpha");
    let clash = crd("names.keelson.dev", "betas", "Alpha");
    ok(c.kubectl_with("kubectl", &["create", "-f", "-"], Some(&clash)));
    let status = eventually(Duration::from_secs(5), "NamesAccepted on the clash", || {
        let o = json(&ok(c.kubectl(&[
            "get",
            "crd",
            "betas.names.keelson.dev",
            "-o",
            "json",
        ])));
        let cond = condition(&o, "NamesAccepted");
        (!cond.0.is_empty()).then_some((cond, condition(&o, "Established")))
    });
    // Kind and listKind both clash; like Kubernetes, the last conflict found is named.
    assert_eq!(status.0, ("False".into(), "ListKindConflict".into()));
    assert_eq!(status.1, ("False".into(), "NotAccepted".into()));
    let out = c.kubectl(&["get", "--raw", "/apis/names.keelson.dev/v1"]);
    let listed = json(&ok(out));
    let names: Vec<&str> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"alphas") && !names.contains(&"betas"),
        "{names:?}"
    );
}

/// A CRD whose schema carries CEL rules: a rule with a message, one with a
/// messageExpression, a transition rule (an immutable field) and a default.
fn cel_crd(rule: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.cel.keelson.dev
spec:
  group: cel.keelson.dev
  scope: Namespaced
  names: {{plural: gadgets, kind: Gadget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "{rule}"
              message: replicas must not exceed maxReplicas
            - rule: "self.replicas % 2 == 0 || self.odd"
              messageExpression: "'replicas ' + string(self.replicas) + ' is odd'"
            properties:
              replicas: {{type: integer}}
              maxReplicas: {{type: integer}}
              odd: {{type: boolean, default: false}}
              region:
                type: string
                x-kubernetes-validations:
                - {{rule: "self == oldSelf", message: Value is immutable}}
"#
    )
}

#[test]
fn cel_rules_are_enforced_on_custom_resources() {
    let c = &*CLUSTER;
    let k = "kubectl";
    let resource = "gadgets.cel.keelson.dev";
    // A rule that does not compile: 422 at the rule's path, no CRD stored.
    let err = fails(c.kubectl_with(k, &["create", "-f", "-"], Some(&cel_crd("self.replicas <"))));
    assert!(err.contains("is invalid"), "{err}");
    assert!(
        err.contains("spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: ")
            && err.contains("compilation failed: ERROR: <input>:1:16: Syntax error: mismatched input '<EOF>'"),
        "{err}"
    );
    let err = fails(c.kubectl_with(
        k,
        &["create", "-f", "-"],
        Some(&cel_crd("self.replicas <= self.maxReplicaz")),
    ));
    assert!(err.contains("undefined field 'maxReplicaz'"), "{err}");
    let none = fails(c.kubectl(&["get", "crd", resource]));
    assert!(
        none.contains("not found") || none.contains("NotFound"),
        "{none}"
    );

    ok(c.kubectl_with(
        k,
        &["apply", "-f", "-"],
        Some(&cel_crd("self.replicas <= self.maxReplicas")),
    ));
    eventually(Duration::from_secs(10), "gadgets served", || {
        let out = c.kubectl(&["get", "--raw", "/apis/cel.keelson.dev/v1"]);
        out.status.success().then_some(())
    });
    let ns = namespace(c, "crd-cel");
    let gadget = |name: &str, replicas: i64, max: i64, region: &str| {
        format!(
            "apiVersion: cel.keelson.dev/v1
kind: Gadget
metadata:
  name: {name}
spec:
  replicas: {replicas}
  maxReplicas: {max}
  region: {region}
"
        )
    };
    // Creates breaking a rule: 422 with the rule's message, nothing stored.
    let err = fails(c.kubectl_with(
        k,
        &["create", "-n", &ns, "-f", "-"],
        Some(&gadget("big", 6, 4, "eu")),
    ));
    assert!(
        err.contains("The Gadget \"big\" is invalid: spec: Invalid value: \"object\": replicas must not exceed maxReplicas"),
        "{err}"
    );
    let err = fails(c.kubectl_with(
        k,
        &["create", "-n", &ns, "-f", "-"],
        Some(&gadget("odd", 3, 4, "eu")),
    ));
    assert!(
        err.contains("spec: Invalid value: \"object\": replicas 3 is odd"),
        "{err}"
    );
    for name in ["big", "odd"] {
        let missing = fails(c.kubectl(&["get", resource, name, "-n", &ns]));
        assert!(missing.contains("not found"), "{missing}");
    }
    // A good one, with the default the rule reads.
    ok(c.kubectl_with(
        k,
        &["create", "-n", &ns, "-f", "-"],
        Some(&gadget("g", 2, 4, "eu")),
    ));
    let g = json(&ok(
        c.kubectl(&["get", resource, "g", "-n", &ns, "-o", "json"])
    ));
    assert_eq!(g["spec"]["odd"], false);
    // The transition rule refuses a change of the immutable field; other changes pass.
    let err = fails(c.kubectl(&[
        "patch",
        resource,
        "g",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"region":"us"}}"#,
    ]));
    assert!(
        err.contains("spec.region: Invalid value: \"string\": Value is immutable"),
        "{err}"
    );
    ok(c.kubectl(&[
        "patch",
        resource,
        "g",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3,"odd":true}}"#,
    ]));
    let g = json(&ok(
        c.kubectl(&["get", resource, "g", "-n", &ns, "-o", "json"])
    ));
    assert_eq!(
        (g["spec"]["region"].as_str(), g["spec"]["replicas"].as_i64()),
        (Some("eu"), Some(3))
    );
    // An update breaking a plain rule is refused too.
    let err = fails(c.kubectl(&[
        "patch",
        resource,
        "g",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":1}}"#,
    ]));
    assert!(
        err.contains("replicas must not exceed maxReplicas"),
        "{err}"
    );
    ok(c.kubectl(&["delete", "crd", resource]));
}

#[test]
fn deleting_a_crd_deletes_its_objects_first() {
    let c = &*CLUSTER;
    let group = "cleanup.keelson.dev";
    install(c, "kubectl", group, "gizmos", "Gizmo");
    let ns = namespace(c, "crd-cleanup");
    for name in ["g1", "g2"] {
        let fin = if name == "g2" {
            "\n  finalizers: [keelson.dev/hold]"
        } else {
            ""
        };
        let obj = format!("apiVersion: {group}/v1\nkind: Gizmo\nmetadata:\n  name: {name}{fin}\nspec:\n  image: x\n");
        ok(c.kubectl_with("kubectl", &["create", "-n", &ns, "-f", "-"], Some(&obj)));
    }
    ok(c.kubectl(&["delete", "crd", &format!("gizmos.{group}"), "--wait=false"]));
    // g1 goes; g2 waits for its finalizer, and so does the CRD, Terminating.
    let resource = format!("gizmos.{group}");
    eventually(Duration::from_secs(10), "g1 deleted", || {
        let out = c.kubectl(&["get", &resource, "g1", "-n", &ns]);
        (!out.status.success()).then_some(())
    });
    let g2 = json(&ok(
        c.kubectl(&["get", &resource, "g2", "-n", &ns, "-o", "json"])
    ));
    assert!(g2["metadata"]["deletionTimestamp"].is_string(), "{g2}");
    let crd_obj = json(&ok(c.kubectl(&["get", "crd", &resource, "-o", "json"])));
    assert_eq!(condition(&crd_obj, "Terminating").0, "True");
    // No new objects while it terminates: a 405, as Kubernetes answers.
    let late =
        format!("apiVersion: {group}/v1\nkind: Gizmo\nmetadata:\n  name: g3\nspec:\n  image: x\n");
    let err = fails(c.kubectl_with("kubectl", &["create", "-n", &ns, "-f", "-"], Some(&late)));
    assert!(
        err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    assert!(crd_obj["metadata"]["finalizers"]
        .to_string()
        .contains("customresourcecleanup.apiextensions.k8s.io"));
    ok(c.kubectl(&[
        "patch",
        &resource,
        "g2",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]));
    eventually(Duration::from_secs(10), "the CRD gone", || {
        let out = c.kubectl(&["get", "crd", &resource]);
        (!out.status.success()).then_some(())
    });
    let out = c.kubectl(&["get", "--raw", &format!("/apis/{group}/v1")]);
    assert!(!out.status.success(), "still served after the CRD went");
}

/// With the real controller-manager process running (the control plane's), a CRD
/// created after it started: a ConfigMap owned by a custom resource is collected when
/// the custom resource is deleted, and deleting the namespace deletes its custom
/// resources, waiting (Terminating) for one a finalizer holds.
#[test]
fn custom_resources_go_with_their_owners_and_their_namespace() {
    let c = &CONTROL_PLANE.cluster;
    let group = "collected.keelson.dev";
    let resource = format!("doodads.{group}");
    install(c, "kubectl", group, "doodads", "Doodad");
    let ns = namespace(c, "crd-collected");
    let doodad = |name: &str, fin: &str| {
        format!("apiVersion: {group}/v1\nkind: Doodad\nmetadata:\n  name: {name}{fin}\nspec:\n  image: x\n")
    };
    for (name, fin) in [
        ("owner", ""),
        ("free", ""),
        ("held", "\n  finalizers: [keelson.dev/hold]"),
    ] {
        ok(c.kubectl_with(
            "kubectl",
            &["create", "-n", &ns, "-f", "-"],
            Some(&doodad(name, fin)),
        ));
    }
    let uid = run(
        c,
        "kubectl",
        &[
            "get",
            &resource,
            "owner",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    );
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  ownerReferences:\n  - {{apiVersion: {group}/v1, kind: Doodad, name: owner, uid: {uid}}}\n"
    );
    ok(c.kubectl_with("kubectl", &["create", "-n", &ns, "-f", "-"], Some(&owned)));
    ok(c.kubectl(&["delete", &resource, "owner", "-n", &ns]));
    eventually(
        Duration::from_secs(20),
        "the ConfigMap of the deleted doodad collected",
        || {
            let out = c.kubectl(&["get", "configmap", "owned", "-n", &ns]);
            (!out.status.success()).then_some(())
        },
    );

    ok(c.kubectl(&["delete", "namespace", &ns, "--wait=false"]));
    eventually(Duration::from_secs(20), "the free doodad deleted", || {
        let out = c.kubectl(&["get", &resource, "free", "-n", &ns]);
        (!out.status.success()).then_some(())
    });
    // Held, the namespace stays Terminating and says what is left.
    let expected = format!("Some resources are remaining: {resource} has 1 resource instances");
    let phase = eventually(Duration::from_secs(20), "the held doodad reported", || {
        let ns_obj = json(&run(c, "kubectl", &["get", "namespace", &ns, "-o", "json"]));
        ns_obj["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "NamespaceContentRemaining" && c["message"] == expected.as_str())
            .then(|| ns_obj["status"]["phase"].clone())
    });
    assert_eq!(phase, "Terminating");
    ok(c.kubectl(&[
        "patch",
        &resource,
        "held",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]));
    eventually(Duration::from_secs(30), "the namespace gone", || {
        let out = c.kubectl(&["get", "namespace", &ns]);
        (!out.status.success()).then_some(())
    });
}

#[tokio::test]
async fn kube_rs_crud_and_watch_on_a_custom_resource() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{
        Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams, WatchEvent,
        WatchParams,
    };
    let (c, client) = support::shared().await;
    let group = "kube.keelson.dev";
    let c2: &'static Cluster = c;
    tokio::task::spawn_blocking(move || {
        install(c2, "kubectl", group, "sprockets", "Sprocket");
        namespace(c2, "crd-kube");
    })
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, "v1", "Sprocket"),
        "sprockets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "crd-kube", &ar);
    let mut watch = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut obj = DynamicObject::new("s1", &ar);
    obj.data = serde_json::json!({"spec": {"image": "busybox"}});
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"]["replicas"], 1, "defaulted");
    let mut got = api.get("s1").await.unwrap();
    got.data["spec"]["image"] = serde_json::json!("busybox:1.36");
    let updated = api
        .replace("s1", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_eq!(updated.data["spec"]["image"], "busybox:1.36");
    let list = api.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    // A bad replace is a 422 Status with causes.
    let mut bad = updated.clone();
    bad.data["spec"]["replicas"] = serde_json::json!(-1);
    match api.replace("s1", &PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message
                    .contains("spec.replicas in body should be greater than or equal to 0"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    api.delete("s1", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 {
        let ev = tokio::time::timeout_at(deadline, watch.try_next())
            .await
            .expect("watch events in time")
            .unwrap()
            .expect("open watch");
        match ev {
            WatchEvent::Added(o) => seen.push(("ADDED", o.data["spec"]["image"].clone())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.data["spec"]["image"].clone())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.data["spec"]["image"].clone())),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        vec![
            ("ADDED", serde_json::json!("busybox")),
            ("MODIFIED", serde_json::json!("busybox:1.36")),
            ("DELETED", serde_json::json!("busybox:1.36")),
        ]
    );
}

/// The CustomResourceDefinition and CustomResourcePublishOpenAPI conformance mirrors
/// need no node: they pass against the shared cluster too (the two-node runner
/// includes them with everything else).
#[test]
fn crd_conformance_mirrors_pass() {
    let c = &*CLUSTER;
    let bin = keelson_testkit::binary("keelson-conformance").expect("the runner binary");
    let out = std::process::Command::new(&bin)
        .args(["--kubeconfig", &c.kubeconfig.display().to_string()])
        .args([
            "--focus",
            "CustomResourceDefinition",
            "--focus",
            "CustomResourcePublishOpenAPI",
            "--parallel",
            "3",
            "--timeout",
            "60",
        ])
        .output()
        .expect("keelson-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.lines().last().unwrap_or(""),
        "11 passed, 0 failed",
        "{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
}

/// A CRD whose lists say how they merge (a map keyed by name, a set), with
/// descriptions for `kubectl explain`.
fn gadgets_crd(group: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, kind: Gadget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A gadget that keelson-e2e explains.
        properties:
          spec:
            type: object
            description: What the gadget should be.
            properties:
              replicas:
                type: integer
                description: How many gadgets to run.
              ports:
                type: array
                description: Ports by name, each owned by whoever applied it.
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {{type: string}}
                    port: {{type: integer}}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {{type: string}}
"#
    )
}

fn v3_index(c: &Cluster) -> Value {
    json(&ok(c.kubectl(&["get", "--raw", "/openapi/v3"])))
}

/// OpenAPI follows the CRD (its group's v3 document appears and goes), `kubectl
/// explain` describes the custom resource from its schema through v3 and v2 with every
/// kubectl, and server-side apply merges the lists as the schema says.
#[test]
fn openapi_explain_and_apply_follow_the_schema() {
    let c = &*CLUSTER;
    let group = "explain.keelson.dev";
    let key = format!("apis/{group}/v1");

    // A map list whose key is neither required nor defaulted is refused.
    let bad = gadgets_crd(group).replace("required: [name]", "required: [port]");
    let err = fails(c.kubectl_with("kubectl", &["create", "-f", "-"], Some(&bad)));
    assert!(err.contains("spec.validation.openAPIV3Schema.properties[spec].properties[ports].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"), "{err}");

    // Unknown fields of a CRD are refused (kubectl asks for strict validation).
    let unknown =
        gadgets_crd(group).replace("  scope: Namespaced\n", "  scope: Namespaced\n  bogus: 1\n");
    let err = fails(c.kubectl_with("kubectl", &["create", "-f", "-"], Some(&unknown)));
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");

    assert!(v3_index(c)["paths"].get(&key).is_none());
    ok(c.kubectl_with("kubectl", &["apply", "-f", "-"], Some(&gadgets_crd(group))));
    let url = eventually(
        Duration::from_secs(10),
        "the group's OpenAPI v3 document",
        || {
            v3_index(c)["paths"][&key]["serverRelativeURL"]
                .as_str()
                .map(str::to_string)
        },
    );
    let doc = json(&ok(c.kubectl(&["get", "--raw", &url])));
    let schema = &doc["components"]["schemas"]["dev.keelson.explain.v1.Gadget"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"][0]["kind"], "Gadget",
        "{doc}"
    );
    assert_eq!(
        schema["properties"]["spec"]["properties"]["ports"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );

    for k in kubectl_versions() {
        let out = run(c, &k, &["explain", "gadgets"]);
        assert!(
            out.contains("Gadget") && out.contains("A gadget that keelson-e2e explains."),
            "{k}: {out}"
        );
        let out = run(c, &k, &["explain", "gadgets.spec.replicas"]);
        assert!(
            out.contains("How many gadgets to run.") && out.contains("integer"),
            "{k}: {out}"
        );
        let out = run(
            c,
            &k,
            &["explain", "gadgets.spec", "--output", "plaintext-openapiv2"],
        );
        assert!(
            out.contains("What the gadget should be.")
                && out.contains("Ports by name, each owned by whoever applied it."),
            "{k}: {out}"
        );
    }

    // Two managers apply different items of the map list and the set: both kept.
    let ns = namespace(c, "gadgets");
    let gadget = |ports: &str, tags: &str| {
        format!(
            "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: {ns}\nspec:\n  ports: {ports}\n  tags: {tags}\n"
        )
    };
    let apply = |manager: &str, body: String| {
        c.kubectl_with(
            "kubectl",
            &[
                "apply",
                "--server-side",
                "--field-manager",
                manager,
                "-f",
                "-",
            ],
            Some(&body),
        )
    };
    ok(apply("one", gadget("[{name: http, port: 80}]", "[a]")));
    ok(apply("two", gadget("[{name: dns, port: 53}]", "[b]")));
    let g = json(&run(
        c,
        "kubectl",
        &[
            "get",
            "gadgets",
            "g1",
            "-n",
            &ns,
            "-o",
            "json",
            "--show-managed-fields",
        ],
    ));
    assert_eq!(
        g["spec"]["ports"],
        serde_json::json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53}])
    );
    assert_eq!(g["spec"]["tags"], serde_json::json!(["a", "b"]));
    let owned = |manager: &str| {
        g["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| e["fieldsV1"].to_string())
            .unwrap_or_default()
    };
    assert!(
        owned("two").contains(r#"k:{\"name\":\"dns\"}"#),
        "{}",
        owned("two")
    );
    assert!(!owned("two").contains("http"), "{}", owned("two"));
    // The same item with another value conflicts on that field only.
    let err = fails(apply("two", gadget("[{name: http, port: 8080}]", "[b]")));
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains(r#".spec.ports[name="http"].port"#), "{err}");
    // One manager letting go of its item leaves the other's.
    ok(apply("one", gadget("[]", "[]")));
    let g = json(&run(
        c,
        "kubectl",
        &["get", "gadgets", "g1", "-n", &ns, "-o", "json"],
    ));
    assert_eq!(
        g["spec"]["ports"],
        serde_json::json!([{"name": "dns", "port": 53}])
    );
    assert_eq!(g["spec"]["tags"], serde_json::json!(["b"]));

    // The CRD goes: so does its OpenAPI document.
    ok(c.kubectl(&["delete", "crd", &format!("gadgets.{group}")]));
    eventually(
        Duration::from_secs(30),
        "the group's document to go",
        || v3_index(c)["paths"].get(&key).is_none().then_some(()),
    );
    let v2 = json(&ok(c.kubectl(&["get", "--raw", "/openapi/v2"])));
    assert!(v2["definitions"]
        .get("dev.keelson.explain.v1.Gadget")
        .is_none());
    let gone = fails(c.kubectl(&["get", "--raw", &format!("/openapi/v3/{key}")]));
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}
