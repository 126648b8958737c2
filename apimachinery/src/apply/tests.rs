use super::*;
use crate::patch::schema::{ListType, Root};
use serde_json::json;

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

fn deploy(extra_meta: Value, spec: Value) -> Value {
    let mut meta = json!({"name": "web", "namespace": "default"});
    if let (Some(m), Value::Object(extra)) = (meta.as_object_mut(), extra_meta) {
        m.extend(extra);
    }
    let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta});
    if !spec.is_null() {
        obj["spec"] = spec;
    }
    obj
}

fn ap(
    live: Option<&Value>,
    cfg: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    apply(
        live,
        cfg,
        manager,
        force,
        "apps",
        "Deployment",
        Some(Root::Deployment),
        true,
        now,
    )
}

fn upd(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    track_update(
        old,
        new,
        manager,
        "",
        Some(Root::Deployment),
        "apps/v1",
        true,
        now,
    )
}

fn entry<'a>(obj: &'a Value, manager: &str, op: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == op)
}

fn owned(obj: &Value, manager: &str, op: &str) -> FieldSet {
    entry(obj, manager, op)
        .map(|e| FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap())
        .unwrap_or_default()
}

fn p(dotted: &str) -> Path {
    dotted.split('.').map(PathElement::field).collect()
}

fn nginx() -> PathElement {
    PathElement::key([("name".to_string(), json!("nginx"))])
}

fn containers_path() -> Path {
    p("spec.template.spec.containers")
}

fn with_image(obj: &Value, image: &str) -> Value {
    let mut o = obj.clone();
    o["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    o
}

fn web_config(replicas: i64) -> Value {
    deploy(
        json!({"labels": {"app": "web"}}),
        json!({
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}
            }
        }),
    )
}

#[test]
fn apply_creates_the_object_and_records_an_apply_entry() {
    let cfg = web_config(3);
    let out = ap(None, &cfg, "kubectl", false, T1).unwrap();
    assert_eq!(out["spec"], cfg["spec"]);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    let e = &mf[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {"f:matchLabels": {"f:app": {}}},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        })
    );
    // Field order in the entry is Kubernetes' serialization order.
    let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "manager",
            "operation",
            "apiVersion",
            "time",
            "fieldsType",
            "fieldsV1"
        ]
    );
}

#[test]
fn conflict_with_an_update_manager_is_409_with_a_cause_per_field() {
    let live = ap(None, &web_config(3), "kubectl", false, T1).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let live = upd(Some(&live), &scaled, "hpa", T2);
    assert!(owned(&live, "hpa", "Update").has(&p("spec.replicas")));
    assert!(!owned(&live, "kubectl", "Apply").has(&p("spec.replicas")));

    let err = ap(Some(&live), &web_config(3), "kubectl", false, T3).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
    );
    assert_eq!(err.causes.len(), 1);
    assert_eq!(err.causes[0].reason, "FieldManagerConflict");
    assert_eq!(err.causes[0].field, ".spec.replicas");
    assert_eq!(err.causes[0].message, "conflict with \"hpa\" using apps/v1");
    let status = err.to_status();
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );

    // Applying the live value is no conflict: ownership is shared.
    let shared = ap(Some(&live), &web_config(5), "kubectl", false, T3).unwrap();
    assert!(owned(&shared, "hpa", "Update").has(&p("spec.replicas")));
    assert!(owned(&shared, "kubectl", "Apply").has(&p("spec.replicas")));

    // Forcing takes the field; the other manager's entry, now empty, goes away.
    let forced = ap(Some(&live), &web_config(3), "kubectl", true, T3).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(owned(&forced, "kubectl", "Apply").has(&p("spec.replicas")));
    assert!(entry(&forced, "hpa", "Update").is_none());
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let mut live = deploy(
        json!({"labels": {"x": "1"}}),
        json!({"replicas": 1, "paused": false}),
    );
    live["metadata"]["managedFields"] = json!([
        {"manager": "b", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:x": {}}}}},
        {"manager": "a", "operation": "Update", "apiVersion": "apps/v1", "time": T1,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:paused": {}}}},
        {"manager": "s", "operation": "Update", "apiVersion": "apps/v1", "time": T1,
         "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:minReadySeconds": {}}}}
    ]);
    let cfg = deploy(
        json!({"labels": {"x": "2"}}),
        json!({"replicas": 2, "paused": true}),
    );
    let err = ap(Some(&live), &cfg, "c", false, T2).unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 3 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.paused\n- .spec.replicas\nconflicts with \"b\":\n- .metadata.labels.x"
    );
    let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [".spec.paused", ".spec.replicas", ".metadata.labels.x"]
    );
    assert_eq!(err.causes[2].message, "conflict with \"b\"");

    // A manager of a subresource is named with it.
    let cfg = deploy(json!({}), json!({"minReadySeconds": 5}));
    let err = ap(Some(&live), &cfg, "c", false, T2).unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"s\" with subresource \"status\" using apps/v1: .spec.minReadySeconds"
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let cfg1 = deploy(
        json!({"labels": {"app": "web", "tier": "front", "team": "a"}}),
        json!({}),
    );
    let live = ap(None, &cfg1, "one", false, T1).unwrap();
    // A second applier declares the same tier.
    let cfg2 = deploy(json!({"labels": {"tier": "front"}}), json!({}));
    let live = ap(Some(&live), &cfg2, "two", false, T2).unwrap();
    assert!(owned(&live, "one", "Apply").has(&p("metadata.labels.tier")));
    assert!(owned(&live, "two", "Apply").has(&p("metadata.labels.tier")));

    let cfg3 = deploy(json!({"labels": {"app": "web"}}), json!({}));
    let out = ap(Some(&live), &cfg3, "one", false, T3).unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
    assert!(!owned(&out, "one", "Apply").has(&p("metadata.labels.tier")));
    // Identity fields survive and are never owned.
    assert_eq!(out["metadata"]["name"], "web");
    assert_eq!(out["apiVersion"], "apps/v1");
    assert!(!owned(&out, "one", "Apply").has(&p("metadata.name")));
}

