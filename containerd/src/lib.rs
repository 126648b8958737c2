//! containerd as Keelson runs it: the configuration of one node's containerd
//! ([`config`]), the gRPC connection to its socket and readiness ([`connection`]), the
//! project's own OCI images built from Debian's busybox-static ([`image`]), and image
//! import into containerd through its gRPC API, with the labels containerd's own client
//! sets so that the CRI plugin sees and runs the images ([`import`]), and registry
//! mirrors and credentials from a `registries.yaml` ([`registries`]).

pub mod config;
pub mod connection;
mod digest;
pub mod image;
pub mod import;
pub mod registries;
mod tar;

pub use config::ContainerdConfig;
pub use connection::{connect, wait_ready};
pub use image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use import::{import_archive, ImportOptions, ImportedImage};

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";
