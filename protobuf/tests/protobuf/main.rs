//! Protobuf bodies as client-go and kubectl send them.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod decode;
mod kubectl;
