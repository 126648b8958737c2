//! Field sets: which fields of an object a manager owns, in the `fieldsV1` form.
//!
//! A [`FieldSet`] is a tree of [`PathElement`]s. Each node has *members* (paths that
//! end here: the manager owns that field, list item or value) and *children* (paths
//! that go deeper). The JSON form Kubernetes stores in `managedFields[].fieldsV1`
//! writes every element as a key: `f:<field>`, `k:<json object of key fields>` for
//! an item of a keyed list, `v:<json value>` for an item of a set, `i:<index>` for a
//! position, and `"."` for "this node is itself a member" when it also has children:
//!
//! ```json
//! {"f:metadata":{"f:labels":{"f:app":{}}},
//!  "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}}}
//! ```
//!
//! Elements sort fields first, then keys, values and indices (as structured-merge-diff
//! orders them); keys and values compare as JSON values with numbers first, then
//! strings, booleans, lists, maps and null. [`path_string`] renders a path the way
//! conflict messages print it: `.spec.containers[name="nginx"].image`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path through an object.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// `f:name`: a field of a map.
    Field(String),
    /// `k:{"name":"x"}`: the item of a keyed list whose key fields have these values,
    /// sorted by field name (build it with [`PathElement::key`]).
    Key(Vec<(String, Value)>),
    /// `v:"x"`: the item of a set with this (scalar) value.
    Value(Value),
    /// `i:0`: a list item by position.
    Index(usize),
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// `f:name`.
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// `k:{...}` with the key fields sorted by name, as Kubernetes encodes them.
    pub fn key(fields: impl IntoIterator<Item = (String, Value)>) -> Self {
        let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `fieldsV1` key for this element: `f:a`, `k:{"name":"x"}`, `v:"x"`, `i:0`.
    pub fn to_fields_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_json(&Value::String(k.clone())), go_json(v)))
                    .collect();
                format!("k:{{{}}}", parts.join(","))
            }
            PathElement::Value(v) => format!("v:{}", go_json(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `fieldsV1` key. `Ok(None)` for a well-formed key of an element type this
    /// code does not know (Kubernetes skips those too).
    pub fn parse(key: &str) -> Result<Option<PathElement>, String> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(format!("key must be 2 characters long: {key:?}"));
        }
        if bytes[1] != b':' {
            return Err(format!("missing colon: {key}"));
        }
        let rest = &key[2..];
        match bytes[0] {
            b'f' => Ok(Some(PathElement::Field(rest.to_string()))),
            b'v' => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value in {key:?}: {e}"))?;
                Ok(Some(PathElement::Value(v)))
            }
            b'k' => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid key in {key:?}: {e}"))?;
                match v {
                    Value::Object(m) => Ok(Some(PathElement::key(m))),
                    _ => Err(format!("invalid key in {key:?}: not a JSON object")),
                }
            }
            b'i' => rest
                .parse::<usize>()
                .map(|i| Some(PathElement::Index(i)))
                .map_err(|e| format!("invalid index in {key:?}: {e}")),
            _ => Ok(None),
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// `.name`, `[name="x",port=80]`, `[=value]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_to_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as conflict messages print it: `.spec.template.spec.containers[name="nginx"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Total order on JSON values: numbers (compared numerically, integers and floats
/// together), then strings, booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x.cmp(&y)
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kp, vp), (kq, vq)) in xs.iter().zip(ys.iter()) {
                let c = kp.cmp(kq).then_with(|| compare_values(vp, vq));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Deep equality that treats `1` and `1.0` as the same number and ignores map order.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| values_equal(p, q))
        }
        _ => compare_values(a, b) == Ordering::Equal,
    }
}

/// A value as Go's structured-merge-diff prints it inside a path: strings quoted,
/// numbers and booleans bare.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                go_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.iter()
                .map(|k| format!("{k}={}", value_to_string(&m[k.as_str()])))
                .collect()
        }
    }
}

