//! How lists and maps of built-in kinds merge.
//!
//! Strategic merge patch and server-side apply both need to know, for a list at a path
//! in a given kind, whether it is atomic, a set, or a map keyed by some fields. The
//! Kubernetes Go types carry this as `patchStrategy`/`patchMergeKey` struct tags (for
//! strategic merge) and `listType`/`listMapKeys` markers (for apply); this module is the
//! table of those tags for the kinds Keelson serves.
//!
//! The table is a small type graph: each kind names the struct at its root (a [`Root`],
//! which the kind's `ResourceType` in `keelson-resources` carries), each struct lists the
//! fields that lead to other structs or to lists with merge semantics, and [`list_meta`]
//! walks a path of field names through it. Lists and structs not in the table are
//! atomic, as untagged lists are in Kubernetes.

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
/// `["spec", "template", "spec", "containers"]`) in an object whose type starts at
/// `root`. `None` (a kind without a Go type, such as a custom resource) and unknown
/// paths are atomic, which is what Kubernetes does for lists without tags.
///
/// List indices are not part of the path: the container `env` list of a pod is
/// `["spec", "containers", "env"]`.
pub fn list_meta(root: Option<Root>, path: &[&str]) -> ListMeta {
    let Some(root) = root else {
        return ListMeta::ATOMIC;
    };
    let mut ty = Ty::Root(root);
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

/// The list and map semantics server-side apply follows in one kind, by path of field
/// names from the object root (list items add nothing to the path; a map's keys do).
pub trait MergeSchema {
    /// The `listType` of the list at `path`.
    fn list_type(&self, path: &[&str]) -> ListType;
    /// Whether the map or struct at `path` is `x-kubernetes-map-type: atomic`
    /// (replaced whole, one owner) rather than merged key by key.
    fn atomic_map(&self, _path: &[&str]) -> bool {
        false
    }

    /// The default of key field `key` of the items of the map list at `path`: an item
    /// without the field is identified by it (structured-merge-diff does the same).
    fn key_default(&self, _path: &[&str], _key: &str) -> Option<serde_json::Value> {
        None
    }
}

/// A bare list-type lookup (every map granular).
impl<F: Fn(&[&str]) -> ListType> MergeSchema for F {
    fn list_type(&self, path: &[&str]) -> ListType {
        self(path)
    }
}

/// Where a kind's merge semantics come from, so that apply has one path for both:
/// the table of this module for built-in kinds, or a custom resource's structural
/// schema (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`).
#[derive(Clone)]
pub enum Merge {
    /// A built-in kind's [`Root`] (`None`: every list atomic).
    Table(Option<Root>),
    /// A custom resource's schema. Its `metadata` is ObjectMeta whatever the schema
    /// says, as Kubernetes builds it.
    Structural(std::sync::Arc<dyn MergeSchema + Send + Sync>),
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Merge::Table(root) => f.debug_tuple("Table").field(root).finish(),
            Merge::Structural(_) => f.write_str("Structural"),
        }
    }
}

impl From<Option<Root>> for Merge {
    fn from(root: Option<Root>) -> Merge {
        Merge::Table(root)
    }
}

impl MergeSchema for Merge {
    fn list_type(&self, path: &[&str]) -> ListType {
        match self {
            Merge::Table(root) => list_meta(*root, path).apply,
            Merge::Structural(_) if path.first() == Some(&"metadata") => {
                list_meta(Some(Root::MetadataOnly), path).apply
            }
            Merge::Structural(schema) => schema.list_type(path),
        }
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        match self {
            Merge::Table(_) => false,
            Merge::Structural(_) if path.first() == Some(&"metadata") => false,
            Merge::Structural(schema) => schema.atomic_map(path),
        }
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<serde_json::Value> {
        match self {
            Merge::Table(_) => None,
            Merge::Structural(_) if path.first() == Some(&"metadata") => None,
            Merge::Structural(schema) => schema.key_default(path, key),
        }
    }
}

/// The Go struct at the root of a built-in kind, where its merge semantics start. Kinds
/// of the same shape share one. A kind with a `Root` supports strategic merge patch;
/// Kubernetes refuses it (415) for the others (custom resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Pod,
    PodTemplate,
    ReplicationController,
    Service,
    Node,
    Namespace,
    ServiceAccount,
    PersistentVolumeClaim,
    /// Kinds whose only keyed lists are in `metadata`: every other list is atomic
    /// (ConfigMap, Secret, Lease, NetworkPolicy, RBAC's rules and subjects, ...).
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
    /// Conditions by type in its status.
    PodDisruptionBudget,
    /// `spec.volumeLifecycleModes` is a set.
    CSIDriver,
    /// `spec.drivers` merge by name.
    CSINode,
    /// Mutating and validating webhook configurations: `webhooks` merge by name.
    WebhookConfiguration,
}

