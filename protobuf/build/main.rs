//! Builds the schema table the decoder walks (`$OUT_DIR/schema.rs`).
//!
//! No `.proto` file ships in a crates.io package, but two dependencies carry what the
//! Kubernetes `generated.proto` files say, generated from them or from the same Go types:
//!
//! * `k8s-pb` (kube-rs): prost structs, one per message. Their `#[prost(...)]`
//!   attributes give each field's number, wire type and label, and the Rust type gives
//!   the message a field holds. Field names went through snake_case, so `hostIPC` is
//!   `host_ipc` there.
//! * `k8s-openapi`: serde impls with the exact JSON name of each field
//!   (`"hostIPC" => Field::Key_host_ipc`), and which fields are required (not `Option`).
//!
//! Both are read as source from cargo's registry checkout (they are dependencies of this
//! crate, so cargo has unpacked them before this script runs). A field's JSON name is
//! the k8s-openapi name of the same message whose letters match (case and punctuation
//! aside: `cluster_i_ps` ~ `clusterIPs`, `x_kubernetes_embedded_resource` ~
//! `x-kubernetes-embedded-resource`). A message field whose name matches nothing in
//! k8s-openapi while its own fields do is a Go embedded struct (`json:",inline"`, as
//! `Volume.volumeSource`): its fields are spliced into the parent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

#[path = "../src/rules.rs"]
mod rules;

use rules::Special;

fn main() {
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/rules.rs");
    println!("cargo:rerun-if-env-changed=KEELSON_K8S_PB_SRC");
    println!("cargo:rerun-if-env-changed=KEELSON_K8S_OPENAPI_SRC");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let lock = find_lock_file();
    println!("cargo:rerun-if-changed={}", lock.display());
    let pb_src = crate_source("k8s-pb", "KEELSON_K8S_PB_SRC", &lock);
    let oa_src = crate_source("k8s-openapi", "KEELSON_K8S_OPENAPI_SRC", &lock);

    let pb = parse_k8s_pb(&pb_src.join("src"));
    let oa = parse_k8s_openapi(&newest_version_dir(&oa_src.join("src")));
    let schema = resolve(&pb, &oa);
    let code = emit(&schema);

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("schema.rs");
    fs::write(&out, code).expect("write schema.rs");
    // For whoever wonders where a name came from: not used by the build.
    let report = format!(
        "inline fields:\n{}\n\nfields without a k8s-openapi name (camel-cased):\n{}\n",
        schema.inlined.join("\n"),
        schema.fallback_names.join("\n")
    );
    fs::write(out.with_file_name("schema-report.txt"), report).expect("write schema-report.txt");
}

// ---------------------------------------------------------------------------------------
// Finding the sources.

fn find_lock_file() -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let mut dir: Option<&Path> = Some(&manifest);
    while let Some(d) = dir {
        let lock = d.join("Cargo.lock");
        if lock.is_file() {
            return lock;
        }
        dir = d.parent();
    }
    panic!("no Cargo.lock above {}", manifest.display());
}

/// The unpacked source of a registry dependency: `$CARGO_HOME/registry/src/*/NAME-VERSION`
/// for the version in Cargo.lock, or the directory an environment variable names.
fn crate_source(name: &str, override_var: &str, lock: &Path) -> PathBuf {
    if let Ok(dir) = env::var(override_var) {
        return PathBuf::from(dir);
    }
    let lock_text = fs::read_to_string(lock).expect("read Cargo.lock");
    let mut versions = Vec::new();
    let mut lines = lock_text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
            {
                versions.push(v.trim_end_matches('"').to_string());
            }
        }
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = cargo_home.join("registry").join("src");
    let mut found = Vec::new();
    if let Ok(indexes) = fs::read_dir(&registry) {
        for index in indexes.flatten() {
            for v in &versions {
                let dir = index.path().join(format!("{name}-{v}"));
                if dir.join("Cargo.toml").is_file() {
                    found.push(dir);
                }
            }
        }
    }
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "keelson-protobuf reads the source of {name} {versions:?} and found none under {}; \
             set {override_var} to its unpacked directory",
            registry.display()
        )
    })
}

