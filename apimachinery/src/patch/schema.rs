//! How lists and maps of built-in kinds merge.
//!
//! Strategic merge patch and server-side apply both need to know, for a list at a path
//! in a given kind, whether it is atomic, a set, or a map keyed by some fields. The
//! Kubernetes Go types carry this as `patchStrategy`/`patchMergeKey` struct tags (for
//! strategic merge) and `listType`/`listMapKeys` markers (for apply); this module is the
//! table of those tags for the kinds Keelson serves.
//!
//! The table is a small type graph: each kind names the struct at its root, each struct
//! lists the fields that lead to other structs or to lists with merge semantics, and
//! [`list_meta`] walks a path of field names through it. Lists and structs not in the
//! table are atomic, as untagged lists are in Kubernetes.

/// How a list is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMeta {
    /// Strategic merge patch: `Some(key)` when the list has `patchStrategy:"merge"` with
    /// `patchMergeKey:key` (items merged by that key); for primitive lists with
    /// `patchStrategy:"merge"` the key is "" (items merged as a set). `None`: replaced.
    pub smp_merge_key: Option<&'static str>,
    /// Server-side apply's `listType`.
    pub apply: ListType,
}

/// Server-side apply's list types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole; one manager owns the entire list.
    Atomic,
    /// Primitive items, each owned separately.
    Set,
    /// Items identified by these key fields, each owned separately.
    Map(&'static [&'static str]),
}

impl ListMeta {
    pub const ATOMIC: ListMeta = ListMeta {
        smp_merge_key: None,
        apply: ListType::Atomic,
    };
}

/// The merge semantics of the list at `path` (field names from the object root, e.g.
/// `["spec", "template", "spec", "containers"]`) in an object of `kind` (group "" for
/// core). Unknown paths are atomic, which is what Kubernetes does for lists without
/// tags.
///
/// List indices are not part of the path: the container `env` list of a pod is
/// `["spec", "containers", "env"]`.
pub fn list_meta(group: &str, kind: &str, path: &[&str]) -> ListMeta {
    let Some(mut ty) = root(group, kind) else {
        return ListMeta::ATOMIC;
    };
    for (i, name) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match field(ty, name) {
            Some(Node::Struct(next)) if !last => ty = next,
            Some(Node::List(meta, _)) if last => return meta,
            Some(Node::List(_, Some(next))) => ty = next,
            _ => return ListMeta::ATOMIC,
        }
    }
    ListMeta::ATOMIC
}

/// Whether `group`/`kind` is a built-in kind this table describes, so that strategic
/// merge patch can be applied to it. Kubernetes refuses strategic merge patch for
/// custom resources (415 Unsupported Media Type); the caller decides for others.
pub fn supports(group: &str, kind: &str) -> bool {
    root(group, kind).is_some()
}

/// Structs of the Kubernetes API that lead to lists with merge semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    // Roots, one per kind (or shared when the kinds have the same shape).
    Pod,
    PodTemplate,
    ReplicationController,
    Service,
    Node,
    Namespace,
    ServiceAccount,
    PersistentVolumeClaim,
    /// Kinds whose only keyed lists are in `metadata`.
    MetadataOnly,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    EndpointSlice,
    CertificateSigningRequest,
    /// FlowSchema, PriorityLevelConfiguration: atomic spec lists, conditions by type.
    FlowControl,
    // Inner structs.
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    WorkloadSpec,
    StatefulSetSpec,
    ConditionsStatus,
    ReplicationControllerSpec,
    ServiceSpec,
    ServiceStatus,
    NodeSpec,
    NodeStatus,
    JobSpec,
    JobStatus,
    UncountedTerminatedPods,
    CronJobSpec,
    JobTemplateSpec,
    EndpointSliceEndpoint,
    CertificateSigningRequestStatus,
}

/// What a field of a struct leads to.
#[derive(Debug, Clone, Copy)]
enum Node {
    Struct(Ty),
    /// A list, with the struct of its items when they lead further.
    List(ListMeta, Option<Ty>),
}