/// Structs of the Kubernetes API that lead to lists with merge semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Root(Root),
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
    CSIDriverSpec,
    CSINodeSpec,
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

fn field(ty: Ty, name: &str) -> Option<Node> {
    use Node::{List, Struct};
    if name == "metadata" && matches!(ty, Ty::Root(_)) {
        return Some(Struct(Ty::ObjectMeta));
    }
    Some(match (ty, name) {
        (Ty::Root(Root::Pod), "spec") => Struct(Ty::PodSpec),
        (Ty::Root(Root::Pod), "status") => Struct(Ty::PodStatus),
        (Ty::Root(Root::PodTemplate), "template") => Struct(Ty::PodTemplateSpec),
        (Ty::Root(Root::ReplicationController), "spec") => Struct(Ty::ReplicationControllerSpec),
        (Ty::Root(Root::ReplicationController), "status") => Struct(Ty::ConditionsStatus),
        (Ty::Root(Root::Service), "spec") => Struct(Ty::ServiceSpec),
        (Ty::Root(Root::Service), "status") => Struct(Ty::ServiceStatus),
        (Ty::Root(Root::Node), "spec") => Struct(Ty::NodeSpec),
        (Ty::Root(Root::Node), "status") => Struct(Ty::NodeStatus),
        (Ty::Root(Root::Namespace) | Ty::Root(Root::PersistentVolumeClaim), "status") => {
            Struct(Ty::ConditionsStatus)
        }
        (Ty::Root(Root::FlowControl), "status") => Struct(Ty::ConditionsStatus),
        (Ty::Root(Root::ServiceAccount), "secrets") => List(BY_NAME, None),
        (
            Ty::Root(Root::Deployment) | Ty::Root(Root::ReplicaSet) | Ty::Root(Root::DaemonSet),
            "spec",
        ) => Struct(Ty::WorkloadSpec),
        (Ty::Root(Root::StatefulSet), "spec") => Struct(Ty::StatefulSetSpec),
        (
            Ty::Root(Root::Deployment)
            | Ty::Root(Root::ReplicaSet)
            | Ty::Root(Root::DaemonSet)
            | Ty::Root(Root::StatefulSet),
            "status",
        ) => Struct(Ty::ConditionsStatus),
        (Ty::Root(Root::Job), "spec") | (Ty::JobTemplateSpec, "spec") => Struct(Ty::JobSpec),
        (Ty::Root(Root::Job), "status") => Struct(Ty::JobStatus),
        (Ty::Root(Root::CronJob), "spec") => Struct(Ty::CronJobSpec),
        (Ty::Root(Root::EndpointSlice), "endpoints") => {
            List(ListMeta::ATOMIC, Some(Ty::EndpointSliceEndpoint))
        }

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
        (Ty::Root(Root::CertificateSigningRequest), "status") => {
            Struct(Ty::CertificateSigningRequestStatus)
        }
        (Ty::CertificateSigningRequestStatus, "conditions") => List(
            ListMeta {
                smp_merge_key: None,
                apply: ListType::Map(&["type"]),
            },
            None,
        ),
        (Ty::Root(Root::PodDisruptionBudget), "status") => Struct(Ty::ConditionsStatus),
        (Ty::Root(Root::CSIDriver), "spec") => Struct(Ty::CSIDriverSpec),
        (Ty::CSIDriverSpec, "volumeLifecycleModes") => List(SET, None),
        (Ty::CSIDriverSpec, "tokenRequests") => ATOMIC,
        (Ty::Root(Root::CSINode), "spec") => Struct(Ty::CSINodeSpec),
        // No listType marker: apply follows the patch merge key, as Kubernetes'
        // schema conversion does.
        (Ty::CSINodeSpec, "drivers") => List(BY_NAME, None),
        (Ty::Root(Root::WebhookConfiguration), "webhooks") => List(BY_NAME, None),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smp(root: Root, path: &str) -> Option<&'static str> {
        let p: Vec<&str> = path.split('.').collect();
        list_meta(Some(root), &p).smp_merge_key
    }
    fn apply(root: Root, path: &str) -> ListType {
        let p: Vec<&str> = path.split('.').collect();
        list_meta(Some(root), &p).apply
    }

    #[test]
    fn metadata_lists_for_every_kind() {
        for k in [
            Root::Pod,
            Root::MetadataOnly,
            Root::MetadataOnly,
            Root::MetadataOnly,
            Root::Deployment,
            Root::MetadataOnly,
            Root::EndpointSlice,
        ] {
            assert_eq!(smp(k, "metadata.ownerReferences"), Some("uid"), "{k:?}");
            assert_eq!(
                apply(k, "metadata.ownerReferences"),
                ListType::Map(&["uid"])
            );
            assert_eq!(smp(k, "metadata.finalizers"), Some(""), "{k:?}");
            assert_eq!(apply(k, "metadata.finalizers"), ListType::Set);
            assert_eq!(
                list_meta(Some(k), &["metadata", "managedFields"]),
                ListMeta::ATOMIC
            );
        }
    }

    #[test]
    fn pod_templates_at_every_location() {
        let cases = [
            (Root::Pod, "spec"),
            (Root::PodTemplate, "template.spec"),
            (Root::ReplicationController, "spec.template.spec"),
            (Root::Deployment, "spec.template.spec"),
            (Root::ReplicaSet, "spec.template.spec"),
            (Root::StatefulSet, "spec.template.spec"),
            (Root::DaemonSet, "spec.template.spec"),
            (Root::Job, "spec.template.spec"),
            (Root::CronJob, "spec.jobTemplate.spec.template.spec"),
        ];
        for (k, spec) in cases {
            let at = |rest: &str| format!("{spec}.{rest}");
            assert_eq!(smp(k, &at("containers")), Some("name"), "{k:?}");
            assert_eq!(smp(k, &at("initContainers")), Some("name"), "{k:?}");
            assert_eq!(smp(k, &at("containers.env")), Some("name"), "{k:?}");
            assert_eq!(smp(k, &at("containers.ports")), Some("containerPort"));
            assert_eq!(
                apply(k, &at("initContainers.ports")),
                ListType::Map(&["containerPort", "protocol"])
            );
            assert_eq!(smp(k, &at("containers.volumeMounts")), Some("mountPath"));
            assert_eq!(smp(k, &at("volumes")), Some("name"));
            assert_eq!(apply(k, &at("tolerations")), ListType::Atomic);
        }
        // The template's metadata is an ObjectMeta too.
        assert_eq!(
            smp(Root::Deployment, "spec.template.metadata.finalizers"),
            Some("")
        );
    }

    #[test]
    fn pod_spec_details() {
        assert_eq!(smp(Root::Pod, "spec.ephemeralContainers"), Some("name"));
        assert_eq!(
            smp(Root::Pod, "spec.ephemeralContainers.volumeDevices"),
            Some("devicePath")
        );
        assert_eq!(smp(Root::Pod, "spec.containers.envFrom"), None);
        assert_eq!(smp(Root::Pod, "spec.containers.resizePolicy"), None);
        assert_eq!(smp(Root::Pod, "spec.containers.command"), None);
        assert_eq!(smp(Root::Pod, "spec.imagePullSecrets"), Some("name"));
        assert_eq!(smp(Root::Pod, "spec.hostAliases"), Some("ip"));
        assert_eq!(smp(Root::Pod, "spec.readinessGates"), None);
        assert_eq!(smp(Root::Pod, "spec.tolerations"), None);
        assert_eq!(
            smp(Root::Pod, "spec.topologySpreadConstraints"),
            Some("topologyKey")
        );
        assert_eq!(
            apply(Root::Pod, "spec.topologySpreadConstraints"),
            ListType::Map(&["topologyKey", "whenUnsatisfiable"])
        );
        assert_eq!(smp(Root::Pod, "status.conditions"), Some("type"));
        assert_eq!(
            apply(Root::Pod, "status.containerStatuses"),
            ListType::Atomic
        );
        assert_eq!(smp(Root::Pod, "status.containerStatuses"), None);
        assert_eq!(smp(Root::Pod, "status.hostIPs"), Some("ip"));
        assert_eq!(apply(Root::Pod, "status.hostIPs"), ListType::Atomic);
        assert_eq!(apply(Root::Pod, "status.podIPs"), ListType::Map(&["ip"]));
        // A list under a field the table does not know is atomic.
        assert_eq!(
            list_meta(Some(Root::Pod), &["spec", "affinity", "nodeAffinity", "x"]),
            ListMeta::ATOMIC
        );
        // A path that stops at a struct, or goes through a leaf, is atomic.
        assert_eq!(list_meta(Some(Root::Pod), &["spec"]), ListMeta::ATOMIC);
        assert_eq!(
            list_meta(Some(Root::Pod), &["spec", "volumes", "name"]),
            ListMeta::ATOMIC
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(smp(Root::Service, "spec.ports"), Some("port"));
        assert_eq!(
            apply(Root::Service, "spec.ports"),
            ListType::Map(&["port", "protocol"])
        );
        assert_eq!(smp(Root::Service, "spec.clusterIPs"), None);
        assert_eq!(smp(Root::Service, "status.conditions"), Some("type"));
        assert_eq!(smp(Root::Node, "status.addresses"), Some("type"));
        assert_eq!(smp(Root::Node, "status.conditions"), Some("type"));
        assert_eq!(smp(Root::Node, "spec.taints"), None);
        assert_eq!(apply(Root::Node, "spec.taints"), ListType::Atomic);
        assert_eq!(smp(Root::Node, "spec.podCIDRs"), Some(""));
        assert_eq!(smp(Root::Namespace, "status.conditions"), Some("type"));
        assert_eq!(smp(Root::Namespace, "spec.finalizers"), None);
        assert_eq!(
            smp(Root::PersistentVolumeClaim, "status.conditions"),
            Some("type")
        );
        assert_eq!(smp(Root::ServiceAccount, "secrets"), Some("name"));
        assert_eq!(smp(Root::ServiceAccount, "imagePullSecrets"), None);
        assert_eq!(smp(Root::MetadataOnly, "subsets"), None);
        for k in [
            Root::Deployment,
            Root::ReplicaSet,
            Root::StatefulSet,
            Root::DaemonSet,
        ] {
            assert_eq!(smp(k, "status.conditions"), Some("type"), "{k:?}");
            assert_eq!(apply(k, "status.conditions"), ListType::Map(&["type"]));
        }
        assert_eq!(
            smp(Root::ReplicationController, "status.conditions"),
            Some("type")
        );
        assert_eq!(
            apply(Root::StatefulSet, "spec.volumeClaimTemplates"),
            ListType::Atomic
        );
        assert_eq!(smp(Root::Job, "status.conditions"), Some("type"));
        assert_eq!(apply(Root::Job, "status.conditions"), ListType::Atomic);
        assert_eq!(
            apply(Root::Job, "status.uncountedTerminatedPods.failed"),
            ListType::Set
        );
        assert_eq!(apply(Root::EndpointSlice, "endpoints"), ListType::Atomic);
        assert_eq!(smp(Root::EndpointSlice, "endpoints"), None);
    }

    #[test]
    fn kinds_added_with_their_own_lists() {
        assert_eq!(
            smp(Root::PodDisruptionBudget, "status.conditions"),
            Some("type")
        );
        assert_eq!(
            apply(Root::PodDisruptionBudget, "status.conditions"),
            ListType::Map(&["type"])
        );
        assert_eq!(smp(Root::CSIDriver, "spec.volumeLifecycleModes"), None);
        assert_eq!(
            apply(Root::CSIDriver, "spec.volumeLifecycleModes"),
            ListType::Set
        );
        assert_eq!(
            apply(Root::CSIDriver, "spec.tokenRequests"),
            ListType::Atomic
        );
        assert_eq!(smp(Root::CSINode, "spec.drivers"), Some("name"));
        assert_eq!(
            apply(Root::CSINode, "spec.drivers"),
            ListType::Map(&["name"])
        );
        assert_eq!(smp(Root::CSINode, "metadata.finalizers"), Some(""));
        assert_eq!(smp(Root::WebhookConfiguration, "webhooks"), Some("name"));
        assert_eq!(smp(Root::WebhookConfiguration, "webhooks.rules"), None);
    }

    #[test]
    fn kinds_without_a_root_have_only_atomic_lists() {
        assert_eq!(
            list_meta(None, &["metadata", "finalizers"]),
            ListMeta::ATOMIC
        );
        assert_eq!(list_meta(None, &["spec", "containers"]), ListMeta::ATOMIC);
    }
}
