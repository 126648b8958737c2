//! `metadata.managedFields` entries: reading, writing, and the manager identities
//! field ownership is keyed by.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::fieldset::{go_quote, FieldSet};
use crate::status::Cause;

/// `managedFields[].operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    pub operation: Operation,
    /// `group/version` of the object as the manager wrote it.
    pub api_version: String,
    /// RFC 3339, second precision as Kubernetes writes it; `None` when unknown.
    pub time: Option<String>,
    /// "" for the main resource, else e.g. "status".
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether two entries belong to the same owner: one entry per manager, operation
    /// and subresource (Update entries of a manager at different versions merge).
    pub fn same_owner(&self, manager: &str, operation: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// The entry as JSON, fields in the order Kubernetes serializes them.
    pub fn to_json(&self) -> Value {
        self.to_json_with(self.fields.to_fields_v1())
    }

    /// [`to_json`](Self::to_json) with `fields_v1` written for the fields.
    pub(crate) fn to_json_with(&self, fields_v1: Value) -> Value {
        let mut m = Map::with_capacity(7);
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), fields_v1);
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    /// The manager identifier Kubernetes builds (the entry without time and fields, and
    /// without apiVersion for appliers), used to order conflicting managers.
    pub(crate) fn identifier(&self) -> String {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation.as_str()));
        if self.operation == Operation::Update && !self.api_version.is_empty() {
            m.insert("apiVersion".into(), json!(self.api_version));
        }
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m).to_string()
    }

    /// The manager as conflict messages name it: `"kubectl"`, `"kube-controller-manager"
    /// using apps/v1`, `"x" with subresource "status" using v1`.
    pub(crate) fn printed(&self) -> String {
        let mut s = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    pub(crate) fn seconds(&self) -> i64 {
        self.time.as_deref().map(time_seconds).unwrap_or(0)
    }
}

/// An entry being worked on, with the JSON it was decoded from when that is exactly
/// what [`ManagedFieldsEntry::to_json`] writes for it: while the entry is unchanged the
/// JSON is copied rather than written again, and so are its `fieldsV1` while the
/// fields are.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<'a> {
    pub entry: ManagedFieldsEntry,
    /// The JSON the entry (or, for a new entry, the one it replaces) was decoded from.
    pub origin: Option<&'a Value>,
    /// Whether the entry may differ from `origin`.
    pub dirty: bool,
}

impl<'a> Tracked<'a> {
    pub fn new(entry: ManagedFieldsEntry) -> Self {
        Tracked {
            entry,
            origin: None,
            dirty: true,
        }
    }

    /// A new entry replacing the one `origin` holds.
    pub fn replacing(entry: ManagedFieldsEntry, origin: Option<&'a Value>) -> Self {
        Tracked {
            entry,
            origin,
            dirty: true,
        }
    }

    /// Take the paths of `set` out of the entry's fields.
    pub fn subtract(&mut self, set: &FieldSet) {
        if self.entry.fields.subtract(set) {
            self.dirty = true;
        }
    }

    /// The entry, to change it.
    pub fn entry_mut(&mut self) -> &mut ManagedFieldsEntry {
        self.dirty = true;
        &mut self.entry
    }

    /// [`ManagedFieldsEntry::to_json`], copying what it can from `origin`.
    pub fn to_json(&self) -> Value {
        match self.origin {
            Some(origin) if !self.dirty => origin.clone(),
            Some(origin) => match origin.get("fieldsV1") {
                Some(f @ Value::Object(m)) if self.entry.fields.is_written_as(m) => {
                    self.entry.to_json_with(f.clone())
                }
                _ => self.entry.to_json(),
            },
            None => self.entry.to_json(),
        }
    }
}

