//! Walks over untyped objects that server-side apply needs: the field set an applied
//! configuration declares, the difference between two objects, the merge of an
//! applied configuration into a live object, and pruning of fields nobody owns.
//!
//! Maps are granular (merged key by key) unless the kind's [`MergeSchema`] makes them
//! atomic. A list is granular only when the schema says it is a set or a keyed map
//! *and* every item can be identified (set items are scalars, map items are objects
//! carrying at least one key field); otherwise it is one atomic value.
//!
//! The walks build field sets bottom-up (a level's nodes once its children are
//! done), carry the path of field names as borrowed strings, and create path
//! elements only for the paths they record.

use serde_json::{Map, Value};

use super::fieldset::{field_key, path_string, values_equal, FieldSet, Node, PathElement};
use crate::patch::schema::{ListType, MergeSchema};

/// What changed between two objects, in the manner of structured-merge-diff: leaves
/// (scalars, atomic lists, empty maps) that changed are `modified`; every path that
/// appeared (including maps and list items as a whole) is `added`; every path that
/// went away is `removed`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// The comparison at one node: whether the node itself was added, modified or
/// removed, and what changed below it.
#[derive(Default)]
struct NodeCmp {
    added: bool,
    modified: bool,
    removed: bool,
    below: Comparison,
}

impl NodeCmp {
    fn is_empty(&self) -> bool {
        !(self.added || self.modified || self.removed)
            && self.below.added.is_empty()
            && self.below.modified.is_empty()
            && self.below.removed.is_empty()
    }
}

/// The nodes of one level of a [`Comparison`], collected child by child.
#[derive(Default)]
struct Level {
    added: Vec<Node>,
    modified: Vec<Node>,
    removed: Vec<Node>,
}

impl Level {
    fn push_field(&mut self, name: &str, c: NodeCmp) {
        if !c.is_empty() {
            self.push(PathElement::Field(name.to_string()), c);
        }
    }

    fn push(&mut self, pe: PathElement, c: NodeCmp) {
        let NodeCmp {
            added,
            modified,
            removed,
            below,
        } = c;
        let parts = [
            (added, below.added, &mut self.added),
            (modified, below.modified, &mut self.modified),
            (removed, below.removed, &mut self.removed),
        ];
        let mut wanted = parts
            .iter()
            .filter(|(member, below, _)| *member || !below.is_empty())
            .count();
        let mut pe = Some(pe);
        for (member, below, out) in parts {
            if !member && below.is_empty() {
                continue;
            }
            wanted -= 1;
            let pe = if wanted == 0 {
                pe.take().expect("element")
            } else {
                pe.clone().expect("element")
            };
            out.push(Node::new(pe, member, below));
        }
    }

    fn finish(self) -> Comparison {
        if self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty() {
            return Comparison::default();
        }
        Comparison {
            added: FieldSet::from_nodes(self.added),
            modified: FieldSet::from_nodes(self.modified),
            removed: FieldSet::from_nodes(self.removed),
        }
    }
}

/// The items of a list, identified.
enum Keyed<'v> {
    /// Each item with its path element, in list order; no duplicates.
    Items(Vec<(PathElement, &'v Value)>),
    /// The list is atomic, or an item cannot be identified.
    Atomic,
    /// Two items have the same identity.
    Duplicate(PathElement),
}

/// Identified items, looked up by element.
struct ItemIndex<'a, 'v> {
    items: &'a [(PathElement, &'v Value)],
    /// Indices into `items`, sorted by element.
    sorted: Vec<usize>,
}

impl<'a, 'v> ItemIndex<'a, 'v> {
    fn new(items: &'a [(PathElement, &'v Value)]) -> Self {
        let mut sorted: Vec<usize> = (0..items.len()).collect();
        sorted.sort_by(|&a, &b| items[a].0.cmp(&items[b].0));
        ItemIndex { items, sorted }
    }

    /// The position of the item identified by `pe`.
    fn position(&self, pe: &PathElement) -> Option<usize> {
        self.sorted
            .binary_search_by(|&i| self.items[i].0.cmp(pe))
            .ok()
            .map(|j| self.sorted[j])
    }

    fn get(&self, pe: &PathElement) -> Option<&'v Value> {
        self.position(pe).map(|i| self.items[i].1)
    }
}

