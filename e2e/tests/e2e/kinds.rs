//! The built-in kinds added with one registration per kind (Ingress, IngressClass,
//! RuntimeClass, StorageClass, CSIDriver, CSINode, VolumeAttachment,
//! CSIStorageCapacity), and the two kinds whose strategic merge keys were missing
//! (PodDisruptionBudget, PriorityClass), driven by the real kubectl: apply, apply again
//! with a change (a strategic merge patch from last-applied-configuration), `kubectl
//! edit` (another strategic merge patch), and `kubectl get` with Kubernetes' columns.

use keelson_e2e::{apply, namespace, CLUSTER};
use keelson_testkit::{fails, ok, Cluster};
use std::process::Command;

/// One kind's run: two manifests (the second changes something the kind lets change),
/// and what `kubectl get` prints for it afterwards.
struct Case {
    plural: &'static str,
    name: &'static str,
    namespaced: bool,
    first: &'static str,
    second: &'static str,
    /// Header words of `kubectl get` (column names split on spaces).
    header: &'static [&'static str],
    /// Cells the object's row shows after the second apply.
    cells: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        plural: "ingressclasses",
        name: "kinds-nginx",
        namespaced: false,
        first: r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kinds-nginx, labels: {edited: "no"}}
spec:
  controller: example.com/ingress-nginx
"#,
        second: r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kinds-nginx, labels: {edited: "no"}}
spec:
  controller: example.com/ingress-nginx
  parameters: {apiGroup: example.com, kind: Config, name: kinds-params}
"#,
        header: &["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
        cells: &[
            "example.com/ingress-nginx",
            "Config.example.com/kinds-params",
        ],
    },
    Case {
        plural: "ingresses",
        name: "web",
        namespaced: true,
        first: r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, labels: {edited: "no"}}
spec:
  ingressClassName: kinds-nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#,
        second: r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, labels: {edited: "no"}}
spec:
  ingressClassName: kinds-nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  tls:
  - {hosts: [web.example.com], secretName: web-tls}
"#,
        header: &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        cells: &["kinds-nginx", "web.example.com", "80, 443"],
    },
    Case {
        plural: "runtimeclasses",
        name: "kinds-runc",
        namespaced: false,
        first: r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kinds-runc, labels: {edited: "no"}}
handler: runc
"#,
        second: r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kinds-runc, labels: {edited: "no"}}
handler: runc
overhead: {podFixed: {cpu: 10m}}
"#,
        header: &["NAME", "HANDLER", "AGE"],
        cells: &["runc"],
    },
    Case {
        plural: "storageclasses",
        name: "kinds-fast",
        namespaced: false,
        first: r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kinds-fast, labels: {edited: "no"}}
provisioner: example.com/fast
volumeBindingMode: WaitForFirstConsumer
"#,
        second: r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kinds-fast, labels: {edited: "no"}}
