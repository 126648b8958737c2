//! Kubernetes protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`)
//! decoded into the Kubernetes JSON form the apiserver keeps.
//!
//! client-go's typed clientset, and so unmodified kubectl (1.32 and later) for `kubectl
//! create configmap|secret|deployment|job|cronjob|namespace|service|serviceaccount|quota|
//! token|...`, sends bodies as
//! `k8s\0` followed by a `runtime.Unknown` message: `typeMeta {apiVersion, kind}`,
//! `raw` (the object's own message), `contentEncoding`, `contentType`. [`decode`] reads
//! that envelope, finds the message for the apiVersion and kind, and turns `raw` into
//! what the same object looks like as JSON: `kind` and `apiVersion` first, then the
//! fields under their JSON names, `bytes` as base64, maps as objects, and the types
//! whose JSON is not an object of their fields (`Time`, `MicroTime`, `Duration`,
//! `Quantity`, `IntOrString`, `RawExtension`, `FieldsV1`, apiextensions' `JSON` and
//! `JSONSchemaPropsOr*`, named slices such as `Verbs`) as their JSON does. Fields come
//! in field-number order, which is Go's declaration order nearly everywhere (not in
//! `OwnerReference`, where `apiVersion` comes after `uid`); map keys sorted, as Go does.
//!
//! One generic walker does all kinds. The table it walks is generated at build time
//! (see build/main.rs) from two crates.io dependencies: k8s-pb's prost structs (field
//! numbers and types, every Kubernetes group at its pinned version) and k8s-openapi's
//! serde impls (exact JSON names, required fields). The hand-kept rest is in
//! [`rules`](src/rules.rs): the special types and which zero values to leave out.
//!
//! Zero values: Go's protobuf encoder writes every plain (non-pointer) field, zero or
//! not, while Go's JSON encoder drops zero `omitempty` fields. The output follows the
//! JSON: an optional string that is "" is left out (except the few pointer strings where
//! "" means something), and so is a zero of the listed plain int/bool fields; any other
//! int or bool on the wire came from a set Go pointer and is kept, zero included
//! (`replicas: 0`). A message field on the wire is always kept (`"resources": {}`), and
//! an empty `Time` is `null` (`"creationTimestamp": null`), as Go's JSON has them.

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Map, Number, Value};

#[allow(dead_code)] // the tables are the build script's; the crate uses `Special`
mod rules;

use rules::Special;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// How deep messages may nest (JSON schemas in CRDs nest; a body nesting deeper is
/// refused rather than risking the stack).
const MAX_DEPTH: u32 = 100;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"")]
    BadMagic,
    /// The envelope lacks `typeMeta.apiVersion` or `typeMeta.kind`.
    #[error("protobuf envelope does not name the object's apiVersion and kind")]
    MissingTypeMeta,
    /// The envelope's `contentEncoding` or `contentType` is not plain protobuf.
    #[error("protobuf envelope content {0} is not supported")]
    UnsupportedContent(String),
    /// No protobuf message is known for this apiVersion and kind (custom resources have
    /// none: Kubernetes answers 415 for them too).
    #[error("no protobuf message is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    /// The bytes are not a valid encoding of the message.
    #[error("malformed protobuf body at {path}: {reason}")]
    Malformed { path: String, reason: String },
}

impl DecodeError {
    /// The HTTP status to answer with: 415 Unsupported Media Type for a kind or content
    /// that has no protobuf form here, 400 Bad Request for a body that is broken.
    pub fn http_status(&self) -> u16 {
        match self {
            DecodeError::UnknownKind { .. } | DecodeError::UnsupportedContent(_) => 415,
            DecodeError::BadMagic
            | DecodeError::MissingTypeMeta
            | DecodeError::Malformed { .. } => 400,
        }
    }

    fn malformed(reason: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            path: String::new(),
            reason: reason.into(),
        }
    }

    /// Prefixes the path of a [`DecodeError::Malformed`] with the enclosing field.
    fn within(self, segment: &str) -> DecodeError {
        match self {
            DecodeError::Malformed { path, reason } => {
                let path = if path.is_empty() || path.starts_with('[') {
                    format!("{segment}{path}")
                } else {
                    format!("{segment}.{path}")
                };
                DecodeError::Malformed { path, reason }
            }
            other => other,
        }
    }
}

/// Whether a `Content-Type` header value is Kubernetes protobuf (parameters aside).
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(MEDIA_TYPE)
}

