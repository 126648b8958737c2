//! Bodies encoded the way client-go does (k8s-pb's prost types, with Go's habit of
//! writing every non-pointer field, zero or not), wrapped in the `k8s\0` envelope,
//! decoded, and compared with the JSON kubectl would have sent for the same object.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use keelson_protobuf::{decode, decode_object, is_known_kind, message_name, DecodeError, MAGIC};
use prost::Message;
use serde_json::{json, Value};

/// `k8s\0` + `runtime.Unknown`, as client-go's protobuf serializer writes it.
fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    envelope(api_version, kind, object.encode_to_vec())
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

/// ObjectMeta as Go marshals a fresh one: every plain field written, zero or not, and
/// the zero creationTimestamp as an empty message.
fn go_meta(name: &str, namespace: &str, l: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels(l),
        ..Default::default()
    }
}

/// A container as kubectl builds one: plain fields written with zero values.
fn go_container(name: &str, image: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        working_dir: s(""),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

fn go_pod_spec(containers: Vec<core::Container>) -> core::PodSpec {
    core::PodSpec {
        containers,
        restart_policy: s(""),
        dns_policy: s(""),
        service_account_name: s(""),
        service_account: s(""),
        node_name: s(""),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        hostname: s(""),
        subdomain: s(""),
        scheduler_name: s(""),
        priority_class_name: s(""),
        ..Default::default()
    }
}

/// Compares as JSON text too, so key order (kind, apiVersion first; fields in message
/// order) is checked as well as content.
fn assert_json(got: Value, want: Value) {
    assert_eq!(got, want, "\n got: {got:#}\nwant: {want:#}");
    assert_eq!(got.to_string(), want.to_string(), "key order differs");
}

#[test]
fn configmap() {
    let cm = core::ConfigMap {
        metadata: Some(go_meta("x", "default", &[])),
        data: labels(&[("b", "2"), ("a", "1"), ("empty", "")]),
        binary_data: [("bin".to_string(), vec![0u8, 1, 2, 255])]
            .into_iter()
            .collect(),
        immutable: None,
    };
    let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "default", "creationTimestamp": null},
            "data": {"a": "1", "b": "2", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="}
        }),
    );
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: Some(go_meta("creds", "", &[])),
        immutable: Some(false),
        data: [
            ("password".to_string(), b"s3cr3t".to_vec()),
            ("empty".to_string(), Vec::new()),
        ]
        .into_iter()
        .collect(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    let got = decode(&body("v1", "Secret", &secret)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "creds", "creationTimestamp": null},
            "data": {"empty": "", "password": "czNjcjN0"},
            "type": "Opaque",
            "immutable": false
        }),
    );
}