/// k8s-openapi ships one module per Kubernetes minor (`v1_33` ...); the newest knows
/// every field the older ones do.
fn newest_version_dir(src: &Path) -> PathBuf {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(src).expect("read k8s-openapi/src").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(minor) = name.strip_prefix("v1_").and_then(|m| m.parse::<u32>().ok()) {
            if best.as_ref().is_none_or(|(b, _)| minor > *b) {
                best = Some((minor, entry.path()));
            }
        }
    }
    best.expect("k8s-openapi has a v1_NN module").1
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `api/core/v1/mod.rs` under `root` -> `api.core.v1`; `.../v1/pod_spec.rs` -> `api.core.v1`.
fn package_of(root: &Path, file: &Path) -> String {
    let rel = file
        .parent()
        .expect("parent")
        .strip_prefix(root)
        .expect("under root");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join(".")
}

// ---------------------------------------------------------------------------------------
// k8s-pb.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Float,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        Some(match s {
            "string" => Scalar::String,
            "bytes" | "bytes = \"vec\"" | "bytes = \"bytes\"" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
enum PbType {
    Scalar(Scalar),
    /// Full name (`api.core.v1.ObjectMeta`).
    Message(String),
    Map(Box<PbType>),
}

#[derive(Clone, Debug)]
struct PbField {
    /// Without `r#`.
    rust: String,
    tag: u32,
    ty: PbType,
    repeated: bool,
}

#[derive(Clone, Debug)]
struct PbMessage {
    package: String,
    name: String,
    fields: Vec<PbField>,
}

impl PbMessage {
    fn full(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }
}

struct PbCrate {
    messages: Vec<PbMessage>,
    /// (apiVersion, kind, full message name) from `impl crate::Resource for X`.
    resources: Vec<(String, String, String)>,
}

fn parse_k8s_pb(src: &Path) -> PbCrate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut messages = Vec::new();
    let mut resources = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("read k8s-pb source");
        let package = package_of(src, &file);
        parse_pb_file(&package, &text, &mut messages, &mut resources);
    }
    assert!(
        messages.len() > 500,
        "k8s-pb: only {} messages found; has its layout changed?",
        messages.len()
    );
    PbCrate {
        messages,
        resources,
    }
}

fn parse_pb_file(
    package: &str,
    text: &str,
    messages: &mut Vec<PbMessage>,
    resources: &mut Vec<(String, String, String)>,
) {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {}") {
                messages.push(PbMessage {
                    package: package.to_string(),
                    name: name.to_string(),
                    fields: Vec::new(),
                });
                i += 1;
                continue;
            }
            let Some(name) = rest.strip_suffix(" {").map(str::to_string) else {
                i += 1;
                continue;
            };
            let mut fields = Vec::new();
            i += 1;
            let mut attr: Option<String> = None;
            while i < lines.len() && lines[i] != "}" {
                let l = lines[i].trim();
                if let Some(a) = l
                    .strip_prefix("#[prost(")
                    .and_then(|a| a.strip_suffix(")]"))
                {
                    attr = Some(a.to_string());
                } else if l.starts_with("#[prost(") {
                    panic!("k8s-pb: multi-line prost attribute in {package}.{name}: {l}");
                } else if let Some(decl) = l.strip_prefix("pub ") {
                    // The type may wrap over lines; gather until the trailing comma.
                    let mut decl = decl.to_string();
                    let open = |d: &str| d.matches('<').count() > d.matches('>').count();
                    while !decl.ends_with(',') || open(&decl) {
                        i += 1;
                        decl.push_str(lines[i].trim());
                    }
                    let a = attr.take().unwrap_or_else(|| {
                        panic!("k8s-pb: field without #[prost] in {package}.{name}")
                    });
                    fields.push(parse_pb_field(package, &name, &a, &decl));
                }
                i += 1;
            }
            fields.sort_by_key(|f| f.tag);
            messages.push(PbMessage {
                package: package.to_string(),
                name,
                fields,
            });
        } else if line.starts_with("pub mod ") && line.ends_with('{') {
            panic!("k8s-pb: nested module in {package} ({line}); nested messages/oneofs are not handled");
        } else if let Some(rest) = line.strip_prefix("impl crate::Resource for ") {
            let name = rest.trim_end_matches(" {").trim();
            let mut api_version = None;
            let mut kind = None;
            i += 1;
            while i < lines.len() && lines[i] != "}" {
                let l = lines[i].trim();
                if let Some(v) = l.strip_prefix("const API_VERSION: &'static str = \"") {
                    api_version = Some(v.trim_end_matches("\";").to_string());
                }
                if let Some(v) = l.strip_prefix("const KIND: &'static str = \"") {
                    kind = Some(v.trim_end_matches("\";").to_string());
                }
                i += 1;
            }
            if let (Some(a), Some(k)) = (api_version, kind) {
                resources.push((a, k, format!("{package}.{name}")));
            }
        }
        i += 1;
    }
}

