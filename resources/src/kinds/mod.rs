//! One file per served resource. Each defines `pub static RESOURCE: ResourceType` and
//! its strategy; [`ALL`] lists them for the apiserver and discovery. The review kinds,
//! which have no rules of their own, share `reviews.rs`.

use crate::ResourceType;

pub mod certificatesigningrequests;
pub mod configmaps;
pub mod controllerrevisions;
pub mod cronjobs;
pub mod csidrivers;
pub mod csinodes;
pub mod csistoragecapacities;
pub mod customresourcedefinitions;
pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod events_v1;
pub mod flowschemas;
pub mod ingressclasses;
pub mod ingresses;
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
pub mod runtimeclasses;
pub mod secrets;
pub mod serviceaccounts;
pub mod services;
pub mod statefulsets;
pub mod storageclasses;
pub mod volumeattachments;
pub mod webhookconfigurations;

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
    &ingresses::RESOURCE,
    &ingressclasses::RESOURCE,
    &runtimeclasses::RESOURCE,
    &storageclasses::RESOURCE,
    &csidrivers::RESOURCE,
    &csinodes::RESOURCE,
    &volumeattachments::RESOURCE,
    &csistoragecapacities::RESOURCE,
    &certificatesigningrequests::RESOURCE,
    &flowschemas::RESOURCE,
    &prioritylevelconfigurations::RESOURCE,
    &customresourcedefinitions::RESOURCE,
    &webhookconfigurations::MUTATING,
    &webhookconfigurations::VALIDATING,
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

#[cfg(test)]
mod tests {
    use super::ALL;

    /// The registration is whole: a built-in kind names its k8s-openapi type (the same
    /// group, version and kind) and, unless it is only ever created, its merge root.
    #[test]
    fn every_kind_names_its_type_and_merge_root() {
        for rt in ALL {
            let typed = rt
                .typed
                .unwrap_or_else(|| panic!("{rt:?} names no k8s-openapi type (`typed`)"));
            assert_eq!(
                (typed.group, typed.version, typed.kind),
                (rt.group, rt.version, rt.kind),
                "{rt:?}: `typed` is another kind's type"
            );
            assert!(
                rt.merge.is_some() || rt.strategy.create_only(),
                "{rt:?} names no merge root (`merge`): strategic merge patch would answer 415"
            );
        }
    }

    /// Two registrations of one resource would shadow each other in lookups.
    #[test]
    fn resources_are_registered_once() {
        let mut seen = std::collections::BTreeSet::new();
        for rt in ALL {
            assert!(
                seen.insert((rt.group, rt.plural)),
                "{rt:?} is registered twice"
            );
        }
    }
}
