//! The kinds the apiserver serves (`keelson_resources::kinds::ALL`) as client resources,
//! for the controllers that act on every kind: the garbage collector and namespace
//! deletion. Keelson has no CustomResourceDefinitions, so this static catalog is what
//! Kubernetes' controllers learn from discovery.

use keelson_client::{ApiResource, Client, DynamicApi};
use keelson_resources::ResourceType;

/// Every served kind that holds objects (reviews are questions, never stored).
pub fn all() -> impl Iterator<Item = &'static ResourceType> {
    keelson_resources::kinds::ALL
        .iter()
        .copied()
        .filter(|rt| !rt.strategy.create_only())
}

/// The client's view of a served kind.
pub fn api_resource(rt: &ResourceType) -> ApiResource {
    ApiResource::new(rt.group, rt.version, rt.kind, rt.plural, rt.namespaced)
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The served kind an owner reference names: by group and kind, whatever the version
/// (as Kubernetes' REST mapper resolves a group-kind to its served version).
pub fn find(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let group = group_of(api_version);
    all().find(|rt| rt.group == group && rt.kind == kind)
}

/// Dynamic calls on `rt`, in `namespace` when the kind is namespaced.
pub fn api(client: &Client, rt: &ResourceType, namespace: Option<&str>) -> DynamicApi {
    let ar = api_resource(rt);
    match namespace.filter(|_| rt.namespaced) {
        Some(ns) => DynamicApi::namespaced_with(client.clone(), ns, &ar),
        None => DynamicApi::all_with(client.clone(), &ar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_kinds_resolve_by_group_and_kind() {
        assert_eq!(find("apps/v1", "Deployment").unwrap().plural, "deployments");
        assert_eq!(
            find("apps/v1beta2", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
        assert_eq!(find("v1", "Pod").unwrap().plural, "pods");
        assert!(find("v1", "Deployment").is_none());
        assert!(find("example.com/v1", "Widget").is_none());
        assert_eq!(group_of("batch/v1"), "batch");
        assert_eq!(group_of("v1"), "");
    }
}