/// Splits a prost attribute at top-level commas (`btree_map = "string, message"` stays whole).
fn split_attr(a: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in a.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                parts.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

fn parse_pb_field(package: &str, msg: &str, attr: &str, decl: &str) -> PbField {
    let (rust, ty) = decl
        .trim_end_matches(',')
        .split_once(':')
        .expect("field: type");
    let rust = rust.trim().trim_start_matches("r#").to_string();
    let rust_ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    let mut tag = None;
    let mut kind: Option<PbType> = None;
    let mut repeated = false;
    for part in split_attr(attr) {
        if let Some(t) = part.strip_prefix("tag = \"") {
            tag = Some(t.trim_end_matches('"').parse().expect("tag number"));
        } else if part == "repeated" {
            repeated = true;
        } else if matches!(part.as_str(), "optional" | "required" | "boxed")
            || part.starts_with("packed")
        {
        } else if part == "message" {
            kind = Some(PbType::Message(resolve_path(
                package,
                &unwrap_type(&rust_ty),
            )));
        } else if let Some(m) = ["btree_map = \"", "map = \"", "hash_map = \""]
            .iter()
            .find_map(|p| part.strip_prefix(p))
        {
            let (k, v) = m
                .trim_end_matches('"')
                .split_once(',')
                .expect("map key, value");
            assert_eq!(k.trim(), "string", "k8s-pb: map key {k} in {package}.{msg}");
            let value = match v.trim() {
                "message" => {
                    let inner = rust_ty.trim_end_matches('>');
                    let value_path = inner
                        .split_once(',')
                        .expect("map type has two parameters")
                        .1
                        .trim_end_matches(',');
                    PbType::Message(resolve_path(package, value_path))
                }
                s => PbType::Scalar(
                    Scalar::parse(s).unwrap_or_else(|| panic!("map value {s} in {package}.{msg}")),
                ),
            };
            kind = Some(PbType::Map(Box::new(value)));
        } else if let Some(s) = Scalar::parse(&part) {
            kind = Some(PbType::Scalar(s));
        } else {
            panic!("k8s-pb: unhandled prost attribute `{part}` in {package}.{msg}.{rust}");
        }
    }
    PbField {
        rust,
        tag: tag.unwrap_or_else(|| panic!("no tag in {package}.{msg}")),
        ty: kind.unwrap_or_else(|| panic!("no type in {package}.{msg}")),
        repeated,
    }
}

/// `::core::option::Option<::prost::alloc::boxed::Box<X>>` -> `X`.
fn unwrap_type(t: &str) -> String {
    let mut t = t.to_string();
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = t.strip_prefix(wrapper) {
            t = inner
                .strip_suffix('>')
                .expect("balanced type")
                .trim_end_matches(',')
                .to_string();
            return unwrap_type(&t);
        }
    }
    t
}