pub(crate) fn time_seconds(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// Why a client-supplied entry is unusable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EntryError {
    /// Not decodable at all (400 BadRequest).
    Malformed(String),
    /// Decodable but rejected by validation (422 Invalid), as `ValidateManagedFields`.
    Invalid(Cause),
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The entry, and whether [`ManagedFieldsEntry::to_json`] writes it back exactly as
/// `v`.
fn decode_entry(
    i: usize,
    v: &Value,
    errs: &mut Vec<EntryError>,
) -> Option<(ManagedFieldsEntry, bool)> {
    let Value::Object(m) = v else {
        errs.push(EntryError::Malformed(format!(
            "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.managedFields of type v1.ManagedFieldsEntry",
            json_type(v)
        )));
        return None;
    };
    let before = errs.len();
    let mut string = |name: &str| -> String {
        match m.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                errs.push(EntryError::Malformed(format!(
                    "json: cannot unmarshal {} into Go struct field ManagedFieldsEntry.metadata.managedFields.{name} of type string",
                    json_type(other)
                )));
                String::new()
            }
        }
    };
    let manager = string("manager");
    let operation = string("operation");
    let api_version = string("apiVersion");
    let time = string("time");
    let fields_type = string("fieldsType");
    let subresource = string("subresource");
    let field = |name: &str| format!("metadata.managedFields[{i}].{name}");

    let operation = match operation.as_str() {
        "Apply" => Some(Operation::Apply),
        "Update" => Some(Operation::Update),
        _ => {
            errs.push(EntryError::Invalid(Cause::invalid(
                field("operation"),
                &json!(operation),
                "must be `Apply` or `Update`",
            )));
            None
        }
    };
    match fields_type.as_str() {
        "FieldsV1" => {}
        "" => errs.push(EntryError::Malformed(format!(
            "missing fieldsType in managed fields entry {i}"
        ))),
        other => errs.push(EntryError::Invalid(Cause::invalid(
            field("fieldsType"),
            &json!(other),
            "must be `FieldsV1`",
        ))),
    }
    if api_version.is_empty() {
        errs.push(EntryError::Malformed(format!(
            "apiVersion must not be empty in managed fields entry {i}"
        )));
    }
    if !time.is_empty() && chrono::DateTime::parse_from_rfc3339(&time).is_err() {
        errs.push(EntryError::Malformed(format!(
            "parsing time {} in managed fields entry {i}: not an RFC 3339 time",
            go_quote(&time)
        )));
    }
    let (fields, fields_canonical) = match m.get("fieldsV1") {
        None | Some(Value::Null) => (FieldSet::new(), false),
        Some(f) => match FieldSet::decode_fields_v1(f) {
            Ok(s) => s,
            Err(e) => {
                errs.push(EntryError::Malformed(format!(
                    "error decoding set in managed fields entry {i}: {e}"
                )));
                (FieldSet::new(), false)
            }
        },
    };
    if errs.len() != before {
        return None;
    }
    // The keys `to_json` writes, in its order.
    let written = [
        (!manager.is_empty()).then_some("manager"),
        Some("operation"),
        Some("apiVersion"),
        (!time.is_empty()).then_some("time"),
        Some("fieldsType"),
        Some("fieldsV1"),
        (!subresource.is_empty()).then_some("subresource"),
    ];
    let canonical = fields_canonical
        && m.keys()
            .map(String::as_str)
            .eq(written.into_iter().flatten());
    let entry = ManagedFieldsEntry {
        manager,
        operation: operation?,
        api_version,
        time: (!time.is_empty()).then_some(time),
        subresource,
        fields,
    };
    Some((entry, canonical))
}

/// Decode a `managedFields` list, collecting every problem.
pub(crate) fn decode_list(v: &Value) -> (Vec<ManagedFieldsEntry>, Vec<EntryError>) {
    let (entries, errs) = decode_tracked_list(v);
    (entries.into_iter().map(|t| t.entry).collect(), errs)
}

