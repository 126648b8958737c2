//! Generated gRPC types for `keelson.proto`. See that file for the contract.

#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("keelson.v1");

/// Metadata key of the gRPC status detail: the `metav1.Status` JSON.
pub const STATUS_DETAIL: &str = "metav1.Status";
