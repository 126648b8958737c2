//! CRI configurations from a pod's spec: the sandbox (`PodSandboxConfig`) and each
//! container (`ContainerConfig`), as the kubelet's `kuberuntime` builds them — labels and
//! annotations that let the agent find its pods again, namespaces, security context,
//! resources with the QoS cgroup parent and OOM score, log paths.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use keelson_apimachinery::quantity::Quantity;

use crate::agent::Agent;
use crate::cri::labels;
use crate::pods::status::qos_class;

/// The kubelet's default masked and read-only paths for unprivileged containers.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The grace period for stopping a pod the API no longer has and whose spec was never
/// seen (the agent restarted after it was deleted).
pub const MIN_ORPHAN_GRACE: i64 = 2;

/// Annotation: where the container's termination-message file lives on the host.
pub const TERMINATION_MESSAGE_HOST_PATH: &str = "keelson.dev/termination-message-host-path";

pub fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

pub fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's grace period: the one its deletion asked for, else the spec's (30 s).
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

fn pod_labels(agent: &Agent, pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAME.into(), pod_name(pod).into()),
        (labels::POD_NAMESPACE.into(), pod_namespace(pod).into()),
        (labels::POD_UID.into(), pod_uid(pod).into()),
        (labels::NODE_NAME.into(), agent.node_name.clone()),
    ])
}

/// `<cgroup-root>/kubepods[/burstable|/besteffort]/pod<uid>`, the kubelet's cgroupfs
/// layout.
pub fn cgroup_parent(agent: &Agent, pod: &Pod) -> String {
    let root = agent.opts.cgroup_root.trim_end_matches('/');
    let qos = match qos_class(pod) {
        "Guaranteed" => String::new(),
        "Burstable" => "/burstable".into(),
        _ => "/besteffort".into(),
    };
    format!("{root}/kubepods{qos}/pod{}", pod_uid(pod))
}

fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |host: Option<bool>, pod_level: cri::NamespaceMode| {
        if host.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else {
            pod_level as i32
        }
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, cri::NamespaceMode::Pod),
        pid: if spec.host_pid.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else if spec.share_process_namespace.unwrap_or(false) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: mode(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The sandbox of `pod`; `attempt` counts the sandboxes made for it before.
pub fn sandbox_config(
    agent: &Agent,
    pod: &Pod,
    attempt: u32,
    dns: Option<cri::DnsConfig>,
    hostname: String,
) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(labels::GRACE_PERIOD.into(), grace_period(pod).to_string());
    let mut labels_: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels_.extend(pod_labels(agent, pod));
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|hp| *hp > 0)?;
            Some(cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod_name(pod).into(),
            uid: pod_uid(pod).into(),
            namespace: pod_namespace(pod).into(),
            attempt,
        }),
        hostname,
        log_directory: agent.pod_log_dir(pod).display().to_string(),
        dns_config: dns,
        port_mappings,
        labels: labels_,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(agent, pod),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.run_as_user.map(|v| cri::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| cri::Int64Value { value: v }),
                supplemental_groups: psc
                    .supplemental_groups
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(psc.fs_group)
                    .collect(),
                privileged,
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

fn quantity(
    s: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<Quantity> {
    s.and_then(|q| Quantity::parse(&q.0).ok())
}

/// CPU shares, CFS quota, memory limit and OOM score for a container, as the kubelet
/// computes them (`cpu.shares` from the request, quota from the limit over a 100 ms
/// period; the OOM score by QoS class, never below what this process may set).
pub fn container_resources(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let cpu_request = quantity(requests.get("cpu")).or(quantity(limits.get("cpu")));
    let cpu_limit = quantity(limits.get("cpu"));
    let mem_request = quantity(requests.get("memory")).or(quantity(limits.get("memory")));
    let mem_limit = quantity(limits.get("memory"));
    let shares = match cpu_request {
        Some(q) => ((q.milli_value() * 1024) / 1000).max(2) as i64,
        None => 2,
    };
    let period = 100_000i64;
    let quota = cpu_limit
        .map(|q| ((q.milli_value() as i64) * period / 1000).max(1000))
        .unwrap_or(0);
    let oom = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let capacity = agent.allocatable.memory.max(1);
            let request = mem_request.map(|q| q.value() as i64).unwrap_or(0);
            (1000 - (1000 * request) / capacity).clamp(3, 999)
        }
    };
    cri::LinuxContainerResources {
        cpu_period: if quota > 0 { period } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_limit.map(|q| q.value() as i64).unwrap_or(0),
        oom_score_adj: oom.max(agent.oom_score_floor),
        ..Default::default()
    }
}

