//! A container's environment, as the kubelet's `makeEnvironmentVariables` builds it:
//! the Service variables, then `envFrom`, then `env` with `$(VAR)` expansion and
//! `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef). A missing
//! required ConfigMap, Secret or key is a [`ContainerConfigError`] worded as the kubelet
//! words it, which the pod status shows as `CreateContainerConfigError`.
//!
//! The downward API helpers ([`field_ref_value`], [`resource_field_value`]) are shared
//! with the downwardAPI volumes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_apimachinery::quantity::Quantity as ParsedQuantity;

use crate::sources::PodSources;

/// Why a container cannot be created from its spec (the kubelet's
/// `CreateContainerConfigError` message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContainerConfigError(pub String);

/// What the environment needs beyond the pod: facts of the node and the sandbox.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    /// Used for `spec.nodeName` when the pod has none (static pods before binding).
    pub node_name: String,
    pub host_ips: Vec<String>,
    /// The sandbox's IPs, primary first.
    pub pod_ips: Vec<String>,
    /// The node's allocatable `cpu`, `memory`, `ephemeral-storage`: the limits a
    /// resourceFieldRef reads when the container sets none.
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The `kubernetes` Service of `default`, whose variables every pod gets even
    /// with `enableServiceLinks: false`. (Whether other Services' variables are added
    /// is the pod's `spec.enableServiceLinks`, default true.)
    pub master_service: Option<Service>,
}