/// [`decode_list`], keeping each entry's JSON where it can be written back as is.
pub(crate) fn decode_tracked_list(v: &Value) -> (Vec<Tracked<'_>>, Vec<EntryError>) {
    let mut errs = Vec::new();
    let items = match v {
        Value::Null => return (Vec::new(), errs),
        Value::Array(items) => items,
        other => {
            errs.push(EntryError::Malformed(format!(
                "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.managedFields of type []v1.ManagedFieldsEntry",
                json_type(other)
            )));
            return (Vec::new(), errs);
        }
    };
    let entries = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            decode_entry(i, item, &mut errs).map(|(entry, canonical)| Tracked {
                entry,
                origin: canonical.then_some(item),
                dirty: false,
            })
        })
        .collect();
    (merge_same_owner(entries), errs)
}

/// Entries of the same owner (as imported from a cluster that keys Update entries by
/// version too) folded into one: fields united, version and time of the newest.
fn merge_same_owner(entries: Vec<Tracked<'_>>) -> Vec<Tracked<'_>> {
    let mut out: Vec<Tracked> = Vec::with_capacity(entries.len());
    for t in entries {
        let e = t.entry;
        match out
            .iter_mut()
            .find(|o| o.entry.same_owner(&e.manager, e.operation, &e.subresource))
        {
            Some(o) => {
                // Its JSON is no longer any one entry's.
                o.origin = None;
                let o = o.entry_mut();
                let newer = e.seconds() >= o.seconds();
                o.fields.union_with_owned(e.fields);
                if newer {
                    o.api_version = e.api_version;
                    o.time = e.time.or(o.time.take());
                }
            }
            None => out.push(Tracked { entry: e, ..t }),
        }
    }
    out
}

/// The entries of `obj.metadata.managedFields`; an error message when they are
/// malformed or invalid. A missing list is empty.
pub fn decode_managed_fields(obj: &Value) -> Result<Vec<ManagedFieldsEntry>, String> {
    let Some(v) = obj.get("metadata").and_then(|m| m.get("managedFields")) else {
        return Ok(Vec::new());
    };
    let (entries, errs) = decode_list(v);
    match errs.first() {
        None => Ok(entries),
        Some(EntryError::Malformed(m)) => Err(m.clone()),
        Some(EntryError::Invalid(c)) => Err(c.display()),
    }
}

/// [`decode_managed_fields`], keeping each entry's JSON where it can be written back
/// as is.
pub(crate) fn decode_tracked(obj: &Value) -> Result<Vec<Tracked<'_>>, ()> {
    let Some(v) = obj.get("metadata").and_then(|m| m.get("managedFields")) else {
        return Ok(Vec::new());
    };
    let (entries, errs) = decode_tracked_list(v);
    if errs.is_empty() {
        Ok(entries)
    } else {
        Err(())
    }
}

/// Managed fields of a stored object; unreadable ones count as none (as Kubernetes
/// resets them rather than failing writes).
pub(crate) fn decode_lenient(obj: &Value) -> Vec<Tracked<'_>> {
    decode_tracked(obj).unwrap_or_default()
}

/// The `managedFields` JSON list, ordered as Kubernetes orders it: Apply before
/// Update, then by time, manager, apiVersion and subresource. Empty entries are left
/// out.
pub fn encode_managed_fields(entries: &[ManagedFieldsEntry]) -> Value {
    encode_sorted(entries, |e| e, ManagedFieldsEntry::to_json)
}

fn encode_sorted<T>(
    items: &[T],
    entry: impl Fn(&T) -> &ManagedFieldsEntry,
    to_json: impl Fn(&T) -> Value,
) -> Value {
    // Each entry's time, parsed once.
    let mut sorted: Vec<(i64, &ManagedFieldsEntry, &T)> = items
        .iter()
        .map(|t| (entry(t), t))
        .filter(|(e, _)| !e.fields.is_empty())
        .map(|(e, t)| (e.seconds(), e, t))
        .collect();
    sorted.sort_by(|(ps, p, _), (qs, q, _)| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| ps.cmp(qs))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    Value::Array(sorted.into_iter().map(|(_, _, t)| to_json(t)).collect())
}