/// A Rust path as seen from module `package` -> the full message name.
fn resolve_path(package: &str, path: &str) -> String {
    let mut module: Vec<&str> = package.split('.').collect();
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"crate") {
        module.clear();
        segs.remove(0);
    }
    while segs.first() == Some(&"super") {
        module.pop();
        segs.remove(0);
    }
    module.extend(segs);
    module.join(".")
}

// ---------------------------------------------------------------------------------------
// k8s-openapi.

#[derive(Debug, Default)]
struct OaStruct {
    /// (JSON name, required)
    fields: Vec<(String, bool)>,
}

/// Keyed by (package, lowercased struct name).
type OaCrate = HashMap<(String, String), OaStruct>;

fn parse_k8s_openapi(root: &Path) -> OaCrate {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut out = HashMap::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("read k8s-openapi source");
        let Some(start) = text.find("\npub struct ") else {
            continue;
        };
        let decl = &text[start + "\npub struct ".len()..];
        let Some((name, rest)) = decl.split_once(' ') else {
            continue;
        };
        if !rest.starts_with('{') {
            continue; // newtypes (Time, Quantity, ...)
        }
        let body = &rest[..rest.find("\n}").expect("struct end")];
        let mut optional_rust = HashMap::new();
        for line in body.lines() {
            if let Some(f) = line.trim().strip_prefix("pub ") {
                if let Some((n, ty)) = f.split_once(':') {
                    optional_rust.insert(
                        n.trim().trim_start_matches("r#").to_string(),
                        ty.trim().starts_with("Option<"),
                    );
                }
            }
        }
        let mut fields = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if let Some((json, key)) = l
                .strip_prefix('"')
                .and_then(|l| l.split_once("\" => Field::Key_"))
            {
                let rust = key.trim_end_matches(',');
                if let Some(optional) = optional_rust.get(rust) {
                    fields.push((json.to_string(), !optional));
                }
            }
        }
        out.insert(
            (package_of(root, &file), name.to_lowercase()),
            OaStruct { fields },
        );
    }
    assert!(
        out.len() > 500,
        "k8s-openapi: only {} structs found; has its layout changed?",
        out.len()
    );
    out
}

// ---------------------------------------------------------------------------------------
// Joining the two.

/// Letters and digits, lowercased: how names are compared across the two crates.
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, part) in snake.split('_').filter(|p| !p.is_empty()).enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            let mut cs = part.chars();
            if let Some(c) = cs.next() {
                out.extend(c.to_uppercase());
                out.push_str(cs.as_str());
            }
        }
    }
    out
}

struct Field {
    tag: u32,
    json: String,
    ty: PbType,
    repeated: bool,
    keep_zero: bool,
    inline: bool,
}

struct Message {
    package: String,
    name: String,
    special: Option<Special>,
    fields: Vec<Field>,
}

struct Schema {
    messages: Vec<Message>,
    index: HashMap<String, usize>,
    resources: Vec<(String, String, usize)>,
    /// Fields k8s-openapi does not name, named by camel-casing k8s-pb's name.
    fallback_names: Vec<String>,
    /// Embedded (inline) fields found.
    inlined: Vec<String>,
}