#[test]
fn a_map_nobody_owns_anything_in_goes_away_whole() {
    let cfg = deploy(
        json!({"labels": {"a": "1"}, "annotations": {"n": "x"}}),
        Value::Null,
    );
    let live = ap(None, &cfg, "one", false, T1).unwrap();
    let out = ap(
        Some(&live),
        &deploy(json!({"annotations": {"n": "x"}}), Value::Null),
        "one",
        false,
        T2,
    )
    .unwrap();
    assert!(out["metadata"].get("labels").is_none(), "{out}");
    assert_eq!(out["metadata"]["annotations"], json!({"n": "x"}));
}

#[test]
fn fields_set_by_updates_are_not_pruned() {
    let cfg = deploy(json!({"labels": {"app": "web"}}), json!({"replicas": 2}));
    let live = ap(None, &cfg, "one", false, T1).unwrap();
    let mut edited = live.clone();
    edited["metadata"]["labels"]["edited"] = json!("yes");
    let live = upd(Some(&live), &edited, "kubectl-edit", T2);
    let cfg = deploy(json!({}), json!({"replicas": 2}));
    let out = ap(Some(&live), &cfg, "one", false, T3).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"edited": "yes"}));
}

#[test]
fn dropping_a_struct_removes_it_whole_unless_part_of_it_is_owned() {
    let cfg = deploy(
        json!({}),
        json!({"strategy": {"rollingUpdate": {"maxSurge": 1}}, "replicas": 1}),
    );
    let mut live = ap(None, &cfg, "one", false, T1).unwrap();
    // Defaulting fills a field nobody owns.
    live["spec"]["strategy"]["type"] = json!("RollingUpdate");
    let cfg2 = deploy(json!({}), json!({"replicas": 1}));
    let out = ap(Some(&live), &cfg2, "one", false, T2).unwrap();
    assert!(out["spec"].get("strategy").is_none(), "{out}");

    // When another manager owns strategy.type, only what "one" applied goes.
    let mut typed = live.clone();
    typed["spec"]["strategy"]["type"] = json!("Recreate");
    let live = upd(Some(&live), &typed, "other", T2);
    let out = ap(Some(&live), &cfg2, "one", false, T3).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn keyed_list_items_merge_by_key_and_keep_other_items() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    // A controller injects a sidecar.
    let mut injected = live.clone();
    injected["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "proxy:1"}));
    let live = upd(Some(&live), &injected, "injector", T2);
    let mut sidecar = containers_path();
    sidecar.push(PathElement::key([("name".to_string(), json!("sidecar"))]));
    assert!(owned(&live, "injector", "Update").has(&sidecar));

    let out = ap(
        Some(&live),
        &with_image(&web_config(1), "nginx:1.26"),
        "kubectl",
        false,
        T3,
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.26"}, {"name": "sidecar", "image": "proxy:1"}])
    );
    let mut image = containers_path();
    image.extend([nginx(), PathElement::field("image")]);
    assert!(owned(&out, "kubectl", "Apply").has(&image));
    assert!(owned(&out, "injector", "Update").has(&sidecar));
}

#[test]
fn keyed_list_items_no_longer_applied_are_removed() {
    let mut cfg = web_config(1);
    cfg["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "helper", "image": "busybox"},
        {"name": "nginx", "image": "nginx:1.25"}
    ]);
    let live = ap(None, &cfg, "kubectl", false, T1).unwrap();
    let out = ap(Some(&live), &web_config(1), "kubectl", false, T2).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.25"}])
    );
    let mut helper = containers_path();
    helper.push(PathElement::key([("name".to_string(), json!("helper"))]));
    assert!(!owned(&out, "kubectl", "Apply").has(&helper));
}

