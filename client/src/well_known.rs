//! Well-known labels that several components read or write, defined once.

/// Names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Names the controller that owns an EndpointSlice (others leave it alone).
pub const ENDPOINTSLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
