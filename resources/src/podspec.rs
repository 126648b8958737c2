//! Pod spec and pod template behaviour shared by pods and the workload kinds.
//!
//! Kubernetes defaults every `PodSpec` wherever it appears (a pod, a deployment's
//! template, a cron job's job template) and validates it with the same rules, so the
//! kinds in [`crate::kinds`] call into this module rather than repeating them:
//!
//! - defaulting: [`default_pod_spec`] (`SetDefaults_PodSpec` and everything nested:
//!   containers, probes, ports, volumes), [`default_pod_template`] for templates, and
//!   [`default_pod_only`] for what only a real pod gets (`SetDefaults_Pod`);
//! - validation: [`validate_pod_spec`], [`validate_pod_template`] and
//!   [`validate_replicated_template`] (the template checks every controller shares),
//!   with Kubernetes' field paths and wording;
//! - label selectors: matching, validation and the `kubectl` rendering;
//! - resource quantities and the pod QoS class;
//! - the table cells every workload printer shares ([`container_cells`]).

use crate::table::Column;
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Map, Value};

// ------------------------------------------------------------------ JSON helpers

/// `v` as an object, replacing anything else (null included) with `{}`.
pub fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("object")
}

/// Set `map[key]` to `value` when it is missing or null.
pub fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// Like [`default_field`], but also replaces a zero (Go's "unset" for plain ints).
fn default_nonzero(map: &mut Map<String, Value>, key: &str, value: i64) {
    match map.get(key) {
        Some(v) if !v.is_null() && v.as_i64() != Some(0) => {}
        _ => {
            map.insert(key.to_string(), json!(value));
        }
    }
}

/// Like [`default_field`], but also replaces an empty string (Go's "unset").
fn default_nonempty(map: &mut Map<String, Value>, key: &str, value: &str) {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(v) if !v.is_null() && !v.is_string() => {}
        _ => {
            map.insert(key.to_string(), json!(value));
        }
    }
}

/// The object at `map[key]` when it is one.
fn child_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The items of the array at `map[key]`, or nothing.
fn items_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Value> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
}

/// The items of the array at `v[key]`, or an empty slice.
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `v[key]` as a string, or "".
pub fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `v[key]` when present and not null.
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A map of strings (labels, a node selector) as sorted pairs; non-strings are skipped.
pub fn string_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

// ------------------------------------------------------------------ defaulting

/// Volume source fields; a volume naming none of them gets `emptyDir: {}`.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// The container lists of a pod spec, in the order Kubernetes validates them.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

/// `SetDefaults_PodSpec` plus the defaults of everything nested in a pod spec, as
/// Kubernetes applies them to every pod spec (pods and templates alike).
pub fn default_pod_spec(spec: &mut Value) {
    let m = ensure_object(spec);
    default_nonempty(m, "dnsPolicy", "ClusterFirst");
    default_nonempty(m, "restartPolicy", "Always");
    default_field(m, "securityContext", json!({}));
    default_field(m, "terminationGracePeriodSeconds", json!(30));
    default_nonempty(m, "schedulerName", "default-scheduler");

    // v1 keeps `serviceAccount` as a deprecated alias of `serviceAccountName`: either
    // may be given on input, and output always shows both (the new field wins).
    let name = m
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let alias = m
        .get("serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let effective = if name.is_empty() { alias } else { name };
    if effective.is_empty() {
        m.remove("serviceAccountName");
        m.remove("serviceAccount");
    } else {
        m.insert("serviceAccountName".into(), json!(effective));
        m.insert("serviceAccount".into(), json!(effective));
    }

    for list in CONTAINER_LISTS {
        for c in items_mut(m, list) {
            default_container(c);
        }
    }
    for v in items_mut(m, "volumes") {
        default_volume(v);
    }
}

/// The pull policy Kubernetes picks: `Always` for `:latest` or an untagged image
/// without a digest, `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if !digest && !image.is_empty() => "Always",
        None => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let m = ensure_object(c);
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_nonempty(m, "imagePullPolicy", default_pull_policy(&image));
    default_nonempty(m, "terminationMessagePath", "/dev/termination-log");
    default_nonempty(m, "terminationMessagePolicy", "File");
    // A Go struct, so always serialized.
    default_field(m, "resources", json!({}));
    for p in items_mut(m, "ports") {
        default_nonempty(ensure_object(p), "protocol", "TCP");
    }
    for e in items_mut(m, "env") {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default_nonempty(fr, "apiVersion", "v1");
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_mut(m, probe) {
            default_probe(p);
        }
    }
    if let Some(lc) = child_mut(m, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child_mut(lc, hook) {
                default_handler(h);
            }
        }
    }
}

fn default_probe(p: &mut Map<String, Value>) {
    default_nonzero(p, "timeoutSeconds", 1);
    default_nonzero(p, "periodSeconds", 10);
    default_nonzero(p, "successThreshold", 1);
    default_nonzero(p, "failureThreshold", 3);
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(http) = child_mut(h, "httpGet") {
        default_nonempty(http, "path", "/");
        default_nonempty(http, "scheme", "HTTP");
    }
    if let Some(grpc) = child_mut(h, "grpc") {
        default_field(grpc, "service", json!(""));
    }
}

fn default_field_refs(items: &mut Map<String, Value>) {
    for item in items_mut(items, "items") {
        if let Some(fr) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default_nonempty(fr, "apiVersion", "v1");
        }
    }
}