#[test]
fn deployment() {
    let mut container = go_container("web", "nginx:1.27");
    container.ports = vec![core::ContainerPort {
        name: s(""),
        host_port: Some(0),
        container_port: Some(80),
        protocol: s("TCP"),
        host_ip: s(""),
    }];
    container.resources = Some(core::ResourceRequirements {
        limits: [
            ("cpu".to_string(), quantity("500m")),
            ("memory".to_string(), quantity("128Mi")),
        ]
        .into_iter()
        .collect(),
        requests: [("cpu".to_string(), quantity("250m"))]
            .into_iter()
            .collect(),
        claims: vec![],
    });
    container.env = vec![
        core::EnvVar {
            name: s("MODE"),
            value: s("prod"),
            value_from: None,
        },
        core::EnvVar {
            name: s("PASSWORD"),
            value: s(""),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    key: s("password"),
                    optional: None,
                }),
                ..Default::default()
            }),
        },
    ];
    container.readiness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: s(""),
                }),
                host: s(""),
                scheme: s("HTTP"),
                http_headers: vec![],
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(0),
        timeout_seconds: Some(1),
        period_seconds: Some(10),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        termination_grace_period_seconds: None,
    });
    container.volume_mounts = vec![core::VolumeMount {
        name: s("cfg"),
        read_only: Some(false),
        mount_path: s("/etc/cfg"),
        sub_path: s(""),
        sub_path_expr: s(""),
        ..Default::default()
    }];
    container.image_pull_policy = s("IfNotPresent");
    let mut pod_spec = go_pod_spec(vec![container]);
    pod_spec.restart_policy = s("Always");
    pod_spec.termination_grace_period_seconds = Some(30);
    pod_spec.automount_service_account_token = Some(false);
    pod_spec.security_context = Some(core::PodSecurityContext {
        run_as_user: Some(0),
        ..Default::default()
    });
    pod_spec.volumes = vec![core::Volume {
        name: s("cfg"),
        volume_source: Some(core::VolumeSource {
            config_map: Some(core::ConfigMapVolumeSource {
                local_object_reference: Some(core::LocalObjectReference {
                    name: s("app-config"),
                }),
                items: vec![],
                default_mode: Some(420),
                optional: None,
            }),
            ..Default::default()
        }),
    }];
    let deployment = apps::Deployment {
        metadata: Some(go_meta("web", "prod", &[("app", "web")])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("", "", &[("app", "web")])),
                spec: Some(pod_spec),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: s(""),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("25%"),
                    }),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(0),
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    let got = decode(&body("apps/v1", "Deployment", &deployment)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "web",
                "namespace": "prod",
                "creationTimestamp": null,
                "labels": {"app": "web"}
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "volumes": [{"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420}}],
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m"}
                            },
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                "timeoutSeconds": 1,
                                "periodSeconds": 10,
                                "successThreshold": 1,
                                "failureThreshold": 3
                            },
                            "imagePullPolicy": "IfNotPresent"
                        }],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {"runAsUser": 0},
                        "automountServiceAccountToken": false
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}
                },
                "revisionHistoryLimit": 0
            },
            "status": {}
        }),
    );
}

#[test]
fn namespace() {
    let ns = core::Namespace {
        metadata: Some(go_meta("team-a", "", &[("team", "a")])),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    let got = decode(&body("v1", "Namespace", &ns)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "team-a", "creationTimestamp": null, "labels": {"team": "a"}},
            "spec": {},
            "status": {}
        }),
    );
}

#[test]
fn pod_with_times_owners_managed_fields_and_tolerations() {
    let mut meta = go_meta("p", "default", &[("run", "p")]);
    meta.uid = s("0c5b4b2e-7f7b-4c1e-9a53-3d3c7b1b2f10");
    meta.resource_version = s("42");
    meta.generation = Some(2);
    meta.creation_timestamp = Some(meta::Time {
        seconds: Some(1_704_164_645),
        nanos: Some(0),
    });
    meta.deletion_timestamp = Some(meta::Time {
        seconds: Some(1_704_164_700),
        nanos: Some(500),
    });
    meta.deletion_grace_period_seconds = Some(0);
    meta.annotations = labels(&[("note", "")]);
    meta.owner_references = vec![meta::OwnerReference {
        api_version: s("apps/v1"),
        kind: s("ReplicaSet"),
        name: s("web-5d4"),
        uid: s("u-1"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    meta.finalizers = vec!["example.com/hold".into()];
    meta.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl-run"),
        operation: s("Update"),
        api_version: s("v1"),
        time: Some(meta::Time {
            seconds: Some(1_704_164_645),
            nanos: None,
        }),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 {
            raw: Some(br#"{"f:metadata":{"f:labels":{".":{}}}}"#.to_vec()),
        }),
        subresource: s(""),
    }];
    let mut spec = go_pod_spec(vec![go_container("p", "busybox")]);
    spec.containers[0].args = vec!["sleep".into(), "3600".into()];
    spec.restart_policy = s("Never");
    spec.dns_policy = s("ClusterFirst");
    spec.host_ipc = Some(true);
    spec.enable_service_links = Some(false);
    spec.tolerations = vec![core::Toleration {
        key: s("node.kubernetes.io/not-ready"),
        operator: s("Exists"),
        value: s(""),
        effect: s("NoExecute"),
        toleration_seconds: Some(300),
    }];
    let pod = core::Pod {
        metadata: Some(meta),
        spec: Some(spec),
        status: Some(core::PodStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    let got = decode(&body("v1", "Pod", &pod)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "p",
                "namespace": "default",
                "uid": "0c5b4b2e-7f7b-4c1e-9a53-3d3c7b1b2f10",
                "resourceVersion": "42",
                "generation": 2,
                "creationTimestamp": "2024-01-02T03:04:05Z",
                "deletionTimestamp": "2024-01-02T03:05:00Z",
                "deletionGracePeriodSeconds": 0,
                "labels": {"run": "p"},
                "annotations": {"note": ""},
                "ownerReferences": [{
                    "kind": "ReplicaSet",
                    "name": "web-5d4",
                    "uid": "u-1",
                    "apiVersion": "apps/v1",
                    "controller": true,
                    "blockOwnerDeletion": true
                }],
                "finalizers": ["example.com/hold"],
                "managedFields": [{
                    "manager": "kubectl-run",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2024-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}
                }]
            },
            "spec": {
                "containers": [{"name": "p", "image": "busybox", "args": ["sleep", "3600"], "resources": {}}],
                "restartPolicy": "Never",
                "dnsPolicy": "ClusterFirst",
                "hostIPC": true,
                "tolerations": [{
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300
                }],
                "enableServiceLinks": false
            },
            "status": {}
        }),
    );
}

