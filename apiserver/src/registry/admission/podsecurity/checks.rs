//! The Pod Security Standards' checks (k8s.io/pod-security-admission/policy), on a
//! pod's (or pod template's) metadata and spec as JSON, with Kubernetes' reasons and
//! details word for word.
//!
//! A level runs its checks in Kubernetes' order (the order of its `check_*.go` files):
//! the baseline checks, then, for baseline, the three the restricted level replaces
//! (capabilities, hostPath volumes, seccomp), or, for restricted, the restricted checks.
//! Versions follow Kubernetes' too: a check applies from the policy version that
//! introduced it, and `latest` is the newest (Keelson serves v1.33).

use super::policy::{Level, LevelVersion, Version};
use serde_json::Value;
use std::collections::BTreeSet;

/// One failed check: a short reason, and details naming what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// What a policy level says of a pod: the violations, in check order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict(pub Vec<Violation>);

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.0.is_empty()
    }

    /// `host namespaces, privileged`: the reasons (the namespace-update warning).
    pub fn reasons(&self) -> String {
        self.0
            .iter()
            .map(|v| v.reason.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `host namespaces (hostNetwork=true), privileged (container "c" must not ...)`.
    pub fn details(&self) -> String {
        self.0
            .iter()
            .map(|v| {
                if v.detail.is_empty() {
                    v.reason.clone()
                } else {
                    format!("{} ({})", v.reason, v.detail)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

type Check = fn(&Pod, Version) -> Option<Violation>;

/// Checks of every non-privileged level.
const BASELINE: &[Check] = &[
    app_armor_profile,
    host_namespaces,
    host_ports,
    privileged,
    proc_mount,
    se_linux_options,
    sysctls,
    windows_host_process,
];
/// Baseline checks the restricted level replaces with stricter ones.
const BASELINE_ONLY: &[Check] = &[capabilities_baseline, host_path_volumes, seccomp_baseline];
const RESTRICTED: &[Check] = &[
    allow_privilege_escalation,
    capabilities_restricted,
    restricted_volumes,
    run_as_non_root,
    run_as_user,
    seccomp_restricted,
];

/// A pod's metadata and spec, as the checks read them.
pub struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
}

impl<'a> Pod<'a> {
    /// `meta` and `spec` of a pod, or of a pod template.
    pub fn new(meta: &'a Value, spec: &'a Value) -> Self {
        Pod { meta, spec }
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.meta.get("annotations")?.get(key)?.as_str()
    }

    fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.meta
            .get("annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }

    fn pod_context(&self, field: &str) -> Option<&'a Value> {
        self.spec
            .get("securityContext")?
            .get(field)
            .filter(|v| !v.is_null())
    }

    /// Init containers, containers and ephemeral containers, as `visitContainers`.
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .filter_map(|list| self.spec.get(list).and_then(Value::as_array))
            .flatten()
    }

    fn volumes(&self) -> impl Iterator<Item = &'a Value> {
        self.spec
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    pub fn runtime_class(&self) -> Option<&'a str> {
        self.spec
            .get("runtimeClassName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

fn name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

fn context<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext")?
        .get(field)
        .filter(|v| !v.is_null())
}

fn flag(v: &Value, field: &str) -> Option<bool> {
    v.get(field).and_then(Value::as_bool)
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn pluralize<'s>(singular: &'s str, plural: &'s str, count: usize) -> &'s str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn sorted(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// The checks `lv` runs on `pod`, and what failed.
pub fn evaluate(lv: LevelVersion, pod: &Pod) -> Verdict {
    let checks: &[&[Check]] = match lv.level {
        Level::Privileged => return Verdict::default(),
        Level::Baseline => &[BASELINE, BASELINE_ONLY],
        Level::Restricted => &[BASELINE, RESTRICTED],
    };
    Verdict(
        checks
            .iter()
            .flat_map(|set| set.iter())
            .filter_map(|check| check(pod, lv.version))
            .collect(),
    )
}

// ---- baseline -------------------------------------------------------------------

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// AppArmor may not be `Unconfined` (fields) nor other than `runtime/default` or
/// `localhost/*` (the deprecated annotations).
fn app_armor_profile(pod: &Pod, _: Version) -> Option<Violation> {
    let allowed_type = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(t) = pod
        .pod_context("appArmorProfile")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
    {
        if !allowed_type(t) {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            let t = context(c, "appArmorProfile")
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str);
            match t {
                Some(t) if !allowed_type(t) => {
                    values.insert(t.to_string());
                    true
                }
                _ => false,
            }
        })
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut annotations: Vec<String> = pod
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    let mut all: Vec<String> = values.into_iter().collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        all.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            all.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&all)
        ),
    )
}

/// No hostNetwork, hostPID, hostIPC.
fn host_namespaces(pod: &Pod, _: Version) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| flag(pod.spec, f) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

/// No hostPort.
fn host_ports(pod: &Pod, _: Version) -> Option<Violation> {
    let mut ports = BTreeSet::new();
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            let mut uses = false;
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match p.get("hostPort").and_then(Value::as_i64) {
                    Some(hp) if hp != 0 => {
                        uses = true;
                        ports.insert(hp.to_string());
                    }
                    _ => {}
                }
            }
            uses
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            sorted(&ports).join(", ")
        ),
    )
}

