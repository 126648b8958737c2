//! Pod Security admission with the real kubectl: namespace labels refuse (enforce) or
//! warn about (warn) pods that break a Pod Security Standard, with Kubernetes' messages
//! as kubectl prints them; workloads are only warned about; labelling a namespace over
//! existing pods warns; `--admission-control-config-file` sets defaults and exemptions.

use keelson_e2e::CLUSTER;
use keelson_testkit::{ApiserverOptions, Cluster};
use std::process::Output;

const PRIVILEGED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
"#;

/// What the restricted level says of `PRIVILEGED_POD`, as Kubernetes words it.
const RESTRICTED_DETAILS: &str = concat!(
    r#"privileged (container "c" must not set securityContext.privileged=true), "#,
    r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: busybox
        securityContext: {privileged: true}
"#;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run kubectl with `stdin`; it must succeed. Returns stdout and stderr.
fn succeeds(c: &Cluster, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let out = c.kubectl_with("kubectl", args, stdin);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// Run kubectl with `stdin`; it must fail. Returns stderr.
fn refused(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = c.kubectl_with("kubectl", args, stdin);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded:\n{stdout}\n{stderr}"
    );
    stderr
}

/// A namespace created with these labels in one request.
fn labelled_namespace(c: &Cluster, name: &str, labels: &[(&str, &str)]) {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        yaml.push_str("  labels:\n");
        for (k, v) in labels {
            yaml.push_str(&format!("    {k}: {v}\n"));
        }
    }
    succeeds(c, &["create", "-f", "-"], Some(&yaml));
}

