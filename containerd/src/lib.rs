//! See the crate description (Cargo.toml); modules are being written.
