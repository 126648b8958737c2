//! Kubernetes' default cluster roles and bindings, and the roles of Keelson's own
//! host components (keelson-proxy's NetworkPolicy enforcement, keelson-dns).

use super::{named, r, urls, DefaultBinding, DefaultRole, EVENTS, R, READ, S, WRITE};

const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";
const COORD: &str = "coordination.k8s.io";
const CERTS: &str = "certificates.k8s.io";
const STORAGE: &str = "storage.k8s.io";

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const fn cluster_role(name: &'static str, rules: &'static [R]) -> DefaultRole {
    DefaultRole {
        name,
        namespace: "",
        labels: &[],
        aggregate_from: &[],
        rules,
    }
}

const fn cluster_binding(name: &'static str, subjects: &'static [S]) -> DefaultBinding {
    DefaultBinding {
        name,
        namespace: "",
        role: name,
        subjects,
    }
}

const ALL_VERBS: &[&str] = &["*"];

pub static ROLES: &[DefaultRole] = &[
    cluster_role(
        "cluster-admin",
        &[r(ALL_VERBS, &["*"], &["*"]), urls(ALL_VERBS, &["*"])],
    ),
    DefaultRole {
        name: "admin",
        namespace: "",
        labels: &[],
        aggregate_from: &[TO_ADMIN],
        rules: &[],
    },
    DefaultRole {
        name: "edit",
        namespace: "",
        labels: &[(TO_ADMIN, "true")],
        aggregate_from: &[TO_EDIT],
        rules: &[],
    },
    DefaultRole {
        name: "view",
        namespace: "",
        labels: &[(TO_EDIT, "true")],
        aggregate_from: &[TO_VIEW],
        rules: &[],
    },
    DefaultRole {
        name: "system:aggregate-to-admin",
        namespace: "",
        labels: &[(TO_ADMIN, "true")],
        aggregate_from: &[],
        rules: &[
            r(&["create"], &[AUTHZ], &["localsubjectaccessreviews"]),
            r(super::READ_WRITE, &[RBAC], &["rolebindings", "roles"]),
        ],
    },
    DefaultRole {
        name: "system:aggregate-to-edit",
        namespace: "",
        labels: &[(TO_EDIT, "true")],
        aggregate_from: &[],
        rules: &[
            r(
                READ,
                &[""],
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            r(&["impersonate"], &[""], &["serviceaccounts"]),
            r(
                WRITE,
                &[""],
                &[
                    "pods",
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                ],
            ),
            r(&["create"], &[""], &["pods/eviction"]),
            r(
                WRITE,
                &[""],
                &[
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            r(&["create"], &[""], &["serviceaccounts/token"]),
            r(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(WRITE, &["batch"], &["cronjobs", "jobs"]),
            r(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            r(WRITE, &["policy"], &["poddisruptionbudgets"]),
            r(
                WRITE,
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
            ),
            r(
                &[
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ],
                &[COORD],
                &["leases"],
            ),
        ],
    },
    DefaultRole {
        name: "system:aggregate-to-view",
        namespace: "",
        labels: &[(TO_VIEW, "true")],
        aggregate_from: &[],
        rules: &[
            r(
                READ,
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            r(
                READ,
                &[""],
                &[
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            r(READ, &[""], &["namespaces"]),
            r(READ, &["discovery.k8s.io"], &["endpointslices"]),
            r(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            r(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            r(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            ),
            r(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            r(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            r(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
            ),
        ],
    },
    cluster_role(
        "system:auth-delegator",
        &[
            r(&["create"], &[AUTHN], &["tokenreviews"]),
            r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
        ],
    ),
    cluster_role(
        "system:basic-user",
        &[
            r(
                &["create"],
                &[AUTHZ],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            r(&["create"], &[AUTHN], &["selfsubjectreviews"]),
        ],
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        &[r(
            &["create"],
            &[CERTS],
            &["certificatesigningrequests/nodeclient"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        &[r(
            &["create"],
            &[CERTS],
            &["certificatesigningrequests/selfnodeclient"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kube-apiserver-client-approver",
        &[named(
            &["approve"],
            &[CERTS],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        &[named(
            &["approve"],
            &[CERTS],
            &["signers"],
            &["kubernetes.io/kube-apiserver-client-kubelet"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kubelet-serving-approver",
        &[named(
            &["approve"],
            &[CERTS],
            &["signers"],
            &["kubernetes.io/kubelet-serving"],
        )],
    ),
    cluster_role(
        "system:discovery",
        &[urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    ),
    cluster_role(
        "system:kube-aggregator",
        &[r(READ, &[""], &["endpoints", "services"])],
    ),
    cluster_role(
        "system:kube-controller-manager",
        &[
            EVENTS,
            r(&["create"], &[COORD], &["leases"]),
            named(
                &["get", "update"],
                &[COORD],
                &["leases"],
                &["kube-controller-manager", "keelson-controller-manager"],
            ),
            r(&["create"], &[""], &["secrets", "serviceaccounts"]),
            r(&["delete"], &[""], &["secrets"]),
            r(
                &["get"],
                &[""],
                &["configmaps", "namespaces", "secrets", "serviceaccounts"],
            ),
            r(&["update"], &[""], &["secrets", "serviceaccounts"]),
            r(&["create"], &[AUTHN], &["tokenreviews"]),
            r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
            r(&["list", "watch"], &["*"], &["*"]),
            r(&["create"], &[""], &["serviceaccounts/token"]),
        ],
    ),
    cluster_role(
        "system:kube-dns",
        &[r(&["list", "watch"], &[""], &["endpoints", "services"])],
    ),
    cluster_role(
        "system:kube-scheduler",
        &[
            EVENTS,
            r(&["create"], &[COORD], &["leases"]),
            named(
                &["get", "update"],
                &[COORD],
                &["leases"],
                &["kube-scheduler", "keelson-scheduler"],
            ),
            r(READ, &[""], &["nodes"]),
            r(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            r(&["create"], &[""], &["bindings", "pods/binding"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(READ, &[""], &["replicationcontrollers", "services"]),
            r(READ, &["apps", "extensions"], &["replicasets"]),
            r(READ, &["apps"], &["statefulsets"]),
            r(READ, &["policy"], &["poddisruptionbudgets"]),
            r(
                READ,
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            r(&["create"], &[AUTHN], &["tokenreviews"]),
            r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
            r(READ, &[STORAGE], &["csinodes"]),
            r(READ, &[""], &["namespaces"]),
            r(READ, &[STORAGE], &["csidrivers"]),
            r(READ, &[STORAGE], &["csistoragecapacities"]),
            // Keelson's scheduler also reads PriorityClasses for preemption.
            r(READ, &["scheduling.k8s.io"], &["priorityclasses"]),
        ],
    ),
    cluster_role(
        "system:kubelet-api-admin",
        &[
            r(READ, &[""], &["nodes"]),
            r(&["proxy"], &[""], &["nodes"]),
            r(
                &["*"],
                &[""],
                &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
            ),
        ],
    ),
    cluster_role(
        "system:monitoring",
        &[urls(
            &["get"],
            &[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ],
        )],
    ),
    cluster_role("system:node", NODE_RULES),
    cluster_role(
        "system:node-bootstrapper",
        &[r(
            &["create", "get", "list", "watch"],
            &[CERTS],
            &["certificatesigningrequests"],
        )],
    ),
    cluster_role(
        "system:node-problem-detector",
        &[
            r(&["get"], &[""], &["nodes"]),
            r(&["patch"], &[""], &["nodes/status"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:node-proxier",
        &[
            r(&["list", "watch"], &[""], &["endpoints", "services"]),
            r(READ, &[""], &["nodes"]),
            EVENTS,
            r(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
        ],
    ),
    cluster_role(
        "system:persistent-volume-provisioner",
        &[
            r(
                &["create", "delete", "get", "list", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(
                &["get", "list", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(READ, &[STORAGE], &["storageclasses"]),
            r(&["watch"], &[""], &["events"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:public-info-viewer",
        &[urls(
            &["get"],
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
    ),
    cluster_role(
        "system:service-account-issuer-discovery",
        &[urls(
            &["get"],
            &["/.well-known/openid-configuration", "/openid/v1/jwks"],
        )],
    ),
    cluster_role(
        "system:volume-scheduler",
        &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            r(READ, &[STORAGE], &["storageclasses"]),
            r(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
        ],
    ),
    // keelson-proxy enforces NetworkPolicy and elects LoadBalancer announcers; what
    // kube-proxy's role lacks for that.
    cluster_role(
        "system:keelson-proxy",
        &[
            r(&["list", "watch"], &[""], &["pods", "namespaces"]),
            r(
                &["list", "watch"],
                &["networking.k8s.io"],
                &["networkpolicies"],
            ),
        ],
    ),
    // keelson-dns answers from Services and EndpointSlices and publishes its own
    // node's instance as an EndpointSlice of the kube-dns Service.
    cluster_role(
        "system:keelson-dns",
        &[
            r(
                &["list", "watch"],
                &[""],
                &["services", "endpoints", "pods", "namespaces"],
            ),
            r(&["get", "create", "update", "patch"], &[""], &["services"]),
            // Its EndpointSlice is owned by its Node.
            r(&["get"], &[""], &["nodes"]),
            r(
                &[
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
];

/// `system:node`: what a node agent may do by RBAC. With the Node authorizer in the
/// chain, nodes are not bound to it; the Node authorizer grants these same rules,
/// narrowed to the node's own objects.
pub static NODE_RULES: &[R] = &[
    r(&["create"], &[AUTHN], &["tokenreviews"]),
    r(
        &["create"],
        &[AUTHZ],
        &["localsubjectaccessreviews", "subjectaccessreviews"],
    ),
    r(READ, &[""], &["services"]),
    r(&["create", "get", "list", "watch"], &[""], &["nodes"]),
    r(&["patch", "update"], &[""], &["nodes/status"]),
    r(&["patch", "update"], &[""], &["nodes"]),
    r(&["create", "patch", "update"], &[""], &["events"]),
    r(READ, &[""], &["pods"]),
    r(&["create", "delete"], &[""], &["pods"]),
    r(&["patch", "update"], &[""], &["pods/status"]),
    r(&["create"], &[""], &["pods/eviction"]),
    r(READ, &[""], &["configmaps", "secrets"]),
    r(
        &["get"],
        &[""],
        &["persistentvolumeclaims", "persistentvolumes"],
    ),
    r(&["get"], &[""], &["endpoints"]),
    r(
        &["create", "get", "list", "watch"],
        &[CERTS],
        &["certificatesigningrequests"],
    ),
    r(
        &["create", "delete", "get", "patch", "update"],
        &[COORD],
        &["leases"],
    ),
    r(&["get"], &[STORAGE], &["volumeattachments"]),
    r(&["create"], &[""], &["serviceaccounts/token"]),
    r(
        &["get", "patch", "update"],
        &[""],
        &["persistentvolumeclaims/status"],
    ),
    r(READ, &[STORAGE], &["csidrivers"]),
    r(
        &["create", "delete", "get", "patch", "update"],
        &[STORAGE],
        &["csinodes"],
    ),
    r(READ, &["node.k8s.io"], &["runtimeclasses"]),
];

pub static BINDINGS: &[DefaultBinding] = &[
    cluster_binding("cluster-admin", &[S::Group("system:masters")]),
    cluster_binding("system:basic-user", &[S::Group("system:authenticated")]),
    cluster_binding("system:discovery", &[S::Group("system:authenticated")]),
    cluster_binding(
        "system:kube-controller-manager",
        &[S::User("system:kube-controller-manager")],
    ),
    cluster_binding(
        "system:kube-dns",
        &[S::ServiceAccount("kube-system", "kube-dns")],
    ),
    cluster_binding("system:kube-scheduler", &[S::User("system:kube-scheduler")]),
    cluster_binding("system:monitoring", &[S::Group("system:monitoring")]),
    // Kubernetes keeps this binding without subjects: the Node authorizer grants nodes.
    cluster_binding("system:node", &[]),
    cluster_binding("system:node-proxier", &[S::User("system:kube-proxy")]),
    cluster_binding(
        "system:public-info-viewer",
        &[
            S::Group("system:authenticated"),
            S::Group("system:unauthenticated"),
        ],
    ),
    cluster_binding(
        "system:service-account-issuer-discovery",
        &[S::Group("system:serviceaccounts")],
    ),
    DefaultBinding {
        name: "system:volume-scheduler",
        namespace: "",
        role: "system:volume-scheduler",
        subjects: &[S::User("system:kube-scheduler")],
    },
    cluster_binding("system:keelson-proxy", &[S::User("system:kube-proxy")]),
    // kubeadm's: nodes renew their own client certificates, approved automatically.
    DefaultBinding {
        name: "kubeadm:node-autoapprove-certificate-rotation",
        namespace: "",
        role: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        subjects: &[S::Group("system:nodes")],
    },
    cluster_binding("system:keelson-dns", &[S::User("system:keelson-dns")]),
    // The apiserver's client certificate towards node agents (logs, exec, proxy).
    DefaultBinding {
        name: "system:kube-apiserver-kubelet-client",
        namespace: "",
        role: "system:kubelet-api-admin",
        subjects: &[S::User("kube-apiserver-kubelet-client")],
    },
];