fn resolve(pb: &PbCrate, oa: &OaCrate) -> Schema {
    let by_full: HashMap<String, &PbMessage> = pb.messages.iter().map(|m| (m.full(), m)).collect();
    let oa_of = |m: &PbMessage| oa.get(&(m.package.clone(), m.name.to_lowercase()));
    let lookup = |s: &OaStruct, rust: &str| -> Option<(String, bool)> {
        let n = norm(rust);
        s.fields.iter().find(|(json, _)| norm(json) == n).cloned()
    };

    // Embedded structs: a message field unknown to the parent's JSON whose own fields
    // are all parent JSON fields.
    let mut inline: BTreeSet<(String, u32)> = BTreeSet::new();
    // Message -> JSON field sets of the parents that embed it (for its field names).
    let mut embedded_in: HashMap<String, Vec<&OaStruct>> = HashMap::new();
    for m in &pb.messages {
        let Some(s) = oa_of(m) else { continue };
        for f in &m.fields {
            let PbType::Message(target) = &f.ty else {
                continue;
            };
            if f.repeated || lookup(s, &f.rust).is_some() {
                continue;
            }
            let Some(child) = by_full.get(target) else {
                continue;
            };
            if !child.fields.is_empty()
                && child.fields.iter().all(|cf| lookup(s, &cf.rust).is_some())
            {
                inline.insert((m.full(), f.tag));
                embedded_in.entry(target.clone()).or_default().push(s);
            }
        }
    }

    let special_of = |m: &PbMessage| -> Option<Special> {
        if let Some((_, _, s)) = rules::SPECIALS
            .iter()
            .find(|(p, n, _)| *p == m.package && *n == m.name)
        {
            return Some(*s);
        }
        let named_slice = m.fields.len() == 1
            && m.fields[0].rust == "items"
            && m.fields[0].repeated
            && !m.name.ends_with("List");
        named_slice.then_some(Special::NamedSlice)
    };

    let mut used_value_scalars = BTreeSet::new();
    let mut used_pointer_strings = BTreeSet::new();
    // Every JSON spelling k8s-openapi uses, by normalized name; None when it has several.
    let mut spelled: HashMap<String, Option<String>> = HashMap::new();
    for s in oa.values() {
        for (json, _) in &s.fields {
            let entry = spelled
                .entry(norm(json))
                .or_insert_with(|| Some(json.clone()));
            if entry.as_deref() != Some(json.as_str()) {
                *entry = None;
            }
        }
    }
    let mut fallback_names = Vec::new();
    let mut messages = Vec::new();
    for m in &pb.messages {
        let own = oa_of(m);
        let parents = embedded_in.get(&m.full()).cloned().unwrap_or_default();
        let mut fields = Vec::new();
        for f in &m.fields {
            let named = own
                .and_then(|s| lookup(s, &f.rust))
                .or_else(|| parents.iter().find_map(|s| lookup(s, &f.rust)));
            let is_inline = inline.contains(&(m.full(), f.tag));
            // Messages k8s-openapi lacks (options, removed versions) take the spelling the
            // same name has elsewhere (`insecureSkipTLSVerifyBackend`), else camelCase.
            let named = named.or_else(|| {
                spelled
                    .get(&norm(&f.rust))
                    .cloned()
                    .flatten()
                    .map(|j| (j, false))
            });
            if named.is_none() && !is_inline {
                fallback_names.push(format!("{}.{}.{}", m.package, m.name, lower_camel(&f.rust)));
            }
            let (json, required) = named.unwrap_or_else(|| (lower_camel(&f.rust), false));
            let listed = |table: &[(&str, &str, &[&str])],
                          used: &mut BTreeSet<(String, String, String)>| {
                let hit = table.iter().any(|(p, n, fs)| {
                    *p == m.package && *n == m.name && fs.contains(&json.as_str())
                });
                if hit {
                    used.insert((m.package.clone(), m.name.clone(), json.clone()));
                }
                hit
            };
            let keep_zero = match &f.ty {
                PbType::Scalar(Scalar::String) => {
                    required || listed(rules::POINTER_STRINGS, &mut used_pointer_strings)
                }
                PbType::Scalar(Scalar::Bytes) => required,
                PbType::Scalar(_) => {
                    required || !listed(rules::VALUE_SCALARS, &mut used_value_scalars)
                }
                PbType::Message(_) | PbType::Map(_) => true,
            };
            fields.push(Field {
                tag: f.tag,
                json,
                ty: f.ty.clone(),
                repeated: f.repeated,
                keep_zero,
                inline: is_inline,
            });
        }
        messages.push(Message {
            package: m.package.clone(),
            name: m.name.clone(),
            special: special_of(m),
            fields,
        });
    }

    // Every hand-listed entry must name a real field.
    for (table, used) in [
        (rules::VALUE_SCALARS, &used_value_scalars),
        (rules::POINTER_STRINGS, &used_pointer_strings),
    ] {
        for (p, n, fs) in table {
            for f in *fs {
                assert!(
                    used.contains(&(p.to_string(), n.to_string(), f.to_string())),
                    "src/rules.rs names {p}.{n}.{f}, which k8s-pb does not have"
                );
            }
        }
    }
    for (p, n, _) in rules::SPECIALS {
        assert!(
            by_full.contains_key(&format!("{p}.{n}")),
            "src/rules.rs names {p}.{n}, which k8s-pb does not have"
        );
    }

    messages.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    let index: HashMap<String, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{}.{}", m.package, m.name), i))
        .collect();
    for m in &messages {
        for f in &m.fields {
            let target = match &f.ty {
                PbType::Message(t) => Some(t),
                PbType::Map(v) => match v.as_ref() {
                    PbType::Message(t) => Some(t),
                    _ => None,
                },
                PbType::Scalar(_) => None,
            };
            if let Some(t) = target {
                assert!(
                    index.contains_key(t),
                    "{}.{} field {} refers to unknown {t}",
                    m.package,
                    m.name,
                    f.json
                );
            }
        }
    }
    let resources = pb
        .resources
        .iter()
        .map(|(a, k, full)| (a.clone(), k.clone(), index[full]))
        .collect();
    let inlined = inline
        .iter()
        .map(|(m, tag)| format!("{m} field {tag}"))
        .collect();
    Schema {
        messages,
        index,
        resources,
        fallback_names,
        inlined,
    }
}