/// Go's `%q` for a string: double-quoted with backslash escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` for a float64: shortest digits, exponent form below 1e-4 or from 1e6.
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Compact JSON as Go's encoder writes it (it escapes `<`, `>`, `&`, U+2028, U+2029),
/// so that keys built here match keys Kubernetes wrote byte for byte.
fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A set of paths, stored as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Add a path. The empty path (the whole object) is never tracked.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether the one-element path `pe` is a member.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, with `pe` taken off.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Number of member paths.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(FieldSet::len).sum::<usize>()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(c);
        }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let i = c.intersection(other.children.get(pe)?);
                (!i.is_empty()).then(|| (pe.clone(), i))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Paths of `self` that are not paths of `other` (member by member: removing a
    /// member leaves the paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| match other.children.get(pe) {
                Some(oc) => {
                    let d = c.difference(oc);
                    (!d.is_empty()).then(|| (pe.clone(), d))
                }
                None => Some((pe.clone(), c.clone())),
            })
            .collect();
        FieldSet { members, children }
    }

    /// Like [`difference`](Self::difference), but a member of `other` also removes
    /// everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                if other.members.contains(pe) {
                    return None;
                }
                match other.children.get(pe) {
                    Some(oc) => {
                        let d = c.recursive_difference(oc);
                        (!d.is_empty()).then(|| (pe.clone(), d))
                    }
                    None => Some((pe.clone(), c.clone())),
                }
            })
            .collect();
        FieldSet { members, children }
    }

    /// Only the paths at or below the one-element path `pe`.
    pub fn only_under(&self, pe: &PathElement) -> FieldSet {
        let mut out = FieldSet::new();
        if self.members.contains(pe) {
            out.members.insert(pe.clone());
        }
        if let Some(c) = self.children.get(pe) {
            out.children.insert(pe.clone(), c.clone());
        }
        out
    }

    /// The same set where every map field that has paths below it is also a member.
    /// Pruning uses this so that a struct nobody owns anything in goes away whole.
    pub fn with_fields_as_members(&self) -> FieldSet {
        let mut members = self.members.clone();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            if matches!(pe, PathElement::Field(_)) {
                members.insert(pe.clone());
            }
            children.insert(pe.clone(), c.with_fields_as_members());
        }
        FieldSet { members, children }
    }

    /// Every member path, in order (at each level the members, then the paths below).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.to_map(false))
    }

    fn to_map(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        let mut elements: BTreeSet<&PathElement> = self.members.iter().collect();
        elements.extend(self.children.keys());
        for pe in elements {
            let body = match self.children.get(pe) {
                Some(c) => c.to_map(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_fields_key(), Value::Object(body));
        }
        out
    }

    /// Parse a `fieldsV1` JSON object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        match v {
            Value::Object(m) => Ok(FieldSet::read_map(m)?.0),
            Value::Null => Ok(FieldSet::new()),
            _ => Err("fieldsV1 must be a JSON object".to_string()),
        }
    }

    /// The set below one node, and whether the node itself is a member (it is when it
    /// says so with `"."` or when nothing is below it).
    fn read_map(m: &Map<String, Value>) -> Result<(FieldSet, bool), String> {
        let mut set = FieldSet::new();
        let mut is_member = false;
        for (key, body) in m {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(pe) = PathElement::parse(key)? else {
                continue;
            };
            let Value::Object(body) = body else {
                return Err(format!("value of {key:?} must be a JSON object"));
            };
            let (below, member) = FieldSet::read_map(body)?;
            if member {
                set.members.insert(pe.clone());
            }
            if !below.is_empty() {
                set.children.entry(pe).or_default().union_with(&below);
            }
        }
        let member = is_member || set.is_empty();
        Ok((set, member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn fields_v1_round_trip_with_dot_for_member_with_children() {
        let v = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        let nginx = PathElement::key([("name".to_string(), json!("nginx"))]);
        assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(set.has(&[f("spec"), f("containers"), nginx.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), nginx.clone(), f("image")]));
        assert!(!set.has(&[f("spec"), f("containers")]));
        assert!(!set.has(&[f("metadata")]));
        assert_eq!(set.len(), 4);
        let out = set.to_fields_v1();
        assert_eq!(out, v);
        // "." comes first, as kubectl shows it.
        let item = &out["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
        assert_eq!(item.as_object().unwrap().keys().next().unwrap(), ".");
    }

    #[test]
    fn keys_are_sorted_and_encoded_like_go() {
        let pe = PathElement::key([
            ("protocol".to_string(), json!("TCP")),
            ("containerPort".to_string(), json!(80)),
        ]);
        assert_eq!(
            pe.to_fields_key(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(pe.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        let parsed = PathElement::parse("k:{\"protocol\":\"TCP\",\"containerPort\":80}")
            .unwrap()
            .unwrap();
        assert_eq!(parsed, pe);
        assert_eq!(
            PathElement::Value(json!("a<b")).to_fields_key(),
            "v:\"a\\u003cb\""
        );
        assert_eq!(PathElement::Value(json!("x")).to_string(), "[=\"x\"]");
        assert_eq!(PathElement::Index(3).to_fields_key(), "i:3");
    }

    #[test]
    fn parse_rejects_malformed_keys_and_skips_unknown_types() {
        assert!(FieldSet::from_fields_v1(&json!({"x": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"fx": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"i:x": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        let s = FieldSet::from_fields_v1(&json!({"z:whatever": {}, "f:a": {}})).unwrap();
        assert_eq!(s.paths(), vec![vec![f("a")]]);
    }

    #[test]
    fn element_order_is_fields_keys_values_indices() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!("b")),
            PathElement::Value(json!(2)),
            PathElement::key([("name".to_string(), json!("a"))]),
            f("z"),
            f("a"),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(PathElement::to_fields_key).collect();
        assert_eq!(
            shown,
            vec!["f:a", "f:z", "k:{\"name\":\"a\"}", "v:2", "v:\"b\"", "i:0"]
        );
        // Numbers compare numerically, not as text.
        assert!(PathElement::Value(json!(80)) < PathElement::Value(json!(443.5)));
        assert!(PathElement::Value(json!(9)) < PathElement::Value(json!(10)));
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        a.insert(&[f("metadata"), f("labels"), f("app")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata")]);

        let i = a.intersection(&b);
        assert_eq!(i.paths(), vec![vec![f("spec"), f("replicas")]]);

        let d = a.difference(&b);
        assert!(!d.has(&[f("spec"), f("replicas")]));
        assert!(d.has(&[f("spec"), f("paused")]));
        // Non-recursive: a member "metadata" in b does not remove what is below it.
        assert!(d.has(&[f("metadata"), f("labels"), f("app")]));

        let r = a.recursive_difference(&b);
        assert!(!r.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(r.has(&[f("spec"), f("paused")]));

        let u = d.union(&b);
        assert_eq!(u.len(), 4);
        assert!(FieldSet::new().union(&FieldSet::new()).is_empty());
        // Empty children are never kept.
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a).to_fields_v1(), json!({}));
    }

    #[test]
    fn fields_as_members_and_only_under() {
        let mut a = FieldSet::new();
        let item = PathElement::key([("name".to_string(), json!("c"))]);
        a.insert(&[f("spec"), f("containers"), item.clone(), f("image")]);
        let e = a.with_fields_as_members();
        assert!(e.has(&[f("spec")]));
        assert!(e.has(&[f("spec"), f("containers")]));
        assert!(!e.has(&[f("spec"), f("containers"), item.clone()]));
        assert!(e.has(&[f("spec"), f("containers"), item, f("image")]));
        a.insert(&[f("status"), f("phase")]);
        let s = a.only_under(&f("status"));
        assert_eq!(s.paths(), vec![vec![f("status"), f("phase")]]);
    }

    #[test]
    fn path_strings_match_kubernetes() {
        let p = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            PathElement::key([("name".to_string(), json!("nginx"))]),
            f("image"),
        ];
        assert_eq!(
            path_string(&p),
            ".spec.template.spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(path_string(&[f("a"), PathElement::Index(2)]), ".a[2]");
        assert_eq!(value_to_string(&json!(1.5)), "1.5");
        assert_eq!(value_to_string(&json!(1e22)), "1e+22");
        assert_eq!(value_to_string(&json!(1234567.0)), "1.234567e+06");
        assert_eq!(value_to_string(&json!(123456.5)), "123456.5");
        assert_eq!(go_quote("a\"b\\\u{1}"), "\"a\\\"b\\\\\\x01\"");
    }
}
