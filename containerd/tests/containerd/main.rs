//! containerd as Keelson runs it, for real: a containerd started in a temporary
//! directory (`cri`), and two nodes in network namespaces whose pods reach each other
//! (`nodes`).

mod cri;
mod nodes;
mod support;