/// The parts of a protobuf body's envelope (`runtime.Unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub api_version: String,
    pub kind: String,
    /// The object's own message.
    pub raw: Vec<u8>,
}

/// Reads the `k8s\0` + `runtime.Unknown` envelope.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, DecodeError> {
    let rest = body.strip_prefix(&MAGIC[..]).ok_or(DecodeError::BadMagic)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest).map_err(|e| {
        DecodeError::Malformed {
            path: "runtime.Unknown".into(),
            reason: e.to_string(),
        }
    })?;
    let encoding = unknown.content_encoding.unwrap_or_default();
    if !encoding.is_empty() {
        return Err(DecodeError::UnsupportedContent(format!(
            "encoding {encoding:?}"
        )));
    }
    let content_type = unknown.content_type.unwrap_or_default();
    if !content_type.is_empty() && !is_protobuf_content_type(&content_type) {
        return Err(DecodeError::UnsupportedContent(format!(
            "type {content_type:?}"
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta);
    }
    Ok(Envelope {
        api_version,
        kind,
        raw: unknown.raw.unwrap_or_default(),
    })
}

/// Decodes a Kubernetes protobuf body into the object's Kubernetes JSON, with `kind`
/// and `apiVersion` from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    decode_at(body, 0)
}

/// Decodes an object's own message (`raw` of the envelope) given its apiVersion and kind.
pub fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, DecodeError> {
    decode_object_at(api_version, kind, raw, 0)
}

/// Whether [`decode`] knows a message for this apiVersion and kind.
pub fn is_known_kind(api_version: &str, kind: &str) -> bool {
    lookup_kind(api_version, kind).is_some()
}

/// The protobuf message (k8s-pb package and name, as `api.apps.v1.Deployment`) that
/// bodies of this apiVersion and kind are decoded as.
pub fn message_name(api_version: &str, kind: &str) -> Option<String> {
    lookup_kind(api_version, kind).map(|i| format!("{}.{}", MESSAGES[i].package, MESSAGES[i].name))
}

fn decode_at(body: &[u8], depth: u32) -> Result<Value, DecodeError> {
    let envelope = decode_envelope(body)?;
    decode_object_at(&envelope.api_version, &envelope.kind, &envelope.raw, depth)
}