#[test]
fn service_names_with_acronyms() {
    let svc = core::Service {
        metadata: Some(go_meta("web", "default", &[])),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s(""),
                protocol: s("TCP"),
                app_protocol: None,
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: s("http"),
                }),
                node_port: Some(0),
            }],
            selector: labels(&[("app", "web")]),
            cluster_ip: s(""),
            cluster_ips: vec!["10.0.0.10".into()],
            r#type: s("ClusterIP"),
            external_ips: vec![],
            session_affinity: s(""),
            load_balancer_ip: s(""),
            external_name: s(""),
            external_traffic_policy: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ip_families: vec!["IPv4".into()],
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let got = decode(&body("v1", "Service", &svc)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [{"protocol": "TCP", "port": 80, "targetPort": "http"}],
                "selector": {"app": "web"},
                "type": "ClusterIP",
                "clusterIPs": ["10.0.0.10"],
                "ipFamilies": ["IPv4"]
            },
            "status": {}
        }),
    );
}

#[test]
fn lease_micro_time_and_pointer_strings() {
    use k8s_pb::api::coordination::v1 as coordination;
    let lease = coordination::Lease {
        metadata: Some(go_meta("kube-scheduler", "kube-system", &[])),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s(""),
            lease_duration_seconds: Some(15),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(1_704_164_645),
                nanos: Some(123_456_789),
            }),
            renew_time: Some(meta::MicroTime::default()),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let got = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "Lease",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system", "creationTimestamp": null},
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-01-02T03:04:05.123456Z",
                "renewTime": null,
                "leaseTransitions": 0
            }
        }),
    );
}

#[test]
fn token_request() {
    use k8s_pb::api::authentication::v1 as authn;
    let request = authn::TokenRequest {
        metadata: Some(go_meta("default", "default", &[])),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: Some(authn::TokenRequestStatus {
            token: s(""),
            expiration_timestamp: Some(meta::Time::default()),
        }),
    };
    let got = decode(&body("authentication.k8s.io/v1", "TokenRequest", &request)).unwrap();
    assert_json(
        got,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": "default", "namespace": "default", "creationTimestamp": null},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
            // `token` is optional in the OpenAPI (k8s-openapi), so "" is left out.
            "status": {"expirationTimestamp": null}
        }),
    );
}

