//! Review kinds: questions a POST answers, never stored, so they share one strategy
//! ([`Review`]) and have no rules of their own. The apiserver's `reviews` module
//! answers them.
//!
//! - authentication.k8s.io/v1 TokenReview: whom does this token authenticate as (asked
//!   by services that accept cluster tokens, such as a kubelet's webhook
//!   authentication)?
//! - authentication.k8s.io/v1 SelfSubjectReview: who am I (`kubectl auth whoami`)?
//! - authorization.k8s.io/v1 SubjectAccessReview, LocalSubjectAccessReview (one
//!   namespace), SelfSubjectAccessReview (`kubectl auth can-i`) and
//!   SelfSubjectRulesReview (`kubectl auth can-i --list`): may this user do that?

use crate::strategy::Review;
use crate::{ResourceType, Typed};
use k8s_openapi::api::{authentication, authorization};

const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    typed: Typed,
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        strategy: &Review,
        typed: Some(typed),
        // Only ever created: nothing to patch or apply.
        merge: None,
    }
}

const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";

pub static TOKEN_REVIEWS: ResourceType = review(
    AUTHN,
    "TokenReview",
    "tokenreviews",
    "tokenreview",
    false,
    Typed::of::<authentication::v1::TokenReview>(),
);
pub static SELF_SUBJECT_REVIEWS: ResourceType = review(
    AUTHN,
    "SelfSubjectReview",
    "selfsubjectreviews",
    "selfsubjectreview",
    false,
    Typed::of::<authentication::v1::SelfSubjectReview>(),
);
pub static SUBJECT_ACCESS_REVIEWS: ResourceType = review(
    AUTHZ,
    "SubjectAccessReview",
    "subjectaccessreviews",
    "subjectaccessreview",
    false,
    Typed::of::<authorization::v1::SubjectAccessReview>(),
);
pub static LOCAL_SUBJECT_ACCESS_REVIEWS: ResourceType = review(
    AUTHZ,
    "LocalSubjectAccessReview",
    "localsubjectaccessreviews",
    "localsubjectaccessreview",
    true,
    Typed::of::<authorization::v1::LocalSubjectAccessReview>(),
);
pub static SELF_SUBJECT_ACCESS_REVIEWS: ResourceType = review(
    AUTHZ,
    "SelfSubjectAccessReview",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    false,
    Typed::of::<authorization::v1::SelfSubjectAccessReview>(),
);
pub static SELF_SUBJECT_RULES_REVIEWS: ResourceType = review(
    AUTHZ,
    "SelfSubjectRulesReview",
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    false,
    Typed::of::<authorization::v1::SelfSubjectRulesReview>(),
);