/// The environment of `container`, in order: Service variables, then the container's
/// own (`envFrom` then `env`); a name appears once, with its last value.
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
    src: &dyn PodSources,
) -> Result<Vec<(String, String)>, ContainerConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = if links {
        src.services(ns)
            .await
            .map_err(|e| ContainerConfigError(format!("failed to list services: {e:#}")))?
    } else {
        Vec::new()
    };
    let service_env = service_env(ns, ctx.master_service.as_ref(), &services, links);
    let service_map: HashMap<String, String> = service_env.iter().cloned().collect();

    let mut own = OrderedEnv::default();
    let mut config_maps: HashMap<String, ConfigMap> = HashMap::new();
    let mut secrets: HashMap<String, Secret> = HashMap::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            let Some(cm) = config_map(src, &mut config_maps, ns, &r.name, optional).await? else {
                continue;
            };
            let mut invalid = Vec::new();
            for (k, v) in cm.data.iter().flatten() {
                let name = format!("{prefix}{k}");
                if is_env_var_name(&name) {
                    own.set(name, v.clone());
                } else {
                    invalid.push(name);
                }
            }
            warn_invalid_keys(&invalid, "configMap", ns, &r.name);
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            let Some(s) = secret(src, &mut secrets, ns, &r.name, optional).await? else {
                continue;
            };
            let mut invalid = Vec::new();
            for (k, v) in s.data.iter().flatten() {
                let name = format!("{prefix}{k}");
                if is_env_var_name(&name) {
                    own.set(name, String::from_utf8_lossy(&v.0).into_owned());
                } else {
                    invalid.push(name);
                }
            }
            warn_invalid_keys(&invalid, "secret", ns, &r.name);
        }
    }

    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let value = if !value.is_empty() {
            expand_with(value, |name| {
                own.get(name)
                    .or_else(|| service_map.get(name).map(String::as_str))
                    .map(str::to_string)
            })
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_ref_value(f, pod, ctx).map_err(ContainerConfigError)?
            } else if let Some(r) = &from.resource_field_ref {
                // `containerName` may name another container of the pod.
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    None => Some(container),
                    Some(name) => spec.and_then(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                            .find(|c| c.name == name)
                    }),
                };
                let target = target.ok_or_else(|| {
                    ContainerConfigError(format!(
                        "container {} not found",
                        r.container_name.as_deref().unwrap_or("")
                    ))
                })?;
                resource_field_value(r, target, &ctx.node_allocatable)
                    .map_err(ContainerConfigError)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(cm) = config_map(src, &mut config_maps, ns, &r.name, optional).await?
                else {
                    continue;
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ContainerConfigError(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(s) = secret(src, &mut secrets, ns, &r.name, optional).await? else {
                    continue;
                };
                match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ContainerConfigError(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        own.set(var.name.clone(), value);
    }

    let mut out: Vec<(String, String)> = service_env
        .into_iter()
        .filter(|(k, _)| own.get(k).is_none())
        .collect();
    out.extend(own.vars);
    Ok(out)
}

/// The kubelet's `InvalidEnvironmentVariableNames` warning (as a log line: events are
/// the pod worker's).
fn warn_invalid_keys(keys: &[String], kind: &str, ns: &str, name: &str) {
    if !keys.is_empty() {
        tracing::warn!(
            "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
            keys.join(", ")
        );
    }
}

/// Variables in first-definition order; a redefinition replaces the value in place.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// A ConfigMap read once per container; `None` when missing and optional.
async fn config_map(
    src: &dyn PodSources,
    seen: &mut HashMap<String, ConfigMap>,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<ConfigMap>, ContainerConfigError> {
    if let Some(cm) = seen.get(name) {
        return Ok(Some(cm.clone()));
    }
    match src.config_map(ns, name).await {
        Ok(Some(cm)) => {
            seen.insert(name.to_string(), cm.clone());
            Ok(Some(cm))
        }
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(ContainerConfigError(format!(
            "configmap \"{name}\" not found"
        ))),
        Err(e) => Err(ContainerConfigError(format!(
            "couldn't get configMap {ns}/{name}: {e:#}"
        ))),
    }
}

/// A Secret read once per container; `None` when missing and optional.
async fn secret(
    src: &dyn PodSources,
    seen: &mut HashMap<String, Secret>,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<Secret>, ContainerConfigError> {
    if let Some(s) = seen.get(name) {
        return Ok(Some(s.clone()));
    }
    match src.secret(ns, name).await {
        Ok(Some(s)) => {
            seen.insert(name.to_string(), s.clone());
            Ok(Some(s))
        }
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(ContainerConfigError(format!("secret \"{name}\" not found"))),
        Err(e) => Err(ContainerConfigError(format!(
            "couldn't get secret {ns}/{name}: {e:#}"
        ))),
    }
}

/// `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not `.`, `..` or `..`-prefixed.
/// Keys of `envFrom` sources that fail it are skipped, as the kubelet skips them.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && s != "."
        && !s.starts_with("..")
}

/// The Service variables of a pod in `ns`: the master service's always, and with
/// `links` those of every Service in `ns` with a cluster IP (a Service of the pod's
/// namespace named like the master service wins). Services in name order.
pub fn service_env(
    ns: &str,
    master: Option<&Service>,
    services: &[Service],
    links: bool,
) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, &Service> = BTreeMap::new();
    if let Some(m) = master.filter(|s| cluster_ip_set(s)) {
        by_name.insert(m.metadata.name.clone().unwrap_or_default(), m);
    }
    if links {
        for s in services.iter().filter(|s| cluster_ip_set(s)) {
            if s.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
                continue;
            }
            by_name.insert(s.metadata.name.clone().unwrap_or_default(), s);
        }
    }
    by_name.values().flat_map(|s| one_service_env(s)).collect()
}

fn cluster_ip_set(s: &Service) -> bool {
    let ip = s
        .spec
        .as_ref()
        .and_then(|sp| sp.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// `FOO_BAR` from `foo-bar`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn one_service_env(s: &Service) -> Vec<(String, String)> {
    let Some(spec) = &s.spec else {
        return vec![];
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    // Validation requires a port; a Service without one gets no variables.
    let Some(first) = ports.first() else {
        return vec![];
    };
    let prefix = env_name(s.metadata.name.as_deref().unwrap_or(""));
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.clone()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                p.port.to_string(),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let lower = proto.to_lowercase();
        let host_port = if ip.contains(':') {
            format!("[{ip}]:{}", p.port)
        } else {
            format!("{ip}:{}", p.port)
        };
        let url = format!("{lower}://{host_port}");
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower.clone()));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.clone()));
    }
    out
}