const fn keyed(smp: &'static str, apply: &'static [&'static str]) -> ListMeta {
    ListMeta {
        smp_merge_key: Some(smp),
        apply: ListType::Map(apply),
    }
}

/// `patchStrategy:"merge"` on a primitive list, `listType=set`.
const MERGED_SET: ListMeta = ListMeta {
    smp_merge_key: Some(""),
    apply: ListType::Set,
};
/// `listType=set` without a patch strategy (replaced by strategic merge patch).
const SET: ListMeta = ListMeta {
    smp_merge_key: None,
    apply: ListType::Set,
};
const ATOMIC: Node = Node::List(ListMeta::ATOMIC, None);
const BY_NAME: ListMeta = keyed("name", &["name"]);
const BY_TYPE: ListMeta = keyed("type", &["type"]);
const CONDITIONS: Node = Node::List(BY_TYPE, None);

fn root(group: &str, kind: &str) -> Option<Ty> {
    Some(match (group, kind) {
        ("", "Pod") => Ty::Pod,
        ("", "PodTemplate") => Ty::PodTemplate,
        ("", "ReplicationController") => Ty::ReplicationController,
        ("", "Service") => Ty::Service,
        ("", "Node") => Ty::Node,
        ("", "Namespace") => Ty::Namespace,
        ("", "ServiceAccount") => Ty::ServiceAccount,
        ("", "PersistentVolumeClaim") => Ty::PersistentVolumeClaim,
        // Endpoints' subsets and everything under them are atomic; persistent volumes,
        // quotas and limit ranges only have atomic lists; config maps, secrets, events
        // have none.
        ("", "Endpoints" | "ConfigMap" | "Secret" | "PersistentVolume")
        | ("", "ResourceQuota" | "LimitRange" | "Event")
        | ("apps", "ControllerRevision")
        | ("coordination.k8s.io", "Lease")
        // NetworkPolicy's lists (rules, peers, ports, policyTypes) are all atomic.
        | ("networking.k8s.io", "NetworkPolicy")
        // RBAC's rules, subjects and aggregation selectors are atomic lists.
        | ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
        | ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => Ty::MetadataOnly,
        ("apps", "Deployment") => Ty::Deployment,
        ("apps", "ReplicaSet") => Ty::ReplicaSet,
        ("apps", "StatefulSet") => Ty::StatefulSet,
        ("apps", "DaemonSet") => Ty::DaemonSet,
        ("batch", "Job") => Ty::Job,
        ("batch", "CronJob") => Ty::CronJob,
        ("discovery.k8s.io", "EndpointSlice") => Ty::EndpointSlice,
        ("certificates.k8s.io", "CertificateSigningRequest") => Ty::CertificateSigningRequest,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema" | "PriorityLevelConfiguration") => {
            Ty::FlowControl
        }
        _ => return None,
    })
}

