//! The hand-kept part of the schema: the few messages whose JSON form is not "an object
//! of its fields", and the fields whose zero value Go's protobuf encoder writes although
//! Go's JSON encoder leaves it out (or the other way round).
//!
//! Read by the build script (build/main.rs), which checks and applies the tables; the
//! crate itself uses only [`Special`].
//!
//! Names are k8s-pb's: the package as its module path with dots, the message as its
//! Rust struct name, a field by its JSON name. The build fails when an entry names
//! nothing, so a renamed field cannot silently drop out of these tables.

/// How a message turns into JSON when it is not an object of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `metav1.Time`: {seconds, nanos} -> RFC 3339, seconds precision; empty -> null.
    Time,
    /// `metav1.MicroTime`: {seconds, nanos} -> RFC 3339 with 6 fractional digits.
    MicroTime,
    /// `metav1.Duration`: {duration (ns)} -> Go's `time.Duration.String()`.
    Duration,
    /// `resource.Quantity`: {string} -> the string.
    Quantity,
    /// `intstr.IntOrString`: {type, intVal, strVal} -> number or string.
    IntOrString,
    /// `runtime.RawExtension`, `metav1.FieldsV1`, apiextensions `JSON`: {raw} -> the
    /// JSON value it holds (or, for a nested `k8s\0` body, that object decoded).
    RawJson,
    /// apiextensions `JSONSchemaPropsOrBool`: the schema, else the bool.
    SchemaOrBool,
    /// apiextensions `JSONSchemaPropsOrArray`: the array of schemas, else the schema.
    SchemaOrArray,
    /// apiextensions `JSONSchemaPropsOrStringArray`: the strings, else the schema.
    SchemaOrStringArray,
    /// A Go named slice type (`metav1.Verbs`, `ExtraValue`): {items} -> the array.
    /// Found by shape (one repeated field `items`), not listed here.
    NamedSlice,
}

pub const SPECIALS: &[(&str, &str, Special)] = &[
    ("apimachinery.pkg.apis.meta.v1", "Time", Special::Time),
    (
        "apimachinery.pkg.apis.meta.v1",
        "MicroTime",
        Special::MicroTime,
    ),
    (
        "apimachinery.pkg.apis.meta.v1",
        "Duration",
        Special::Duration,
    ),
    (
        "apimachinery.pkg.apis.meta.v1",
        "FieldsV1",
        Special::RawJson,
    ),
    (
        "apimachinery.pkg.api.resource",
        "Quantity",
        Special::Quantity,
    ),
    (
        "apimachinery.pkg.api.resource",
        "QuantityValue",
        Special::Quantity,
    ),
    (
        "apimachinery.pkg.util.intstr",
        "IntOrString",
        Special::IntOrString,
    ),
    ("apimachinery.pkg.runtime", "RawExtension", Special::RawJson),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        "Json",
        Special::RawJson,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1",
        "Json",
        Special::RawJson,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        "JsonSchemaPropsOrBool",
        Special::SchemaOrBool,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1",
        "JsonSchemaPropsOrBool",
        Special::SchemaOrBool,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        "JsonSchemaPropsOrArray",
        Special::SchemaOrArray,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1",
        "JsonSchemaPropsOrArray",
        Special::SchemaOrArray,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        "JsonSchemaPropsOrStringArray",
        Special::SchemaOrStringArray,
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1",
        "JsonSchemaPropsOrStringArray",
        Special::SchemaOrStringArray,
    ),
];

/// Optional scalar fields that are plain values in Go (not pointers). Go's protobuf
/// encoder always writes them, zero included; Go's JSON encoder (`omitempty`) leaves a
/// zero out. So a zero here is dropped, as the JSON kubectl would have sent lacks it.
///
/// Every other optional int or bool keeps a zero: it is on the wire only because a Go
/// pointer was set (`replicas: 0`, `automountServiceAccountToken: false`,
/// `runAsUser: 0`), and dropping it would change the meaning. An optional string drops
/// "" unless listed in [`POINTER_STRINGS`]: plain Go strings are the rule there.
pub const VALUE_SCALARS: &[(&str, &str, &[&str])] = &[
    (
        "apimachinery.pkg.apis.meta.v1",
        "ObjectMeta",
        &["generation"],
    ),
    (
        "api.core.v1",
        "PodSpec",
        &["hostNetwork", "hostPID", "hostIPC"],
    ),
    ("api.core.v1", "Container", &["stdin", "stdinOnce", "tty"]),
    (
        "api.core.v1",
        "EphemeralContainerCommon",
        &["stdin", "stdinOnce", "tty"],
    ),
    ("api.core.v1", "ContainerPort", &["hostPort"]),
    (
        "api.core.v1",
        "Probe",
        &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
    ("api.core.v1", "VolumeMount", &["readOnly"]),
    (
        "api.core.v1",
        "PersistentVolumeClaimVolumeSource",
        &["readOnly"],
    ),
    ("api.core.v1", "NfsVolumeSource", &["readOnly"]),
    (
        "api.core.v1",
        "ServiceSpec",
        &["healthCheckNodePort", "publishNotReadyAddresses"],
    ),
    ("api.core.v1", "ServicePort", &["nodePort"]),
    ("api.core.v1", "NodeSpec", &["unschedulable"]),
    (
        "api.core.v1",
        "ReplicationControllerSpec",
        &["minReadySeconds"],
    ),
    (
        "api.core.v1",
        "ReplicationControllerStatus",
        &[
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
    ),
    ("api.core.v1", "Event", &["count"]),
    ("api.core.v1", "EventSeries", &["count"]),
    (
        "api.apps.v1",
        "DeploymentSpec",
        &["minReadySeconds", "paused"],
    ),
    (
        "api.apps.v1",
        "DeploymentStatus",
        &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ],
    ),
    ("api.apps.v1", "ReplicaSetSpec", &["minReadySeconds"]),
    (
        "api.apps.v1",
        "ReplicaSetStatus",
        &[
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
    ),
    ("api.apps.v1", "StatefulSetSpec", &["minReadySeconds"]),
    ("api.apps.v1", "StatefulSetOrdinals", &["start"]),
    (
        "api.apps.v1",
        "StatefulSetStatus",
        &[
            "observedGeneration",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
        ],
    ),
    ("api.apps.v1", "DaemonSetSpec", &["minReadySeconds"]),
    (
        "api.apps.v1",
        "DaemonSetStatus",
        &[
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
        ],
    ),
    (
        "api.batch.v1",
        "JobStatus",
        &["active", "succeeded", "failed"],
    ),
    ("api.events.v1", "Event", &["deprecatedCount"]),
    (
        "api.policy.v1",
        "PodDisruptionBudgetStatus",
        &["observedGeneration"],
    ),
    ("api.scheduling.v1", "PriorityClass", &["globalDefault"]),
    (
        "api.autoscaling.v2",
        "HorizontalPodAutoscalerStatus",
        &["currentReplicas"],
    ),
];

/// Optional strings that are Go pointers where "" means something other than unset,
/// so a "" on the wire is kept.
pub const POINTER_STRINGS: &[(&str, &str, &[&str])] = &[
    (
        "api.core.v1",
        "PersistentVolumeClaimSpec",
        &["storageClassName", "volumeAttributesClassName"],
    ),
    ("api.coordination.v1", "LeaseSpec", &["holderIdentity"]),
    ("api.discovery.v1", "EndpointPort", &["name"]),
];
