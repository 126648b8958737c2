//! The catalog: every test with the codename of the Kubernetes conformance test it
//! mirrors (`test/conformance/testdata/conformance.yaml`). One module per area.

use crate::framework::Ctx;
use futures::future::BoxFuture;

/// One conformance-style test. It fails by panicking.
pub struct Test {
    pub codename: &'static str,
    pub run: fn(Ctx) -> BoxFuture<'static, ()>,
}

/// `test!(codename, async_fn)`: a catalog entry.
macro_rules! test {
    ($codename:expr, $f:path) => {
        $crate::tests::Test {
            codename: $codename,
            run: |ctx| Box::pin($f(ctx)),
        }
    };
}

mod api;
mod auth;
mod crd_openapi;
mod crds;
mod dns;
mod endpointslices;
mod env;
mod kinds;
mod networking;
mod pods;
mod probes;
mod proxy;
mod services;
mod volumes;

/// Every test, in catalog order.
pub fn all() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(api::tests());
    v.extend(kinds::tests());
    v.extend(auth::tests());
    v.extend(crds::tests());
    v.extend(crd_openapi::tests());
    v.extend(pods::tests());
    v.extend(probes::tests());
    v.extend(env::tests());
    v.extend(volumes::tests());
    v.extend(endpointslices::tests());
    v.extend(services::tests());
    v.extend(dns::tests());
    v.extend(networking::tests());
    v.extend(proxy::tests());
    v
}

#[cfg(test)]
mod catalog_tests {
    use super::*;

    #[test]
    fn codenames_are_unique_and_conformance_shaped() {
        let all = all();
        let mut seen = std::collections::HashSet::new();
        for t in &all {
            assert!(seen.insert(t.codename), "twice: {}", t.codename);
            assert!(t.codename.starts_with("[sig-"), "{}", t.codename);
            assert!(t.codename.ends_with("[Conformance]"), "{}", t.codename);
        }
    }
}