/// Store `entries` in `obj.metadata.managedFields`, removing the field when there is
/// nothing to record (Kubernetes omits it then).
pub fn set_managed_fields(obj: &mut Value, entries: &[ManagedFieldsEntry]) {
    store(obj, encode_managed_fields(entries));
}

/// [`encode_managed_fields`] for tracked entries.
pub(crate) fn encode_tracked(entries: &[Tracked]) -> Value {
    encode_sorted(entries, |t| &t.entry, Tracked::to_json)
}

/// [`set_managed_fields`] for tracked entries.
pub(crate) fn set_tracked(obj: &mut Value, entries: &[Tracked]) {
    store(obj, encode_tracked(entries));
}

/// Store an encoded `managedFields` list in `obj` (an empty one removes the field).
pub(crate) fn store(obj: &mut Value, encoded: Value) {
    let meta = crate::meta::metadata_mut(obj);
    if encoded.as_array().is_some_and(Vec::is_empty) {
        meta.shift_remove("managedFields");
    } else {
        meta.insert("managedFields".into(), encoded);
    }
}

/// Merge the oldest Update entries into one `ancient-changes` entry until at most
/// `max` Update entries remain, as Kubernetes caps them.
#[cfg(test)]
pub(crate) fn cap_update_managers(entries: &mut Vec<ManagedFieldsEntry>, max: usize) {
    let mut tracked: Vec<Tracked> = entries.drain(..).map(Tracked::new).collect();
    cap_tracked(&mut tracked, max);
    entries.extend(tracked.into_iter().map(|t| t.entry));
}