fn field(ty: Ty, name: &str) -> Option<Node> {
    use Node::{List, Struct};
    if name == "metadata" && is_root(ty) {
        return Some(Struct(Ty::ObjectMeta));
    }
    Some(match (ty, name) {
        (Ty::Pod, "spec") => Struct(Ty::PodSpec),
        (Ty::Pod, "status") => Struct(Ty::PodStatus),
        (Ty::PodTemplate, "template") => Struct(Ty::PodTemplateSpec),
        (Ty::ReplicationController, "spec") => Struct(Ty::ReplicationControllerSpec),
        (Ty::ReplicationController, "status") => Struct(Ty::ConditionsStatus),
        (Ty::Service, "spec") => Struct(Ty::ServiceSpec),
        (Ty::Service, "status") => Struct(Ty::ServiceStatus),
        (Ty::Node, "spec") => Struct(Ty::NodeSpec),
        (Ty::Node, "status") => Struct(Ty::NodeStatus),
        (Ty::Namespace | Ty::PersistentVolumeClaim, "status") => Struct(Ty::ConditionsStatus),
        (Ty::FlowControl, "status") => Struct(Ty::ConditionsStatus),
        (Ty::ServiceAccount, "secrets") => List(BY_NAME, None),
        (Ty::Deployment | Ty::ReplicaSet | Ty::DaemonSet, "spec") => Struct(Ty::WorkloadSpec),
        (Ty::StatefulSet, "spec") => Struct(Ty::StatefulSetSpec),
        (Ty::Deployment | Ty::ReplicaSet | Ty::DaemonSet | Ty::StatefulSet, "status") => {
            Struct(Ty::ConditionsStatus)
        }
        (Ty::Job, "spec") | (Ty::JobTemplateSpec, "spec") => Struct(Ty::JobSpec),
        (Ty::Job, "status") => Struct(Ty::JobStatus),
        (Ty::CronJob, "spec") => Struct(Ty::CronJobSpec),
        (Ty::EndpointSlice, "endpoints") => List(ListMeta::ATOMIC, Some(Ty::EndpointSliceEndpoint)),

        (Ty::ObjectMeta, "ownerReferences") => List(keyed("uid", &["uid"]), None),
        (Ty::ObjectMeta, "finalizers") => List(MERGED_SET, None),
        (Ty::ObjectMeta, "managedFields") => ATOMIC,

        (Ty::PodTemplateSpec, "metadata") => Struct(Ty::ObjectMeta),
        (Ty::PodTemplateSpec, "spec") => Struct(Ty::PodSpec),
        (Ty::JobTemplateSpec, "metadata") => Struct(Ty::ObjectMeta),

        (Ty::PodSpec, "volumes") => List(BY_NAME, None),
        (Ty::PodSpec, "initContainers" | "containers" | "ephemeralContainers") => {
            List(BY_NAME, Some(Ty::Container))
        }
        (Ty::PodSpec, "imagePullSecrets") => List(BY_NAME, None),
        (Ty::PodSpec, "hostAliases") => List(keyed("ip", &["ip"]), None),
        (Ty::PodSpec, "topologySpreadConstraints") => List(
            keyed("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
            None,
        ),
        (Ty::PodSpec, "schedulingGates" | "resourceClaims") => List(BY_NAME, None),
        (Ty::PodSpec, "tolerations" | "readinessGates") => ATOMIC,

        (Ty::Container, "ports") => {
            List(keyed("containerPort", &["containerPort", "protocol"]), None)
        }
        (Ty::Container, "env") => List(BY_NAME, None),
        (Ty::Container, "volumeMounts") => List(keyed("mountPath", &["mountPath"]), None),
        (Ty::Container, "volumeDevices") => List(keyed("devicePath", &["devicePath"]), None),
        (Ty::Container, "envFrom" | "resizePolicy" | "command" | "args") => ATOMIC,

        (Ty::PodStatus, "conditions") => CONDITIONS,
        (Ty::PodStatus, "podIPs") => List(keyed("ip", &["ip"]), None),
        // Merged by ip in strategic merge patch, but atomic for apply.
        (Ty::PodStatus, "hostIPs") => List(
            ListMeta {
                smp_merge_key: Some("ip"),
                apply: ListType::Atomic,
            },
            None,
        ),
        (Ty::PodStatus, "resourceClaimStatuses") => List(BY_NAME, None),
        (
            Ty::PodStatus,
            "initContainerStatuses" | "containerStatuses" | "ephemeralContainerStatuses",
        ) => ATOMIC,

        (Ty::WorkloadSpec | Ty::ReplicationControllerSpec, "template") => {
            Struct(Ty::PodTemplateSpec)
        }
        (Ty::StatefulSetSpec, "template") => Struct(Ty::PodTemplateSpec),
        (Ty::StatefulSetSpec, "volumeClaimTemplates") => ATOMIC,
        (Ty::ConditionsStatus, "conditions") => CONDITIONS,

        (Ty::ServiceSpec, "ports") => List(keyed("port", &["port", "protocol"]), None),
        (
            Ty::ServiceSpec,
            "clusterIPs" | "externalIPs" | "loadBalancerSourceRanges" | "ipFamilies",
        ) => ATOMIC,
        (Ty::ServiceStatus, "conditions") => CONDITIONS,

        (Ty::NodeSpec, "podCIDRs") => List(MERGED_SET, None),
        (Ty::NodeSpec, "taints") => ATOMIC,
        (Ty::NodeStatus, "conditions") => CONDITIONS,
        (Ty::NodeStatus, "addresses") => List(BY_TYPE, None),
        (Ty::NodeStatus, "images" | "volumesInUse" | "volumesAttached") => ATOMIC,

        (Ty::JobSpec, "template") => Struct(Ty::PodTemplateSpec),
        // Merged by type in strategic merge patch, but atomic for apply.
        (Ty::JobStatus, "conditions") => List(
            ListMeta {
                smp_merge_key: Some("type"),
                apply: ListType::Atomic,
            },
            None,
        ),
        (Ty::JobStatus, "uncountedTerminatedPods") => Struct(Ty::UncountedTerminatedPods),
        (Ty::UncountedTerminatedPods, "succeeded" | "failed") => List(SET, None),
        (Ty::CronJobSpec, "jobTemplate") => Struct(Ty::JobTemplateSpec),

        (Ty::EndpointSliceEndpoint, "addresses") => List(SET, None),
        // Conditions are a map by type for apply, but replaced by strategic merge patch.
        (Ty::CertificateSigningRequest, "status") => Struct(Ty::CertificateSigningRequestStatus),
        (Ty::CertificateSigningRequestStatus, "conditions") => List(
            ListMeta {
                smp_merge_key: None,
                apply: ListType::Map(&["type"]),
            },
            None,
        ),
        _ => return None,
    })
}

fn is_root(ty: Ty) -> bool {
    matches!(
        ty,
        Ty::Pod
            | Ty::PodTemplate
            | Ty::ReplicationController
            | Ty::Service
            | Ty::Node
            | Ty::Namespace
            | Ty::ServiceAccount
            | Ty::PersistentVolumeClaim
            | Ty::MetadataOnly
            | Ty::Deployment
            | Ty::ReplicaSet
            | Ty::StatefulSet
            | Ty::DaemonSet
            | Ty::Job
            | Ty::CronJob
            | Ty::EndpointSlice
            | Ty::CertificateSigningRequest
            | Ty::FlowControl
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smp(group: &str, kind: &str, path: &str) -> Option<&'static str> {
        let p: Vec<&str> = path.split('.').collect();
        list_meta(group, kind, &p).smp_merge_key
    }
    fn apply(group: &str, kind: &str, path: &str) -> ListType {
        let p: Vec<&str> = path.split('.').collect();
        list_meta(group, kind, &p).apply
    }

    #[test]
    fn metadata_lists_for_every_kind() {
        for (g, k) in [
            ("", "Pod"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Event"),
            ("apps", "Deployment"),
            ("coordination.k8s.io", "Lease"),
            ("discovery.k8s.io", "EndpointSlice"),
        ] {
            assert_eq!(smp(g, k, "metadata.ownerReferences"), Some("uid"), "{k}");
            assert_eq!(
                apply(g, k, "metadata.ownerReferences"),
                ListType::Map(&["uid"])
            );
            assert_eq!(smp(g, k, "metadata.finalizers"), Some(""), "{k}");
            assert_eq!(apply(g, k, "metadata.finalizers"), ListType::Set);
            assert_eq!(
                list_meta(g, k, &["metadata", "managedFields"]),
                ListMeta::ATOMIC
            );
        }
    }

    #[test]
    fn pod_templates_at_every_location() {
        let cases = [
            ("", "Pod", "spec"),
            ("", "PodTemplate", "template.spec"),
            ("", "ReplicationController", "spec.template.spec"),
            ("apps", "Deployment", "spec.template.spec"),
            ("apps", "ReplicaSet", "spec.template.spec"),
            ("apps", "StatefulSet", "spec.template.spec"),
            ("apps", "DaemonSet", "spec.template.spec"),
            ("batch", "Job", "spec.template.spec"),
            ("batch", "CronJob", "spec.jobTemplate.spec.template.spec"),
        ];
        for (g, k, spec) in cases {
            let at = |rest: &str| format!("{spec}.{rest}");
            assert_eq!(smp(g, k, &at("containers")), Some("name"), "{k}");
            assert_eq!(smp(g, k, &at("initContainers")), Some("name"), "{k}");
            assert_eq!(smp(g, k, &at("containers.env")), Some("name"), "{k}");
            assert_eq!(smp(g, k, &at("containers.ports")), Some("containerPort"));
            assert_eq!(
                apply(g, k, &at("initContainers.ports")),
                ListType::Map(&["containerPort", "protocol"])
            );
            assert_eq!(smp(g, k, &at("containers.volumeMounts")), Some("mountPath"));
            assert_eq!(smp(g, k, &at("volumes")), Some("name"));
            assert_eq!(apply(g, k, &at("tolerations")), ListType::Atomic);
        }
        // The template's metadata is an ObjectMeta too.
        assert_eq!(
            smp("apps", "Deployment", "spec.template.metadata.finalizers"),
            Some("")
        );
    }

    #[test]
    fn pod_spec_details() {
        assert_eq!(smp("", "Pod", "spec.ephemeralContainers"), Some("name"));
        assert_eq!(
            smp("", "Pod", "spec.ephemeralContainers.volumeDevices"),
            Some("devicePath")
        );
        assert_eq!(smp("", "Pod", "spec.containers.envFrom"), None);
        assert_eq!(smp("", "Pod", "spec.containers.resizePolicy"), None);
        assert_eq!(smp("", "Pod", "spec.containers.command"), None);
        assert_eq!(smp("", "Pod", "spec.imagePullSecrets"), Some("name"));
        assert_eq!(smp("", "Pod", "spec.hostAliases"), Some("ip"));
        assert_eq!(smp("", "Pod", "spec.readinessGates"), None);
        assert_eq!(smp("", "Pod", "spec.tolerations"), None);
        assert_eq!(
            smp("", "Pod", "spec.topologySpreadConstraints"),
            Some("topologyKey")
        );
        assert_eq!(
            apply("", "Pod", "spec.topologySpreadConstraints"),
            ListType::Map(&["topologyKey", "whenUnsatisfiable"])
        );
        assert_eq!(smp("", "Pod", "status.conditions"), Some("type"));
        assert_eq!(
            apply("", "Pod", "status.containerStatuses"),
            ListType::Atomic
        );
        assert_eq!(smp("", "Pod", "status.containerStatuses"), None);
        assert_eq!(smp("", "Pod", "status.hostIPs"), Some("ip"));
        assert_eq!(apply("", "Pod", "status.hostIPs"), ListType::Atomic);
        assert_eq!(apply("", "Pod", "status.podIPs"), ListType::Map(&["ip"]));
        // A list under a field the table does not know is atomic.
        assert_eq!(
            list_meta("", "Pod", &["spec", "affinity", "nodeAffinity", "x"]),
            ListMeta::ATOMIC
        );
        // A path that stops at a struct, or goes through a leaf, is atomic.
        assert_eq!(list_meta("", "Pod", &["spec"]), ListMeta::ATOMIC);
        assert_eq!(
            list_meta("", "Pod", &["spec", "volumes", "name"]),
            ListMeta::ATOMIC
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(smp("", "Service", "spec.ports"), Some("port"));
        assert_eq!(
            apply("", "Service", "spec.ports"),
            ListType::Map(&["port", "protocol"])
        );
        assert_eq!(smp("", "Service", "spec.clusterIPs"), None);
        assert_eq!(smp("", "Service", "status.conditions"), Some("type"));
        assert_eq!(smp("", "Node", "status.addresses"), Some("type"));
        assert_eq!(smp("", "Node", "status.conditions"), Some("type"));
        assert_eq!(smp("", "Node", "spec.taints"), None);
        assert_eq!(apply("", "Node", "spec.taints"), ListType::Atomic);
        assert_eq!(smp("", "Node", "spec.podCIDRs"), Some(""));
        assert_eq!(smp("", "Namespace", "status.conditions"), Some("type"));
        assert_eq!(smp("", "Namespace", "spec.finalizers"), None);
        assert_eq!(
            smp("", "PersistentVolumeClaim", "status.conditions"),
            Some("type")
        );
        assert_eq!(smp("", "ServiceAccount", "secrets"), Some("name"));
        assert_eq!(smp("", "ServiceAccount", "imagePullSecrets"), None);
        assert_eq!(smp("", "Endpoints", "subsets"), None);
        for k in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
            assert_eq!(smp("apps", k, "status.conditions"), Some("type"), "{k}");
            assert_eq!(
                apply("apps", k, "status.conditions"),
                ListType::Map(&["type"])
            );
        }
        assert_eq!(
            smp("", "ReplicationController", "status.conditions"),
            Some("type")
        );
        assert_eq!(
            apply("apps", "StatefulSet", "spec.volumeClaimTemplates"),
            ListType::Atomic
        );
        assert_eq!(smp("batch", "Job", "status.conditions"), Some("type"));
        assert_eq!(apply("batch", "Job", "status.conditions"), ListType::Atomic);
        assert_eq!(
            apply("batch", "Job", "status.uncountedTerminatedPods.failed"),
            ListType::Set
        );
        assert_eq!(
            apply("discovery.k8s.io", "EndpointSlice", "endpoints"),
            ListType::Atomic
        );
        assert_eq!(smp("discovery.k8s.io", "EndpointSlice", "endpoints"), None);
        // The group matters.
        assert_eq!(smp("", "Deployment", "status.conditions"), None);
    }

    #[test]
    fn supported_kinds() {
        assert!(supports("", "Pod"));
        assert!(supports("batch", "CronJob"));
        assert!(supports("coordination.k8s.io", "Lease"));
        assert!(supports("networking.k8s.io", "NetworkPolicy"));
        assert!(supports("flowcontrol.apiserver.k8s.io", "FlowSchema"));
        assert!(!supports("example.com", "Widget"));
        assert!(!supports("apps", "Pod"));
        assert_eq!(
            list_meta("example.com", "Widget", &["metadata", "finalizers"]),
            ListMeta::ATOMIC
        );
    }
}
