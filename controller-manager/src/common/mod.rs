//! What several controllers share.

pub mod expectations;
pub mod intstr;
pub mod kinds;
pub mod owner;
pub mod pods;
pub mod revisions;
pub mod service_pods;
pub mod slowstart;
pub mod taints;

pub use expectations::Expectations;
pub use owner::{controller_of, controller_ref, ClaimResult};
