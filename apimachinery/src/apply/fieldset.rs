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
            PathElement::Field(name) => field_key(name),
            PathElement::Key(fields) => {
                let mut s = String::from("k:{");
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    push_go_json_str(&mut s, k);
                    s.push(':');
                    push_go_json(&mut s, v);
                }
                s.push('}');
                s
            }
            PathElement::Value(v) => {
                let mut s = String::from("v:");
                push_go_json(&mut s, v);
                s
            }
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Whether [`to_fields_key`](Self::to_fields_key) gives `key` (which parses to
    /// this element).
    fn is_written_as(&self, key: &str) -> bool {
        match self {
            PathElement::Field(_) => true,
            _ => self.to_fields_key() == key,
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

/// The `fieldsV1` key of the field `name`: `f:name`.
pub(crate) fn field_key(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push_str("f:");
    s.push_str(name);
    s
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

/// Append [`go_json`] of `v` to `out`.
fn push_go_json(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => push_go_json_str(out, s),
        _ => out.push_str(&go_json(v)),
    }
}

/// Append [`go_json`] of the string `s` to `out`.
fn push_go_json_str(out: &mut String, s: &str) {
    let plain = |b: u8| b >= 0x20 && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&');
    if s.bytes().all(plain) && !s.contains(['\u{2028}', '\u{2029}']) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&go_json(&Value::String(s.to_string())));
    }
}

/// A set of paths, stored as a tree. Each level is a list of nodes sorted by element,
/// so that set operations are merges of sorted lists and lookups binary searches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Sorted by element, no two equal; every node is a member or has paths below.
    nodes: Vec<Node>,
}

/// One element of a level of a [`FieldSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) pe: PathElement,
    /// Whether the path ending with `pe` is a member.
    pub(crate) member: bool,
    /// The paths going deeper, with `pe` taken off.
    pub(crate) below: FieldSet,
}

impl Node {
    pub(crate) fn new(pe: PathElement, member: bool, below: FieldSet) -> Node {
        Node { pe, member, below }
    }

    fn is_empty(&self) -> bool {
        !self.member && self.below.is_empty()
    }

    /// Take in another node with an equal element. When the two elements are written
    /// differently (`80` and `80.0`), the one of the first member is kept.
    fn absorb(&mut self, other: &Node) {
        if other.member && !self.member {
            self.member = true;
            self.pe = other.pe.clone();
        }
        self.below.union_with(&other.below);
    }