/// [`cap_update_managers`] for tracked entries.
pub(crate) fn cap_tracked(tracked: &mut Vec<Tracked>, max: usize) {
    let count = tracked
        .iter()
        .filter(|t| t.entry.operation == Operation::Update)
        .count();
    if count <= max {
        return;
    }
    let entries: Vec<&ManagedFieldsEntry> = tracked.iter().map(|t| &t.entry).collect();
    let mut updates: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.operation == Operation::Update)
        .map(|(i, _)| i)
        .collect();
    updates.sort_by(|&a, &b| {
        let (p, q) = (&entries[a], &entries[b]);
        p.seconds()
            .cmp(&q.seconds())
            .then_with(|| p.identifier().cmp(&q.identifier()))
    });
    // The oldest (excess + 1) become one entry; an existing bucket joins them.
    let mut merge: Vec<usize> = updates[..count - max + 1].to_vec();
    if let Some(i) = entries
        .iter()
        .position(|e| e.same_owner(super::ANCIENT_CHANGES, Operation::Update, ""))
    {
        if !merge.contains(&i) {
            merge.push(i);
        }
    }
    let mut bucket = ManagedFieldsEntry {
        manager: super::ANCIENT_CHANGES.to_string(),
        operation: Operation::Update,
        api_version: String::new(),
        time: None,
        subresource: String::new(),
        fields: FieldSet::new(),
    };
    let mut newest = i64::MIN;
    for &i in &merge {
        let e = &entries[i];
        bucket.fields.union_with(&e.fields);
        if e.seconds().cmp(&newest) != Ordering::Less {
            newest = e.seconds();
            bucket.api_version = e.api_version.clone();
            bucket.time = e.time.clone();
        }
    }
    merge.sort_unstable();
    for i in merge.into_iter().rev() {
        tracked.remove(i);
    }
    tracked.push(Tracked::new(bucket));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, op: Operation, time: &str) -> ManagedFieldsEntry {
        let mut fields = FieldSet::new();
        fields.insert(&[super::super::PathElement::field(manager)]);
        ManagedFieldsEntry {
            manager: manager.into(),
            operation: op,
            api_version: "v1".into(),
            time: Some(time.into()),
            subresource: String::new(),
            fields,
        }
    }

    #[test]
    fn decode_and_encode_round_trip() {
        let list = json!([
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "hpa", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-02T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:paused": {}}}, "subresource": "scale"}
        ]);
        let (entries, errs) = decode_list(&list);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].subresource, "scale");
        assert_eq!(encode_managed_fields(&entries), list);
        assert_eq!(
            entries[1].printed(),
            "\"hpa\" with subresource \"scale\" using apps/v1"
        );
        assert_eq!(entries[0].printed(), "\"kubectl\"");
    }

    #[test]
    fn decode_reports_malformed_and_invalid_entries() {
        let (_, errs) = decode_list(&json!("x"));
        assert!(
            matches!(&errs[0], EntryError::Malformed(m) if m.contains("cannot unmarshal string"))
        );
        let (_, errs) = decode_list(&json!([{"manager": 1, "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1"}]));
        assert!(
            matches!(&errs[0], EntryError::Malformed(m) if m.contains("managedFields.manager of type string"))
        );
        let (_, errs) = decode_list(&json!([{"manager": "a", "operation": "Patch",
            "apiVersion": "v1", "fieldsType": "FieldsV2"}]));
        assert_eq!(errs.len(), 2);
        match &errs[0] {
            EntryError::Invalid(c) => assert_eq!(
                c.display(),
                "metadata.managedFields[0].operation: Invalid value: \"Patch\": must be `Apply` or `Update`"
            ),
            other => panic!("{other:?}"),
        }
        let (_, errs) = decode_list(&json!([{"manager": "a", "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"nope": {}}}]));
        assert!(matches!(&errs[0], EntryError::Malformed(m) if m.contains("error decoding set")));
        let (_, errs) = decode_list(&json!([{"manager": "a", "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "time": "yesterday"}]));
        assert!(matches!(&errs[0], EntryError::Malformed(_)));
    }

    #[test]
    fn entries_of_the_same_owner_merge() {
        let list = json!([
            {"manager": "m", "operation": "Update", "apiVersion": "apps/v1beta1",
             "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": {}}},
            {"manager": "m", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-03T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:b": {}}}
        ]);
        let (entries, errs) = decode_list(&list);
        assert!(errs.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].api_version, "apps/v1");
        assert_eq!(entries[0].time.as_deref(), Some("2024-01-03T00:00:00Z"));
        assert_eq!(entries[0].fields.len(), 2);
    }

    #[test]
    fn encode_orders_apply_first_then_by_time() {
        let entries = vec![
            entry("b", Operation::Update, "2024-01-01T00:00:00Z"),
            entry("a", Operation::Update, "2024-01-02T00:00:00Z"),
            entry("z", Operation::Apply, "2024-01-03T00:00:00Z"),
        ];
        let out = encode_managed_fields(&entries);
        let names: Vec<&str> = out
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["z", "b", "a"]);
    }

    #[test]
    fn cap_merges_oldest_updates_into_ancient_changes() {
        let mut entries: Vec<ManagedFieldsEntry> = (0..12)
            .map(|i| {
                entry(
                    &format!("m{i:02}"),
                    Operation::Update,
                    &format!("2024-01-{:02}T00:00:00Z", i + 1),
                )
            })
            .collect();
        entries.push(entry("applier", Operation::Apply, "2024-01-01T00:00:00Z"));
        cap_update_managers(&mut entries, 10);
        let updates: Vec<&ManagedFieldsEntry> = entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .collect();
        assert_eq!(updates.len(), 10);
        let bucket = entries
            .iter()
            .find(|e| e.manager == "ancient-changes")
            .unwrap();
        assert_eq!(bucket.fields.len(), 3);
        assert_eq!(bucket.time.as_deref(), Some("2024-01-03T00:00:00Z"));
        assert!(entries.iter().any(|e| e.manager == "applier"));
        assert!(!entries.iter().any(|e| e.manager == "m00"));
        assert!(entries.iter().any(|e| e.manager == "m03"));
    }
}