fn decode_object_at(
    api_version: &str,
    kind: &str,
    raw: &[u8],
    depth: u32,
) -> Result<Value, DecodeError> {
    let index = lookup_kind(api_version, kind).ok_or_else(|| DecodeError::UnknownKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let body = message(index, &[raw], depth).map_err(|e| e.within(kind))?;
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind.into()));
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    match body {
        Value::Object(fields) => out.extend(fields),
        _ => {
            return Err(
                DecodeError::malformed(format!("{kind} is not an object message")).within(kind),
            )
        }
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------
// The schema (generated by build/main.rs).

/// A message's field types. Map keys are always strings in Kubernetes.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // Uint32, Uint64 and Float: protobuf types no Kubernetes message uses today
enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Float,
    /// Index into [`MESSAGES`].
    Message(u16),
    /// `map<string, V>`.
    Map(&'static Ty),
}

#[derive(Debug)]
struct Field {
    tag: u32,
    /// The JSON name.
    json: &'static str,
    ty: Ty,
    repeated: bool,
    /// Emit a zero value ("" / 0 / false / empty bytes) found on the wire.
    keep_zero: bool,
    /// A Go embedded struct: its fields go into the parent object.
    inline: bool,
}

#[derive(Debug)]
struct Message {
    package: &'static str,
    name: &'static str,
    special: Option<Special>,
    /// Sorted by tag.
    fields: &'static [Field],
}

include!(concat!(env!("OUT_DIR"), "/schema.rs"));

/// The k8s-pb package of an API group.
fn group_package(group: &str) -> String {
    match group {
        "" => "api.core".into(),
        "meta.k8s.io" => "apimachinery.pkg.apis.meta".into(),
        "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".into(),
        "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".into(),
        "metrics.k8s.io" => "metrics.pkg.apis.metrics".into(),
        "custom.metrics.k8s.io" => "metrics.pkg.apis.custom_metrics".into(),
        "external.metrics.k8s.io" => "metrics.pkg.apis.external_metrics".into(),
        "internal.apiserver.k8s.io" => "api.apiserverinternal".into(),
        g => format!("api.{}", g.split('.').next().unwrap_or(g)),
    }
}

fn by_name(package: &str, lower_name: &str) -> Option<usize> {
    BY_NAME
        .binary_search_by(|(p, n, _)| (*p, *n).cmp(&(package, lower_name)))
        .ok()
        .map(|i| BY_NAME[i].2 as usize)
}

fn lookup_kind(api_version: &str, kind: &str) -> Option<usize> {
    if let Some((_, _, i)) = RESOURCES
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind)
    {
        return Some(*i as usize);
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let lower = kind.to_ascii_lowercase();
    by_name(&format!("{}.{version}", group_package(group)), &lower)
        // Options and other meta types (DeleteOptions, ...) are registered in every group
        // version but defined once, in meta/v1.
        .or_else(|| by_name("apimachinery.pkg.apis.meta.v1", &lower))
}

// ---------------------------------------------------------------------------------------
// The wire format.

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| DecodeError::malformed("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::malformed("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .map_err(|_| DecodeError::malformed("field number out of range"))?;
        if tag == 0 {
            return Err(DecodeError::malformed("field number 0"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError::malformed("length out of range"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            w => {
                return Err(DecodeError::malformed(format!(
                    "field {tag}: unsupported wire type {w}"
                )))
            }
        };
        Ok(Some((tag, wire)))
    }
}

/// A decoded scalar.
#[derive(Debug, Clone, Copy)]
enum Prim<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Prim<'_> {
    fn is_zero(&self) -> bool {
        match *self {
            Prim::Str(s) => s.is_empty(),
            Prim::Bytes(b) => b.is_empty(),
            Prim::Bool(b) => !b,
            Prim::Int(i) => i == 0,
            Prim::Uint(u) => u == 0,
            Prim::Float(f) => f == 0.0,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Prim::Str(s) => Value::String(s.into()),
            Prim::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Prim::Bool(b) => Value::Bool(b),
            Prim::Int(i) => Value::Number(i.into()),
            Prim::Uint(u) => Value::Number(u.into()),
            Prim::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }

    fn int(self) -> i64 {
        match self {
            Prim::Int(i) => i,
            Prim::Uint(u) => u as i64,
            _ => 0,
        }
    }
}

fn wire_name(w: &Wire<'_>) -> &'static str {
    match w {
        Wire::Varint(_) => "varint",
        Wire::Fixed64(_) => "fixed64",
        Wire::Fixed32(_) => "fixed32",
        Wire::Bytes(_) => "length-delimited",
    }
}

/// One scalar of type `ty` from a (non-packed) wire value.
fn prim<'a>(ty: Ty, wire: &Wire<'a>) -> Result<Prim<'a>, DecodeError> {
    Ok(match (ty, wire) {
        (Ty::String, Wire::Bytes(b)) => Prim::Str(
            std::str::from_utf8(b).map_err(|_| DecodeError::malformed("string is not UTF-8"))?,
        ),
        (Ty::Bytes, Wire::Bytes(b)) => Prim::Bytes(b),
        (Ty::Bool, Wire::Varint(v)) => Prim::Bool(*v != 0),
        (Ty::Int32, Wire::Varint(v)) => Prim::Int(i64::from(*v as i32)),
        (Ty::Int64, Wire::Varint(v)) => Prim::Int(*v as i64),
        (Ty::Uint32, Wire::Varint(v)) => Prim::Uint(u64::from(*v as u32)),
        (Ty::Uint64, Wire::Varint(v)) => Prim::Uint(*v),
        (Ty::Double, Wire::Fixed64(v)) => Prim::Float(f64::from_bits(*v)),
        (Ty::Float, Wire::Fixed32(v)) => Prim::Float(f64::from(f32::from_bits(*v))),
        (ty, w) => {
            return Err(DecodeError::malformed(format!(
                "{} value for a {ty:?} field",
                wire_name(w)
            )))
        }
    })
}

/// What the wire held for one field of a message.
enum Slot<'a> {
    Prim(Prim<'a>),
    /// A message field's occurrences; protobuf merges them, as concatenation does.
    Message(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

/// Decodes message `index` from its bytes (several parts are merged) into JSON.
fn message(index: usize, parts: &[&[u8]], depth: u32) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::malformed("messages nest too deep"));
    }
    let msg = &MESSAGES[index];
    let joined;
    let buf: &[u8] = match parts {
        [one] => one,
        many => {
            joined = many.concat();
            &joined
        }
    };
    let slots = read_fields(msg, buf, depth)?;
    match msg.special {
        None => object(msg, slots, depth),
        Some(special) => special_json(special, msg, slots, depth),
    }
}

fn read_fields<'a>(
    msg: &Message,
    buf: &'a [u8],
    depth: u32,
) -> Result<Vec<Option<Slot<'a>>>, DecodeError> {
    let mut slots: Vec<Option<Slot<'a>>> = msg.fields.iter().map(|_| None).collect();
    let mut reader = Reader { buf };
    while let Some((tag, wire)) = reader.field()? {
        let Ok(i) = msg.fields.binary_search_by_key(&tag, |f| f.tag) else {
            continue; // a field newer than k8s-pb: skipped, as protobuf does
        };
        let field = &msg.fields[i];
        read_field(field, wire, &mut slots[i], depth).map_err(|e| e.within(field.json))?;
    }
    Ok(slots)
}