// ---------------------------------------------------------------------------------------
// Output.

fn ty_code(ty: &PbType, index: &HashMap<String, usize>) -> String {
    match ty {
        PbType::Scalar(s) => format!("Ty::{s:?}"),
        PbType::Message(t) => format!("Ty::Message({})", index[t]),
        PbType::Map(v) => format!("Ty::Map(&{})", ty_code(v, index)),
    }
}

fn emit(schema: &Schema) -> String {
    let mut out = String::new();
    out.push_str("// @generated by build/main.rs from the k8s-pb and k8s-openapi sources.\n\n");
    writeln!(
        out,
        "pub(crate) static MESSAGES: [Message; {}] = [",
        schema.messages.len()
    )
    .unwrap();
    for m in &schema.messages {
        let special = match m.special {
            Some(s) => format!("Some(Special::{s:?})"),
            None => "None".to_string(),
        };
        writeln!(
            out,
            "    Message {{ package: {:?}, name: {:?}, special: {special}, fields: &[",
            m.package, m.name
        )
        .unwrap();
        for f in &m.fields {
            writeln!(
                out,
                "        Field {{ tag: {}, json: {:?}, ty: {}, repeated: {}, keep_zero: {}, inline: {} }},",
                f.tag,
                f.json,
                ty_code(&f.ty, &schema.index),
                f.repeated,
                f.keep_zero,
                f.inline
            )
            .unwrap();
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n\n");

    // (package, lowercased name) -> message, sorted for binary search.
    let mut by_name: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, m) in schema.messages.iter().enumerate() {
        let key = (m.package.clone(), m.name.to_lowercase());
        assert!(
            by_name.insert(key, i).is_none(),
            "two messages named {}.{} (case aside)",
            m.package,
            m.name
        );
    }
    writeln!(
        out,
        "pub(crate) static BY_NAME: [(&str, &str, u16); {}] = [",
        by_name.len()
    )
    .unwrap();
    for ((p, n), i) in &by_name {
        writeln!(out, "    ({p:?}, {n:?}, {i}),").unwrap();
    }
    out.push_str("];\n\n");

    let mut resources = schema.resources.clone();
    resources.sort();
    writeln!(
        out,
        "pub(crate) static RESOURCES: [(&str, &str, u16); {}] = [",
        resources.len()
    )
    .unwrap();
    for (a, k, i) in &resources {
        writeln!(out, "    ({a:?}, {k:?}, {i}),").unwrap();
    }
    out.push_str("];\n");
    out
}