/// A duplicate item in a granular list of an applied configuration: its element and
/// the path to the list, innermost element first.
struct Duplicate {
    reversed_path: Vec<PathElement>,
    pe: PathElement,
}

impl Duplicate {
    fn within(mut self, pe: PathElement) -> Self {
        self.reversed_path.push(pe);
        self
    }

    fn message(mut self) -> String {
        self.reversed_path.reverse();
        format!(
            "{}: duplicate entries for key {}",
            path_string(&self.reversed_path),
            self.pe
        )
    }
}

/// List and map semantics for one kind, by path of field names.
pub(crate) struct Lists<'a> {
    pub schema: &'a dyn MergeSchema,
}

/// A copy of a `metadata` value without `managedFields`.
fn without_managed_fields(md: &Value) -> Value {
    match md {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "managedFields")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        v => v.clone(),
    }
}

impl Lists<'_> {
    fn list_type(&self, spath: &[&str]) -> ListType {
        self.schema.list_type(spath)
    }

    /// Whether the map at `spath` is one atomic value (`x-kubernetes-map-type: atomic`).
    fn atomic_map(&self, spath: &[&str]) -> bool {
        !spath.is_empty() && self.schema.atomic_map(spath)
    }

    fn keyed<'v>(&self, spath: &[&str], items: &'v [Value]) -> Keyed<'v> {
        let lt = self.list_type(spath);
        if lt == ListType::Atomic {
            return Keyed::Atomic;
        }
        let mut out: Vec<(PathElement, &'v Value)> = Vec::with_capacity(items.len());
        // Indices into `out`, sorted by element.
        let mut sorted: Vec<usize> = Vec::with_capacity(items.len());
        for item in items {
            let default = |k: &str| self.schema.key_default(spath, k);
            let Some(pe) = item_element(lt, item, &default) else {
                return Keyed::Atomic;
            };
            match sorted.binary_search_by(|&i| out[i].0.cmp(&pe)) {
                Ok(_) => return Keyed::Duplicate(pe),
                Err(at) => sorted.insert(at, out.len()),
            }
            out.push((pe, item));
        }
        Keyed::Items(out)
    }

    /// The identified items of a list value, or `None` when it must be treated as
    /// atomic (a missing list counts as empty).
    fn items<'v>(
        &self,
        spath: &[&str],
        v: Option<&'v Value>,
    ) -> Option<Vec<(PathElement, &'v Value)>> {
        match v {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => match self.keyed(spath, items) {
                Keyed::Items(items) => Some(items),
                _ => None,
            },
            Some(_) => None,
        }
    }

    /// The fields an applied configuration sets: leaves (scalars, nulls, empty maps,
    /// atomic lists), set values and keyed items (with their fields). Errors on
    /// duplicate items in a granular list, as Kubernetes does.
    pub fn field_set(&self, cfg: &Value) -> Result<FieldSet, String> {
        match cfg {
            Value::Object(m) => self
                .set_fields(m, &mut Vec::new())
                .map_err(Duplicate::message),
            _ => Ok(FieldSet::new()),
        }
    }

    fn set_fields<'v>(
        &self,
        m: &'v Map<String, Value>,
        spath: &mut Vec<&'v str>,
    ) -> Result<FieldSet, Duplicate> {
        let mut nodes = Vec::with_capacity(m.len());
        for (k, v) in m {
            spath.push(k);
            let node = self.set_node(v, spath);
            spath.pop();
            let (member, below) = node.map_err(|e| e.within(PathElement::Field(k.clone())))?;
            if member || !below.is_empty() {
                nodes.push(Node::new(PathElement::Field(k.clone()), member, below));
            }
        }
        Ok(FieldSet::from_nodes(nodes))
    }

    /// Whether the node holding `v` is itself set, and the fields set below it.
    fn set_node<'v>(
        &self,
        v: &'v Value,
        spath: &mut Vec<&'v str>,
    ) -> Result<(bool, FieldSet), Duplicate> {
        match v {
            Value::Object(m) if !m.is_empty() && !self.atomic_map(spath) => {
                Ok((false, self.set_fields(m, spath)?))
            }
            Value::Array(items) => match self.keyed(spath, items) {
                Keyed::Atomic => Ok((true, FieldSet::new())),
                Keyed::Duplicate(pe) => Err(Duplicate {
                    reversed_path: Vec::new(),
                    pe,
                }),
                Keyed::Items(items) => {
                    let mut nodes = Vec::with_capacity(items.len());
                    for (pe, item) in items {
                        let below = match item {
                            Value::Object(m) => self
                                .set_fields(m, spath)
                                .map_err(|e| e.within(pe.clone()))?,
                            _ => FieldSet::new(),
                        };
                        nodes.push(Node::new(pe, true, below));
                    }
                    Ok((false, FieldSet::from_nodes(nodes)))
                }
            },
            _ => Ok((true, FieldSet::new())),
        }
    }

    /// Compare `old` (None: did not exist) with `new`.
    pub fn compare(&self, old: Option<&Value>, new: Option<&Value>) -> Comparison {
        self.cmp(old, new, &mut Vec::new()).below
    }

    /// [`compare`](Self::compare) of two root objects without their
    /// `metadata.managedFields`, looking only at the root keys `keep` accepts (the
    /// comparison of the whole objects with the other root keys' paths taken out).
    /// `None` when a root is not an object.
    pub fn compare_roots(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Option<Comparison> {
        fn as_map(v: Option<&Value>) -> Option<Option<&Map<String, Value>>> {
            match v {
                None => Some(None),
                Some(Value::Object(m)) => Some(Some(m)),
                Some(_) => None,
            }
        }
        let (lm, rm) = (as_map(old)?, as_map(new)?);
        Some(self.cmp_maps(lm, rm, &mut Vec::new(), MapAt::Root(keep)))
    }

    /// [`cmp`](Self::cmp) of the root's `metadata` values without `managedFields`.
    fn cmp_metadata<'v>(
        &self,
        l: Option<&'v Value>,
        r: Option<&'v Value>,
        spath: &mut Vec<&'v str>,
    ) -> NodeCmp {
        let as_map = |v: Option<&'v Value>| v.and_then(Value::as_object);
        let shaped = |v: Option<&Value>| v.is_none_or(Value::is_object);
        let empty = |v: Option<&Value>| {
            v.and_then(Value::as_object)
                .is_none_or(|m| m.keys().all(|k| k == "managedFields"))
        };
        if shaped(l) && shaped(r) && !(empty(l) && empty(r)) {
            let mut out = NodeCmp {
                below: self.cmp_maps(as_map(l), as_map(r), spath, MapAt::Metadata),
                ..NodeCmp::default()
            };
            container_presence(l, r, &mut out);
            return out;
        }
        let (l, r) = (l.map(without_managed_fields), r.map(without_managed_fields));
        self.cmp(l.as_ref(), r.as_ref(), &mut vec!["metadata"])
    }

    fn cmp<'v>(
        &self,
        l: Option<&'v Value>,
        r: Option<&'v Value>,
        spath: &mut Vec<&'v str>,
    ) -> NodeCmp {
        let mut out = NodeCmp::default();
        match (l, r) {
            (None, None) => return out,
            // Everything at and below a new value was added; below an old one, removed.
            (None, Some(v)) => {
                out.added = true;
                out.below.added = self.all_paths(v, spath);
                return out;
            }
            (Some(v), None) => {
                out.removed = true;
                out.below.removed = self.all_paths(v, spath);
                return out;
            }
            // Equal lists have equal items (nothing else saves as much work).
            (Some(Value::Array(a)), Some(Value::Array(b))) if a == b => return out,
            _ => {}
        }
        let obj_or_none = |v: Option<&Value>| v.is_none_or(Value::is_object);
        let arr_or_none = |v: Option<&Value>| v.is_none_or(Value::is_array);
        if obj_or_none(l) && obj_or_none(r) {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
            if empty || self.atomic_map(spath) {
                leaf(l, r, &mut out);
                return out;
            }
            out.below = self.cmp_maps(lm, rm, spath, MapAt::Inner);
            container_presence(l, r, &mut out);
            return out;
        }
        if arr_or_none(l) && arr_or_none(r) {
            let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(Vec::is_empty);
            if !(empty(l) && empty(r)) {
                if let (Some(li), Some(ri)) = (self.items(spath, l), self.items(spath, r)) {
                    out.below = self.cmp_items(li, ri, spath);
                    container_presence(l, r, &mut out);
                    return out;
                }
            }
            leaf(l, r, &mut out);
            return out;
        }
        // Different shapes (or scalars): what was below the old value is gone, what is
        // below the new one is new, and the value itself changed.
        let mut level = Level::default();
        if let Some(lv) = l {
            self.cmp_below(lv, true, spath, &mut level);
        }
        if let Some(rv) = r {
            self.cmp_below(rv, false, spath, &mut level);
        }
        out.below = level.finish();
        leaf(l, r, &mut out);
        out
    }

    /// The fields of two maps (either may be missing).
    fn cmp_maps<'v>(
        &self,
        lm: Option<&'v Map<String, Value>>,
        rm: Option<&'v Map<String, Value>>,
        spath: &mut Vec<&'v str>,
        at: MapAt,
    ) -> Comparison {
        let keep = |k: &str| match at {
            MapAt::Inner => true,
            MapAt::Root(keep) => keep(k),
            MapAt::Metadata => k != "managedFields",
        };
        let mut level = Level::default();
        let mut field = |k: &'v str, l: Option<&'v Value>, r: Option<&'v Value>| {
            spath.push(k);
            let c = match at {
                MapAt::Root(_) if k == "metadata" => self.cmp_metadata(l, r, spath),
                _ => self.cmp(l, r, spath),
            };
            spath.pop();
            level.push_field(k, c);
        };
        // The maps usually hold the same keys in the same order: look each key up at
        // its position first.
        let mut in_step = true;
        let mut rest = rm.into_iter().flatten();
        for (k, lv) in lm.into_iter().flatten() {
            let rv = match rest.next() {
                Some((rk, rv)) if in_step && rk == k => Some(rv),
                _ => {
                    in_step = false;
                    rm.and_then(|m| m.get(k))
                }
            };
            if keep(k) {
                field(k, Some(lv), rv);
            }
        }
        if in_step {
            // The keys the left map has are the first of the right map's.
            for (k, rv) in rest {
                if keep(k) {
                    field(k, None, Some(rv));
                }
            }
        } else {
            for (k, rv) in rm.into_iter().flatten() {
                if keep(k) && !lm.is_some_and(|m| m.contains_key(k)) {
                    field(k, None, Some(rv));
                }
            }
        }
        level.finish()
    }

    fn cmp_items<'v>(
        &self,
        li: Vec<(PathElement, &'v Value)>,
        ri: Vec<(PathElement, &'v Value)>,
        spath: &mut Vec<&'v str>,
    ) -> Comparison {
        let mut level = Level::default();
        let mut matched = vec![false; ri.len()];
        {
            let index = ItemIndex::new(&ri);
            for (pe, lv) in li {
                let j = index.position(&pe);
                if let Some(j) = j {
                    matched[j] = true;
                }
                let c = self.cmp(Some(lv), j.map(|j| ri[j].1), spath);
                if !c.is_empty() {
                    level.push(pe, c);
                }
            }
        }
        for ((pe, rv), matched) in ri.into_iter().zip(matched) {
            if !matched {
                let c = self.cmp(None, Some(rv), spath);
                if !c.is_empty() {
                    level.push(pe, c);
                }
            }
        }
        level.finish()
    }

    /// The `fieldsV1` map of [`all_paths`](Self::all_paths) of `v`, written directly;
    /// with `"."` first when `member` and there are paths (the map of a member node
    /// with paths below it).
    pub fn all_paths_fields_v1<'v>(
        &self,
        v: &'v Value,
        spath: &mut Vec<&'v str>,
        member: bool,
    ) -> Map<String, Value> {
        let start = |len: usize| {
            let mut out = Map::with_capacity(len + usize::from(member));
            if member {
                out.insert(".".to_string(), Value::Object(Map::new()));
            }
            out
        };
        match v {
            Value::Object(m) if !m.is_empty() && !self.atomic_map(spath) => {
                let mut fields: Vec<(&'v String, &'v Value)> = m.iter().collect();
                fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = start(fields.len());
                for (k, c) in fields {
                    spath.push(k);
                    let body = self.all_paths_fields_v1(c, spath, true);
                    spath.pop();
                    out.insert(field_key(k), Value::Object(body));
                }
                out
            }
            Value::Array(items) if !items.is_empty() => match self.keyed(spath, items) {
                Keyed::Items(mut items) => {
                    items.sort_by(|a, b| a.0.cmp(&b.0));
                    let mut out = start(items.len());
                    for (pe, item) in items {
                        let body = self.all_paths_fields_v1(item, spath, true);
                        out.insert(pe.to_fields_key(), Value::Object(body));
                    }
                    out
                }
                _ => Map::new(),
            },
            _ => Map::new(),
        }
    }

    /// Every path below `v`: its fields, the items of a granular list, and theirs.
    fn all_paths<'v>(&self, v: &'v Value, spath: &mut Vec<&'v str>) -> FieldSet {
        match v {
            Value::Object(m) if !self.atomic_map(spath) => {
                let mut nodes = Vec::with_capacity(m.len());
                for (k, c) in m {
                    spath.push(k);
                    let below = self.all_paths(c, spath);
                    spath.pop();
                    nodes.push(Node::new(PathElement::Field(k.clone()), true, below));
                }
                FieldSet::from_nodes(nodes)
            }
            Value::Array(items) if !items.is_empty() => match self.keyed(spath, items) {
                Keyed::Items(items) => {
                    let nodes = items
                        .into_iter()
                        .map(|(pe, item)| Node::new(pe, true, self.all_paths(item, spath)))
                        .collect();
                    FieldSet::from_nodes(nodes)
                }
                _ => FieldSet::new(),
            },
            _ => FieldSet::new(),
        }
    }

    /// Mark everything below a map or granular list as removed (`old`) or added.
    fn cmp_below<'v>(&self, v: &'v Value, old: bool, spath: &mut Vec<&'v str>, level: &mut Level) {
        let pair = |x: &'v Value| -> (Option<&'v Value>, Option<&'v Value>) {
            if old {
                (Some(x), None)
            } else {
                (None, Some(x))
            }
        };
        match v {
            Value::Object(m) if !self.atomic_map(spath) => {
                for (k, c) in m {
                    let (l, r) = pair(c);
                    spath.push(k);
                    let c = self.cmp(l, r, spath);
                    spath.pop();
                    level.push_field(k, c);
                }
            }
            Value::Array(_) => {
                if let Some(items) = self.items(spath, Some(v)) {
                    for (pe, item) in items {
                        let (l, r) = pair(item);
                        let c = self.cmp(l, r, spath);
                        if !c.is_empty() {
                            level.push(pe, c);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Merge an applied configuration into the live object: maps key by key, granular
    /// lists item by item, everything else replaced by the configuration's value.
    #[cfg(test)]
    pub fn merge(&self, live: Option<&Value>, cfg: &Value) -> Value {
        self.merge_node(live, cfg, &mut Vec::new(), Strip::No)
    }

    /// [`merge`](Self::merge) into the live object without its
    /// `metadata.managedFields`.
    pub fn merge_stripped(&self, live: Option<&Value>, cfg: &Value) -> Value {
        self.merge_node(live, cfg, &mut Vec::new(), Strip::Root)
    }

    fn merge_node<'v>(
        &self,
        live: Option<&Value>,
        cfg: &'v Value,
        spath: &mut Vec<&'v str>,
        strip: Strip,
    ) -> Value {
        match (live, cfg) {
            (Some(Value::Object(lm)), Value::Object(cm)) if !self.atomic_map(spath) => {
                let skip = |k: &str| strip == Strip::Metadata && k == "managedFields";
                let live_empty = lm.keys().all(|k| skip(k));
                if live_empty && cm.is_empty() {
                    return cfg.clone();
                }
                let child_strip = |k: &str| {
                    if strip == Strip::Root && k == "metadata" {
                        Strip::Metadata
                    } else {
                        Strip::No
                    }
                };
                let mut out = Map::with_capacity(lm.len().max(cm.len()));
                // The configuration's keys usually come in the live order: look each
                // up at the next one first.
                let mut next = cm.iter().peekable();
                let mut shared = 0;
                for (k, lv) in lm {
                    if skip(k) {
                        continue;
                    }
                    let found = match next.next_if(|(ck, _)| *ck == k) {
                        Some(kv) => Some(kv),
                        None => cm.get_key_value(k.as_str()),
                    };
                    let v = match found {
                        Some((ck, cv)) => {
                            shared += 1;
                            spath.push(ck);
                            let v = self.merge_node(Some(lv), cv, spath, child_strip(k));
                            spath.pop();
                            v
                        }
                        None if child_strip(k) == Strip::Metadata => without_managed_fields(lv),
                        None => lv.clone(),
                    };
                    out.insert(k.clone(), v);
                }
                for (k, cv) in cm {
                    if shared == cm.len() {
                        break;
                    }
                    if lm.contains_key(k) && !skip(k) {
                        continue;
                    }
                    spath.push(k);
                    let v = self.merge_node(None, cv, spath, Strip::No);
                    spath.pop();
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            (Some(l @ Value::Array(la)), Value::Array(ca)) if !(la.is_empty() && ca.is_empty()) => {
                match (self.items(spath, Some(l)), self.items(spath, Some(cfg))) {
                    (Some(li), Some(ci)) => Value::Array(self.merge_items(&li, &ci, spath)),
                    _ => cfg.clone(),
                }
            }
            _ => cfg.clone(),
        }
    }

    /// Items of the applied list come in its order; live-only items keep their place
    /// relative to the items around them: each live item shared with the
    /// configuration pulls in the configuration's items up to it.
    fn merge_items<'v>(
        &self,
        live: &[(PathElement, &Value)],
        cfg: &[(PathElement, &'v Value)],
        spath: &mut Vec<&'v str>,
    ) -> Vec<Value> {
        let cindex = ItemIndex::new(cfg);
        let lindex = ItemIndex::new(live);
        let mut out = Vec::with_capacity(live.len().max(cfg.len()));
        let mut next = 0;
        let mut emit_cfg_through = |upto: usize, out: &mut Vec<Value>, spath: &mut Vec<&'v str>| {
            while next <= upto && next < cfg.len() {
                let (pe, cv) = &cfg[next];
                out.push(self.merge_node(lindex.get(pe), cv, spath, Strip::No));
                next += 1;
            }
        };
        for (pe, lv) in live {
            match cindex.position(pe) {
                Some(i) => emit_cfg_through(i, &mut out, spath),
                None => out.push((*lv).clone()),
            }
        }
        if !cfg.is_empty() {
            emit_cfg_through(cfg.len() - 1, &mut out, spath);
        }
        out
    }

    /// Remove from `obj` every field or item that is a member of `last` but of none
    /// of `owned`, except the paths `keep` protects. In `last` and in each owned set,
    /// a map field with paths below it counts as a member too, so that a struct
    /// nobody owns anything in goes away whole.
    pub fn prune(
        &self,
        obj: &mut Value,
        last: &FieldSet,
        owned: &[&FieldSet],
        keep: &dyn Fn(&[&str]) -> bool,
    ) {
        self.prune_node(obj, last, owned, keep, &mut Vec::new());
    }

    fn prune_node<'l>(
        &self,
        v: &mut Value,
        last: &'l FieldSet,
        owned: &[&FieldSet],
        keep: &dyn Fn(&[&str]) -> bool,
        spath: &mut Vec<&'l str>,
    ) {
        if last.is_empty() {
            return;
        }
        match v {
            Value::Object(m) if !self.atomic_map(spath) => {
                for node in last.nodes() {
                    let PathElement::Field(k) = &node.pe else {
                        // Fields sort first.
                        break;
                    };
                    if !m.contains_key(k) {
                        continue;
                    }
                    let in_last = node.member || !node.below.is_empty();
                    let owned_elsewhere = owned
                        .iter()
                        .any(|o| o.has_field_member(k) || o.field_child(k).is_some());
                    spath.push(k);
                    if in_last && !owned_elsewhere && !keep(spath) {
                        m.shift_remove(k);
                    } else if !node.below.is_empty() {
                        let below: Vec<&FieldSet> =
                            owned.iter().filter_map(|o| o.field_child(k)).collect();
                        if let Some(child) = m.get_mut(k) {
                            self.prune_node(child, &node.below, &below, keep, spath);
                        }
                    }
                    spath.pop();
                }
            }
            Value::Array(items) => {
                let ids: Vec<PathElement> = match self.keyed(spath, items) {
                    Keyed::Items(items) => items.into_iter().map(|(pe, _)| pe).collect(),
                    _ => return,
                };
                let old = std::mem::take(items);
                for (pe, mut item) in ids.into_iter().zip(old) {
                    let drop = last.has_member(&pe) && !owned.iter().any(|o| o.has_member(&pe));
                    if drop {
                        continue;
                    }
                    if let Some(below) = last.child(&pe) {
                        let owned_below: Vec<&FieldSet> =
                            owned.iter().filter_map(|o| o.child(&pe)).collect();
                        self.prune_node(&mut item, below, &owned_below, keep, spath);
                    }
                    items.push(item);
                }
            }
            _ => {}
        }
    }

    /// Remove the fields the configuration set to null (they are owned, but unset).
    pub fn drop_config_nulls(&self, obj: &mut Value, cfg: &Value) {
        if has_null(cfg) {
            self.drop_nulls(obj, cfg, &mut Vec::new());
        }
    }

    fn drop_nulls<'c>(&self, v: &mut Value, cfg: &'c Value, spath: &mut Vec<&'c str>) {
        match (v, cfg) {
            (Value::Object(m), Value::Object(cm)) if !self.atomic_map(spath) => {
                for (k, cv) in cm {
                    if cv.is_null() {
                        if m.get(k).is_some_and(Value::is_null) {
                            m.shift_remove(k);
                        }
                    } else if let Some(child) = m.get_mut(k) {
                        spath.push(k);
                        self.drop_nulls(child, cv, spath);
                        spath.pop();
                    }
                }
            }
            (Value::Array(items), Value::Array(_)) => {
                let Some(ci) = self.items(spath, Some(cfg)) else {
                    return;
                };
                let ids: Vec<PathElement> = match self.keyed(spath, items) {
                    Keyed::Items(li) => li.into_iter().map(|(pe, _)| pe).collect(),
                    _ => return,
                };
                let cindex = ItemIndex::new(&ci);
                for (pe, item) in ids.iter().zip(items.iter_mut()) {
                    if let Some(cv) = cindex.get(pe) {
                        self.drop_nulls(item, cv, spath);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Where a map is, for [`Lists::cmp_maps`].
#[derive(Clone, Copy)]
enum MapAt<'k> {
    Inner,
    /// The root object: only the keys the function accepts; `metadata` without
    /// `managedFields`.
    Root(&'k dyn Fn(&str) -> bool),
    /// The root's `metadata`: without `managedFields`.
    Metadata,
}

/// Whether a merge leaves out the live `metadata.managedFields`: `Root` at the root
/// object, `Metadata` in its `metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strip {
    No,
    Root,
    Metadata,
}

/// An item's identity in a granular list; a map item's missing key fields take
/// their schema defaults.
fn item_element(
    lt: ListType,
    item: &Value,
    default: &dyn Fn(&str) -> Option<Value>,
) -> Option<PathElement> {
    match lt {
        ListType::Atomic => None,
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) | Value::Null => None,
            v => Some(PathElement::Value(v.clone())),
        },
        ListType::Map(keys) => {
            let obj = item.as_object()?;
            let fields: Vec<(String, Value)> = keys
                .iter()
                .filter_map(|k| {
                    let v = obj.get(*k).cloned().or_else(|| default(k))?;
                    Some((k.to_string(), v))
                })
                .collect();
            (!fields.is_empty()).then(|| PathElement::key(fields))
        }
    }
}

/// Whether a null occurs anywhere in `v`.
fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(has_null),
        Value::Array(items) => items.iter().any(has_null),
        _ => false,
    }
}

fn leaf(l: Option<&Value>, r: Option<&Value>, out: &mut NodeCmp) {
    match (l, r) {
        (None, Some(_)) => out.added = true,
        (Some(_), None) => out.removed = true,
        (Some(a), Some(b)) if !values_equal(a, b) => out.modified = true,
        _ => {}
    }
}

/// A map or granular list that appeared or went away as a whole.
fn container_presence(l: Option<&Value>, r: Option<&Value>, out: &mut NodeCmp) {
    if l.is_none() {
        out.added = true;
    } else if r.is_none() {
        out.removed = true;
    }
}

/// Whether `a` without its `metadata.managedFields` equals `b`.
pub(crate) fn eq_without_managed_fields(a: &Value, b: &Value) -> bool {
    let (Value::Object(am), Value::Object(bm)) = (a, b) else {
        return a == b;
    };
    am.len() == bm.len()
        && am.iter().all(|(k, av)| match (bm.get(k), av) {
            (None, _) => false,
            (Some(Value::Object(bmd)), Value::Object(amd)) if k == "metadata" => {
                let skipped = usize::from(amd.contains_key("managedFields"));
                amd.len() - skipped == bmd.len()
                    && amd
                        .iter()
                        .filter(|(k, _)| *k != "managedFields")
                        .all(|(k, v)| bmd.get(k) == Some(v))
            }
            (Some(bv), av) => av == bv,
        })
}