fn capability_names(list: Option<&Vec<String>>) -> Vec<String> {
    list.into_iter()
        .flatten()
        .map(|c| {
            let c = c.to_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect()
}

/// The container's effective security context: its own over the pod's.
pub fn effective_security(pod: &Pod, c: &Container) -> SecurityContext {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let mut sc = c.security_context.clone().unwrap_or_default();
    sc.run_as_user = sc.run_as_user.or(psc.run_as_user);
    sc.run_as_group = sc.run_as_group.or(psc.run_as_group);
    sc.run_as_non_root = sc.run_as_non_root.or(psc.run_as_non_root);
    sc
}

fn linux_security(pod: &Pod, c: &Container) -> cri::LinuxContainerSecurityContext {
    let sc = effective_security(pod, c);
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: capability_names(caps.add.as_ref()),
            drop_capabilities: capability_names(caps.drop.as_ref()),
            add_ambient_capabilities: vec![],
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: sc.run_as_user.map(|v| cri::Int64Value { value: v }),
        run_as_group: sc.run_as_group.map(|v| cri::Int64Value { value: v }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: psc
            .supplemental_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(psc.fs_group)
            .collect(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged {
            vec![]
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged {
            vec![]
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        ..Default::default()
    }
}

/// A stable hash of the container's spec (FNV-1a over its JSON), to notice a changed
/// spec across agent restarts.
pub fn container_hash(c: &Container) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:x}")
}

/// What a container is made of besides its spec: the outcome of the environment,
/// volume and image steps.
pub struct ContainerInputs {
    pub image_ref: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<cri::Mount>,
    pub restart_count: i32,
    pub init: bool,
    pub termination_message_host_path: Option<String>,
}

pub fn container_config(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    inputs: ContainerInputs,
) -> cri::ContainerConfig {
    let mut labels_ = pod_labels(agent, pod);
    labels_.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    let mut annotations = HashMap::from([
        (
            labels::RESTART_COUNT.to_string(),
            inputs.restart_count.to_string(),
        ),
        (labels::CONTAINER_HASH.to_string(), container_hash(c)),
        (
            labels::TERMINATION_MESSAGE_PATH.to_string(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_string(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            labels::GRACE_PERIOD.to_string(),
            grace_period(pod).to_string(),
        ),
    ]);
    if inputs.init {
        annotations.insert(labels::CONTAINER_TYPE.into(), "init".into());
    }
    if let Some(p) = &inputs.termination_message_host_path {
        annotations.insert(TERMINATION_MESSAGE_HOST_PATH.into(), p.clone());
    }
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: inputs.restart_count.max(0) as u32,
        }),
        image: Some(crate::cri::image_spec(&inputs.image_ref)),
        command: inputs.command,
        args: inputs.args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        mounts: inputs.mounts,
        labels: labels_,
        annotations,
        log_path: format!("{}/{}.log", c.name, inputs.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(container_resources(agent, pod, c)),
            security_context: Some(linux_security(pod, c)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_is_stable_and_follows_the_spec() {
        let a: Container = serde_json::from_value(json!({"name": "a", "image": "x"})).unwrap();
        let b: Container = serde_json::from_value(json!({"name": "a", "image": "y"})).unwrap();
        assert_eq!(container_hash(&a), container_hash(&a.clone()));
        assert_ne!(container_hash(&a), container_hash(&b));
    }

    #[test]
    fn capabilities_get_their_prefix() {
        assert_eq!(
            capability_names(Some(&vec![
                "NET_ADMIN".into(),
                "CAP_SYS_TIME".into(),
                "ALL".into()
            ])),
            vec!["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"]
        );
    }
}