#[test]
fn delete_options_in_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    for api_version in ["v1", "apps/v1", "batch/v1", "meta.k8s.io/v1"] {
        let got = decode(&body(api_version, "DeleteOptions", &options)).unwrap();
        assert_json(
            got,
            json!({
                "kind": "DeleteOptions",
                "apiVersion": api_version,
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u-1"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }),
        );
    }
}

#[test]
fn scale_eviction_endpointslice_event() {
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    use k8s_pb::api::discovery::v1 as discovery;
    use k8s_pb::api::events::v1 as events;
    use k8s_pb::api::policy::v1 as policy;

    let scale = autoscaling::Scale {
        metadata: Some(go_meta("web", "prod", &[])),
        spec: Some(autoscaling::ScaleSpec { replicas: Some(0) }),
        status: Some(autoscaling::ScaleStatus {
            replicas: Some(0),
            selector: s(""),
        }),
    };
    assert_json(
        decode(&body("autoscaling/v1", "Scale", &scale)).unwrap(),
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": null},
            "spec": {"replicas": 0},
            "status": {"replicas": 0}
        }),
    );

    let eviction = policy::Eviction {
        metadata: Some(go_meta("p", "default", &[])),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(5),
            ..Default::default()
        }),
    };
    assert_json(
        decode(&body("policy/v1", "Eviction", &eviction)).unwrap(),
        json!({
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 5}
        }),
    );

    let slice = discovery::EndpointSlice {
        metadata: Some(go_meta(
            "web-abc",
            "default",
            &[("kubernetes.io/service-name", "web")],
        )),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.1.0.5".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: s("node-1"),
            ..Default::default()
        }],
        ports: vec![discovery::EndpointPort {
            name: s(""),
            protocol: s("TCP"),
            port: Some(80),
            app_protocol: None,
        }],
    };
    assert_json(
        decode(&body("discovery.k8s.io/v1", "EndpointSlice", &slice)).unwrap(),
        json!({
            "kind": "EndpointSlice",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {
                "name": "web-abc",
                "namespace": "default",
                "creationTimestamp": null,
                "labels": {"kubernetes.io/service-name": "web"}
            },
            "endpoints": [{
                "addresses": ["10.1.0.5"],
                "conditions": {"ready": false, "serving": true, "terminating": false},
                "nodeName": "node-1"
            }],
            "ports": [{"name": "", "protocol": "TCP", "port": 80}],
            "addressType": "IPv4"
        }),
    );

    let event = events::Event {
        metadata: Some(go_meta("p.17a", "default", &[])),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(1_000),
        }),
        series: Some(events::EventSeries {
            count: Some(2),
            last_observed_time: Some(meta::MicroTime {
                seconds: Some(1_704_164_646),
                nanos: Some(0),
            }),
        }),
        reporting_controller: s("kubelet"),
        reporting_instance: s("node-1"),
        action: s("Pulling"),
        reason: s("Pulling"),
        regarding: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("p"),
            ..Default::default()
        }),
        note: s("pulling image"),
        r#type: s("Normal"),
        deprecated_count: Some(0),
        deprecated_first_timestamp: Some(meta::Time::default()),
        deprecated_last_timestamp: Some(meta::Time::default()),
        deprecated_source: Some(core::EventSource {
            component: s(""),
            host: s(""),
        }),
        ..Default::default()
    };
    assert_json(
        decode(&body("events.k8s.io/v1", "Event", &event)).unwrap(),
        json!({
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "metadata": {"name": "p.17a", "namespace": "default", "creationTimestamp": null},
            "eventTime": "2024-01-02T03:04:05.000001Z",
            "series": {"count": 2, "lastObservedTime": "2024-01-02T03:04:06.000000Z"},
            "reportingController": "kubelet",
            "reportingInstance": "node-1",
            "action": "Pulling",
            "reason": "Pulling",
            "regarding": {"kind": "Pod", "name": "p"},
            "note": "pulling image",
            "type": "Normal",
            "deprecatedSource": {},
            "deprecatedFirstTimestamp": null,
            "deprecatedLastTimestamp": null
        }),
    );
}