#[test]
fn applied_list_order_wins_and_live_only_items_keep_their_place() {
    let lookup = |path: &[&str]| {
        if path == ["spec", "items"] {
            ListType::Map(&["name"])
        } else {
            ListType::Atomic
        }
    };
    let lists = Lists { schema: &lookup };
    let item = |n: &str| json!({"name": n});
    let live = json!({"spec": {"items": [item("a"), item("x"), item("b"), item("c")]}});
    let cfg = json!({"spec": {"items": [item("c"), item("b")]}});
    let merged = lists.merge(Some(&live), &cfg);
    assert_eq!(
        merged["spec"]["items"],
        json!([item("a"), item("x"), item("c"), item("b")])
    );
}

#[test]
fn set_lists_are_owned_value_by_value() {
    let a = deploy(json!({"finalizers": ["example.com/a"]}), Value::Null);
    let live = ap(None, &a, "a", false, T1).unwrap();
    let b = deploy(json!({"finalizers": ["example.com/b"]}), Value::Null);
    let live = ap(Some(&live), &b, "b", false, T2).unwrap();
    assert_eq!(
        live["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/b"])
    );
    assert_eq!(
        entry(&live, "a", "Apply").unwrap()["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"example.com/a\"": {}}}})
    );
    let out = ap(Some(&live), &deploy(json!({}), Value::Null), "a", false, T3).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["example.com/b"]));
    assert!(entry(&out, "a", "Apply").is_none());
}

#[test]
fn unlisted_lists_are_atomic() {
    let widget = |items: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
               "spec": {"items": items}})
    };
    let wapply = |live: Option<&Value>, cfg: &Value, m: &str| {
        apply(
            live,
            cfg,
            m,
            false,
            "example.com",
            "Widget",
            None,
            false,
            T1,
        )
    };
    let live = wapply(None, &widget(json!([{"name": "a"}])), "one").unwrap();
    assert_eq!(
        entry(&live, "one", "Apply").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:items": {}}})
    );
    let err = wapply(Some(&live), &widget(json!([{"name": "b"}])), "two").unwrap_err();
    assert_eq!(err.causes[0].field, ".spec.items");
    let out = wapply(Some(&live), &widget(json!([{"name": "a"}])), "two").unwrap();
    assert_eq!(out["spec"]["items"], json!([{"name": "a"}]));
}

#[test]
fn status_is_not_owned_by_main_resource_appliers() {
    let mut cfg = web_config(1);
    cfg["status"] = json!({"replicas": 7});
    let created = ap(None, &cfg, "kubectl", false, T1).unwrap();
    assert!(created.get("status").is_none());
    assert!(owned(&created, "kubectl", "Apply")
        .child(&PathElement::field("status"))
        .is_none());

    let mut live = created.clone();
    live["status"] = json!({"replicas": 1});
    let out = ap(Some(&live), &cfg, "kubectl", false, T2).unwrap();
    assert_eq!(out["status"], json!({"replicas": 1}));

    // Without ignore_status, status is owned like any field.
    let out = apply(
        None,
        &cfg,
        "kubectl",
        false,
        "apps",
        "Deployment",
        Some(Root::Deployment),
        false,
        T1,
    )
    .unwrap();
    assert_eq!(out["status"], json!({"replicas": 7}));
    assert!(owned(&out, "kubectl", "Apply").has(&p("status.replicas")));
}