/// No privileged containers.
fn privileged(pod: &Pod, _: Version) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| c.get("securityContext").and_then(|s| flag(s, "privileged")) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

/// procMount only `Default`.
fn proc_mount(pod: &Pod, _: Version) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| match context(c, "procMount").and_then(Value::as_str) {
            Some(t) if t != "Default" => {
                types.insert(t.to_string());
                true
            }
            _ => false,
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&sorted(&types))
        ),
    )
}

/// SELinux type only one of the container types; no user, no role.
fn se_linux_options(pod: &Pod, version: Version) -> Option<Violation> {
    let allowed = |t: &str| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (t == "container_engine_t" && version.at_least(31))
    };
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = opts.get("type").and_then(Value::as_str).unwrap_or("");
        if !allowed(t) {
            ok = false;
            types.insert(t.to_string());
        }
        if opts
            .get("user")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
        {
            ok = false;
            user = true;
        }
        if opts
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            ok = false;
            role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if let Some(opts) = pod.pod_context("seLinuxOptions") {
        if !valid(opts) {
            setters.push("pod".to_string());
        }
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| context(c, "seLinuxOptions").is_some_and(|o| !valid(o)))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&sorted(&types))
        ));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

/// Only the safe sysctls, as each policy version lists them.
fn sysctls(pod: &Pod, version: Version) -> Option<Violation> {
    const V1_0: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    const V1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
    const V1_29: &[&str] = &[
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    const V1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
    let safe = |n: &str| {
        V1_0.contains(&n)
            || (version.at_least(27) && V1_27.contains(&n))
            || (version.at_least(29) && V1_29.contains(&n))
            || (version.at_least(32) && V1_32.contains(&n))
    };
    let bad: Vec<&str> = pod
        .pod_context("sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !safe(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

/// No Windows hostProcess.
fn windows_host_process(pod: &Pod, _: Version) -> Option<Violation> {
    let host_process = |wo: Option<&Value>| wo.and_then(|w| flag(w, "hostProcess")) == Some(true);
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| host_process(context(c, "windowsOptions")))
        .map(name)
        .collect();
    let mut setters = Vec::new();
    if host_process(pod.pod_context("windowsOptions")) {
        setters.push("pod".to_string());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    context(c, "capabilities")
        .and_then(|caps| caps.get("add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Only Docker's default capabilities may be added (baseline).
fn capabilities_baseline(pod: &Pod, _: Version) -> Option<Violation> {
    let mut caps = BTreeSet::new();
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            let mut ok = true;
            for cap in added_capabilities(c) {
                if !BASELINE_CAPABILITIES.contains(&cap) {
                    ok = false;
                    caps.insert(cap.to_string());
                }
            }
            !ok
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&sorted(&caps))
        ),
    )
}

/// No hostPath volumes (baseline; restricted forbids them among other types).
fn host_path_volumes(pod: &Pod, _: Version) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .volumes()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// Explicitly bad seccomp profile types (pod and containers), for both levels.
struct SeccompTypes<'a> {
    setters: Vec<String>,
    values: BTreeSet<String>,
    pod_valid: bool,
    /// Containers that set none (they rely on the pod's).
    unset: Vec<&'a str>,
}

fn seccomp_types<'a>(pod: &Pod<'a>) -> SeccompTypes<'a> {
    let mut s = SeccompTypes {
        setters: Vec::new(),
        values: BTreeSet::new(),
        pod_valid: false,
        unset: Vec::new(),
    };
    if let Some(profile) = pod.pod_context("seccompProfile") {
        let t = profile.get("type").and_then(Value::as_str).unwrap_or("");
        if valid_seccomp(t) {
            s.pod_valid = true;
        } else {
            s.setters.push("pod".to_string());
            s.values.insert(t.to_string());
        }
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        match context(c, "seccompProfile") {
            Some(profile) => {
                let t = profile.get("type").and_then(Value::as_str).unwrap_or("");
                if !valid_seccomp(t) {
                    bad.push(name(c));
                    s.values.insert(t.to_string());
                }
            }
            None => s.unset.push(name(c)),
        }
    }
    if !bad.is_empty() {
        s.setters.push(containers_phrase(&bad));
    }
    s
}