/// `$(VAR)` expansion as Kubernetes does it: a known name is replaced, an unknown one
/// stays as written, `$$` is a literal `$`, and a `$` before anything else is kept.
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    expand_with(s, |name| env.get(name).cloned())
}

/// [`expand`] with a lookup function.
pub fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is kept.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The container's command and args with `$(VAR)` expanded from its environment.
pub fn command_and_args(
    container: &Container,
    env: &HashMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let exp = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, env)).collect()
    };
    (exp(&container.command), exp(&container.args))
}

/// The environment as a map (for [`expand`] and [`command_and_args`]).
pub fn env_map(env: &[(String, String)]) -> HashMap<String, String> {
    env.iter().cloned().collect()
}

/// A `fieldRef` of an env var: the metadata fields of [`metadata_field_value`] plus
/// `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP(s)`, `status.podIP(s)`.
pub fn field_ref_value(
    f: &ObjectFieldSelector,
    pod: &Pod,
    ctx: &EnvContext,
) -> Result<String, String> {
    check_field_api_version(f)?;
    let spec = pod.spec.as_ref();
    Ok(match f.field_path.as_str() {
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ctx.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => ctx.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => ctx.host_ips.join(","),
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        other => return metadata_field_value(pod, other),
    })
}

fn check_field_api_version(f: &ObjectFieldSelector) -> Result<(), String> {
    match f.api_version.as_deref().unwrap_or("v1") {
        "" | "v1" => Ok(()),
        v => Err(format!("unsupported pod version: {v}")),
    }
}

/// A `fieldRef` of a downwardAPI volume file (metadata fields only).
pub fn volume_field_ref_value(f: &ObjectFieldSelector, pod: &Pod) -> Result<String, String> {
    check_field_api_version(f)?;
    metadata_field_value(pod, &f.field_path)
}

