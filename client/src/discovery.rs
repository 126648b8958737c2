//! What the apiserver serves: every group, version and resource with its kind, scope,
//! verbs and subresources, built-in kinds and the custom resources of established
//! CustomResourceDefinitions alike.
//!
//! [`Client::discover`] makes one gRPC `Discover` call, whose answer is the aggregated
//! discovery document (`apidiscovery.k8s.io/v2`) REST clients read at `/api` and
//! `/apis`. [`Discovery`] answers what controllers ask of it: the resources to watch
//! or delete (one version per resource, as client-go's `ServerPreferredResources`), and
//! the resource of an owner reference's group and kind (as a REST mapper).

use serde::Deserialize;

use crate::api::ApiResource;
use crate::client::Client;
use crate::error::{Error, Result};

/// One resource in one version, as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedResource {
    /// Group, version, kind, plural and scope: what [`Api`](crate::Api) needs.
    pub resource: ApiResource,
    pub singular: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection` (only `create` for the review kinds, which store nothing).
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresource names (`status`, `scale`, ...).
    pub subresources: Vec<String>,
}

impl ServedResource {
    /// Whether every one of `verbs` is allowed on the resource.
    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.verbs.iter().any(|s| s == v))
    }

    /// `deployments.apps`, or `pods` for the core group (Kubernetes' group-resource).
    pub fn group_resource(&self) -> String {
        group_resource(&self.resource.group, &self.resource.plural)
    }
}

/// `<plural>.<group>`, or `<plural>` for the core group.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The version of an `apiVersion` (`apps/v1` → `v1`, `v1` → `v1`).
pub fn version_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
}

/// A snapshot of what the apiserver serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Every served resource, group by group (core first), each group's versions in
    /// preference order.
    resources: Vec<ServedResource>,
}

impl Discovery {
    /// Read an aggregated discovery document (`APIGroupDiscoveryList`, v2 or v2beta1).
    pub fn from_aggregated(doc: &[u8]) -> Result<Discovery> {
        let list: GroupList =
            serde_json::from_slice(doc).map_err(|e| Error::decode("APIGroupDiscoveryList", e))?;
        let mut resources = Vec::new();
        for group in list.items {
            for version in group.versions {
                for r in version.resources {
                    // The response kind's group and version are the resource's own
                    // (Kubernetes lists a resource under its group version).
                    let kind = r.response_kind.map(|k| k.kind).unwrap_or_default();
                    resources.push(ServedResource {
                        resource: ApiResource::new(
                            &group.metadata.name,
                            &version.version,
                            &kind,
                            &r.resource,
                            r.scope == "Namespaced",
                        ),
                        singular: r.singular_resource,
                        verbs: r.verbs,
                        short_names: r.short_names,
                        categories: r.categories,
                        subresources: r.subresources.into_iter().map(|s| s.subresource).collect(),
                    });
                }
            }
        }
        Ok(Discovery { resources })
    }

    /// Every resource in every served version.
    pub fn all(&self) -> &[ServedResource] {
        &self.resources
    }

    /// Each resource once, in the most preferred version of its group that serves it
    /// (client-go's `ServerPreferredResources`).
    pub fn preferred(&self) -> impl Iterator<Item = &ServedResource> {
        self.resources.iter().enumerate().filter_map(|(i, r)| {
            let earlier = self.resources[..i].iter().any(|e| {
                e.resource.group == r.resource.group && e.resource.plural == r.resource.plural
            });
            (!earlier).then_some(r)
        })
    }

    /// The resource of `group`/`plural` in its preferred version.
    pub fn resource(&self, group: &str, plural: &str) -> Option<&ServedResource> {
        self.resources
            .iter()
            .find(|r| r.resource.group == group && r.resource.plural == plural)
    }

    /// The resource of an object's `apiVersion` and `kind`: in that version when it is
    /// served, else in the group's preferred version that serves the kind (owner
    /// references name a group and kind; any served version reaches the object).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&ServedResource> {
        let (group, version) = (group_of(api_version), version_of(api_version));
        let of_kind = |r: &&ServedResource| r.resource.group == group && r.resource.kind == kind;
        self.resources
            .iter()
            .filter(of_kind)
            .find(|r| r.resource.version == version)
            .or_else(|| self.resources.iter().find(of_kind))
    }
}

impl Client {
    /// What the apiserver serves now (one gRPC `Discover` call).
    pub async fn discover(&self) -> Result<Discovery> {
        let req = self.request(keelson_proto::DiscoveryRequest {});
        let doc = self.grpc().discover(req).await?;
        Discovery::from_aggregated(&doc.into_inner().json)
    }
}

// The parts of apidiscovery.k8s.io/v2 read here.

#[derive(Deserialize)]
struct GroupList {
    #[serde(default)]
    items: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    metadata: GroupMeta,
    #[serde(default)]
    versions: Vec<Version>,
}

#[derive(Deserialize)]
struct GroupMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Version {
    version: String,
    #[serde(default)]
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    resource: String,
    #[serde(default)]
    response_kind: Option<Kind>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    singular_resource: String,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    short_names: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    subresources: Vec<Sub>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
struct Sub {
    subresource: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(plural: &str, kind: &str, scope: &str, verbs: &[&str]) -> serde_json::Value {
        json!({"resource": plural, "responseKind": {"group": "", "version": "", "kind": kind},
            "scope": scope, "singularResource": kind.to_lowercase(), "verbs": verbs})
    }

    /// A document like the apiserver's: the core group, apps, and a custom group
    /// serving v2 (preferred) and v1, with a kind only v1 serves.
    fn doc() -> Vec<u8> {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut pods = resource("pods", "Pod", "Namespaced", &all);
        pods["subresources"] = json!([{"subresource": "status", "verbs": ["get"]},
            {"subresource": "log", "verbs": ["get"]}]);
        pods["shortNames"] = json!(["po"]);
        pods["categories"] = json!(["all"]);
        serde_json::to_vec(&json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [
                {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                    pods,
                    resource("namespaces", "Namespace", "Cluster", &all[..1]),
                ]}]},
                {"metadata": {"name": "authorization.k8s.io"}, "versions": [{"version": "v1", "resources": [
                    resource("subjectaccessreviews", "SubjectAccessReview", "Cluster", &["create"]),
                ]}]},
                {"metadata": {"name": "example.com"}, "versions": [
                    {"version": "v2", "resources": [resource("widgets", "Widget", "Namespaced", &all)]},
                    {"version": "v1", "resources": [
                        resource("widgets", "Widget", "Namespaced", &all),
                        resource("gadgets", "Gadget", "Cluster", &all),
                    ]},
                ]},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn aggregated_discovery_becomes_resources() {
        let d = Discovery::from_aggregated(&doc()).unwrap();
        assert_eq!(d.all().len(), 6);
        let pods = d.resource("", "pods").unwrap();
        assert_eq!(
            pods.resource,
            ApiResource::new("", "v1", "Pod", "pods", true)
        );
        assert_eq!(pods.singular, "pod");
        assert_eq!(pods.subresources, ["status", "log"]);
        assert_eq!(pods.short_names, ["po"]);
        assert_eq!(pods.categories, ["all"]);
        assert!(pods.supports(&["delete", "list", "watch"]));
        assert_eq!(pods.group_resource(), "pods");
        let ns = d.resource("", "namespaces").unwrap();
        assert!(!ns.resource.namespaced);
        assert!(!ns.supports(&["list"]));
        let sar = d
            .resource("authorization.k8s.io", "subjectaccessreviews")
            .unwrap();
        assert!(sar.supports(&["create"]) && !sar.supports(&["create", "list"]));
        assert!(Discovery::from_aggregated(b"{").is_err());
    }

    #[test]
    fn preferred_lists_each_resource_once_in_its_first_served_version() {
        let d = Discovery::from_aggregated(&doc()).unwrap();
        let preferred: Vec<String> = d
            .preferred()
            .map(|r| format!("{}/{}", r.resource.api_version(), r.resource.plural))
            .collect();
        assert_eq!(
            preferred,
            [
                "v1/pods",
                "v1/namespaces",
                "authorization.k8s.io/v1/subjectaccessreviews",
                "example.com/v2/widgets",
                "example.com/v1/gadgets",
            ]
        );
        assert_eq!(
            d.resource("example.com", "widgets")
                .unwrap()
                .resource
                .version,
            "v2"
        );
        assert_eq!(
            d.resource("example.com", "widgets")
                .unwrap()
                .group_resource(),
            "widgets.example.com"
        );
    }

    #[test]
    fn kinds_resolve_by_group_and_kind_in_any_served_version() {
        let d = Discovery::from_aggregated(&doc()).unwrap();
        let version = |av: &str, kind: &str| d.kind(av, kind).map(|r| r.resource.version.clone());
        // The version asked for when it is served...
        assert_eq!(version("example.com/v1", "Widget").as_deref(), Some("v1"));
        assert_eq!(version("example.com/v2", "Widget").as_deref(), Some("v2"));
        // ...else the preferred one serving the kind.
        assert_eq!(version("example.com/v9", "Widget").as_deref(), Some("v2"));
        assert_eq!(version("example.com/v2", "Gadget").as_deref(), Some("v1"));
        assert_eq!(d.kind("v1", "Pod").unwrap().resource.plural, "pods");
        assert!(d.kind("v1", "Widget").is_none());
        assert!(d.kind("other.com/v1", "Widget").is_none());
        assert_eq!(group_of("batch/v1"), "batch");
        assert_eq!(group_of("v1"), "");
        assert_eq!(version_of("batch/v1"), "v1");
        assert_eq!(version_of("v1"), "v1");
    }
}
