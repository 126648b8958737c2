//! Compute resources as the scheduler counts them: what a node can hold
//! (`status.allocatable`) and what a pod asks for (its containers' requests, with the
//! init-container rule and the pod overhead), in integer units (millicores, bytes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_apimachinery::quantity::Quantity as Parsed;

/// What the scheduler assumes a container without a CPU request uses, for scoring
/// (`schedutil.DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The same for memory: 200 MiB (`schedutil.DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for allocatable: how many pods fit.
    pub allowed_pods: i64,
    /// Extended resources, hugepages and the like, by name (sorted).
    pub scalar: BTreeMap<String, i64>,
}

fn parse(q: &Quantity) -> Option<Parsed> {
    Parsed::parse(&q.0).ok()
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// `IsScalarResourceName`: extended (`example.com/gpu`), hugepages, prefixed native
/// (`kubernetes.io/...`) and attachable-volume resources.
pub fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

impl Resource {
    /// A resource list (`requests`, `allocatable`, `overhead`) in scheduler units.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            let Some(q) = parse(q) else { continue };
            match name.as_str() {
                "cpu" => r.milli_cpu += clamp(q.milli_value()),
                "memory" => r.memory += clamp(q.value()),
                "ephemeral-storage" => r.ephemeral_storage += clamp(q.value()),
                "pods" => r.allowed_pods += clamp(q.value()),
                n if is_scalar(n) => {
                    *r.scalar.entry(n.to_string()).or_default() += clamp(q.value())
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pods += o.allowed_pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pods -= o.allowed_pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn set_max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container) -> Resource {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resource::from_list)
        .unwrap_or_default()
}

/// `resourcehelper.PodRequests`: the sum of the containers, or the largest init step if
/// larger (a sidecar, an init container with `restartPolicy: Always`, keeps running
/// and adds to everything after it), plus the pod overhead. Pod-level requests, when
/// set, replace the containers' CPU and memory.
pub fn pod_requests(spec: &PodSpec) -> Resource {
    pod_requests_with(spec, container_requests)
}

/// The CPU and memory the scoring plugins count: like [`pod_requests`], with a
/// container that requests neither counted as the defaults (100m, 200Mi).
pub fn pod_non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let r = pod_requests_with(spec, |c| {
        let mut r = container_requests(c);
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if !requests.is_some_and(|l| l.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|l| l.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
        r
    });
    (r.milli_cpu, r.memory)
}

fn pod_requests_with(spec: &PodSpec, of: impl Fn(&Container) -> Resource) -> Resource {
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&of(c));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut s = r;
            s.add(&sidecars);
            s
        };
        init_max.set_max(&step);
    }
    reqs.set_max(&init_max);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        let p = Resource::from_list(pod_level);
        if pod_level.contains_key("cpu") {
            reqs.milli_cpu = p.milli_cpu;
        }
        if pod_level.contains_key("memory") {
            reqs.memory = p.memory;
        }
    }
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resource::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn c(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    #[test]
    fn parses_units() {
        let l: BTreeMap<String, Quantity> = serde_json::from_value(json!({
            "cpu": "1500m", "memory": "1Gi", "pods": "110", "ephemeral-storage": "10G",
            "example.com/gpu": "2", "hugepages-2Mi": "4Mi", "bogus": "1"
        }))
        .unwrap();
        let r = Resource::from_list(&l);
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.allowed_pods, 110);
        assert_eq!(r.ephemeral_storage, 10_000_000_000);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.scalar.len(), 2);
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add() {
        let s = spec(json!({
            "containers": [c("1", "1Gi"), c("500m", "1Gi")],
            "initContainers": [c("3", "100Mi")],
            "overhead": {"cpu": "100m"}
        }));
        let r = pod_requests(&s);
        assert_eq!((r.milli_cpu, r.memory), (3100, 2 << 30));

        let mut sidecar = c("200m", "64Mi");
        sidecar["restartPolicy"] = json!("Always");
        let s = spec(json!({
            "containers": [c("1", "1Gi")],
            "initContainers": [sidecar, c("2", "10Mi")]
        }));
        let r = pod_requests(&s);
        // Sidecar runs with the app (1200m) and with the later init step (2200m).
        assert_eq!(r.milli_cpu, 2200);
        assert_eq!(r.memory, (1 << 30) + (64 << 20));
    }

    #[test]
    fn non_zero_defaults_for_scoring() {
        let s = spec(json!({"containers": [{"name": "a"}, c("1", "1Gi")]}));
        assert_eq!(
            pod_non_zero_requests(&s),
            (1100, (1 << 30) + DEFAULT_MEMORY_REQUEST)
        );
        assert!(pod_requests(&spec(json!({"containers": [{"name": "a"}]}))).is_zero());
    }
}
