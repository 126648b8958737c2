//! `system:controller:<name>`: one role per controller of the controller-manager, bound
//! to the `kube-system/<name>` service account it runs as with
//! `--use-service-account-credentials`, as Kubernetes' controller policy.

use super::{r, DefaultBinding, DefaultRole, R, S};

const fn controller_role(name: &'static str, rules: &'static [R]) -> DefaultRole {
    DefaultRole {
        name,
        namespace: "",
        labels: &[],
        aggregate_from: &[],
        rules,
    }
}

pub static ROLES: &[DefaultRole] = &[controller_role(
    "system:controller:clusterrole-aggregation-controller",
    &[r(
        &["escalate", "get", "list", "patch", "update", "watch"],
        &["rbac.authorization.k8s.io"],
        &["clusterroles"],
    )],
)];

pub static BINDINGS: &[DefaultBinding] = &[DefaultBinding {
    name: "system:controller:clusterrole-aggregation-controller",
    namespace: "",
    role: "system:controller:clusterrole-aggregation-controller",
    subjects: &[S::ServiceAccount(
        "kube-system",
        "clusterrole-aggregation-controller",
    )],
}];