/// `metadata.name`, `namespace`, `uid`, `labels`, `annotations` (all, as `k="v"`
/// lines in key order) and `labels['k']` / `annotations['k']`.
pub fn metadata_field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    if let Some((map, key)) = subscript(path) {
        let source = match map {
            "metadata.labels" => &m.labels,
            "metadata.annotations" => &m.annotations,
            _ => return Err(format!("unsupported fieldPath: {path}")),
        };
        return Ok(source
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// `metadata.labels['k']` → `("metadata.labels", "k")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let open = path.find("['")?;
    let inner = path[open + 2..].strip_suffix("']")?;
    Some((&path[..open], inner))
}

/// `k="v"` lines in key order, values quoted as Go's `%q` quotes them.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `resourceFieldRef` against `container`, whose missing cpu, memory and
/// ephemeral-storage limits are the node's allocatable. The value is divided by the
/// divisor (default 1) and rounded up, as the kubelet does.
pub fn resource_field_value(
    sel: &ResourceFieldSelector,
    container: &Container,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let one = || ParsedQuantity::parse("1").expect("1 is a quantity");
    let divisor = match sel.divisor.as_ref().map(|d| ParsedQuantity::parse(&d.0)) {
        None => one(),
        Some(Ok(d)) if d.is_zero() => one(),
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(format!("invalid divisor: {e}")),
    };
    let (kind, name) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", sel.resource))?;
    let supported =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !supported || !matches!(kind, "limits" | "requests") {
        return Err(format!("unsupported container resource : {}", sel.resource));
    }
    let res = container.resources.as_ref();
    let list = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        _ => res.and_then(|r| r.requests.as_ref()),
    };
    let mut q = list.and_then(|l| l.get(name)).cloned();
    if q.is_none() && kind == "limits" && !name.starts_with("hugepages-") {
        q = allocatable.get(name).cloned();
    }
    let q = match q {
        Some(q) => {
            ParsedQuantity::parse(&q.0).map_err(|e| format!("invalid quantity {}: {e}", q.0))?
        }
        None => ParsedQuantity::zero(),
    };
    let v = if name == "cpu" {
        let d = divisor.milli_value();
        if d == 0 {
            return Err(format!("invalid divisor for {}", sel.resource));
        }
        (q.milli_value() as f64 / d as f64).ceil()
    } else {
        let d = divisor.value();
        if d == 0 {
            return Err(format!("invalid divisor for {}", sel.resource));
        }
        (q.value() as f64 / d as f64).ceil()
    };
    Ok(format!("{}", v as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::memory::MemorySources;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .unwrap()
    }

    fn master() -> Service {
        service(
            "default",
            "kubernetes",
            "10.96.0.1",
            json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        )
    }

    fn ctx() -> EnvContext {
        EnvContext {
            node_name: "node-a".into(),
            host_ips: vec!["192.168.1.2".into(), "fd00::2".into()],
            pod_ips: vec!["10.244.0.5".into(), "fd01::5".into()],
            node_allocatable: [
                ("cpu".to_string(), Quantity("2".into())),
                ("memory".to_string(), Quantity("4Gi".into())),
                ("ephemeral-storage".to_string(), Quantity("10Gi".into())),
            ]
            .into(),
            master_service: Some(master()),
        }
    }

    fn base_pod() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1",
                         "labels": {"app": "web", "tier": "fe"},
                         "annotations": {"note": "say \"hi\"\n"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "builder", "containers": []}
        }))
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn expansion_table() {
        let env: HashMap<String, String> = [("A", "a"), ("B", "b"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (input, want) in [
            ("$(A)", "a"),
            ("x$(A)y$(B)z", "xaybz"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("a$", "a$"),
            ("$", "$"),
            ("$(EMPTY)x", "x"),
            ("$()", "$()"),
            ("é$(A)ü$é", "éaü$é"),
            ("plain", "plain"),
        ] {
            assert_eq!(expand(input, &env), want, "input {input:?}");
        }
    }

    #[test]
    fn command_and_args_expand() {
        let c = container(json!({"name": "c", "command": ["sh", "-c", "echo $(MSG)"],
                                  "args": ["$(MISSING)", "$$(MSG)"]}));
        let env = env_map(&[("MSG".into(), "hello".into())]);
        let (cmd, args) = command_and_args(&c, &env);
        assert_eq!(cmd, ["sh", "-c", "echo hello"]);
        assert_eq!(args, ["$(MISSING)", "$(MSG)"]);
    }

    #[test]
    fn service_variables_as_kubernetes_names_them() {
        let svc = service(
            "ns1",
            "redis-primary",
            "10.0.0.11",
            json!([{"name": "redis", "port": 6379, "protocol": "TCP"},
                   {"name": "metrics-port", "port": 9121, "protocol": "UDP"}]),
        );
        let env = service_env("ns1", Some(&master()), &[svc], true);
        let m: HashMap<_, _> = env.iter().cloned().collect();
        for (k, v) in [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_METRICS_PORT", "9121"),
            ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
            ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.0.0.11:9121"),
            ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ] {
            assert_eq!(m.get(k).map(String::as_str), Some(v), "{k}");
        }
        // Docker's link variable order: the URL before its parts.
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let url = names
            .iter()
            .position(|n| *n == "REDIS_PRIMARY_PORT_6379_TCP");
        let proto = names
            .iter()
            .position(|n| *n == "REDIS_PRIMARY_PORT_6379_TCP_PROTO");
        assert!(url < proto);
    }

    #[test]
    fn service_variables_skip_headless_other_namespaces_and_respect_links() {
        let headless = service("ns1", "db", "None", json!([{"port": 5432}]));
        let no_ip = service("ns1", "pending", "", json!([{"port": 1}]));
        let other = service("ns2", "far", "10.0.0.9", json!([{"port": 80}]));
        let local = service("ns1", "web", "10.0.0.8", json!([{"port": 80}]));
        let all = [headless, no_ip, other, local];
        let env = service_env("ns1", Some(&master()), &all, true);
        let m: HashMap<_, _> = env.into_iter().collect();
        assert!(!m.contains_key("DB_SERVICE_HOST"));
        assert!(!m.contains_key("PENDING_SERVICE_HOST"));
        assert!(!m.contains_key("FAR_SERVICE_HOST"));
        assert_eq!(m["WEB_SERVICE_HOST"], "10.0.0.8");
        assert_eq!(m["WEB_PORT_80_TCP"], "tcp://10.0.0.8:80");

        let env = service_env("ns1", Some(&master()), &all, false);
        let m: HashMap<_, _> = env.into_iter().collect();
        assert!(!m.contains_key("WEB_SERVICE_HOST"));
        assert_eq!(m["KUBERNETES_SERVICE_HOST"], "10.96.0.1");

        // A pod namespace's own `kubernetes` Service wins over the master's.
        let own = service("ns1", "kubernetes", "10.0.0.99", json!([{"port": 8443}]));
        let m: HashMap<_, _> = service_env("ns1", Some(&master()), &[own], true)
            .into_iter()
            .collect();
        assert_eq!(m["KUBERNETES_SERVICE_HOST"], "10.0.0.99");

        // IPv6 cluster IPs are bracketed in URLs.
        let v6 = service("ns1", "six", "fd00::10", json!([{"port": 80}]));
        let m: HashMap<_, _> = service_env("ns1", None, &[v6], true).into_iter().collect();
        assert_eq!(m["SIX_PORT"], "tcp://[fd00::10]:80");
    }

    #[tokio::test]
    async fn env_from_env_order_expansion_and_overrides() {
        let src = MemorySources::default();
        src.add_config_map(
            "ns1",
            "cfg",
            &[("LEVEL", "debug"), ("1BAD", "x"), ("HOST", "h")],
        );
        src.add_secret("ns1", "creds", &[("password", "s3cret")]);
        src.services
            .lock()
            .unwrap()
            .push(service("ns1", "web", "10.0.0.8", json!([{"port": 80}])));
        let c = container(json!({
            "name": "app",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"prefix": "DB_", "secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "gone", "optional": true}}
            ],
            "env": [
                {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(PORT)/$(LEVEL)"},
                {"name": "PORT", "value": "8080"},
                {"name": "AGAIN", "value": "$(PORT)$$(PORT)"},
                {"name": "LEVEL", "value": "info"},
                {"name": "EMPTY"},
                {"name": "WEB_SERVICE_HOST", "value": "overridden"}
            ]
        }));
        let env = container_env(&base_pod(), &c, &ctx(), &src).await.unwrap();
        assert_eq!(get(&env, "LEVEL"), Some("info"));
        assert_eq!(get(&env, "HOST"), Some("h"));
        assert_eq!(get(&env, "1BAD"), None, "invalid keys are skipped");
        assert_eq!(get(&env, "DB_password"), Some("s3cret"));
        // PORT is not defined yet when URL is expanded; LEVEL is (from envFrom).
        assert_eq!(get(&env, "URL"), Some("http://10.0.0.8:$(PORT)/debug"));
        assert_eq!(get(&env, "AGAIN"), Some("8080$(PORT)"));
        assert_eq!(get(&env, "EMPTY"), Some(""));
        assert_eq!(get(&env, "WEB_SERVICE_HOST"), Some("overridden"));
        assert_eq!(
            env.iter().filter(|(k, _)| k == "WEB_SERVICE_HOST").count(),
            1
        );
        // Service variables come first, the container's own in declaration order.
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names
                .iter()
                .position(|n| *n == "KUBERNETES_SERVICE_HOST")
                .unwrap()
                < names.iter().position(|n| *n == "LEVEL").unwrap()
        );
        assert!(
            names.iter().position(|n| *n == "LEVEL").unwrap()
                < names.iter().position(|n| *n == "URL").unwrap()
        );
    }

    #[tokio::test]
    async fn enable_service_links_false_keeps_only_the_master_service() {
        let src = MemorySources::default();
        src.services
            .lock()
            .unwrap()
            .push(service("ns1", "web", "10.0.0.8", json!([{"port": 80}])));
        let mut p = base_pod();
        p.spec.as_mut().unwrap().enable_service_links = Some(false);
        let c = container(json!({"name": "c"}));
        let env = container_env(&p, &c, &ctx(), &src).await.unwrap();
        assert_eq!(get(&env, "WEB_SERVICE_HOST"), None);
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    }

    #[tokio::test]
    async fn field_refs() {
        let src = MemorySources::default();
        let mut p = base_pod();
        p.metadata.annotations = Some(
            [
                ("b".into(), "2".into()),
                ("a".into(), "say \"hi\"\n".into()),
            ]
            .into(),
        );
        let refs = [
            ("metadata.name", "web"),
            ("metadata.namespace", "ns1"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.labels", "app=\"web\"\ntier=\"fe\""),
            ("metadata.annotations", "a=\"say \\\"hi\\\"\\n\"\nb=\"2\""),
            ("metadata.annotations['b']", "2"),
            ("spec.nodeName", "node-a"),
            ("spec.serviceAccountName", "builder"),
            ("status.hostIP", "192.168.1.2"),
            ("status.hostIPs", "192.168.1.2,fd00::2"),
            ("status.podIP", "10.244.0.5"),
            ("status.podIPs", "10.244.0.5,fd01::5"),
        ];
        let env: Vec<_> = refs
            .iter()
            .enumerate()
            .map(|(i, (path, _))| json!({"name": format!("V{i}"), "valueFrom": {"fieldRef": {"fieldPath": path}}}))
            .collect();
        let c = container(json!({"name": "c", "env": env}));
        let got = container_env(&p, &c, &ctx(), &src).await.unwrap();
        for (i, (path, want)) in refs.iter().enumerate() {
            assert_eq!(get(&got, &format!("V{i}")), Some(*want), "{path}");
        }

        let bad = container(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.unknown"}}}]}));
        let err = container_env(&p, &bad, &ctx(), &src).await.unwrap_err();
        assert_eq!(err.0, "unsupported fieldPath: spec.unknown");
        let bad = container(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}]}));
        let err = container_env(&p, &bad, &ctx(), &src).await.unwrap_err();
        assert_eq!(err.0, "unsupported pod version: v2");
    }

    #[test]
    fn resource_field_refs_round_up_and_default_to_allocatable() {
        let c = container(json!({"name": "c", "resources": {
            "limits": {"cpu": "1250m", "memory": "100Mi"},
            "requests": {"cpu": "250m", "memory": "64Mi"}
        }}));
        let alloc = ctx().node_allocatable;
        for (resource, divisor, want) in [
            ("limits.cpu", None, "2"),
            ("limits.cpu", Some("1m"), "1250"),
            ("requests.cpu", None, "1"),
            ("requests.cpu", Some("100m"), "3"),
            ("limits.memory", None, "104857600"),
            ("limits.memory", Some("1Mi"), "100"),
            ("limits.memory", Some("1M"), "105"),
            ("requests.memory", Some("1Mi"), "64"),
            ("limits.ephemeral-storage", Some("1Gi"), "10"),
            ("requests.ephemeral-storage", None, "0"),
            ("limits.cpu", Some("0"), "2"),
        ] {
            let mut sel = json!({"resource": resource});
            if let Some(d) = divisor {
                sel["divisor"] = json!(d);
            }
            let sel: ResourceFieldSelector = serde_json::from_value(sel).unwrap();
            assert_eq!(
                resource_field_value(&sel, &c, &alloc).unwrap(),
                want,
                "{resource} / {divisor:?}"
            );
        }
        // Without limits, the node's allocatable.
        let bare = container(json!({"name": "c"}));
        for (resource, divisor, want) in [
            ("limits.cpu", None, "2"),
            ("limits.memory", Some("1Gi"), "4"),
            ("requests.cpu", None, "0"),
        ] {
            let mut sel = json!({"resource": resource});
            if let Some(d) = divisor {
                sel["divisor"] = json!(d);
            }
            let sel: ResourceFieldSelector = serde_json::from_value(sel).unwrap();
            assert_eq!(resource_field_value(&sel, &bare, &alloc).unwrap(), want);
        }
        let sel: ResourceFieldSelector =
            serde_json::from_value(json!({"resource": "limits.gpu"})).unwrap();
        assert_eq!(
            resource_field_value(&sel, &c, &alloc).unwrap_err(),
            "unsupported container resource : limits.gpu"
        );
        let sel: ResourceFieldSelector =
            serde_json::from_value(json!({"resource": "limits.cpu.x"})).unwrap();
        assert_eq!(
            resource_field_value(&sel, &c, &alloc).unwrap_err(),
            "unsupported container resource : limits.cpu.x"
        );
    }

    #[tokio::test]
    async fn resource_field_ref_of_another_container() {
        let src = MemorySources::default();
        let mut p = base_pod();
        p.spec.as_mut().unwrap().containers = vec![
            container(json!({"name": "app", "resources": {"limits": {"memory": "64Mi"}}})),
            container(json!({"name": "side", "resources": {"limits": {"memory": "32Mi"}}})),
        ];
        let c = container(json!({"name": "app", "env": [
            {"name": "OWN", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "SIDE", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory", "divisor": "1Mi"}}}
        ]}));
        let env = container_env(&p, &c, &ctx(), &src).await.unwrap();
        assert_eq!(get(&env, "SIDE"), Some("32"));
        assert_eq!(
            get(&env, "OWN"),
            Some("4096"),
            "this container spec sets no limit"
        );
        let bad = container(json!({"name": "app", "env": [
            {"name": "X", "valueFrom": {"resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}}}]}));
        let err = container_env(&p, &bad, &ctx(), &src).await.unwrap_err();
        assert_eq!(err.0, "container ghost not found");
    }

    #[tokio::test]
    async fn key_refs_missing_and_optional() {
        let src = MemorySources::default();
        src.add_config_map("ns1", "cfg", &[("present", "yes")]);
        src.add_secret("ns1", "sec", &[("token", "t0k")]);
        let p = base_pod();
        let cases: Vec<(serde_json::Value, Result<Option<&str>, &str>)> = vec![
            (
                json!({"configMapKeyRef": {"name": "cfg", "key": "present"}}),
                Ok(Some("yes")),
            ),
            (
                json!({"secretKeyRef": {"name": "sec", "key": "token"}}),
                Ok(Some("t0k")),
            ),
            (
                json!({"configMapKeyRef": {"name": "x", "key": "k"}}),
                Err("configmap \"x\" not found"),
            ),
            (
                json!({"secretKeyRef": {"name": "x", "key": "k"}}),
                Err("secret \"x\" not found"),
            ),
            (
                json!({"configMapKeyRef": {"name": "cfg", "key": "k"}}),
                Err("couldn't find key k in ConfigMap ns1/cfg"),
            ),
            (
                json!({"secretKeyRef": {"name": "sec", "key": "k"}}),
                Err("couldn't find key k in Secret ns1/sec"),
            ),
            (
                json!({"configMapKeyRef": {"name": "x", "key": "k", "optional": true}}),
                Ok(None),
            ),
            (
                json!({"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}),
                Ok(None),
            ),
            (
                json!({"secretKeyRef": {"name": "x", "key": "k", "optional": true}}),
                Ok(None),
            ),
            (
                json!({"secretKeyRef": {"name": "sec", "key": "k", "optional": true}}),
                Ok(None),
            ),
        ];
        for (from, want) in cases {
            let c = container(json!({"name": "c", "env": [{"name": "V", "valueFrom": from}]}));
            let got = container_env(&p, &c, &ctx(), &src).await;
            match want {
                Ok(v) => assert_eq!(get(&got.unwrap(), "V"), v, "{from}"),
                Err(msg) => assert_eq!(got.unwrap_err().0, msg, "{from}"),
            }
        }
        let c = container(json!({"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}));
        let err = container_env(&p, &c, &ctx(), &src).await.unwrap_err();
        assert_eq!(err.to_string(), "secret \"nope\" not found");
    }

    #[test]
    fn env_var_names() {
        for (name, ok) in [
            ("A", true),
            ("my.env-name", true),
            ("_x1", true),
            ("1A", false),
            ("", false),
            (".", false),
            ("..a", false),
            ("a b", false),
            ("a=b", false),
        ] {
            assert_eq!(is_env_var_name(name), ok, "{name}");
        }
    }
}