#[test]
fn apply_to_the_status_subresource_owns_only_status() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    let mut cfg = web_config(9);
    cfg["status"] = json!({"replicas": 1, "readyReplicas": 1});
    let out = apply_to_subresource(
        &live,
        &cfg,
        "ctrl",
        "status",
        false,
        "apps",
        "Deployment",
        Some(Root::Deployment),
        T2,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 1);
    assert_eq!(out["status"], json!({"replicas": 1, "readyReplicas": 1}));
    let e = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctrl")
        .unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:replicas": {}, "f:readyReplicas": {}}})
    );
}

#[test]
fn applied_null_unsets_and_owns_the_field() {
    let live = upd(
        None,
        &deploy(json!({}), json!({"paused": true, "replicas": 1})),
        "creator",
        T1,
    );
    let cfg = deploy(json!({}), json!({"paused": null}));
    let err = ap(Some(&live), &cfg, "kubectl", false, T2).unwrap_err();
    assert_eq!(err.causes[0].field, ".spec.paused");
    let out = ap(Some(&live), &cfg, "kubectl", true, T2).unwrap();
    assert!(out["spec"].get("paused").is_none());
    assert_eq!(out["spec"]["replicas"], 1);
    assert!(owned(&out, "kubectl", "Apply").has(&p("spec.paused")));
    assert!(!owned(&out, "creator", "Update").has(&p("spec.paused")));
}

#[test]
fn null_system_metadata_in_the_configuration_is_ignored() {
    let mut live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    live["metadata"]["creationTimestamp"] = json!(T1);
    live["metadata"]["uid"] = json!("u-1");
    let mut cfg = web_config(1);
    cfg["metadata"]["creationTimestamp"] = Value::Null;
    cfg["metadata"]["uid"] = Value::Null;
    let out = ap(Some(&live), &cfg, "kubectl", false, T2).unwrap();
    assert_eq!(out, live);
}

#[test]
fn an_empty_map_is_owned_as_a_leaf() {
    let cfg = deploy(
        json!({}),
        json!({"template": {"spec": {"securityContext": {}}}}),
    );
    let out = ap(None, &cfg, "kubectl", false, T1).unwrap();
    assert_eq!(
        entry(&out, "kubectl", "Apply").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:securityContext": {}}}}})
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["securityContext"],
        json!({})
    );
}

#[test]
fn a_no_op_apply_keeps_the_entry_time() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    let again = ap(Some(&live), &web_config(1), "kubectl", false, T2).unwrap();
    assert_eq!(again, live);
    let changed = ap(Some(&live), &web_config(2), "kubectl", false, T3).unwrap();
    assert_eq!(entry(&changed, "kubectl", "Apply").unwrap()["time"], T3);
}

#[test]
fn applied_configurations_are_validated() {
    let cfg = web_config(1);
    let mut no_av = cfg.clone();
    no_av.as_object_mut().unwrap().remove("apiVersion");
    let e = ap(None, &no_av, "m", false, T1).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "invalid object type: /, Kind=Deployment")
    );

    let mut no_kind = cfg.clone();
    no_kind.as_object_mut().unwrap().remove("kind");
    let e = ap(None, &no_kind, "m", false, T1).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "invalid object type: apps/v1, Kind=")
    );

    let mut other_group = cfg.clone();
    other_group["apiVersion"] = json!("extensions/v1beta1");
    assert_eq!(
        ap(None, &other_group, "m", false, T1).unwrap_err().code,
        400
    );

    let mut no_name = cfg.clone();
    no_name["metadata"].as_object_mut().unwrap().remove("name");
    let e = ap(None, &no_name, "m", false, T1).unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(e.reason, "BadRequest");
    assert!(e.message.contains("name"), "{}", e.message);

    let mut with_mf = cfg.clone();
    with_mf["metadata"]["managedFields"] = json!([]);
    let e = ap(None, &with_mf, "m", false, T1).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );

    let e = ap(None, &cfg, "", false, T1).unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );

    let mut dup = cfg.clone();
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let e = ap(None, &dup, "m", false, T1).unwrap_err();
    assert_eq!(e.code, 400);
    assert!(
        e.message
            .ends_with(".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"),
        "{}",
        e.message
    );

    let live = ap(None, &cfg, "m", false, T1).unwrap();
    let mut renamed = cfg.clone();
    renamed["metadata"]["name"] = json!("other");
    let e = ap(Some(&live), &renamed, "m", false, T1).unwrap_err();
    assert_eq!(
        e.message,
        "the name of the object (other) does not match the name on the URL (web)"
    );
}