provisioner: example.com/fast
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
"#,
        header: &[
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE",
        ],
        cells: &["example.com/fast", "Delete", "WaitForFirstConsumer", "true"],
    },
    Case {
        plural: "csidrivers",
        name: "kinds.csi.example.com",
        namespaced: false,
        first: r#"
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: kinds.csi.example.com, labels: {edited: "no"}}
spec: {attachRequired: true}
"#,
        second: r#"
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: kinds.csi.example.com, labels: {edited: "no"}}
spec: {attachRequired: true, podInfoOnMount: true, tokenRequests: [{audience: vault}]}
"#,
        header: &[
            "NAME",
            "ATTACHREQUIRED",
            "PODINFOONMOUNT",
            "STORAGECAPACITY",
            "TOKENREQUESTS",
            "REQUIRESREPUBLISH",
            "MODES",
            "AGE",
        ],
        cells: &["true", "vault", "Persistent"],
    },
    Case {
        plural: "csinodes",
        name: "kinds-node",
        namespaced: false,
        first: r#"
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata: {name: kinds-node, labels: {edited: "no"}}
spec:
  drivers:
  - {name: a.csi.example.com, nodeID: node-a}
"#,
        second: r#"
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata: {name: kinds-node, labels: {edited: "no"}}
spec:
  drivers:
  - {name: a.csi.example.com, nodeID: node-a}
  - {name: b.csi.example.com, nodeID: node-b, topologyKeys: [topology.kubernetes.io/zone]}
"#,
        header: &["NAME", "DRIVERS", "AGE"],
        cells: &["2"],
    },
    Case {
        plural: "volumeattachments",
        name: "kinds-va",
        namespaced: false,
        first: r#"
apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata: {name: kinds-va, labels: {edited: "no"}}
spec:
  attacher: kinds.csi.example.com
  nodeName: kinds-node
  source: {persistentVolumeName: kinds-pv}
"#,
        // The spec never changes: the change is a label.
        second: r#"
apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata: {name: kinds-va, labels: {edited: "no", applied: twice}}
spec:
  attacher: kinds.csi.example.com
  nodeName: kinds-node
  source: {persistentVolumeName: kinds-pv}
"#,
        header: &["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"],
        cells: &["kinds.csi.example.com", "kinds-pv", "kinds-node", "false"],
    },
    Case {
        plural: "csistoragecapacities",
        name: "kinds-capacity",
        namespaced: true,
        first: r#"
apiVersion: storage.k8s.io/v1
kind: CSIStorageCapacity
metadata: {name: kinds-capacity, labels: {edited: "no"}}
storageClassName: kinds-fast
nodeTopology: {matchLabels: {topology.kubernetes.io/zone: a}}
capacity: 1Gi
"#,
        second: r#"
apiVersion: storage.k8s.io/v1
kind: CSIStorageCapacity
metadata: {name: kinds-capacity, labels: {edited: "no"}}
storageClassName: kinds-fast
nodeTopology: {matchLabels: {topology.kubernetes.io/zone: a}}
capacity: 2Gi
"#,
        header: &["NAME", "STORAGECLASSNAME", "CAPACITY"],
        cells: &["kinds-fast", "2Gi"],
    },
    Case {
        plural: "poddisruptionbudgets",
        name: "web",
        namespaced: true,
        first: r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, labels: {edited: "no"}}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#,
        second: r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, labels: {edited: "no"}}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#,
        header: &[
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE",
        ],
        cells: &["2", "N/A"],
    },
    Case {
        plural: "priorityclasses",
        name: "kinds-high",
        namespaced: false,
        first: r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: kinds-high, labels: {edited: "no"}}
value: 1000
description: first
"#,
        second: r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: kinds-high, labels: {edited: "no"}}
value: 1000
description: second
"#,
        header: &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        cells: &["1000", "false", "PreemptLowerPriority"],
    },
];

fn scope<'a>(case: &Case, ns: &'a str) -> Vec<&'a str> {
    if case.namespaced {
        vec!["-n", ns]
    } else {
        Vec::new()
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    ok(c.kubectl(args))
}

