//! authentication.k8s.io/v1 TokenReview: "who does this token authenticate as?", asked
//! by services that accept cluster tokens (a kubelet's webhook authentication). Answered
//! by the apiserver's authenticators; nothing is stored.

use crate::strategy::Review;
use crate::ResourceType;

pub static RESOURCE: ResourceType = ResourceType {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenReview",
    plural: "tokenreviews",
    singular: "tokenreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &Review,
};