#[test]
fn enforce_refuses_a_privileged_pod_with_kubernetes_message() {
    let c = &*CLUSTER;
    let ns = "psa-enforce";
    labelled_namespace(
        c,
        ns,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    let err = refused(c, &["create", "-n", ns, "-f", "-"], Some(PRIVILEGED_POD));
    assert!(
        err.contains(&format!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: violates PodSecurity "restricted:latest": {RESTRICTED_DETAILS}"#
        )),
        "{err}"
    );
    // Nothing was stored.
    let err = refused(c, &["get", "pod", "priv", "-n", ns], None);
    assert!(err.contains("NotFound"), "{err}");

    // A pod that meets the restricted level is created without a warning.
    let compliant = r#"
apiVersion: v1
kind: Pod
metadata: {name: fine}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#;
    let (out, err) = succeeds(c, &["create", "-n", ns, "-f", "-"], Some(compliant));
    assert!(out.contains("pod/fine created"), "{out}");
    assert!(!err.contains("Warning"), "{err}");

    // Baseline only: the same privileged pod names only what baseline forbids.
    let ns = "psa-enforce-baseline";
    labelled_namespace(c, ns, &[("pod-security.kubernetes.io/enforce", "baseline")]);
    let err = refused(c, &["create", "-n", ns, "-f", "-"], Some(PRIVILEGED_POD));
    assert!(
        err.contains(r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{err}"
    );
}

#[test]
fn warn_creates_the_pod_and_kubectl_prints_the_warning() {
    let c = &*CLUSTER;
    let ns = "psa-warn";
    labelled_namespace(
        c,
        ns,
        &[
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/warn-version", "v1.30"),
        ],
    );
    let (out, err) = succeeds(c, &["create", "-n", ns, "-f", "-"], Some(PRIVILEGED_POD));
    assert!(out.contains("pod/priv created"), "{out}");
    assert!(
        err.contains(&format!(
            r#"Warning: would violate PodSecurity "restricted:v1.30": {RESTRICTED_DETAILS}"#
        )),
        "{err}"
    );
    succeeds(c, &["get", "pod", "priv", "-n", ns], None);
}

#[test]
fn workloads_are_warned_about_never_refused() {
    let c = &*CLUSTER;
    let ns = "psa-workloads";
    labelled_namespace(
        c,
        ns,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    let (out, err) = succeeds(c, &["create", "-n", ns, "-f", "-"], Some(DEPLOYMENT));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    // warn follows an enforce level set on its own, as in Kubernetes 1.26+.
    assert!(
        err.contains(&format!(
            r#"Warning: would violate PodSecurity "restricted:latest": {RESTRICTED_DETAILS}"#
        )),
        "{err}"
    );
    // A CronJob's template is two levels down.
    let cronjob = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          hostNetwork: true
          containers:
          - name: c
            image: busybox
"#;
    let (_, err) = succeeds(c, &["create", "-n", ns, "-f", "-"], Some(cronjob));
    assert!(
        err.contains(r#"Warning: would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false"#),
        "{err}"
    );
    // Scaling (a subresource) is not checked again; a change to the object is.
    let (_, err) = succeeds(c, &["scale", "deploy/web", "--replicas=2", "-n", ns], None);
    assert!(!err.contains("Warning"), "{err}");
    let (_, err) = succeeds(c, &["label", "deploy/web", "tier=front", "-n", ns], None);
    assert!(err.contains("Warning: would violate PodSecurity"), "{err}");
}

#[test]
fn labelling_a_namespace_over_existing_pods_warns_and_bad_labels_are_invalid() {
    let c = &*CLUSTER;
    let ns = "psa-label";
    labelled_namespace(c, ns, &[]);
    succeeds(c, &["create", "-n", ns, "-f", "-"], Some(PRIVILEGED_POD));
    let second = PRIVILEGED_POD.replace("name: priv", "name: another");
    succeeds(c, &["create", "-n", ns, "-f", "-"], Some(&second));

    let (out, err) = succeeds(
        c,
        &[
            "label",
            "ns",
            ns,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    );
    assert!(out.contains(&format!("namespace/{ns} labeled")), "{out}");
    assert!(
        err.contains(&format!(
            r#"Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "restricted:latest""#
        )),
        "{err}"
    );
    // One line for the pods that share reasons, naming the first by name.
    assert!(
        err.contains("Warning: another (and 1 other pod): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{err}"
    );
    // The pods stay; only new ones are refused.
    succeeds(c, &["get", "pod", "priv", "another", "-n", ns], None);
    let third = PRIVILEGED_POD.replace("name: priv", "name: third");
    refused(c, &["create", "-n", ns, "-f", "-"], Some(&third));

    // Relaxing the level checks nothing.
    let (_, err) = succeeds(
        c,
        &[
            "label",
            "--overwrite",
            "ns",
            ns,
            "pod-security.kubernetes.io/enforce=baseline",
        ],
        None,
    );
    assert!(!err.contains("Warning"), "{err}");

    // A label that does not parse is refused with 422.
    let err = refused(
        c,
        &[
            "label",
            "--overwrite",
            "ns",
            ns,
            "pod-security.kubernetes.io/enforce=strict",
        ],
        None,
    );
    assert!(
        err.contains(&format!(
            r#"The Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        )),
        "{err}"
    );
    let err = refused(
        c,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: psa-bad-version\n  labels: {pod-security.kubernetes.io/warn-version: \"1.30\"}\n"),
    );
    assert!(
        err.contains(r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#),
        "{err}"
    );
}

/// A cluster-wide default and exemptions from `--admission-control-config-file`.
#[test]
fn configuration_sets_defaults_and_exemptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pod-security.yaml"),
        r#"
apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: baseline
exemptions:
  namespaces: [psa-exempt]
"#,
    )
    .expect("write");
    let admission = dir.path().join("admission.yaml");
    std::fs::write(
        &admission,
        r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  path: pod-security.yaml
"#,
    )
    .expect("write");
    let opts = ApiserverOptions {
        extra_args: vec![format!(
            "--admission-control-config-file={}",
            admission.display()
        )],
        ..Default::default()
    };
    let c = Cluster::start_with(1, opts).expect("cluster");

    // No labels: the default (baseline) applies.
    labelled_namespace(&c, "psa-default", &[]);
    let err = refused(
        &c,
        &["create", "-n", "psa-default", "-f", "-"],
        Some(PRIVILEGED_POD),
    );
    assert!(
        err.contains(r#"violates PodSecurity "baseline:latest": privileged"#),
        "{err}"
    );
    // A label overrides the default.
    labelled_namespace(
        &c,
        "psa-open",
        &[("pod-security.kubernetes.io/enforce", "privileged")],
    );
    succeeds(
        &c,
        &["create", "-n", "psa-open", "-f", "-"],
        Some(PRIVILEGED_POD),
    );
    // An exempt namespace is not checked, and labelling it says the labels are ignored.
    labelled_namespace(&c, "psa-exempt", &[]);
    succeeds(
        &c,
        &["create", "-n", "psa-exempt", "-f", "-"],
        Some(PRIVILEGED_POD),
    );
    let (_, err) = succeeds(
        &c,
        &[
            "label",
            "ns",
            "psa-exempt",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    );
    assert!(
        err.contains(r#"Warning: namespace "psa-exempt" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#),
        "{err}"
    );

    // A configuration that does not validate stops the apiserver from starting.
    std::fs::write(
        dir.path().join("pod-security.yaml"),
        "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults: {enforce: strict}\n",
    )
    .expect("write");
    let opts = ApiserverOptions {
        extra_args: vec![format!(
            "--admission-control-config-file={}",
            admission.display()
        )],
        ..Default::default()
    };
    let err = Cluster::start_with(1, opts)
        .err()
        .expect("an invalid configuration is refused");
    let shown = format!("{err:#}");
    assert!(
        shown.contains(r#"defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{shown}"
    );
}