fn read_field<'a>(
    field: &Field,
    wire: Wire<'a>,
    slot: &mut Option<Slot<'a>>,
    depth: u32,
) -> Result<(), DecodeError> {
    match field.ty {
        Ty::Message(target) => {
            let Wire::Bytes(b) = wire else {
                return Err(DecodeError::malformed(format!(
                    "{} value for a message field",
                    wire_name(&wire)
                )));
            };
            if field.repeated {
                let item = message(target as usize, &[b], depth + 1);
                let list = list_slot(slot);
                let item = item.map_err(|e| e.within(&format!("[{}]", list.len())))?;
                list.push(item);
            } else if let Some(Slot::Message(parts)) = slot {
                parts.push(b);
            } else {
                *slot = Some(Slot::Message(vec![b]));
            }
        }
        Ty::Map(value_ty) => {
            let Wire::Bytes(entry) = wire else {
                return Err(DecodeError::malformed(format!(
                    "{} value for a map entry",
                    wire_name(&wire)
                )));
            };
            let (key, value) = map_entry(*value_ty, entry, depth)?;
            if !matches!(slot, Some(Slot::Map(_))) {
                *slot = Some(Slot::Map(Vec::new()));
            }
            if let Some(Slot::Map(entries)) = slot {
                entries.retain(|(k, _)| *k != key);
                entries.push((key, value));
            }
        }
        ty if field.repeated => {
            let packed = matches!(wire, Wire::Bytes(_)) && !matches!(ty, Ty::String | Ty::Bytes);
            let list = list_slot(slot);
            if packed {
                let Wire::Bytes(b) = wire else { unreachable!() };
                let mut inner = Reader { buf: b };
                while !inner.buf.is_empty() {
                    let w = match ty {
                        Ty::Double => Wire::Fixed64(u64::from_le_bytes(
                            inner.take(8)?.try_into().expect("8 bytes"),
                        )),
                        Ty::Float => Wire::Fixed32(u32::from_le_bytes(
                            inner.take(4)?.try_into().expect("4 bytes"),
                        )),
                        _ => Wire::Varint(inner.varint()?),
                    };
                    list.push(prim(ty, &w)?.to_json());
                }
            } else {
                list.push(prim(ty, &wire)?.to_json());
            }
        }
        ty => *slot = Some(Slot::Prim(prim(ty, &wire)?)),
    }
    Ok(())
}

fn list_slot<'s, 'a>(slot: &'s mut Option<Slot<'a>>) -> &'s mut Vec<Value> {
    if !matches!(slot, Some(Slot::List(_))) {
        *slot = Some(Slot::List(Vec::new()));
    }
    match slot {
        Some(Slot::List(list)) => list,
        _ => unreachable!(),
    }
}

/// A map entry: key = 1 (string), value = 2.
fn map_entry(value_ty: Ty, entry: &[u8], depth: u32) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value: Option<Wire<'_>> = None;
    let mut reader = Reader { buf: entry };
    while let Some((tag, wire)) = reader.field()? {
        match tag {
            1 => match prim(Ty::String, &wire)? {
                Prim::Str(s) => key = s.into(),
                _ => unreachable!(),
            },
            2 => value = Some(wire),
            _ => {}
        }
    }
    let value = match (value_ty, value) {
        (Ty::Message(target), Some(Wire::Bytes(b))) => message(target as usize, &[b], depth + 1),
        (Ty::Message(target), None) => message(target as usize, &[], depth + 1),
        (Ty::Message(_), Some(w)) => Err(DecodeError::malformed(format!(
            "{} value for a message map value",
            wire_name(&w)
        ))),
        (ty, Some(w)) => prim(ty, &w).map(Prim::to_json),
        (Ty::String | Ty::Bytes, None) => Ok(Value::String(String::new())),
        (Ty::Bool, None) => Ok(Value::Bool(false)),
        (_, None) => Ok(Value::Number(0.into())),
    };
    let value = value.map_err(|e| e.within(&format!("[{key:?}]")))?;
    Ok((key, value))
}