    fn absorb_owned(&mut self, other: Node) {
        if other.member && !self.member {
            self.member = true;
            self.pe = other.pe;
        }
        self.below.union_with_owned(other.below);
    }
}

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A level from nodes with distinct elements in any order; empty nodes are left
    /// out.
    pub(crate) fn from_nodes(mut nodes: Vec<Node>) -> FieldSet {
        nodes.retain(|n| !n.is_empty());
        if !nodes.is_sorted_by(|a, b| a.pe < b.pe) {
            nodes.sort_by(|a, b| a.pe.cmp(&b.pe));
        }
        FieldSet { nodes }
    }

    /// A level from nodes in any order, possibly with equal elements (merged, the
    /// earlier first).
    fn from_unsorted_nodes(mut nodes: Vec<Node>) -> FieldSet {
        nodes.sort_by(|a, b| a.pe.cmp(&b.pe));
        let mut out: Vec<Node> = Vec::with_capacity(nodes.len());
        for n in nodes {
            match out.last_mut() {
                Some(last) if last.pe == n.pe => last.absorb_owned(n),
                _ => out.push(n),
            }
        }
        FieldSet { nodes: out }
    }

    /// The nodes of the top level, sorted by element.
    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    fn find(&self, pe: &PathElement) -> Result<usize, usize> {
        self.nodes.binary_search_by(|n| n.pe.cmp(pe))
    }

    fn node(&self, pe: &PathElement) -> Option<&Node> {
        self.find(pe).ok().map(|i| &self.nodes[i])
    }

    /// The node of the field `name`.
    fn field_node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| match &n.pe {
                PathElement::Field(f) => f.as_str().cmp(name),
                _ => Ordering::Greater,
            })
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Add a path. The empty path (the whole object) is never tracked.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let i = match self.find(first) {
            Ok(i) => i,
            Err(i) => {
                let node = Node::new(first.clone(), false, FieldSet::new());
                self.nodes.insert(i, node);
                i
            }
        };
        let node = &mut self.nodes[i];
        if rest.is_empty() {
            if !node.member {
                node.member = true;
                node.pe = first.clone();
            }
        } else {
            node.below.insert(rest);
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.has_member(last),
            [first, rest @ ..] => self.node(first).is_some_and(|n| n.below.has(rest)),
        }
    }

    /// Whether the one-element path `pe` is a member.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.node(pe).is_some_and(|n| n.member)
    }

    /// The paths below `pe`, with `pe` taken off.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.node(pe).map(|n| &n.below).filter(|b| !b.is_empty())
    }

    /// Whether the field `name` is a member (`has_member` of a field element).
    pub(crate) fn has_field_member(&self, name: &str) -> bool {
        self.field_node(name).is_some_and(|n| n.member)
    }

    /// The paths below the field `name` (`child` of a field element).
    pub(crate) fn field_child(&self, name: &str) -> Option<&FieldSet> {
        self.field_node(name)
            .map(|n| &n.below)
            .filter(|b| !b.is_empty())
    }

    /// Number of member paths.
    pub fn len(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| usize::from(n.member) + n.below.len())
            .sum()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        if other.nodes.is_empty() {
            return;
        }
        if self.nodes.is_empty() {
            self.nodes = other.nodes.clone();
            return;
        }
        let mine = std::mem::take(&mut self.nodes);
        let mut out = Vec::with_capacity(mine.len() + other.nodes.len());
        let mut theirs = other.nodes.iter().peekable();
        for mut n in mine {
            while let Some(o) = theirs.next_if(|o| o.pe < n.pe) {
                out.push(o.clone());
            }
            if let Some(o) = theirs.next_if(|o| o.pe == n.pe) {
                n.absorb(o);
            }
            out.push(n);
        }
        out.extend(theirs.cloned());
        self.nodes = out;
    }

    /// [`union_with`](Self::union_with), taking `other` apart rather than copying it.
    pub(crate) fn union_with_owned(&mut self, other: FieldSet) {
        if other.nodes.is_empty() {
            return;
        }
        if self.nodes.is_empty() {
            *self = other;
            return;
        }
        let mine = std::mem::take(&mut self.nodes);
        let mut out = Vec::with_capacity(mine.len() + other.nodes.len());
        let mut theirs = other.nodes.into_iter().peekable();
        for mut n in mine {
            while let Some(o) = theirs.next_if(|o| o.pe < n.pe) {
                out.push(o);
            }
            if let Some(o) = theirs.next_if(|o| o.pe == n.pe) {
                n.absorb_owned(o);
            }
            out.push(n);
        }
        out.extend(theirs);
        self.nodes = out;
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut nodes = Vec::new();
        let mut theirs = other.nodes.iter().peekable();
        for n in &self.nodes {
            while theirs.next_if(|o| o.pe < n.pe).is_some() {}
            if let Some(o) = theirs.next_if(|o| o.pe == n.pe) {
                let member = n.member && o.member;
                let below = n.below.intersection(&o.below);
                if member || !below.is_empty() {
                    nodes.push(Node::new(n.pe.clone(), member, below));
                }
            }
        }
        FieldSet { nodes }
    }

    /// Paths of `self` that are not paths of `other` (member by member: removing a
    /// member leaves the paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// [`difference`](Self::difference) in place; whether anything was removed.
    pub(crate) fn subtract(&mut self, other: &FieldSet) -> bool {
        if self.nodes.is_empty() || other.nodes.is_empty() {
            return false;
        }
        let mut changed = false;
        let mut theirs = other.nodes.iter().peekable();
        self.nodes.retain_mut(|n| {
            while theirs.next_if(|o| o.pe < n.pe).is_some() {}
            if let Some(o) = theirs.next_if(|o| o.pe == n.pe) {
                if o.member && n.member {
                    n.member = false;
                    changed = true;
                }
                changed |= n.below.subtract(&o.below);
            }
            !n.is_empty()
        });
        changed
    }

    /// Like [`difference`](Self::difference), but a member of `other` also removes
    /// everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut theirs = other.nodes.iter().peekable();
        for n in &self.nodes {
            while theirs.next_if(|o| o.pe < n.pe).is_some() {}
            match theirs.next_if(|o| o.pe == n.pe) {
                Some(o) if o.member => {}
                Some(o) => {
                    let below = n.below.recursive_difference(&o.below);
                    if n.member || !below.is_empty() {
                        nodes.push(Node::new(n.pe.clone(), n.member, below));
                    }
                }
                None => nodes.push(n.clone()),
            }
        }
        FieldSet { nodes }
    }

    /// Only the paths at or below the one-element path `pe`.
    pub fn only_under(&self, pe: &PathElement) -> FieldSet {
        FieldSet {
            nodes: self.node(pe).cloned().into_iter().collect(),
        }
    }

    /// Keep only the top-level elements `keep` accepts.
    pub(crate) fn retain_top(&mut self, mut keep: impl FnMut(&PathElement) -> bool) {
        self.nodes.retain(|n| keep(&n.pe));
    }

    /// The same set where every map field that has paths below it is also a member.
    /// Pruning uses this so that a struct nobody owns anything in goes away whole.
    pub fn with_fields_as_members(&self) -> FieldSet {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let is_field = matches!(n.pe, PathElement::Field(_));
                Node::new(
                    n.pe.clone(),
                    n.member || (is_field && !n.below.is_empty()),
                    n.below.with_fields_as_members(),
                )
            })
            .collect();
        FieldSet { nodes }
    }

    /// Every member path, in order (at each level the members, then the paths below).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for n in self.nodes.iter().filter(|n| n.member) {
            let mut p = prefix.clone();
            p.push(n.pe.clone());
            out.push(p);
        }
        for n in self.nodes.iter().filter(|n| !n.below.is_empty()) {
            prefix.push(n.pe.clone());
            n.below.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.to_map(false))
    }

    fn to_map(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::with_capacity(self.nodes.len() + usize::from(include_self));
        if include_self {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        for n in &self.nodes {
            let body = if n.below.is_empty() {
                Map::new()
            } else {
                n.below.to_map(n.member)
            };
            out.insert(n.pe.to_fields_key(), Value::Object(body));
        }
        out
    }

    /// Whether [`to_fields_v1`](Self::to_fields_v1) gives the object `m`.
    pub(crate) fn is_written_as(&self, m: &Map<String, Value>) -> bool {
        self.written_as(m, false)
    }

    /// Whether [`to_map`](Self::to_map) gives `m`.
    fn written_as(&self, m: &Map<String, Value>, include_self: bool) -> bool {
        if m.len() != self.nodes.len() + usize::from(include_self) {
            return false;
        }
        let mut entries = m.iter();
        if include_self
            && !matches!(entries.next(), Some((k, Value::Object(b))) if k == "." && b.is_empty())
        {
            return false;
        }
        self.nodes.iter().zip(entries).all(|(n, (key, body))| {
            let key_matches = match &n.pe {
                PathElement::Field(name) => key.strip_prefix("f:") == Some(name.as_str()),
                pe => pe.to_fields_key() == *key,
            };
            key_matches
                && match body {
                    Value::Object(b) if n.below.is_empty() => b.is_empty(),
                    Value::Object(b) => n.below.written_as(b, n.member),
                    _ => false,
                }
        })
    }

    /// Parse a `fieldsV1` JSON object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        FieldSet::decode_fields_v1(v).map(|(set, _)| set)
    }

    /// [`from_fields_v1`](Self::from_fields_v1), and whether
    /// [`to_fields_v1`](Self::to_fields_v1) of the set gives back `v` exactly (keys
    /// in order and written as this code writes them, `"."` only where needed).
    pub(crate) fn decode_fields_v1(v: &Value) -> Result<(FieldSet, bool), String> {
        match v {
            Value::Object(m) => {
                let (set, _, canonical) = FieldSet::read_map(m, true)?;
                Ok((set, canonical))
            }
            Value::Null => Ok((FieldSet::new(), false)),
            _ => Err("fieldsV1 must be a JSON object".to_string()),
        }
    }

    /// The set below one node, whether the node itself is a member (it is when it
    /// says so with `"."` or when nothing is below it), and whether the map is
    /// written exactly as [`to_map`](Self::to_map) would write it.
    fn read_map(m: &Map<String, Value>, root: bool) -> Result<(FieldSet, bool, bool), String> {
        let mut nodes: Vec<Node> = Vec::with_capacity(m.len());
        let mut is_member = false;
        let mut canonical = true;
        let mut sorted = true;
        for (i, (key, body)) in m.iter().enumerate() {
            if key == "." {
                is_member = true;
                canonical &= i == 0 && !root && body.as_object().is_some_and(Map::is_empty);
                continue;
            }
            let Some(pe) = PathElement::parse(key)? else {
                canonical = false;
                continue;
            };
            let Value::Object(body) = body else {
                return Err(format!("value of {key:?} must be a JSON object"));
            };
            let (below, member, below_canonical) = FieldSet::read_map(body, false)?;
            canonical &= below_canonical && pe.is_written_as(key);
            if sorted && nodes.last().is_some_and(|last| last.pe >= pe) {
                sorted = false;
            }
            nodes.push(Node::new(pe, member, below));
        }
        let set = if sorted {
            FieldSet { nodes }
        } else {
            canonical = false;
            FieldSet::from_unsorted_nodes(nodes)
        };
        // "." is written only for a member with paths below it.
        canonical &= !(is_member && set.is_empty());
        let member = is_member || set.is_empty();
        Ok((set, member, canonical))
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
