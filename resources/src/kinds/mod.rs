//! One file per served resource. Each defines `pub static RESOURCE: ResourceType` and
//! its strategy; [`ALL`] lists them for the apiserver and discovery. The review kinds,
//! which have no rules of their own, share `reviews.rs`.

use crate::ResourceType;

pub mod certificatesigningrequests;
pub mod configmaps;
pub mod controllerrevisions;
pub mod cronjobs;
pub mod customresourcedefinitions;
pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod events_v1;
pub mod flowschemas;
pub mod jobs;
pub mod leases;
pub mod limitranges;
pub mod namespaces;
pub mod networkpolicies;
pub mod nodes;
pub mod persistentvolumeclaims;
pub mod persistentvolumes;
pub mod poddisruptionbudgets;
pub mod pods;
pub mod podtemplates;
pub mod priorityclasses;
pub mod prioritylevelconfigurations;
pub mod rbac;
pub mod replicasets;
pub mod replicationcontrollers;
pub mod resourcequotas;
pub mod reviews;
pub mod secrets;
pub mod serviceaccounts;
pub mod services;
pub mod statefulsets;

/// Every resource the apiserver serves, in discovery order.
pub static ALL: &[&ResourceType] = &[
    &configmaps::RESOURCE,
    &pods::RESOURCE,
    &podtemplates::RESOURCE,
    &replicationcontrollers::RESOURCE,
    &deployments::RESOURCE,
    &replicasets::RESOURCE,
    &statefulsets::RESOURCE,
    &daemonsets::RESOURCE,
    &controllerrevisions::RESOURCE,
    &jobs::RESOURCE,
    &cronjobs::RESOURCE,
    &namespaces::RESOURCE,
    &secrets::RESOURCE,
    &services::RESOURCE,
    &endpoints::RESOURCE,
    &endpointslices::RESOURCE,
    &nodes::RESOURCE,
    &serviceaccounts::RESOURCE,
    &leases::RESOURCE,
    &events::RESOURCE,
    &events_v1::RESOURCE,
    &persistentvolumes::RESOURCE,
    &persistentvolumeclaims::RESOURCE,
    &resourcequotas::RESOURCE,
    &limitranges::RESOURCE,
    &priorityclasses::RESOURCE,
    &poddisruptionbudgets::RESOURCE,
    &networkpolicies::RESOURCE,
    &certificatesigningrequests::RESOURCE,
    &flowschemas::RESOURCE,
    &prioritylevelconfigurations::RESOURCE,
    &customresourcedefinitions::RESOURCE,
    &rbac::CLUSTER_ROLE_BINDINGS,
    &rbac::CLUSTER_ROLES,
    &rbac::ROLE_BINDINGS,
    &rbac::ROLES,
    &reviews::TOKEN_REVIEWS,
    &reviews::SELF_SUBJECT_REVIEWS,
    &reviews::SUBJECT_ACCESS_REVIEWS,
    &reviews::LOCAL_SUBJECT_ACCESS_REVIEWS,
    &reviews::SELF_SUBJECT_ACCESS_REVIEWS,
    &reviews::SELF_SUBJECT_RULES_REVIEWS,
];