fn seccomp_bad_setters(s: &SeccompTypes) -> Option<Violation> {
    if s.setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            s.setters.join(" and "),
            join_quote(&sorted(&s.values))
        ),
    )
}

/// No `Unconfined` seccomp (the alpha annotations before v1.19, the fields since).
fn seccomp_baseline(pod: &Pod, version: Version) -> Option<Violation> {
    if !version.at_least(19) {
        let valid = |v: &str| {
            v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
        };
        let mut bad = BTreeSet::new();
        if let Some(v) = pod.annotation(SECCOMP_POD_ANNOTATION) {
            if !valid(v) {
                bad.insert(format!("{SECCOMP_POD_ANNOTATION}={v:?}"));
            }
        }
        for c in pod.containers() {
            let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
            if let Some(v) = pod.annotation(&key) {
                if !valid(v) {
                    bad.insert(format!("{key}={v:?}"));
                }
            }
        }
        if bad.is_empty() {
            return None;
        }
        return violation(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize("annotation", "annotations", bad.len()),
                sorted(&bad).join(", ")
            ),
        );
    }
    seccomp_bad_setters(&seccomp_types(pod))
}

// ---- restricted -----------------------------------------------------------------

/// allowPrivilegeEscalation must be false (v1.8+).
fn allow_privilege_escalation(pod: &Pod, version: Version) -> Option<Violation> {
    if !version.at_least(8) {
        return None;
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            c.get("securityContext")
                .and_then(|s| flag(s, "allowPrivilegeEscalation"))
                != Some(false)
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// Drop ALL; add at most NET_BIND_SERVICE (v1.22+).
fn capabilities_restricted(pod: &Pod, version: Version) -> Option<Violation> {
    if !version.at_least(22) {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in pod.containers() {
        let Some(capabilities) = context(c, "capabilities") else {
            missing_drop.push(name(c));
            continue;
        };
        let drops_all = capabilities
            .get("drop")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|d| d.as_str() == Some("ALL"));
        if !drops_all {
            missing_drop.push(name(c));
        }
        let mut forbidden = false;
        for cap in added_capabilities(c) {
            if cap != "NET_BIND_SERVICE" {
                forbidden = true;
                caps.insert(cap.to_string());
            }
        }
        if forbidden {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&sorted(&caps))
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// Volume sources the restricted level allows; any other (or none known) is restricted.
const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// Only the volume types a pod's own objects back.
fn restricted_volumes(pod: &Pod, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in pod.volumes() {
        let set = |t: &&str| v.get(*t).is_some_and(|s| !s.is_null());
        if ALLOWED_VOLUME_TYPES.iter().any(set) {
            continue;
        }
        names.push(name(v));
        types.insert(
            RESTRICTED_VOLUME_TYPES
                .iter()
                .find(|t| set(t))
                .copied()
                .unwrap_or("unknown")
                .to_string(),
        );
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&sorted(&types))
        ),
    )
}

/// runAsNonRoot must be true, for the pod or every container.
fn run_as_non_root(pod: &Pod, _: Version) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod.pod_context("runAsNonRoot").and_then(Value::as_bool) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in pod.containers() {
        match context(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

/// runAsUser may not be 0 (v1.23+).
fn run_as_user(pod: &Pod, version: Version) -> Option<Violation> {
    if !version.at_least(23) {
        return None;
    }
    let root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if root(pod.pod_context("runAsUser")) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| root(context(c, "runAsUser")))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

/// A seccomp profile of RuntimeDefault or Localhost, for the pod or every container
/// (v1.19+).
fn seccomp_restricted(pod: &Pod, version: Version) -> Option<Violation> {
    if !version.at_least(19) {
        return None;
    }
    let s = seccomp_types(pod);
    if let Some(v) = seccomp_bad_setters(&s) {
        return Some(v);
    }
    if s.pod_valid || s.unset.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            containers_phrase(&s.unset)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RESTRICTED: LevelVersion = LevelVersion {
        level: Level::Restricted,
        version: Version::LATEST,
    };
    const BASELINE: LevelVersion = LevelVersion {
        level: Level::Baseline,
        version: Version::LATEST,
    };

    /// A pod that meets the restricted level.
    fn compliant() -> Value {
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "c", "image": "busybox",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
                    },
                    "ports": [{"containerPort": 80}]
                }],
                "volumes": [
                    {"name": "cm", "configMap": {"name": "x"}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "token", "projected": {"sources": []}}
                ]
            }
        })
    }

    fn verdict(lv: LevelVersion, pod: &Value) -> Verdict {
        evaluate(lv, &Pod::new(&pod["metadata"], &pod["spec"]))
    }

    /// `pod` with `change` applied at a JSON pointer.
    fn with(mut pod: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let mut target = &mut pod;
        for part in parent.split('/').skip(1) {
            target = match part.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => {
                    if target.get(part).is_none() {
                        target[part] = json!({});
                    }
                    &mut target[part]
                }
            };
        }
        match key.parse::<usize>() {
            Ok(i) => target[i] = value,
            Err(_) => target[key] = value,
        }
        pod
    }

    /// The one violation `pod` has at `lv`, as `reason (detail)`.
    fn only(lv: LevelVersion, pod: &Value) -> String {
        let v = verdict(lv, pod);
        assert_eq!(v.0.len(), 1, "{v:?}");
        v.details()
    }

    #[test]
    fn a_compliant_pod_passes_every_level() {
        let pod = compliant();
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            for version in [Version::LATEST, Version::minor(0), Version::minor(22)] {
                let v = verdict(LevelVersion { level, version }, &pod);
                assert!(v.allowed(), "{level:?} {version}: {v:?}");
            }
        }
        // An empty pod is baseline.
        assert!(verdict(
            BASELINE,
            &json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}})
        )
        .allowed());
    }

    #[test]
    fn baseline_checks_report_kubernetes_text() {
        let p = compliant;
        let cases = [
            (
                with(p(), "/spec/hostNetwork", json!(true)),
                "host namespaces (hostNetwork=true)",
            ),
            (
                with(
                    with(p(), "/spec/hostPID", json!(true)),
                    "/spec/hostIPC",
                    json!(true),
                ),
                "host namespaces (hostPID=true, hostIPC=true)",
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/privileged",
                    json!(true),
                ),
                r#"privileged (container "c" must not set securityContext.privileged=true)"#,
            ),
            (
                with(p(), "/spec/containers/0/ports/0/hostPort", json!(8080)),
                r#"hostPort (container "c" uses hostPort 8080)"#,
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/procMount",
                    json!("Unmasked"),
                ),
                r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
            ),
            (
                with(
                    p(),
                    "/spec/securityContext/seLinuxOptions",
                    json!({"type": "spc_t", "user": "u"}),
                ),
                r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)"#,
            ),
            (
                with(
                    p(),
                    "/spec/securityContext/sysctls",
                    json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]),
                ),
                "forbidden sysctls (kernel.msgmax)",
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/windowsOptions",
                    json!({"hostProcess": true}),
                ),
                r#"hostProcess (container "c" must not set securityContext.windowsOptions.hostProcess=true)"#,
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/appArmorProfile",
                    json!({"type": "Unconfined"}),
                ),
                r#"forbidden AppArmor profile (container "c" must not set AppArmor profile type to "Unconfined")"#,
            ),
            (
                with(
                    p(),
                    "/metadata/annotations",
                    json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
                ),
                r#"forbidden AppArmor profile (annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#,
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(only(BASELINE, &pod), want);
        }
        // Checks the restricted level replaces.
        let caps = with(
            p(),
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["SYS_ADMIN", "CHOWN", "NET_RAW"]),
        );
        assert_eq!(
            only(BASELINE, &caps),
            r#"non-default capabilities (container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#
        );
        let host = with(
            p(),
            "/spec/volumes/1",
            json!({"name": "host", "hostPath": {"path": "/"}}),
        );
        assert_eq!(only(BASELINE, &host), r#"hostPath volumes (volume "host")"#);
        let unconfined = with(
            p(),
            "/spec/securityContext/seccompProfile/type",
            json!("Unconfined"),
        );
        assert_eq!(
            only(BASELINE, &unconfined),
            r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#
        );
        // Before v1.19 the seccomp annotations count instead.
        let annotated = with(
            p(),
            "/metadata/annotations",
            json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
        );
        assert_eq!(
            only(
                LevelVersion {
                    level: Level::Baseline,
                    version: Version::minor(18)
                },
                &annotated
            ),
            r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
        );
        // Versioned allow-lists: container_engine_t from v1.31, tcp_rmem from v1.32.
        let engine = with(
            p(),
            "/spec/securityContext/seLinuxOptions",
            json!({"type": "container_engine_t"}),
        );
        assert!(verdict(BASELINE, &engine).allowed());
        assert!(!verdict(
            LevelVersion {
                level: Level::Baseline,
                version: Version::minor(30)
            },
            &engine
        )
        .allowed());
        let rmem = with(
            p(),
            "/spec/securityContext/sysctls",
            json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]),
        );
        assert!(verdict(BASELINE, &rmem).allowed());
        assert!(!verdict(
            LevelVersion {
                level: Level::Baseline,
                version: Version::minor(31)
            },
            &rmem
        )
        .allowed());
    }

    #[test]
    fn restricted_checks_report_kubernetes_text() {
        let p = compliant;
        let cases = [
            (
                with(
                    p(),
                    "/spec/volumes/0",
                    json!({"name": "data", "nfs": {"server": "s", "path": "/"}}),
                ),
                r#"restricted volume types (volume "data" uses restricted volume type "nfs")"#,
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                    json!(true),
                ),
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
            ),
            (
                with(p(), "/spec/securityContext/runAsNonRoot", json!(false)),
                "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/runAsUser",
                    json!(0),
                ),
                r#"runAsUser=0 (container "c" must not set runAsUser=0)"#,
            ),
            (
                with(p(), "/spec/securityContext/seccompProfile", Value::Null),
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!([]),
                ),
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#,
            ),
            (
                with(
                    p(),
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["CHOWN"]),
                ),
                r#"unrestricted capabilities (container "c" must not include "CHOWN" in securityContext.capabilities.add)"#,
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(only(RESTRICTED, &pod), want);
        }
        // No pod-level runAsNonRoot: every container must set it.
        let implicit = with(p(), "/spec/securityContext/runAsNonRoot", Value::Null);
        assert_eq!(
            only(RESTRICTED, &implicit),
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#
        );
        // Several volumes and types.
        let vols = with(
            with(
                p(),
                "/spec/volumes/0",
                json!({"name": "b", "hostPath": {"path": "/"}}),
            ),
            "/spec/volumes/1",
            json!({"name": "a", "gitRepo": {"repository": "r"}}),
        );
        assert_eq!(
            only(RESTRICTED, &vols),
            r#"restricted volume types (volumes "b", "a" use restricted volume types "gitRepo", "hostPath")"#
        );
        // Older versions skip newer checks.
        let old = with(
            p(),
            "/spec/containers/0/securityContext/runAsUser",
            json!(0),
        );
        assert!(verdict(
            LevelVersion {
                level: Level::Restricted,
                version: Version::minor(22)
            },
            &old
        )
        .allowed());
    }

    #[test]
    fn violations_aggregate_in_kubernetes_order() {
        // A privileged container with nothing else set, as `kubectl run --privileged`.
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}
        });
        let v = verdict(RESTRICTED, &pod);
        assert_eq!(
            v.details(),
            concat!(
                r#"privileged (container "c" must not set securityContext.privileged=true), "#,
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            )
        );
        assert_eq!(
            v.reasons(),
            "privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        // Baseline: its own checks, then the ones restricted replaces.
        let both = with(
            with(pod, "/spec/hostNetwork", json!(true)),
            "/spec/containers/0/securityContext/capabilities",
            json!({"add": ["SYS_ADMIN"]}),
        );
        assert_eq!(
            verdict(BASELINE, &both).reasons(),
            "host namespaces, privileged, non-default capabilities"
        );
        // Init and ephemeral containers count, init first.
        let init = json!({"metadata": {}, "spec": {
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "c", "securityContext": {"privileged": true}}],
            "ephemeralContainers": [{"name": "e", "securityContext": {"privileged": true}}]
        }});
        assert_eq!(
            verdict(BASELINE, &init).details(),
            r#"privileged (containers "i", "c", "e" must not set securityContext.privileged=true)"#
        );
    }
}
