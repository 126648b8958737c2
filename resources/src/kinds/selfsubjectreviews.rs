//! authentication.k8s.io/v1 SelfSubjectReview: "who am I?" (`kubectl auth whoami`).
//! Answered with the requester's own identity; nothing is stored.

use crate::strategy::Review;
use crate::ResourceType;

pub static RESOURCE: ResourceType = ResourceType {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "SelfSubjectReview",
    plural: "selfsubjectreviews",
    singular: "selfsubjectreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &Review,
};