/// A plain message: an object of its fields.
fn object(msg: &Message, slots: Vec<Option<Slot<'_>>>, depth: u32) -> Result<Value, DecodeError> {
    let mut out = Map::new();
    for (field, slot) in msg.fields.iter().zip(slots) {
        let Some(slot) = slot else { continue };
        let value = match slot {
            Slot::Prim(p) => {
                if p.is_zero() && !field.keep_zero {
                    continue;
                }
                p.to_json()
            }
            Slot::List(items) => Value::Array(items),
            Slot::Map(mut entries) => {
                // Go's encoding/json writes map keys sorted.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().collect())
            }
            Slot::Message(parts) => {
                let Ty::Message(target) = field.ty else {
                    unreachable!()
                };
                let value = message(target as usize, &parts, depth + 1)
                    .map_err(|e| e.within(field.json))?;
                if field.inline {
                    if let Value::Object(fields) = value {
                        out.extend(fields);
                        continue;
                    }
                }
                value
            }
        };
        out.insert(field.json.to_string(), value);
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------
// The special types.

fn slot_at<'s, 'a>(msg: &Message, slots: &'s [Option<Slot<'a>>], tag: u32) -> Option<&'s Slot<'a>> {
    let i = msg.fields.iter().position(|f| f.tag == tag)?;
    slots[i].as_ref()
}

fn prim_at<'a>(msg: &Message, slots: &[Option<Slot<'a>>], tag: u32) -> Option<Prim<'a>> {
    match slot_at(msg, slots, tag) {
        Some(Slot::Prim(p)) => Some(*p),
        _ => None,
    }
}