/// `kubectl edit` with a scripted editor that flips the `edited` label.
fn edit(c: &Cluster, case: &Case, ns: &str) {
    let editor = c.dir.path().join("editor-kinds.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/edited: \"no\"/edited: \"yes\"/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut args = vec!["edit", case.plural, case.name];
    args.extend(scope(case, ns));
    let out = Command::new(bin)
        .args(&args)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBE_EDITOR", &editor)
        .env("HOME", c.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edit {}: {}",
        case.plural,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(c: &Cluster, case: &Case, ns: &str, extra: &[&str]) -> String {
    let mut args = vec!["get", case.plural, case.name];
    args.extend(scope(case, ns));
    args.extend(extra);
    kubectl(c, &args)
}

#[test]
fn each_new_kind_applies_twice_edits_and_prints_its_columns() {
    let c = &*CLUSTER;
    let ns = namespace(c, "kinds");
    for case in CASES {
        let first = apply(c, "kubectl", &ns, case.first);
        assert!(first.contains("created"), "{}: {first}", case.plural);
        // The second apply is a strategic merge patch: 415 before the kind had a root.
        let second = apply(c, "kubectl", &ns, case.second);
        assert!(second.contains("configured"), "{}: {second}", case.plural);
        edit(c, case, &ns);
        assert_eq!(
            get(c, case, &ns, &["-o", "jsonpath={.metadata.labels.edited}"]),
            "yes",
            "{}",
            case.plural
        );

        let table = get(c, case, &ns, &[]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(header, case.header, "{}: {table}", case.plural);
        let row = lines.next().unwrap_or("");
        assert!(row.starts_with(case.name), "{}: {table}", case.plural);
        for cell in case.cells {
            assert!(
                row.contains(cell),
                "{}: no {cell:?} in {table}",
                case.plural
            );
        }
    }

    // The second apply's change arrived.
    let ingress = keelson_e2e::json(&kubectl(
        c,
        &["get", "ingress", "web", "-n", &ns, "-o", "json"],
    ));
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "web-tls");
    assert_eq!(ingress["metadata"]["generation"], 2, "{ingress}");
    let pc = keelson_e2e::json(&kubectl(
        c,
        &["get", "priorityclass", "kinds-high", "-o", "json"],
    ));
    assert_eq!(pc["description"], "second");

    // Status subresources: an ingress controller's address, an attacher's result.
    kubectl(
        c,
        &[
            "patch",
            "ingress",
            "web",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#,
        ],
    );
    assert!(kubectl(c, &["get", "ingress", "web", "-n", &ns]).contains("192.0.2.10"));
    kubectl(
        c,
        &[
            "patch",
            "volumeattachment",
            "kinds-va",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"attached":true}}"#,
        ],
    );
    let va = kubectl(c, &["get", "volumeattachment", "kinds-va"]);
    assert!(va.lines().nth(1).unwrap_or("").contains("true"), "{va}");

    // Bad input gets Kubernetes' messages.
    let out = fails(c.kubectl_with(
        "kubectl",
        // --validate=false: the server's answer, not kubectl's own schema check.
        &["apply", "--validate=false", "-n", &ns, "-f", "-"],
        Some(
            r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: no-path-type}
spec:
  rules:
  - http:
      paths:
      - {path: /, backend: {service: {name: web, port: {number: 80}}}}
"#,
        ),
    ));
    assert!(
        out.contains(
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
        ),
        "{out}"
    );
    let out = fails(c.kubectl(&[
        "patch",
        "storageclass",
        "kinds-fast",
        "--type=merge",
        "-p",
        r#"{"provisioner":"example.com/slow"}"#,
    ]));
    assert!(
        out.contains("provisioner: Forbidden: updates to provisioner are forbidden."),
        "{out}"
    );

    // Discovery lists the new resources.
    let resources = kubectl(c, &["api-resources", "-o", "name"]);
    for r in [
        "ingresses.networking.k8s.io",
        "ingressclasses.networking.k8s.io",
        "runtimeclasses.node.k8s.io",
        "storageclasses.storage.k8s.io",
        "csidrivers.storage.k8s.io",
        "csinodes.storage.k8s.io",
        "volumeattachments.storage.k8s.io",
        "csistoragecapacities.storage.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == r), "{r} not in {resources}");
    }

    // OpenAPI describes them field by field (kubectl explain reads /openapi/v3).
    for (path, field) in [
        ("ingress.spec.rules", "host"),
        ("storageclass", "volumeBindingMode"),
        ("csinode.spec.drivers", "nodeID"),
        ("runtimeclass", "handler"),
    ] {
        let out = kubectl(c, &["explain", path]);
        assert!(out.contains(field), "explain {path}: {out}");
    }

    for case in CASES.iter().filter(|c| !c.namespaced).rev() {
        kubectl(c, &["delete", case.plural, case.name]);
    }
}

#[test]
fn claims_without_a_class_get_the_default_storage_class() {
    let c = &*CLUSTER;
    let ns = namespace(c, "kinds-default-class");
    apply(
        c,
        "kubectl",
        &ns,
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kinds-default
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: example.com/default
"#,
    );
    let table = kubectl(c, &["get", "storageclass", "kinds-default"]);
    assert!(table.contains("kinds-default (default)"), "{table}");
    let claim = |name: &str, class: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n{class}"
        )
    };
    apply(c, "kubectl", &ns, &claim("defaulted", ""));
    apply(
        c,
        "kubectl",
        &ns,
        &claim("no-class", "  storageClassName: \"\"\n"),
    );
    let class_of = |name: &str| {
        kubectl(
            c,
            &[
                "get",
                "pvc",
                name,
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.storageClassName}",
            ],
        )
    };
    assert_eq!(class_of("defaulted"), "kinds-default");
    assert_eq!(class_of("no-class"), "");
    // No default class: claims are left alone (and the shared cluster is as before).
    kubectl(c, &["delete", "storageclass", "kinds-default"]);
    apply(c, "kubectl", &ns, &claim("after", ""));
    assert_eq!(class_of("after"), "");
}

/// The conformance mirrors these kinds unlock need no nodes: run them against the
/// apiserver alone (`conformance_runner` runs them on the two-node cluster too).
#[test]
fn their_conformance_tests_pass() {
    let c = &*CLUSTER;
    let bin = keelson_testkit::binary("keelson-conformance").expect("the runner binary");
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(&c.kubeconfig);
    for focus in [
        "IngressClass API",
        "Ingress API should",
        "RuntimeClasses API",
        "CSIStorageCapacities API",
        "lifecycle of a CSIDriver",
        "lifecycle of a csinode",
        "lifecycle of a StorageClass",
        "VolumeAttachment Conformance",
    ] {
        cmd.args(["--focus", focus]);
    }
    let out = cmd.output().expect("keelson-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().last().unwrap_or(""),
        "9 passed, 0 failed",
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