fn default_volume(v: &mut Value) {
    let m = ensure_object(v);
    if !VOLUME_SOURCES
        .iter()
        .any(|s| m.get(*s).is_some_and(|x| !x.is_null()))
    {
        m.insert("emptyDir".into(), json!({}));
    }
    for (source, mode) in [
        ("secret", 420),
        ("configMap", 420),
        ("downwardAPI", 420),
        ("projected", 420),
    ] {
        if let Some(s) = child_mut(m, source) {
            default_field(s, "defaultMode", json!(mode));
        }
    }
    if let Some(d) = child_mut(m, "downwardAPI") {
        default_field_refs(d);
    }
    if let Some(p) = child_mut(m, "projected") {
        for src in items_mut(p, "sources") {
            let src = ensure_object(src);
            if let Some(t) = child_mut(src, "serviceAccountToken") {
                default_field(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = child_mut(src, "downwardAPI") {
                default_field_refs(d);
            }
        }
    }
    if let Some(h) = child_mut(m, "hostPath") {
        default_field(h, "type", json!(""));
    }
    if let Some(i) = child_mut(m, "iscsi") {
        default_nonempty(i, "iscsiInterface", "default");
    }
    if let Some(r) = child_mut(m, "rbd") {
        default_nonempty(r, "pool", "rbd");
        default_nonempty(r, "user", "admin");
        default_nonempty(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = child_mut(m, "azureDisk") {
        default_field(a, "cachingMode", json!("ReadWrite"));
        default_field(a, "fsType", json!("ext4"));
        default_field(a, "readOnly", json!(false));
        default_field(a, "kind", json!("Shared"));
    }
    if let Some(s) = child_mut(m, "scaleIO") {
        default_nonempty(s, "storageMode", "ThinProvisioned");
        default_nonempty(s, "fsType", "xfs");
    }
    if let Some(spec) = m
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
        .and_then(Value::as_object_mut)
        .and_then(|t| child_mut(t, "spec"))
    {
        default_pvc_spec(spec);
    }
}

/// `PersistentVolumeClaimSpec` defaults (statefulset claim templates, ephemeral volumes).
pub fn default_pvc_spec(spec: &mut Map<String, Value>) {
    default_field(spec, "volumeMode", json!("Filesystem"));
    default_field(spec, "resources", json!({}));
}

/// Template metadata as Kubernetes 1.33 serializes it: `creationTimestamp: null`
/// (a zero `metav1.Time` in a struct that is never omitted).
pub fn default_template_metadata(template: &mut Map<String, Value>) {
    let md = ensure_object(template.entry("metadata").or_insert(Value::Null));
    if !md.contains_key("creationTimestamp") {
        md.insert("creationTimestamp".into(), Value::Null);
    }
}

/// Defaults for a `PodTemplateSpec` (`{metadata, spec}`).
pub fn default_pod_template(template: &mut Value) {
    let t = ensure_object(template);
    default_template_metadata(t);
    default_pod_spec(t.entry("spec").or_insert(Value::Null));
}

/// `SetDefaults_Pod`: what only a pod gets, never a template: requests default to
/// limits, `enableServiceLinks: true`, and host ports follow container ports on the
/// host network.
pub fn default_pod_only(spec: &mut Value) {
    let m = ensure_object(spec);
    default_field(m, "enableServiceLinks", json!(true));
    let host_network = m
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for list in ["containers", "initContainers"] {
        for c in items_mut(m, list) {
            let c = ensure_object(c);
            if let Some(res) = child_mut(c, "resources") {
                if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
                    let requests = ensure_object(res.entry("requests").or_insert(Value::Null));
                    for (k, v) in limits {
                        requests.entry(k).or_insert(v);
                    }
                }
            }
            if host_network {
                for p in items_mut(c, "ports") {
                    let p = ensure_object(p);
                    let cp = p.get("containerPort").cloned().unwrap_or(Value::Null);
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 && !cp.is_null()
                    {
                        p.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ quantities

/// A resource quantity in units of 10^-9 (so `100m` is 10^8 and `1Gi` fits easily).
/// `None` when it is not a valid quantity.
pub fn parse_quantity(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i as i128).checked_mul(1_000_000_000)
            } else {
                n.as_f64().map(|f| (f * 1e9).round() as i128)
            }
        }
        Value::String(s) => parse_quantity_str(s),
        _ => None,
    }
}

fn parse_quantity_str(s: &str) -> Option<i128> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = mantissa * 10^(exp10 - frac_len) * binary
    let (exp10, binary): (i32, i128) = match suffix {
        "" => (0, 1),
        "n" => (-9, 1),
        "u" => (-6, 1),
        "m" => (-3, 1),
        "k" => (3, 1),
        "M" => (6, 1),
        "G" => (9, 1),
        "T" => (12, 1),
        "P" => (15, 1),
        "E" => (18, 1),
        "Ki" => (0, 1 << 10),
        "Mi" => (0, 1 << 20),
        "Gi" => (0, 1 << 30),
        "Ti" => (0, 1 << 40),
        "Pi" => (0, 1 << 50),
        "Ei" => (0, 1 << 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 1),
        _ => return None,
    };
    // In i64: an exponent near i32::MAX must not overflow.
    let scale = i64::from(exp10) - frac_part.len() as i64 + 9;
    let mut value = mantissa.checked_mul(binary)?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?;
    } else {
        let div = u32::try_from(-scale)
            .ok()
            .and_then(|p| 10i128.checked_pow(p))
            .unwrap_or(i128::MAX);
        // Kubernetes rounds up to the smallest unit it keeps.
        value = value / div + i128::from(value % div != 0);
    }
    Some(if neg { -value } else { value })
}

pub const QUANTITY_REGEX_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity as it appears in messages.
pub fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`), computed the way
/// `qos.GetPodQOS` does from CPU and memory of all containers. Requests missing from a
/// pod spec count as equal to the limits (a pod's requests default to them).
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: Map<String, Value> = Map::new();
    let mut limits: Map<String, Value> = Map::new();
    let mut sums: [(i128, i128, bool, bool); 2] = [(0, 0, false, false); 2]; // (req, lim, req seen, lim seen)
    let mut guaranteed = true;
    let containers = items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"));
    for c in containers {
        let res = c.get("resources");
        let lim = res.and_then(|r| r.get("limits")).and_then(Value::as_object);
        let req = res
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object);
        let mut limits_found = [false, false];
        for (i, name) in ["cpu", "memory"].iter().enumerate() {
            let l = lim
                .and_then(|m| m.get(*name))
                .and_then(parse_quantity)
                .unwrap_or(0);
            let r = req
                .and_then(|m| m.get(*name))
                .or_else(|| lim.and_then(|m| m.get(*name)))
                .and_then(parse_quantity)
                .unwrap_or(0);
            if r > 0 {
                sums[i].0 += r;
                sums[i].2 = true;
            }
            if l > 0 {
                sums[i].1 += l;
                sums[i].3 = true;
                limits_found[i] = true;
            }
        }
        if !(limits_found[0] && limits_found[1]) {
            guaranteed = false;
        }
    }
    for (i, name) in ["cpu", "memory"].iter().enumerate() {
        if sums[i].2 {
            requests.insert(name.to_string(), json!(sums[i].0.to_string()));
        }
        if sums[i].3 {
            limits.insert(name.to_string(), json!(sums[i].1.to_string()));
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

// ------------------------------------------------------------------ Go-style values

/// How Go's `%#v` prints a `map[string]string` (keys sorted), as Kubernetes shows
/// template labels in `selector does not match` errors.
pub fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(_) => {
            let inner: Vec<String> = string_pairs(v)
                .iter()
                .map(|(k, v)| format!("{k:?}:{v:?}"))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// How Go's `%#v` prints a `metav1.LabelSelector`, as in `field is immutable` errors.
pub fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "null".to_string();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let inner: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => format!(
                            "[]string{{{}}}",
                            vs.iter()
                                .map(|v| format!("{:?}", v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        str_at(e, "key"),
                        str_at(e, "operator")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", inner.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

/// `field: Invalid value: <shown>: detail`, with the value already rendered.
pub fn invalid_shown(field: impl Into<String>, shown: &str, detail: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {shown}: {detail}"),
    )
}

/// `field: Required value: detail`.
pub fn required_detail(field: impl Into<String>, detail: &str) -> Cause {
    Cause::new(
        "FieldValueRequired",
        field,
        format!("Required value: {detail}"),
    )
}

/// `field: Not found: "value"`.
fn not_found(field: impl Into<String>, value: &str) -> Cause {
    Cause::new("FieldValueNotFound", field, format!("Not found: {value:?}"))
}

/// `field: Invalid value: N: must be greater than or equal to 0` for a negative `v[key]`.
pub fn nonnegative(v: &Value, key: &str, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = v.get(key).and_then(Value::as_i64) {
        if n < 0 {
            out.push(Cause::invalid(
                format!("{path}.{key}"),
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// The common "supported values" check: Required when empty, NotSupported when unknown.
fn enum_field(v: &Value, key: &str, path: &str, supported: &[&str], out: &mut Vec<Cause>) {
    let value = str_at(v, key);
    if value.is_empty() {
        out.push(Cause::required(format!("{path}.{key}")));
    } else if !supported.contains(&value) {
        out.push(Cause::not_supported(
            format!("{path}.{key}"),
            &json!(value),
            supported,
        ));
    }
}

// ------------------------------------------------------------------ labels & selectors

/// `ValidateLabels`: every key a qualified name, every value a label value, all
/// reported at `path` itself as Kubernetes does.
pub fn validate_labels(labels: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for msg in validation::qualified_name(k) {
            out.push(Cause::invalid(path, &json!(k), msg));
        }
        let value = v.as_str().unwrap_or("");
        for msg in validation::label_value(value) {
            out.push(Cause::invalid(path, &json!(value), msg));
        }
    }
}

/// Total size limit of an object's annotations.
const ANNOTATIONS_MAX: usize = 256 * 1024;

/// `ValidateAnnotations`: keys are (lowercased) qualified names, total size bounded.
pub fn validate_annotations(annotations: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for msg in validation::qualified_name(&k.to_lowercase()) {
            out.push(Cause::invalid(path, &json!(k), msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX {
        out.push(Cause::new(
            "FieldValueTooLong",
            path,
            format!("Too long: must have at most {ANNOTATIONS_MAX} bytes"),
        ));
    }
}

/// `ValidateLabelName`: a qualified name, reported at `path`.
fn validate_label_name(name: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::qualified_name(name) {
        out.push(Cause::invalid(path, &json!(name), msg));
    }
}

/// `metav1validation.ValidateLabelSelector`.
pub fn validate_label_selector(sel: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return;
    };
    validate_labels(sel.get("matchLabels"), &format!("{path}.matchLabels"), out);
    for (i, e) in items(sel, "matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = items(e, "values");
        match str_at(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    out.push(required_detail(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    out.push(Cause::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => out.push(Cause::invalid(
                format!("{p}.operator"),
                &json!(op),
                "not a valid selector operator",
            )),
        }
        validate_label_name(str_at(e, "key"), &format!("{p}.key"), out);
        for (j, v) in values.iter().enumerate() {
            let value = v.as_str().unwrap_or("");
            for msg in validation::label_value(value) {
                out.push(Cause::invalid(
                    format!("{p}.values[{j}]"),
                    &json!(value),
                    msg,
                ));
            }
        }
    }
}

/// Whether a `LabelSelector` converts to a selector (known operators, values as needed).
pub fn selector_is_valid(sel: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return true;
    };
    items(sel, "matchExpressions").iter().all(|e| {
        let n = items(e, "values").len();
        match str_at(e, "operator") {
            "In" | "NotIn" => n > 0,
            "Exists" | "DoesNotExist" => n == 0,
            _ => false,
        }
    })
}

/// Whether a `LabelSelector` has no requirements (and so selects everything).
pub fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && items(sel, "matchExpressions").is_empty()
}

/// Whether a `LabelSelector` selects `labels`. A missing selector selects nothing, an
/// empty one everything, as `LabelSelectorAsSelector` has it.
pub fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return false;
    };
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = string_pairs(sel.get("matchLabels"));
    if !match_labels.iter().all(|(k, v)| get(k) == Some(v.as_str())) {
        return false;
    }
    items(sel, "matchExpressions").iter().all(|e| {
        let key = str_at(e, "key");
        let values: Vec<&str> = items(e, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        match str_at(e, "operator") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        }
    })
}

/// A `LabelSelector` as `selector.String()` renders it: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; "" when empty or missing.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = string_pairs(sel.get("matchLabels"))
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in items(sel, "matchExpressions") {
        let key = str_at(e, "key").to_string();
        let mut values: Vec<&str> = items(e, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let text = match str_at(e, "operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty, `<error>`
/// when it does not convert.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    if !selector_is_valid(sel) {
        return "<error>".to_string();
    }
    let s = selector_string(sel);
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted and comma-joined, `<none>` when empty.
pub fn format_labels(labels: Option<&Value>) -> String {
    let pairs = string_pairs(labels);
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// kubectl's `layoutContainerCells`: container names and images, comma-joined.
pub fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.map_or(&[][..], |s| items(s, "containers"));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// The `-o wide` columns of every replicated workload: CONTAINERS, IMAGES, SELECTOR.
pub fn wide_columns(selector_description: &'static str) -> Vec<Column> {
    vec![
        Column::new(
            "Containers",
            "string",
            "Names of each container in the template.",
        )
        .wide(),
        Column::new(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        )
        .wide(),
        Column::new("Selector", "string", selector_description).wide(),
    ]
}

// ------------------------------------------------------------------ validation

/// What differs between validating a pod's spec and a template's.
#[derive(Debug, Default, Clone)]
pub struct SpecOptions {
    /// The spec belongs to a pod (not a template): host ports must equal container
    /// ports on the host network, images may not carry surrounding whitespace.
    pub is_pod: bool,
    /// Volume names that exist besides `volumes` (a statefulset's claim templates).
    pub extra_volumes: Vec<String>,
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// Field paths the downward API converts at all (others fail conversion).
const DOWNWARD_API_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const CONTAINER_RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// `ValidatePortNumOrName` for an IntOrString port at `path`.
fn validate_port_num_or_name(port: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    match port {
        Some(Value::String(s)) => {
            for msg in port_name_errors(s) {
                out.push(Cause::invalid(path, &json!(s), msg));
            }
        }
        Some(Value::Number(n)) => {
            let p = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&p) {
                out.push(Cause::invalid(path, &json!(p), PORT_RANGE));
            }
        }
        _ => out.push(Cause::invalid(path, &json!(0), PORT_RANGE)),
    }
}

fn validate_dns1123_label(value: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::dns1123_label(value) {
        out.push(Cause::invalid(path, &json!(value), msg));
    }
}

fn validate_dns1123_subdomain(value: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::dns1123_subdomain(value) {
        out.push(Cause::invalid(path, &json!(value), msg));
    }
}

fn env_name_errors(name: &str) -> Vec<String> {
    // RelaxedEnvironmentVariableValidation is on by default since 1.32.
    if name.bytes().all(|c| (32..=126).contains(&c) && c != b'=') {
        Vec::new()
    } else {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".to_string()]
    }
}

/// `ValidatePodSpec`, with Kubernetes' field paths under `path` (`spec`,
/// `spec.template.spec`, ...).
pub fn validate_pod_spec(spec: &Value, path: &str, opts: &SpecOptions) -> Vec<Cause> {
    let mut out = Vec::new();
    if !spec.is_object() {
        out.push(Cause::required(path));
        return out;
    }
    let grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if present(spec, "terminationGracePeriodSeconds").is_none() {
        out.push(Cause::required(format!(
            "{path}.terminationGracePeriodSeconds"
        )));
    }
    let mut volumes = validate_volumes(spec, path, &mut out);
    volumes.extend(opts.extra_volumes.iter().cloned());
    let restart_policy = str_at(spec, "restartPolicy");

    // Regular containers.
    let cpath = format!("{path}.containers");
    let containers = items(spec, "containers");
    if containers.is_empty() {
        out.push(Cause::required(&cpath));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{cpath}[{i}]");
        validate_container_common(c, &p, &volumes, restart_policy, opts, &mut out);
        let name = str_at(c, "name");
        if names.contains(&name) {
            out.push(Cause::duplicate(format!("{p}.name"), &json!(name)));
        } else {
            names.push(name);
        }
        validate_probes_and_lifecycle(c, &p, grace, &mut out);
        if present(c, "restartPolicy").is_some() {
            out.push(Cause::forbidden(
                format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_ports(containers, &cpath, &mut out);

    // Init containers.
    let ipath = format!("{path}.initContainers");
    let regular: Vec<&str> = containers.iter().map(|c| str_at(c, "name")).collect();
    let mut init_names: Vec<&str> = regular.clone();
    for (i, c) in items(spec, "initContainers").iter().enumerate() {
        let p = format!("{ipath}[{i}]");
        validate_container_common(c, &p, &volumes, restart_policy, opts, &mut out);
        let mut restart_always = false;
        if let Some(rp) = present(c, "restartPolicy") {
            let rp = rp.as_str().unwrap_or("");
            if rp == "Always" {
                restart_always = true;
            } else {
                out.push(Cause::not_supported(
                    format!("{p}.restartPolicy"),
                    &json!(rp),
                    &["Always"],
                ));
            }
        }
        let name = str_at(c, "name");
        if init_names.contains(&name) {
            out.push(Cause::duplicate(format!("{p}.name"), &json!(name)));
        } else if !name.is_empty() {
            init_names.push(name);
        }
        check_host_ports(std::slice::from_ref(c), &ipath, &mut out);
        if restart_always {
            validate_probes_and_lifecycle(c, &p, grace, &mut out);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if present(c, field).is_some() {
                    out.push(Cause::forbidden(
                        format!("{p}.{field}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
        if !items(c, "resizePolicy").is_empty() {
            out.push(Cause::invalid(
                format!("{p}.resizePolicy"),
                c.get("resizePolicy").unwrap_or(&Value::Null),
                "must not be set for init containers",
            ));
        }
    }

    // Ephemeral containers (only ever set through the pod subresource).
    let epath = format!("{path}.ephemeralContainers");
    for (i, c) in items(spec, "ephemeralContainers").iter().enumerate() {
        let p = format!("{epath}[{i}]");
        validate_container_common(c, &p, &volumes, restart_policy, opts, &mut out);
        let name = str_at(c, "name");
        if init_names.contains(&name) {
            out.push(Cause::duplicate(format!("{p}.name"), &json!(name)));
        } else {
            init_names.push(name);
        }
        for field in [
            "ports",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
        ] {
            let set = match c.get(field) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if set {
                out.push(Cause::forbidden(
                    format!("{p}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }

    // Host network: host ports follow container ports.
    if spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        for (i, c) in containers.iter().enumerate() {
            for (j, port) in items(c, "ports").iter().enumerate() {
                let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                let cp = port
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if (opts.is_pod || hp != 0) && hp != cp {
                    out.push(Cause::invalid(
                        format!("{cpath}[{i}].ports[{j}].hostPort"),
                        &json!(hp),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    // restartPolicy / dnsPolicy.
    enum_field(spec, "restartPolicy", path, RESTART_POLICIES, &mut out);
    enum_field(spec, "dnsPolicy", path, DNS_POLICIES, &mut out);
    validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        &mut out,
    );

    if str_at(spec, "dnsPolicy") == "None" {
        match present(spec, "dnsConfig") {
            None => out.push(required_detail(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(dc) if items(dc, "nameservers").is_empty() => out.push(required_detail(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )),
            _ => {}
        }
    }
    if let Some(dc) = present(spec, "dnsConfig") {
        let ns = items(dc, "nameservers");
        if ns.len() > 3 {
            out.push(Cause::invalid(
                format!("{path}.dnsConfig.nameservers"),
                &Value::Array(ns.to_vec()),
                "must not have more than 3 nameservers",
            ));
        }
        for (i, s) in items(dc, "searches").iter().enumerate() {
            let s = s.as_str().unwrap_or("");
            validate_dns1123_subdomain(
                s.trim_end_matches('.'),
                &format!("{path}.dnsConfig.searches[{i}]"),
                &mut out,
            );
        }
    }

    for (field, subdomain) in [
        ("serviceAccountName", true),
        ("nodeName", true),
        ("priorityClassName", true),
        ("hostname", false),
        ("subdomain", false),
    ] {
        let value = str_at(spec, field);
        if !value.is_empty() {
            if subdomain {
                validate_dns1123_subdomain(value, &format!("{path}.{field}"), &mut out);
            } else {
                validate_dns1123_label(value, &format!("{path}.{field}"), &mut out);
            }
        }
    }
    if let Some(rc) = present(spec, "runtimeClassName") {
        validate_dns1123_subdomain(
            rc.as_str().unwrap_or(""),
            &format!("{path}.runtimeClassName"),
            &mut out,
        );
    }

    if let Some(ads) = present(spec, "activeDeadlineSeconds") {
        let v = ads.as_i64().unwrap_or(0);
        if !(1..=i32::MAX as i64).contains(&v) {
            out.push(Cause::invalid(
                format!("{path}.activeDeadlineSeconds"),
                &json!(v),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }

    validate_tolerations(
        items(spec, "tolerations"),
        &format!("{path}.tolerations"),
        &mut out,
    );

    for (i, ha) in items(spec, "hostAliases").iter().enumerate() {
        let ip = str_at(ha, "ip");
        if ip.parse::<std::net::IpAddr>().is_err() {
            out.push(Cause::invalid(
                format!("{path}.hostAliases[{i}].ip"),
                &json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        for (j, h) in items(ha, "hostnames").iter().enumerate() {
            validate_dns1123_subdomain(
                h.as_str().unwrap_or(""),
                &format!("{path}.hostAliases[{i}].hostnames[{j}]"),
                &mut out,
            );
        }
    }

    if let Some(pp) = present(spec, "preemptionPolicy") {
        let pp = pp.as_str().unwrap_or("");
        if pp.is_empty() {
            out.push(Cause::required(format!("{path}.preemptionPolicy")));
        } else if pp != "PreemptLowerPriority" && pp != "Never" {
            out.push(Cause::not_supported(
                format!("{path}.preemptionPolicy"),
                &json!(pp),
                &["PreemptLowerPriority", "Never"],
            ));
        }
    }

    for (i, g) in items(spec, "readinessGates").iter().enumerate() {
        let ct = str_at(g, "conditionType");
        for msg in validation::qualified_name(ct) {
            out.push(Cause::invalid(
                format!("{path}.readinessGates[{i}].conditionType"),
                &json!(ct),
                msg,
            ));
        }
    }
    let mut gates: Vec<&str> = Vec::new();
    for (i, g) in items(spec, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        for msg in validation::qualified_name(name) {
            out.push(Cause::invalid(
                format!("{path}.schedulingGates[{i}]"),
                &json!(name),
                msg,
            ));
        }
        if gates.contains(&name) {
            out.push(Cause::duplicate(
                format!("{path}.schedulingGates[{i}]"),
                &json!(name),
            ));
        }
        gates.push(name);
    }

    for (i, tsc) in items(spec, "topologySpreadConstraints").iter().enumerate() {
        let p = format!("{path}.topologySpreadConstraints[{i}]");
        let skew = tsc.get("maxSkew").and_then(Value::as_i64).unwrap_or(0);
        if skew <= 0 {
            out.push(Cause::invalid(
                format!("{p}.maxSkew"),
                &json!(skew),
                "must be greater than zero",
            ));
        }
        if str_at(tsc, "topologyKey").is_empty() {
            out.push(required_detail(
                format!("{p}.topologyKey"),
                "can not be empty",
            ));
        }
        let wu = str_at(tsc, "whenUnsatisfiable");
        if !["DoNotSchedule", "ScheduleAnyway"].contains(&wu) {
            out.push(Cause::not_supported(
                format!("{p}.whenUnsatisfiable"),
                &json!(wu),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
    }

    if let Some(os) = present(spec, "os") {
        let name = str_at(os, "name");
        if name.is_empty() {
            out.push(Cause::required(format!("{path}.os.name")));
        } else if name != "linux" && name != "windows" {
            out.push(Cause::not_supported(
                format!("{path}.os.name"),
                &json!(name),
                &["linux", "windows"],
            ));
        }
    }
    out
}

/// Volume names and sources; returns the names declared.
fn validate_volumes(spec: &Value, path: &str, out: &mut Vec<Cause>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, v) in items(spec, "volumes").iter().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        let name = str_at(v, "name");
        if name.is_empty() {
            out.push(Cause::required(format!("{p}.name")));
        } else {
            validate_dns1123_label(name, &format!("{p}.name"), out);
        }
        if names.iter().any(|n| n == name) {
            out.push(Cause::duplicate(format!("{p}.name"), &json!(name)));
        } else {
            names.push(name.to_string());
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| present(v, s).is_some())
            .collect();
        match sources.as_slice() {
            [] => out.push(required_detail(&p, "must specify a volume type")),
            [first, rest @ ..] => {
                for extra in rest {
                    out.push(Cause::forbidden(
                        format!("{p}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
                validate_volume_source(v, first, &format!("{p}.{first}"), out);
            }
        }
    }
    names
}

fn validate_volume_source(v: &Value, kind: &str, p: &str, out: &mut Vec<Cause>) {
    let src = &v[kind];
    let required = |field: &str, out: &mut Vec<Cause>| {
        if str_at(src, field).is_empty() {
            out.push(Cause::required(format!("{p}.{field}")));
        }
    };
    match kind {
        "hostPath" => required("path", out),
        "persistentVolumeClaim" => required("claimName", out),
        "secret" => required("secretName", out),
        "configMap" => required("name", out),
        "nfs" => {
            required("server", out);
            required("path", out);
        }
        "downwardAPI" => {
            for (i, item) in items(src, "items").iter().enumerate() {
                let ip = format!("{p}.items[{i}]");
                if str_at(item, "path").is_empty() {
                    out.push(Cause::required(format!("{ip}.path")));
                }
                if let Some(fr) = present(item, "fieldRef") {
                    validate_field_ref(fr, &format!("{ip}.fieldRef"), VOLUME_FIELD_PATHS, out);
                }
            }
        }
        _ => {}
    }
    if let Some(m) = src.get("defaultMode").and_then(Value::as_i64) {
        if !(0..=0o777).contains(&m) {
            out.push(Cause::invalid(
                format!("{p}.defaultMode"),
                &json!(m),
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
}

fn validate_field_ref(fr: &Value, path: &str, supported: &[&str], out: &mut Vec<Cause>) {
    if str_at(fr, "apiVersion").is_empty() {
        out.push(Cause::required(format!("{path}.apiVersion")));
        return;
    }
    let fp = str_at(fr, "fieldPath");
    if fp.is_empty() {
        out.push(Cause::required(format!("{path}.fieldPath")));
        return;
    }
    let (base, subscript) = match fp.split_once('[') {
        Some((b, rest)) if rest.ends_with(']') => (b, Some(rest.trim_end_matches(']'))),
        _ => (fp, None),
    };
    if !DOWNWARD_API_FIELD_PATHS.contains(&base) {
        out.push(Cause::invalid(
            format!("{path}.fieldPath"),
            &json!(fp),
            format!("error converting fieldPath: field label not supported: {fp}"),
        ));
        return;
    }
    if let Some(sub) = subscript {
        let key = sub.trim_matches('\'');
        match base {
            "metadata.annotations" => validate_label_name(&key.to_lowercase(), path, out),
            "metadata.labels" => validate_label_name(key, path, out),
            _ => out.push(Cause::invalid(
                path,
                &json!(base),
                "does not support subscript",
            )),
        }
    } else if !supported.contains(&base) {
        let mut list = supported.to_vec();
        list.sort_unstable();
        out.push(Cause::not_supported(
            format!("{path}.fieldPath"),
            &json!(base),
            &list,
        ));
    }
}

fn validate_container_common(
    c: &Value,
    p: &str,
    volumes: &[String],
    restart_policy: &str,
    opts: &SpecOptions,
    out: &mut Vec<Cause>,
) {
    let name = str_at(c, "name");
    if name.is_empty() {
        out.push(Cause::required(format!("{p}.name")));
    } else {
        validate_dns1123_label(name, &format!("{p}.name"), out);
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        out.push(Cause::required(format!("{p}.image")));
    } else if opts.is_pod && image.trim() != image {
        out.push(Cause::invalid(
            format!("{p}.image"),
            &json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    enum_field(
        c,
        "terminationMessagePolicy",
        p,
        TERMINATION_MESSAGE_POLICIES,
        out,
    );

    // Ports.
    let mut port_names: Vec<&str> = Vec::new();
    for (i, port) in items(c, "ports").iter().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        let pname = str_at(port, "name");
        if !pname.is_empty() {
            let errs = port_name_errors(pname);
            if !errs.is_empty() {
                for msg in errs {
                    out.push(Cause::invalid(format!("{pp}.name"), &json!(pname), msg));
                }
            } else if port_names.contains(&pname) {
                out.push(Cause::duplicate(format!("{pp}.name"), &json!(pname)));
            } else {
                port_names.push(pname);
            }
        }
        let cp = port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if cp == 0 {
            out.push(Cause::required(format!("{pp}.containerPort")));
        } else if !(1..=65535).contains(&cp) {
            out.push(Cause::invalid(
                format!("{pp}.containerPort"),
                &json!(cp),
                PORT_RANGE,
            ));
        }
        let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if hp != 0 && !(1..=65535).contains(&hp) {
            out.push(Cause::invalid(
                format!("{pp}.hostPort"),
                &json!(hp),
                PORT_RANGE,
            ));
        }
        let proto = str_at(port, "protocol");
        if proto.is_empty() {
            out.push(Cause::required(format!("{pp}.protocol")));
        } else if !PROTOCOLS.contains(&proto) {
            out.push(Cause::not_supported(
                format!("{pp}.protocol"),
                &json!(proto),
                PROTOCOLS,
            ));
        }
    }

    // Environment.
    for (i, ev) in items(c, "env").iter().enumerate() {
        let ep = format!("{p}.env[{i}]");
        let ename = str_at(ev, "name");
        if ename.is_empty() {
            out.push(Cause::required(format!("{ep}.name")));
        } else {
            for msg in env_name_errors(ename) {
                out.push(Cause::invalid(format!("{ep}.name"), &json!(ename), msg));
            }
        }
        if let Some(vf) = present(ev, "valueFrom") {
            validate_env_value_from(ev, vf, &format!("{ep}.valueFrom"), out);
        }
    }
    for (i, ef) in items(c, "envFrom").iter().enumerate() {
        let ep = format!("{p}.envFrom[{i}]");
        let prefix = str_at(ef, "prefix");
        if !prefix.is_empty() {
            for msg in env_name_errors(prefix) {
                out.push(Cause::invalid(format!("{ep}.prefix"), &json!(prefix), msg));
            }
        }
        let mut n = 0;
        for source in ["configMapRef", "secretRef"] {
            if let Some(r) = present(ef, source) {
                n += 1;
                let rname = str_at(r, "name");
                if rname.is_empty() {
                    out.push(Cause::required(format!("{ep}.{source}.name")));
                } else {
                    validate_dns1123_subdomain(rname, &format!("{ep}.{source}.name"), out);
                }
            }
        }
        let envfrom_path = format!("{p}.envFrom");
        if n == 0 {
            out.push(Cause::invalid(
                &envfrom_path,
                &json!(""),
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            out.push(Cause::invalid(
                &envfrom_path,
                &json!(""),
                "may not have more than one field specified at a time",
            ));
        }
    }

    // Volume mounts.
    let mut mount_paths: Vec<&str> = Vec::new();
    for (i, vm) in items(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        let vname = str_at(vm, "name");
        if vname.is_empty() {
            out.push(Cause::required(format!("{mp}.name")));
        }
        if !volumes.iter().any(|v| v == vname) {
            out.push(not_found(format!("{mp}.name"), vname));
        }
        let mpath = str_at(vm, "mountPath");
        if mpath.is_empty() {
            out.push(Cause::required(format!("{mp}.mountPath")));
        }
        if mount_paths.contains(&mpath) {
            out.push(Cause::invalid(
                format!("{mp}.mountPath"),
                &json!(mpath),
                "must be unique",
            ));
        }
        mount_paths.push(mpath);
        let sub = str_at(vm, "subPath");
        let sub_expr = str_at(vm, "subPathExpr");
        if !sub.is_empty() && !sub_expr.is_empty() {
            out.push(Cause::invalid(
                format!("{mp}.subPathExpr"),
                &json!(sub_expr),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
        for (field, value) in [("subPath", sub), ("subPathExpr", sub_expr)] {
            if value.starts_with('/') {
                out.push(Cause::invalid(
                    format!("{p}.volumeMounts.{field}"),
                    &json!(value),
                    "must be a relative path",
                ));
            }
            if value.split('/').any(|part| part == "..") {
                out.push(Cause::invalid(
                    format!("{p}.volumeMounts.{field}"),
                    &json!(value),
                    "must not contain '..'",
                ));
            }
        }
    }

    // Pull policy.
    enum_field(c, "imagePullPolicy", p, PULL_POLICIES, out);

    // Resources.
    validate_resources(c.get("resources"), &format!("{p}.resources"), out);

    // Resize policy.
    for rp in items(c, "resizePolicy") {
        let rpp = format!("{p}.resizePolicy");
        let rn = str_at(rp, "resourceName");
        if rn.is_empty() {
            out.push(Cause::required(&rpp));
        } else if rn != "cpu" && rn != "memory" {
            out.push(Cause::not_supported(&rpp, &json!(rn), &["cpu", "memory"]));
        }
        let pol = str_at(rp, "restartPolicy");
        if pol.is_empty() {
            out.push(Cause::required(&rpp));
        } else if pol != "NotRequired" && pol != "RestartContainer" {
            out.push(Cause::not_supported(
                &rpp,
                &json!(pol),
                &["NotRequired", "RestartContainer"],
            ));
        }
        if restart_policy == "Never" && pol != "NotRequired" {
            out.push(Cause::invalid(
                &rpp,
                &json!(pol),
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

fn validate_env_value_from(ev: &Value, vf: &Value, path: &str, out: &mut Vec<Cause>) {
    let mut n = 0;
    if let Some(fr) = present(vf, "fieldRef") {
        n += 1;
        validate_field_ref(fr, &format!("{path}.fieldRef"), ENV_FIELD_PATHS, out);
    }
    if let Some(rf) = present(vf, "resourceFieldRef") {
        n += 1;
        let res = str_at(rf, "resource");
        if res.is_empty() {
            out.push(Cause::required(format!("{path}.resourceFieldRef.resource")));
        } else if !CONTAINER_RESOURCE_FIELDS.contains(&res)
            && !res.starts_with("requests.hugepages-")
            && !res.starts_with("limits.hugepages-")
        {
            out.push(Cause::not_supported(
                format!("{path}.resourceFieldRef.resource"),
                &json!(res),
                CONTAINER_RESOURCE_FIELDS,
            ));
        }
    }
    for source in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(r) = present(vf, source) {
            n += 1;
            let sp = format!("{path}.{source}");
            validate_dns1123_subdomain(str_at(r, "name"), &format!("{sp}.name"), out);
            let key = str_at(r, "key");
            if key.is_empty() {
                out.push(Cause::required(format!("{sp}.key")));
            } else {
                for msg in validation::config_map_key(key) {
                    out.push(Cause::invalid(format!("{sp}.key"), &json!(key), msg));
                }
            }
        }
    }
    if n == 0 {
        out.push(Cause::invalid(
            path,
            &json!(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !str_at(ev, "value").is_empty() {
        out.push(Cause::invalid(
            path,
            &json!(""),
            "may not be specified when `value` is not empty",
        ));
    } else if n > 1 {
        out.push(Cause::invalid(
            path,
            &json!(""),
            "may not have more than one field specified at a time",
        ));
    }
}

/// Native resources (no domain, or a `kubernetes.io` domain) may be overcommitted,
/// except huge pages; extended resources may not.
fn overcommit_allowed(name: &str) -> bool {
    let native = match name.split_once('/') {
        None => true,
        Some((domain, _)) => domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"),
    };
    native && !name.starts_with("hugepages-")
}

pub fn validate_resource_name(name: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::qualified_name(name) {
        out.push(Cause::invalid(path, &json!(name), msg));
    }
    if !name.contains('/') {
        if !["cpu", "memory", "ephemeral-storage"].contains(&name)
            && !name.starts_with("hugepages-")
        {
            out.push(Cause::invalid(
                path,
                &json!(name),
                "must be a standard resource for containers",
            ));
        }
    } else if !overcommit_allowed(name) && name.starts_with("requests.") {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "doesn't follow extended resource name standard",
        ));
    }
}

/// `ValidateResourceRequirements` for a container's `resources` at `path`.
pub fn validate_resources(res: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(res) = res else {
        return;
    };
    let limits = res.get("limits").and_then(Value::as_object);
    let requests = res.get("requests").and_then(Value::as_object);
    let mut parsed_limits: Vec<(&str, i128, String)> = Vec::new();
    for (name, q) in limits.into_iter().flatten() {
        let kp = format!("{path}.limits[{name}]");
        validate_resource_name(name, &kp, out);
        match parse_quantity(q) {
            None => out.push(Cause::invalid(
                &kp,
                &json!(quantity_text(q)),
                QUANTITY_REGEX_MSG,
            )),
            Some(v) if v < 0 => out.push(Cause::invalid(
                &kp,
                &json!(quantity_text(q)),
                "must be greater than or equal to 0",
            )),
            Some(v) => parsed_limits.push((name, v, quantity_text(q))),
        }
    }
    for (name, q) in requests.into_iter().flatten() {
        let kp = format!("{path}.requests[{name}]");
        validate_resource_name(name, &kp, out);
        let Some(v) = parse_quantity(q) else {
            out.push(Cause::invalid(
                &kp,
                &json!(quantity_text(q)),
                QUANTITY_REGEX_MSG,
            ));
            continue;
        };
        if v < 0 {
            out.push(Cause::invalid(
                &kp,
                &json!(quantity_text(q)),
                "must be greater than or equal to 0",
            ));
            continue;
        }
        let shown = json!(quantity_text(q));
        match parsed_limits.iter().find(|(n, _, _)| *n == name) {
            Some((_, lim, lim_text)) => {
                if v != *lim && !overcommit_allowed(name) {
                    out.push(Cause::invalid(
                        format!("{path}.requests"),
                        &shown,
                        format!("must be equal to {name} limit of {lim_text}"),
                    ));
                } else if v > *lim {
                    out.push(Cause::invalid(
                        format!("{path}.requests"),
                        &shown,
                        format!("must be less than or equal to {name} limit of {lim_text}"),
                    ));
                }
            }
            None if !overcommit_allowed(name) => out.push(required_detail(
                format!("{path}.limits"),
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
}

fn check_host_ports(containers: &[Value], path: &str, out: &mut Vec<Cause>) {
    let mut seen: Vec<String> = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in items(c, "ports").iter().enumerate() {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{hp}",
                str_at(port, "protocol"),
                str_at(port, "hostIP")
            );
            if seen.contains(&key) {
                out.push(Cause::duplicate(
                    format!("{path}[{ci}].ports[{pi}].hostPort"),
                    &json!(key),
                ));
            } else {
                seen.push(key);
            }
        }
    }
}

fn validate_probes_and_lifecycle(c: &Value, p: &str, grace: Option<i64>, out: &mut Vec<Cause>) {
    if let Some(lc) = present(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = present(lc, hook) {
                validate_handler(h, &format!("{p}.lifecycle.{hook}"), grace, true, out);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(pr) = present(c, probe) else {
            continue;
        };
        let pp = format!("{p}.{probe}");
        validate_handler(pr, &pp, grace, false, out);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonnegative(pr, field, &pp, out);
        }
        if let Some(t) = pr
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
        {
            if probe == "readinessProbe" {
                out.push(Cause::invalid(
                    format!("{pp}.terminationGracePeriodSeconds"),
                    &json!(t),
                    "must not be set for readinessProbes",
                ));
            } else if t <= 0 {
                out.push(Cause::invalid(
                    format!("{pp}.terminationGracePeriodSeconds"),
                    &json!(t),
                    "must be greater than 0",
                ));
            }
        }
        if probe != "readinessProbe" {
            let st = pr
                .get("successThreshold")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if st != 1 {
                out.push(Cause::invalid(
                    format!("{pp}.successThreshold"),
                    &json!(st),
                    "must be 1",
                ));
            }
        }
    }
}

fn validate_handler(
    h: &Value,
    path: &str,
    grace: Option<i64>,
    lifecycle: bool,
    out: &mut Vec<Cause>,
) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for kind in kinds {
        let Some(action) = present(h, kind) else {
            continue;
        };
        let kp = format!("{path}.{kind}");
        if n > 0 {
            out.push(Cause::forbidden(
                kp,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        n += 1;
        match *kind {
            "exec" if items(action, "command").is_empty() => {
                out.push(Cause::required(format!("{kp}.command")));
            }
            "httpGet" => {
                if str_at(action, "path").is_empty() {
                    out.push(Cause::required(format!("{kp}.path")));
                }
                validate_port_num_or_name(action.get("port"), &format!("{kp}.port"), out);
                let scheme = str_at(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    out.push(Cause::not_supported(
                        format!("{kp}.scheme"),
                        &json!(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" => {
                validate_port_num_or_name(action.get("port"), &format!("{kp}.port"), out)
            }
            "grpc" => {
                let port = action.get("port").and_then(Value::as_i64).unwrap_or(0);
                validate_port_num_or_name(Some(&json!(port)), &format!("{kp}.port"), out);
            }
            "sleep" => {
                let secs = action.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                let g = grace.unwrap_or(30);
                if secs < 0 || secs > g {
                    out.push(Cause::invalid(
                        kp,
                        &json!(secs),
                        format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                    ));
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        out.push(required_detail(path, "must specify a handler type"));
    }
}

/// How Go prints a `core.Toleration` in an Invalid value.
fn go_toleration(t: &Value) -> String {
    let secs = match t.get("tolerationSeconds").and_then(Value::as_i64) {
        Some(s) => format!("(*int64)({s})"),
        None => "(*int64)(nil)".to_string(),
    };
    format!(
        "core.Toleration{{Key:{:?}, Operator:{:?}, Value:{:?}, Effect:{:?}, TolerationSeconds:{secs}}}",
        str_at(t, "key"),
        str_at(t, "operator"),
        str_at(t, "value"),
        str_at(t, "effect")
    )
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Value], path: &str, out: &mut Vec<Cause>) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_at(t, "key");
        let op = str_at(t, "operator");
        let effect = str_at(t, "effect");
        if !key.is_empty() {
            validate_label_name(key, &format!("{p}.key"), out);
        }
        if key.is_empty() && op != "Exists" {
            out.push(Cause::invalid(
                format!("{p}.operator"),
                &json!(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if present(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            out.push(Cause::invalid(
                format!("{p}.effect"),
                &json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let value = str_at(t, "value");
                let errs = validation::label_value(value);
                if !errs.is_empty() {
                    out.push(Cause::invalid(
                        format!("{p}.operator"),
                        &json!(value),
                        errs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !str_at(t, "value").is_empty() {
                    out.push(invalid_shown(
                        format!("{p}.operator"),
                        &go_toleration(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => out.push(Cause::not_supported(
                format!("{p}.operator"),
                &json!(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            out.push(Cause::not_supported(
                format!("{p}.effect"),
                &json!(effect),
                TAINT_EFFECTS,
            ));
        }
    }
}

/// `ValidatePodTemplateSpec`: template labels and annotations, the pod spec, and no
/// ephemeral containers.
pub fn validate_pod_template(template: &Value, path: &str, opts: &SpecOptions) -> Vec<Cause> {
    let mut out = Vec::new();
    let md = template.get("metadata");
    validate_labels(
        md.and_then(|m| m.get("labels")),
        &format!("{path}.labels"),
        &mut out,
    );
    validate_annotations(
        md.and_then(|m| m.get("annotations")),
        &format!("{path}.annotations"),
        &mut out,
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    out.extend(validate_pod_spec(spec, &format!("{path}.spec"), opts));
    if !items(spec, "ephemeralContainers").is_empty() {
        out.push(Cause::forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    out
}

/// The template labels of a pod template, for selector checks.
pub fn template_labels(template: &Value) -> Option<&Value> {
    template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .filter(|l| !l.is_null())
}

/// `selector does not match template labels` at `<path>.metadata.labels`.
pub fn selector_mismatch(template: &Value, path: &str) -> Cause {
    invalid_shown(
        format!("{path}.metadata.labels"),
        &go_string_map(template_labels(template)),
        "`selector` does not match template `labels`",
    )
}

/// What the replicated controllers (replica sets, deployments, daemon sets, replication
/// controllers) check on their template once the selector is known: the template is
/// present and valid, runs with `restartPolicy: Always` and no
/// `activeDeadlineSeconds`. `kind` names the controller in the last message.
pub fn validate_replicated_template(
    template: Option<&Value>,
    path: &str,
    kind: &str,
) -> Vec<Cause> {
    let mut out = Vec::new();
    let Some(template) = template.filter(|t| !t.is_null()) else {
        out.push(Cause::required(path));
        return out;
    };
    out.extend(validate_pod_template(
        template,
        path,
        &SpecOptions::default(),
    ));
    out.extend(replicated_restart_rules(template, path, kind));
    out
}

/// `restartPolicy` must be `Always`, `activeDeadlineSeconds` unset.
pub fn replicated_restart_rules(template: &Value, path: &str, kind: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let rp = str_at(spec, "restartPolicy");
    if rp != "Always" {
        out.push(Cause::not_supported(
            format!("{path}.spec.restartPolicy"),
            &json!(rp),
            &["Always"],
        ));
    }
    if present(spec, "activeDeadlineSeconds").is_some() {
        out.push(Cause::forbidden(
            format!("{path}.spec.activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    out
}

/// The selector checks the `apps/v1` controllers share: required, valid, non-empty
/// (`empty selector is invalid for <noun>`), and matching the template's labels.
/// Returns whether the selector converted (so callers know whether the template
/// match was checked).
pub fn validate_apps_selector(
    obj_spec: &Value,
    path: &str,
    noun: &str,
    out: &mut Vec<Cause>,
) -> bool {
    let sel = present(obj_spec, "selector");
    let sel_path = format!("{path}.selector");
    match sel {
        None => out.push(Cause::required(&sel_path)),
        Some(s) => {
            validate_label_selector(Some(s), &sel_path, out);
            if selector_is_empty(s) {
                out.push(invalid_shown(
                    &sel_path,
                    &go_label_selector(Some(s)),
                    &format!("empty selector is invalid for {noun}"),
                ));
            }
        }
    }
    if !selector_is_valid(sel) {
        out.push(invalid_shown(
            &sel_path,
            &go_label_selector(sel),
            "invalid label selector",
        ));
        return false;
    }
    // A missing selector selects nothing; an empty one everything.
    let t = present(obj_spec, "template").unwrap_or(&Value::Null);
    let empty = sel.is_some_and(selector_is_empty);
    if !empty && !selector_matches(sel, template_labels(t)) {
        out.push(selector_mismatch(t, &format!("{path}.template")));
    }
    true
}

/// `spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable` when the
/// selector changed.
pub fn selector_immutable(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let n = new.get("spec").and_then(|s| s.get("selector"));
    let o = old.get("spec").and_then(|s| s.get("selector"));
    if n != o {
        out.push(invalid_shown(
            "spec.selector",
            &go_label_selector(n),
            "field is immutable",
        ));
    }
}

/// An integer or a percentage (`IntOrString`), checked as `ValidatePositiveIntOrPercent`;
/// returns its value (the percentage number for percentages).
pub fn int_or_percent(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) -> (i64, bool) {
    match v {
        Some(Value::String(s)) => {
            let num = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match num {
                Some(n) if n >= 0 => (n, true),
                _ => {
                    out.push(invalid_shown(
                        path,
                        &go_int_or_string(v),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    (0, true)
                }
            }
        }
        Some(Value::Number(n)) => {
            let i = n.as_i64().unwrap_or(0);
            if i < 0 {
                out.push(Cause::invalid(
                    path,
                    &json!(i),
                    "must be greater than or equal to 0",
                ));
            }
            (i, false)
        }
        _ => (0, false),
    }
}

/// How Go's `%#v` prints an `intstr.IntOrString` (as rolling update errors show it).
pub fn go_int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        Some(Value::Number(n)) => {
            format!(
                "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
                n.as_i64().unwrap_or(0)
            )
        }
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

/// `IsNotMoreThan100Percent`.
pub fn not_more_than_100_percent(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(Value::String(s)) = v {
        if let Some(n) = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
            if n > 100 {
                out.push(Cause::invalid(
                    path,
                    &json!(s),
                    "must not be greater than 100%",
                ));
            }
        }
    }
}

// ------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({"containers": [{"name": "web", "image": "nginx"}]})
    }

    #[test]
    fn pod_spec_defaults_match_kubernetes() {
        let mut s = spec();
        s["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        s["containers"][0]["livenessProbe"] = json!({"httpGet": {"port": 80}});
        s["volumes"] = json!([{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]);
        default_pod_spec(&mut s);
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["securityContext"], json!({}));
        let c = &s["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(s["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(s["volumes"][1]["configMap"]["defaultMode"], 420);
        assert!(
            s.get("enableServiceLinks").is_none(),
            "templates do not get pod-only defaults"
        );
        let again = s.clone();
        default_pod_spec(&mut s);
        assert_eq!(s, again, "defaulting is idempotent");
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v2"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn service_account_alias_is_kept_in_sync() {
        let mut s = json!({"serviceAccount": "builder", "containers": []});
        default_pod_spec(&mut s);
        assert_eq!(s["serviceAccountName"], "builder");
        assert_eq!(s["serviceAccount"], "builder");
    }

    #[test]
    fn pod_only_defaults() {
        let mut s = json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x",
            "ports": [{"containerPort": 53}], "resources": {"limits": {"cpu": "1"}}}]});
        default_pod_only(&mut s);
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["containers"][0]["ports"][0]["hostPort"], 53);
        assert_eq!(s["containers"][0]["resources"]["requests"]["cpu"], "1");
    }

    #[test]
    fn quantities_and_qos() {
        assert_eq!(parse_quantity(&json!("100m")), Some(100_000_000));
        assert_eq!(parse_quantity(&json!("0.1")), Some(100_000_000));
        assert_eq!(
            parse_quantity(&json!("1Gi")),
            Some((1i128 << 30) * 1_000_000_000)
        );
        assert_eq!(parse_quantity(&json!("1e3")), Some(1_000_000_000_000));
        assert_eq!(parse_quantity(&json!(2)), Some(2_000_000_000));
        assert_eq!(parse_quantity(&json!("abc")), None);
        // Extreme exponents (from any pod a client sends) used to overflow.
        assert_eq!(parse_quantity(&json!("2e-100")), Some(1));
        assert_eq!(parse_quantity(&json!("1e2147483647")), None);
        assert_eq!(parse_quantity(&json!("1.5e-2147483648")), Some(1));
        assert_eq!(qos_class(&spec()), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn validation_uses_kubernetes_paths() {
        let mut s = json!({"containers": [
            {"name": "Web", "image": "", "ports": [{"containerPort": 70000, "protocol": "XTP"}]},
            {"name": "Web", "image": "x"}
        ]});
        default_pod_spec(&mut s);
        let causes = validate_pod_spec(&s, "spec.template.spec", &SpecOptions::default());
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.template.spec.containers[0].name"),
            "{fields:?}"
        );
        assert!(fields.contains(&"spec.template.spec.containers[0].image"));
        assert!(fields.contains(&"spec.template.spec.containers[0].ports[0].containerPort"));
        assert!(fields.contains(&"spec.template.spec.containers[0].ports[0].protocol"));
        assert!(fields.contains(&"spec.template.spec.containers[1].name"));
        let proto = causes
            .iter()
            .find(|c| c.field.ends_with("protocol"))
            .unwrap();
        assert_eq!(
            proto.message,
            "Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        let empty = validate_pod_spec(
            &json!({"terminationGracePeriodSeconds": 30, "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst"}),
            "spec",
            &SpecOptions::default(),
        );
        assert_eq!(empty[0].display(), "spec.containers: Required value");
    }

    #[test]
    fn mounts_must_name_volumes_and_requests_fit_limits() {
        let mut s = json!({"containers": [{"name": "a", "image": "x",
            "volumeMounts": [{"name": "data", "mountPath": "/d"}],
            "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]});
        default_pod_spec(&mut s);
        let causes = validate_pod_spec(&s, "spec", &SpecOptions::default());
        let shown: Vec<String> = causes.iter().map(Cause::display).collect();
        assert!(
            shown.contains(
                &"spec.containers[0].volumeMounts[0].name: Not found: \"data\"".to_string()
            ),
            "{shown:?}"
        );
        assert!(shown.contains(
            &"spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
                .to_string()
        ));
        let ok = validate_pod_spec(
            &s,
            "spec",
            &SpecOptions {
                extra_volumes: vec!["data".into()],
                ..Default::default()
            },
        );
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn selectors() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "canary", "operator": "DoesNotExist"}]});
        assert!(selector_matches(
            Some(&sel),
            Some(&json!({"app": "web", "tier": "a"}))
        ));
        assert!(!selector_matches(
            Some(&sel),
            Some(&json!({"app": "web", "tier": "c"}))
        ));
        assert!(!selector_matches(None, Some(&json!({"app": "web"}))));
        assert_eq!(selector_string(Some(&sel)), "app=web,!canary,tier in (a,b)");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(
            go_string_map(Some(&json!({"app": "web"}))),
            "map[string]string{\"app\":\"web\"}"
        );
        assert_eq!(
            go_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        let mut out = Vec::new();
        validate_label_selector(
            Some(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "spec.selector",
            &mut out,
        );
        assert_eq!(
            out[0].display(),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
    }

    #[test]
    fn tolerations_are_validated() {
        let mut out = Vec::new();
        validate_tolerations(
            &[json!({"operator": "Equal", "value": "x"})],
            "spec.tolerations",
            &mut out,
        );
        assert_eq!(out[0].field, "spec.tolerations[0].operator");
    }
}