#[test]
fn track_update_on_create_owns_everything_but_identity() {
    let obj = deploy(
        json!({"labels": {"app": "web"}, "uid": "u1", "resourceVersion": "5", "generation": 1}),
        json!({"replicas": 1}),
    );
    let out = upd(None, &obj, "kubectl-create", T1);
    let e = entry(&out, "kubectl-create", "Update").unwrap();
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {".": {}, "f:replicas": {}}
        })
    );
    assert_eq!(out["spec"], obj["spec"]);
}

#[test]
fn track_update_moves_changed_fields_and_drops_removed_ones() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    let mut edited = with_image(&live, "nginx:1.26");
    edited["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    let out = upd(Some(&live), &edited, "kubectl-edit", T2);
    let mut image = containers_path();
    image.extend([nginx(), PathElement::field("image")]);
    let edit = owned(&out, "kubectl-edit", "Update");
    assert!(edit.has(&image));
    assert_eq!(edit.len(), 1);
    let kubectl = owned(&out, "kubectl", "Apply");
    assert!(!kubectl.has(&image));
    assert!(!kubectl.has(&p("metadata.labels.app")));
    assert!(kubectl.has(&p("spec.replicas")));
    assert_eq!(
        entry(&out, "kubectl-edit", "Update").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}})
    );
    // The applier's entry keeps its time.
    assert_eq!(entry(&out, "kubectl", "Apply").unwrap()["time"], T1);
}

#[test]
fn track_update_without_changes_adds_no_entry() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    let mut same = live.clone();
    same["metadata"]["resourceVersion"] = json!("99");
    let out = upd(Some(&live), &same, "noop", T2);
    assert!(entry(&out, "noop", "Update").is_none());
    assert_eq!(
        out["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );
    assert_eq!(out["metadata"]["resourceVersion"], "99");
}

#[test]
fn update_entries_of_a_manager_merge() {
    let obj = deploy(json!({}), json!({"replicas": 1}));
    let v1 = upd(None, &obj, "ctl", T1);
    let mut next = v1.clone();
    next["spec"]["paused"] = json!(true);
    let v2 = track_update(
        Some(&v1),
        &next,
        "ctl",
        "",
        Some(Root::Deployment),
        "apps/v2",
        true,
        T2,
    );
    let mf = v2["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["apiVersion"], "apps/v2");
    assert_eq!(mf[0]["time"], T2);
    let set = owned(&v2, "ctl", "Update");
    assert!(set.has(&p("spec.replicas")) && set.has(&p("spec.paused")));
}

#[test]
fn client_sent_managed_fields_on_update() {
    let live = ap(None, &web_config(1), "kubectl", false, T1).unwrap();
    let mut next = live.clone();
    next["spec"]["replicas"] = json!(2);

    // Reset: only this write is recorded.
    next["metadata"]["managedFields"] = json!([]);
    let out = upd(Some(&live), &next, "ctl", T2);
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["manager"], "ctl");

    // Decodable entries replace the stored ones.
    next["metadata"]["managedFields"] = json!([{"manager": "mine", "operation": "Update",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}}]);
    let out = upd(Some(&live), &next, "ctl", T2);
    assert!(entry(&out, "mine", "Update").is_some());
    assert!(entry(&out, "kubectl", "Apply").is_none());

    // Undecodable ones are ignored in favour of the stored ones.
    next["metadata"]["managedFields"] = json!([{"manager": "mine", "operation": "Update"}]);
    let out = upd(Some(&live), &next, "ctl", T2);
    assert!(entry(&out, "mine", "Update").is_none());
    assert!(entry(&out, "kubectl", "Apply").is_some());

    // Subresource writes never take the client's entries.
    next["metadata"]["managedFields"] = json!([]);
    let out = track_update(
        Some(&live),
        &next,
        "ctl",
        "scale",
        Some(Root::Deployment),
        "apps/v1",
        true,
        T2,
    );
    assert!(entry(&out, "kubectl", "Apply").is_some());
    assert_eq!(
        entry(&out, "ctl", "Update").unwrap()["subresource"],
        "scale"
    );
}