#[test]
fn raw_extension_holds_json_or_a_nested_protobuf_object() {
    let revision = apps::ControllerRevision {
        metadata: Some(go_meta("web-1", "default", &[])),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"$patch":"replace"}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    assert_json(
        decode(&body("apps/v1", "ControllerRevision", &revision)).unwrap(),
        json!({
            "kind": "ControllerRevision",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "data": {"spec": {"template": {"$patch": "replace"}}},
            "revision": 1
        }),
    );

    let cm = core::ConfigMap {
        data: labels(&[("k", "v")]),
        ..Default::default()
    };
    let nested = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(body("v1", "ConfigMap", &cm)),
        }),
        revision: Some(0),
        ..Default::default()
    };
    assert_json(
        decode(&body("apps/v1", "ControllerRevision", &nested)).unwrap(),
        json!({
            "kind": "ControllerRevision",
            "apiVersion": "apps/v1",
            "data": {"kind": "ConfigMap", "apiVersion": "v1", "data": {"k": "v"}},
            "revision": 0
        }),
    );
}

#[test]
fn batch_job_and_cronjob() {
    use k8s_pb::api::batch::v1 as batch;
    let template = core::PodTemplateSpec {
        metadata: Some(go_meta("", "", &[])),
        spec: Some({
            let mut spec = go_pod_spec(vec![go_container("job", "busybox")]);
            spec.restart_policy = s("OnFailure");
            spec
        }),
    };
    let job_spec = batch::JobSpec {
        parallelism: None,
        completions: None,
        backoff_limit: Some(0),
        template: Some(template),
        ..Default::default()
    };
    let cron = batch::CronJob {
        metadata: Some(go_meta("nightly", "default", &[])),
        spec: Some(batch::CronJobSpec {
            schedule: s("0 3 * * *"),
            time_zone: None,
            starting_deadline_seconds: None,
            concurrency_policy: s(""),
            suspend: Some(false),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(go_meta("nightly", "", &[])),
                spec: Some(job_spec),
            }),
            successful_jobs_history_limit: None,
            failed_jobs_history_limit: None,
        }),
        status: Some(batch::CronJobStatus::default()),
    };
    assert_json(
        decode(&body("batch/v1", "CronJob", &cron)).unwrap(),
        json!({
            "kind": "CronJob",
            "apiVersion": "batch/v1",
            "metadata": {"name": "nightly", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": false,
                "jobTemplate": {
                    "metadata": {"name": "nightly", "creationTimestamp": null},
                    "spec": {
                        "template": {
                            "metadata": {"creationTimestamp": null},
                            "spec": {
                                "containers": [{"name": "job", "image": "busybox", "resources": {}}],
                                "restartPolicy": "OnFailure"
                            }
                        },
                        "backoffLimit": 0
                    }
                }
            },
            "status": {}
        }),
    );
}

#[test]
fn every_served_kind_is_known() {
    let kinds = [
        ("v1", "Pod"),
        ("v1", "PodTemplate"),
        ("v1", "ReplicationController"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Node"),
        ("v1", "Event"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolume"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "ResourceQuota"),
        ("v1", "LimitRange"),
        ("v1", "Binding"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ControllerRevision"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("events.k8s.io/v1", "Event"),
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "Eviction"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("v1", "DeleteOptions"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("networking.k8s.io/v1", "Ingress"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ];
    for (api_version, kind) in kinds {
        assert!(is_known_kind(api_version, kind), "{api_version} {kind}");
    }
    assert_eq!(
        message_name("v1", "Event").as_deref(),
        Some("api.core.v1.Event")
    );
    assert_eq!(
        message_name("events.k8s.io/v1", "Event").as_deref(),
        Some("api.events.v1.Event")
    );
    assert_eq!(
        message_name("autoscaling/v1", "Scale").as_deref(),
        Some("api.autoscaling.v1.Scale")
    );
    assert!(!is_known_kind("example.com/v1", "Widget"));
}

#[test]
fn errors() {
    let cm = core::ConfigMap {
        metadata: Some(go_meta("x", "", &[])),
        ..Default::default()
    };

    let err = decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
    assert_eq!(err, DecodeError::BadMagic);
    assert_eq!(err.http_status(), 400);

    let err = decode(&body("example.com/v1", "Widget", &cm)).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownKind { .. }), "{err}");
    assert_eq!(err.http_status(), 415);

    let err = decode(&envelope("", "", cm.encode_to_vec())).unwrap_err();
    assert_eq!(err, DecodeError::MissingTypeMeta);

    let mut gzip = Unknown::decode(&body("v1", "ConfigMap", &cm)[4..]).unwrap();
    gzip.content_encoding = s("gzip");
    let mut bytes = MAGIC.to_vec();
    bytes.extend(gzip.encode_to_vec());
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedContent(_)), "{err}");
    assert_eq!(err.http_status(), 415);

    // The envelope cut short.
    let full = body("v1", "ConfigMap", &cm);
    let err = decode(&full[..full.len() - 3]).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    assert_eq!(err.http_status(), 400);

    // The object cut short: the error names where.
    let raw = cm.encode_to_vec();
    let err = decode_object("v1", "ConfigMap", &raw[..raw.len() - 1]).unwrap_err();
    match &err {
        DecodeError::Malformed { path, reason } => {
            assert_eq!(path, "ConfigMap");
            assert_eq!(reason, "truncated field");
        }
        other => panic!("{other}"),
    }

    // A string field holding a varint.
    let err = decode_object("v1", "ConfigMap", &[0x0a, 0x02, 0x08, 0x01]).unwrap_err();
    assert!(err.to_string().contains("ConfigMap.metadata.name"), "{err}");

    // RawExtension bytes that are not JSON.
    let revision = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"not json".to_vec()),
        }),
        ..Default::default()
    };
    let err = decode(&body("apps/v1", "ControllerRevision", &revision)).unwrap_err();
    assert!(err.to_string().contains("ControllerRevision.data"), "{err}");
}