/// The message at `tag`, decoded, if present.
fn message_at(
    msg: &Message,
    slots: &[Option<Slot<'_>>],
    tag: u32,
    depth: u32,
) -> Result<Option<Value>, DecodeError> {
    let Some(Slot::Message(parts)) = slot_at(msg, slots, tag) else {
        return Ok(None);
    };
    let field = msg
        .fields
        .iter()
        .find(|f| f.tag == tag)
        .expect("slot has a field");
    let Ty::Message(target) = field.ty else {
        unreachable!()
    };
    message(target as usize, parts, depth + 1)
        .map(Some)
        .map_err(|e| e.within(field.json))
}

fn list_at(msg: &Message, slots: &mut [Option<Slot<'_>>], tag: u32) -> Option<Vec<Value>> {
    let i = msg.fields.iter().position(|f| f.tag == tag)?;
    match slots[i].take() {
        Some(Slot::List(items)) if !items.is_empty() => Some(items),
        _ => None,
    }
}

/// Go's zero `time.Time` as Unix seconds (0001-01-01T00:00:00Z).
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn special_json(
    special: Special,
    msg: &Message,
    mut slots: Vec<Option<Slot<'_>>>,
    depth: u32,
) -> Result<Value, DecodeError> {
    let present = slots.iter().any(Option::is_some);
    Ok(match special {
        Special::Time | Special::MicroTime => {
            let seconds = prim_at(msg, &slots, 1).map_or(0, Prim::int);
            let nanos = prim_at(msg, &slots, 2).map_or(0, Prim::int);
            // An empty message is Go's zero time (metav1.Time marshals it so), whose JSON
            // is null; so is an explicit zero time.
            if !present || (seconds == GO_ZERO_TIME && nanos == 0) {
                Value::Null
            } else {
                Value::String(rfc3339(seconds, nanos, special == Special::MicroTime)?)
            }
        }
        Special::Duration => {
            Value::String(go_duration(prim_at(msg, &slots, 1).map_or(0, Prim::int)))
        }
        Special::Quantity => match prim_at(msg, &slots, 1) {
            Some(Prim::Str(s)) if !s.is_empty() => Value::String(s.into()),
            _ => Value::String("0".into()),
        },
        Special::IntOrString => {
            if prim_at(msg, &slots, 1).map_or(0, Prim::int) == 1 {
                match prim_at(msg, &slots, 3) {
                    Some(Prim::Str(s)) => Value::String(s.into()),
                    _ => Value::String(String::new()),
                }
            } else {
                Value::Number(prim_at(msg, &slots, 2).map_or(0, Prim::int).into())
            }
        }
        Special::RawJson => match prim_at(msg, &slots, 1) {
            Some(Prim::Bytes(raw)) if !raw.is_empty() => raw_json(raw, depth)?,
            _ => Value::Null,
        },
        Special::SchemaOrBool => match message_at(msg, &slots, 2, depth)? {
            Some(schema) => schema,
            None => Value::Bool(matches!(prim_at(msg, &slots, 1), Some(Prim::Bool(true)))),
        },
        Special::SchemaOrArray | Special::SchemaOrStringArray => {
            match list_at(msg, &mut slots, 2) {
                Some(items) => Value::Array(items),
                None => message_at(msg, &slots, 1, depth)?.unwrap_or(Value::Null),
            }
        }
        Special::NamedSlice => {
            let tag = msg.fields.first().map_or(1, |f| f.tag);
            Value::Array(list_at(msg, &mut slots, tag).unwrap_or_default())
        }
    })
}

/// A `RawExtension`'s bytes: JSON as a rule; a nested protobuf object when they carry
/// the magic number.
fn raw_json(raw: &[u8], depth: u32) -> Result<Value, DecodeError> {
    if raw.starts_with(&MAGIC) {
        return decode_at(raw, depth + 1);
    }
    serde_json::from_slice(raw)
        .map_err(|e| DecodeError::malformed(format!("raw bytes are not JSON: {e}")))
}

fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Result<String, DecodeError> {
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let secs = i64::try_from(total.div_euclid(1_000_000_000))
        .map_err(|_| DecodeError::malformed("time out of range"))?;
    let nanos = total.rem_euclid(1_000_000_000) as u32;
    let (nanos, format) = if micro {
        (nanos / 1000 * 1000, "%Y-%m-%dT%H:%M:%S%.6fZ")
    } else {
        // metav1.Time keeps whole seconds only (its protobuf unmarshal drops nanos).
        (0, "%Y-%m-%dT%H:%M:%SZ")
    };
    let time = chrono::DateTime::from_timestamp(secs, nanos)
        .ok_or_else(|| DecodeError::malformed("time out of range"))?;
    Ok(time.format(format).to_string())
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
fn go_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let mut u = d.unsigned_abs();
    let sign = if d < 0 { "-" } else { "" };
    // Fractional digits of `v` at `prec` places, trailing zeros dropped; and `v / 10^prec`.
    fn frac(v: u64, prec: u32) -> (String, u64) {
        let scale = 10u64.pow(prec);
        let digits = format!("{:0width$}", v % scale, width = prec as usize);
        let digits = digits.trim_end_matches('0');
        let text = if digits.is_empty() {
            String::new()
        } else {
            format!(".{digits}")
        };
        (text, v / scale)
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (f, whole) = frac(u, prec);
        return format!("{sign}{whole}{f}{unit}");
    }
    let (f, secs) = frac(u, 9);
    u = secs;
    let mut out = format!("{}{f}s", u % 60);
    u /= 60;
    if u > 0 {
        out = format!("{}m{out}", u % 60);
        u /= 60;
        if u > 0 {
            out = format!("{u}h{out}");
        }
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        for (ns, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-1_500_000_000, "-1.5s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(
            rfc3339(1_704_164_645, 123_456_789, false).unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            rfc3339(1_704_164_645, 123_456_789, true).unwrap(),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(rfc3339(0, 0, true).unwrap(), "1970-01-01T00:00:00.000000Z");
    }

    /// The group -> package rule finds every kind k8s-pb marks as a resource, so kinds it
    /// does not mark (subresources, options) are found the same way.
    #[test]
    fn group_rule_agrees_with_k8s_pb_resources() {
        assert!(RESOURCES.len() > 80);
        for (api_version, kind, index) in RESOURCES {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let by_rule = by_name(
                &format!("{}.{version}", group_package(group)),
                &kind.to_ascii_lowercase(),
            );
            assert_eq!(by_rule, Some(index as usize), "{api_version} {kind}");
        }
    }

    #[test]
    fn content_types() {
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf"
        ));
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf; charset=utf-8"
        ));
        assert!(!is_protobuf_content_type("application/json"));
    }
}