#[test]
fn too_many_update_managers_are_capped() {
    let mut obj = upd(None, &deploy(json!({}), json!({"replicas": 0})), "m0", T1);
    for i in 1..=11 {
        let mut next = obj.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        let now = format!("2024-05-02T00:00:{i:02}Z");
        obj = upd(Some(&obj), &next, &format!("m{i}"), &now);
    }
    let mf = obj["metadata"]["managedFields"].as_array().unwrap();
    assert!(mf.len() <= MAX_UPDATE_MANAGERS, "{}", mf.len());
    assert!(entry(&obj, ANCIENT_CHANGES, "Update").is_some());
    assert!(entry(&obj, "m11", "Update").is_some());
}

#[test]
fn validate_managed_fields_codes() {
    let mut obj = web_config(1);
    assert!(validate_managed_fields(&obj, "apps", "Deployment").is_ok());
    obj["metadata"]["managedFields"] = json!({"manager": "x"});
    let e = validate_managed_fields(&obj, "apps", "Deployment").unwrap_err();
    assert_eq!(e.code, 400);
    obj["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Update",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": []}}]);
    assert_eq!(
        validate_managed_fields(&obj, "apps", "Deployment")
            .unwrap_err()
            .code,
        400
    );
    obj["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Patch",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {}}]);
    let e = validate_managed_fields(&obj, "apps", "Deployment").unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Deployment.apps \"web\" is invalid: metadata.managedFields[0].operation: Invalid value: \"Patch\": must be `Apply` or `Update`"
    );
    obj["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply",
        "apiVersion": "apps/v1", "time": T1, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
    assert!(validate_managed_fields(&obj, "apps", "Deployment").is_ok());
}

#[test]
fn default_manager_from_user_agent() {
    assert_eq!(
        default_manager("kubectl-client-side-apply/v1.30.0 (linux/amd64) kubernetes/7c48c2b"),
        "kubectl-client-side-apply"
    );
    assert_eq!(
        default_manager("kubectl-edit/v1.30.0 (linux/amd64)"),
        "kubectl-edit"
    );
    assert_eq!(default_manager("kubectl/v1.30.0"), "kubectl");
    assert_eq!(default_manager("Go-http-client/1.1"), "Go-http-client");
    assert_eq!(default_manager("my tool\u{7}\t/1"), "my tool");
    assert_eq!(default_manager(""), "");
    let long = "é".repeat(100);
    let m = default_manager(&long);
    assert_eq!(m.len(), 128);
    assert!(m.chars().all(|c| c == 'é'));
}

#[test]
fn compare_reports_added_modified_removed() {
    let lookup = |path: &[&str]| {
        if path == ["items"] {
            ListType::Map(&["name"])
        } else {
            ListType::Atomic
        }
    };
    let lists = Lists { schema: &lookup };
    let old = json!({"a": 1, "m": {"x": 1, "y": 2}, "items": [{"name": "p", "v": 1}], "t": {"k": 1}, "atom": [1]});
    let new = json!({"a": 2, "m": {"x": 1}, "items": [{"name": "q"}], "t": "flat", "atom": [1, 2], "n": {"z": 1}});
    let c = lists.compare(Some(&old), Some(&new));
    let show = |s: &FieldSet| s.paths().iter().map(|p| path_string(p)).collect::<Vec<_>>();
    assert_eq!(show(&c.modified), [".a", ".atom", ".t"]);
    assert_eq!(
        show(&c.added),
        [
            ".n",
            ".items[name=\"q\"]",
            ".items[name=\"q\"].name",
            ".n.z"
        ]
    );
    assert_eq!(
        show(&c.removed),
        [
            ".items[name=\"p\"]",
            ".items[name=\"p\"].name",
            ".items[name=\"p\"].v",
            ".m.y",
            ".t.k"
        ]
    );
}
