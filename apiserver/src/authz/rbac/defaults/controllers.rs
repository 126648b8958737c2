//! `system:controller:<name>`: one role per controller of the controller-manager, bound
//! to the `kube-system/<name>` service account it runs as with
//! `--use-service-account-credentials`, as Kubernetes' controller policy
//! (bootstrappolicy's `controller-roles.yaml` and `controller-role-bindings.yaml`).
//!
//! Each role is Kubernetes' rules for that controller, plus what Keelson's controller
//! does beyond them, with a comment saying why. The controllers read through the
//! manager's shared informers, which list and watch as `system:kube-controller-manager`;
//! the `list`/`watch` rules here serve the reads a controller makes itself (and keep
//! the roles Kubernetes' for tools that compare them). Keelson's controllers write
//! status with merge patches where Kubernetes' replace it, hence the `patch` verbs on
//! `*/status` below.

use super::{named, r, DefaultBinding, DefaultRole, EVENTS, R, S};

const fn controller_role(name: &'static str, rules: &'static [R]) -> DefaultRole {
    DefaultRole {
        name,
        namespace: "",
        labels: &[],
        aggregate_from: &[],
        rules,
    }
}

const APPS: &[&str] = &["apps", "extensions"];
const GET_LIST_UPDATE_WATCH: &[&str] = &["get", "list", "update", "watch"];
const ALL_BUT_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub static ROLES: &[DefaultRole] = &[
    controller_role(
        "system:controller:clusterrole-aggregation-controller",
        &[r(
            &["escalate", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
    ),
    // csrsigning, csrapproving and csrcleaner, all as `certificate-controller`.
    controller_role(
        "system:controller:certificate-controller",
        &[
            r(
                &["delete", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            r(
                &["update"],
                &["certificates.k8s.io"],
                &[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ],
            ),
            // Kubernetes' role names only kube-apiserver-client-kubelet; Keelson's
            // csrapproving may also approve kubelet-serving requests, when the
            // controller-manager runs with --approve-kubelet-serving-certificates.
            named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                ],
            ),
            named(
                &["sign"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
            ),
            r(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:cronjob-controller",
        &[
            r(GET_LIST_UPDATE_WATCH, &["batch"], &["cronjobs"]),
            r(ALL_BUT_DELETECOLLECTION, &["batch"], &["jobs"]),
            r(&["update"], &["batch"], &["cronjobs/status"]),
            r(&["update"], &["batch"], &["cronjobs/finalizers"]),
            r(&["delete", "list", "watch"], &[""], &["pods"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:daemon-set-controller",
        &[
            r(&["get", "list", "watch"], APPS, &["daemonsets"]),
            // Keelson merge-patches the status (Kubernetes replaces it).
            r(&["patch", "update"], APPS, &["daemonsets/status"]),
            r(&["update"], APPS, &["daemonsets/finalizers"]),
            r(&["list", "watch"], &[""], &["nodes"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            r(&["create"], &[""], &["pods/binding"]),
            r(
                ALL_BUT_DELETECOLLECTION,
                &["apps"],
                &["controllerrevisions"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:deployment-controller",
        &[
            // Keelson records the revision annotation with a merge patch.
            r(
                &["get", "list", "patch", "update", "watch"],
                APPS,
                &["deployments"],
            ),
            // Keelson merge-patches the status (Kubernetes replaces it).
            r(&["patch", "update"], APPS, &["deployments/status"]),
            r(&["update"], APPS, &["deployments/finalizers"]),
            r(ALL_BUT_DELETECOLLECTION, APPS, &["replicasets"]),
            r(GET_LIST_UPDATE_WATCH, &[""], &["pods"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:disruption-controller",
        &[
            r(&["get", "list", "watch"], APPS, &["deployments"]),
            r(&["get", "list", "watch"], APPS, &["replicasets"]),
            r(
                &["get", "list", "watch"],
                &[""],
                &["replicationcontrollers"],
            ),
            r(
                &["get", "list", "watch"],
                &["policy"],
                &["poddisruptionbudgets"],
            ),
            r(&["get", "list", "watch"], &["apps"], &["statefulsets"]),
            r(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["get"], &["*"], &["*/scale"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:endpoint-controller",
        &[
            r(&["get", "list", "watch"], &[""], &["pods", "services"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &[""],
                &["endpoints"],
            ),
            r(&["create"], &[""], &["endpoints/restricted"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:endpointslice-controller",
        &[
            r(
                &["get", "list", "watch"],
                &[""],
                &["nodes", "pods", "services"],
            ),
            r(&["update"], &[""], &["services/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:endpointslicemirroring-controller",
        &[
            r(&["get", "list", "watch"], &[""], &["endpoints", "services"]),
            r(&["update"], &[""], &["services/finalizers"]),
            r(&["update"], &[""], &["endpoints/finalizers"]),
            r(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:generic-garbage-collector",
        &[
            r(
                &["delete", "get", "list", "patch", "update", "watch"],
                &["*"],
                &["*"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:job-controller",
        &[
            r(
                &["get", "list", "patch", "update", "watch"],
                &["batch"],
                &["jobs"],
            ),
            r(&["update"], &["batch"], &["jobs/status"]),
            r(&["update"], &["batch"], &["jobs/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:namespace-controller",
        &[
            r(&["delete", "get", "list", "watch"], &[""], &["namespaces"]),
            r(
                &["update"],
                &[""],
                &["namespaces/finalize", "namespaces/status"],
            ),
            // Keelson merge-patches the phase and conditions (Kubernetes replaces them).
            r(&["patch"], &[""], &["namespaces/status"]),
            r(
                &["delete", "deletecollection", "get", "list", "watch"],
                &["*"],
                &["*"],
            ),
        ],
    ),
    // nodelifecycle and nodeipam, as in Kubernetes.
    controller_role(
        "system:controller:node-controller",
        &[
            r(
                &["delete", "get", "list", "patch", "update", "watch"],
                &[""],
                &["nodes"],
            ),
            r(&["patch", "update"], &[""], &["nodes/status"]),
            r(&["patch", "update"], &[""], &["pods/status"]),
            r(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:pod-garbage-collector",
        &[
            r(&["delete", "list", "watch"], &[""], &["pods"]),
            r(&["get", "list", "watch"], &[""], &["nodes"]),
            r(&["patch"], &[""], &["pods/status"]),
        ],
    ),
    controller_role(
        "system:controller:replicaset-controller",
        &[
            r(GET_LIST_UPDATE_WATCH, APPS, &["replicasets"]),
            // Keelson merge-patches the status (Kubernetes replaces it).
            r(&["patch", "update"], APPS, &["replicasets/status"]),
            r(&["update"], APPS, &["replicasets/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:replication-controller",
        &[
            r(GET_LIST_UPDATE_WATCH, &[""], &["replicationcontrollers"]),
            // Keelson merge-patches the status (Kubernetes replaces it).
            r(
                &["patch", "update"],
                &[""],
                &["replicationcontrollers/status"],
            ),
            r(&["update"], &[""], &["replicationcontrollers/finalizers"]),
            r(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:resourcequota-controller",
        &[
            r(&["list", "watch"], &["*"], &["*"]),
            r(&["update"], &[""], &["resourcequotas/status"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:root-ca-cert-publisher",
        &[r(&["create", "update"], &[""], &["configmaps"]), EVENTS],
    ),
    controller_role(
        "system:controller:service-account-controller",
        &[r(&["create"], &[""], &["serviceaccounts"]), EVENTS],
    ),
    // Keelson's own: LoadBalancer addresses for Services (docs/service-lb.md); it
    // reads through the shared informers and only merge-patches the Service status.
    controller_role(
        "system:controller:service-lb-controller",
        &[r(&["patch"], &[""], &["services/status"]), EVENTS],
    ),
    controller_role(
        "system:controller:statefulset-controller",
        &[
            r(&["list", "watch"], &[""], &["pods"]),
            r(&["get", "list", "watch"], &["apps"], &["statefulsets"]),
            // Keelson merge-patches the status (Kubernetes replaces it).
            r(&["patch", "update"], &["apps"], &["statefulsets/status"]),
            r(&["update"], &["apps"], &["statefulsets/finalizers"]),
            r(
                &["create", "delete", "get", "patch", "update"],
                &[""],
                &["pods"],
            ),
            r(
                ALL_BUT_DELETECOLLECTION,
                &["apps"],
                &["controllerrevisions"],
            ),
            r(
                &["create", "get", "list", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            // Keelson merge-patches a claim's owner reference (retention policy)
            // where Kubernetes updates it.
            r(
                &["delete", "patch", "update"],
                &[""],
                &["persistentvolumeclaims"],
            ),
            r(&["update"], &[""], &["pods/finalizers"]),
            EVENTS,
        ],
    ),
    controller_role(
        "system:controller:ttl-after-finished-controller",
        &[
            r(&["delete", "get", "list", "watch"], &["batch"], &["jobs"]),
            EVENTS,
        ],
    ),
];

/// `system:controller:<name>` bound to `kube-system/<name>`.
const fn controller_binding(name: &'static str, subjects: &'static [S]) -> DefaultBinding {
    DefaultBinding {
        name,
        namespace: "",
        role: name,
        subjects,
    }
}

macro_rules! bindings {
    ($($account:literal),* $(,)?) => {
        &[$(controller_binding(
            concat!("system:controller:", $account),
            &[S::ServiceAccount("kube-system", $account)],
        )),*]
    };
}

pub static BINDINGS: &[DefaultBinding] = bindings!(
    "certificate-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "generic-garbage-collector",
    "job-controller",
    "namespace-controller",
    "node-controller",
    "pod-garbage-collector",
    "replicaset-controller",
    "replication-controller",
    "resourcequota-controller",
    "root-ca-cert-publisher",
    "service-account-controller",
    "service-lb-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_role_is_bound_to_its_account() {
        assert_eq!(ROLES.len(), BINDINGS.len());
        for role in ROLES {
            let b = BINDINGS.iter().find(|b| b.name == role.name);
            let b = b.unwrap_or_else(|| panic!("{} has no binding", role.name));
            let account = role.name.strip_prefix("system:controller:").unwrap();
            assert!(
                matches!(b.subjects, [S::ServiceAccount("kube-system", a)] if *a == account),
                "{}",
                role.name
            );
        }
    }
}