#[test]
fn unknown_fields_are_skipped_and_packed_repeated_accepted() {
    let cm = core::ConfigMap {
        data: labels(&[("a", "b")]),
        ..Default::default()
    };
    let mut raw = cm.encode_to_vec();
    // field 999, varint 7; field 1000, bytes "zz"
    raw.extend([0xb8, 0x3e, 0x07, 0xc2, 0x3e, 0x02, b'z', b'z']);
    assert_json(
        decode_object("v1", "ConfigMap", &raw).unwrap(),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "data": {"a": "b"}}),
    );

    // PodSecurityContext.supplementalGroups (4, int64): client-go writes it unpacked;
    // a packed encoding means the same.
    let unpacked = core::PodSecurityContext {
        supplemental_groups: vec![1, 300],
        ..Default::default()
    };
    assert_eq!(unpacked.encode_to_vec(), vec![0x20, 0x01, 0x20, 0xac, 0x02]);
    let packed = vec![0x22, 0x03, 0x01, 0xac, 0x02];
    let wrap = |sc: Vec<u8>| {
        let mut spec = vec![0x72, sc.len() as u8]; // PodSpec.securityContext = 14
        spec.extend(sc);
        let mut pod = vec![0x12, spec.len() as u8]; // Pod.spec = 2
        pod.extend(spec);
        pod
    };
    for raw in [wrap(unpacked.encode_to_vec()), wrap(packed)] {
        assert_json(
            decode_object("v1", "Pod", &raw).unwrap(),
            json!({"kind": "Pod", "apiVersion": "v1", "spec": {"securityContext": {"supplementalGroups": [1, 300]}}}),
        );
    }
}

#[test]
fn crd_schema_special_types() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string_prop = ext::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: s("object"),
        properties: [("name".to_string(), string_prop.clone())]
            .into_iter()
            .collect(),
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        items: Some(Box::new(ext::JsonSchemaPropsOrArray {
            schema: Some(Box::new(string_prop)),
            j_son_schemas: vec![],
        })),
        default: Some(ext::Json {
            raw: Some(br#"{"name":"x"}"#.to_vec()),
        }),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let got = decode_object(
        "apiextensions.k8s.io/v1",
        "JSONSchemaProps",
        &schema.encode_to_vec(),
    )
    .unwrap();
    assert_json(
        got,
        json!({
            "kind": "JSONSchemaProps",
            "apiVersion": "apiextensions.k8s.io/v1",
            "type": "object",
            "default": {"name": "x"},
            "items": {"type": "string"},
            "properties": {"name": {"type": "string"}},
            "additionalProperties": false,
            "x-kubernetes-preserve-unknown-fields": true
        }),
    );
}
