//! Resources for tests: whatever `kinds::ALL` holds, plus a fixed set covering every
//! subresource shape and a kind k8s-openapi does not know.

#![allow(dead_code)]

use keelson_resources::{ResourceType, Strategy, Subresource, Typed};

struct Plain;
impl Strategy for Plain {}

const fn rt(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    subresources: &'static [Subresource],
) -> ResourceType {
    ResourceType {
        group,
        version,
        kind,
        plural,
        singular: "",
        namespaced,
        short_names: &[],
        categories: &[],
        subresources,
        strategy: &Plain,
        typed: None,
        merge: None,
    }
}

pub static PODS: ResourceType = rt(
    "",
    "v1",
    "Pod",
    "pods",
    true,
    &[
        Subresource::Status,
        Subresource::Binding,
        Subresource::Eviction,
        Subresource::Log,
        Subresource::Exec,
        Subresource::Proxy,
    ],
);
pub static NAMESPACES: ResourceType = rt(
    "",
    "v1",
    "Namespace",
    "namespaces",
    false,
    &[Subresource::Status, Subresource::Finalize],
);
pub static SERVICE_ACCOUNTS: ResourceType = rt(
    "",
    "v1",
    "ServiceAccount",
    "serviceaccounts",
    true,
    &[Subresource::Token],
);
pub static DEPLOYMENTS: ResourceType = rt(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    true,
    &[Subresource::Status, Subresource::Scale],
);
pub static CLUSTER_ROLES: ResourceType = rt(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRole",
    "clusterroles",
    false,
    &[],
);
pub static SUBJECT_ACCESS_REVIEWS: ResourceType = rt(
    "authorization.k8s.io",
    "v1",
    "SubjectAccessReview",
    "subjectaccessreviews",
    false,
    &[],
);
pub static CRDS: ResourceType = ResourceType {
    typed: Some(Typed::of::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >()),
    ..rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &[Subresource::Status],
    )
};
pub static WIDGETS: ResourceType = rt(
    "example.keelson.io",
    "v1alpha1",
    "Widget",
    "widgets",
    true,
    &[Subresource::Status],
);

/// `kinds::ALL` and the fixed set (duplicates are the builder's to drop).
pub fn resources() -> Vec<&'static ResourceType> {
    let mut out: Vec<&'static ResourceType> = keelson_resources::kinds::ALL.to_vec();
    out.extend([
        &PODS,
        &NAMESPACES,
        &SERVICE_ACCOUNTS,
        &DEPLOYMENTS,
        &CLUSTER_ROLES,
        &SUBJECT_ACCESS_REVIEWS,
        &CRDS,
        &WIDGETS,
    ]);
    out
}
