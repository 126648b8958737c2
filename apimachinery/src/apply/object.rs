//! Walks over untyped objects that server-side apply needs: the field set an applied
//! configuration declares, the difference between two objects, the merge of an
//! applied configuration into a live object, and pruning of fields nobody owns.
//!
//! Maps are always granular (merged key by key). A list is granular only when
//! [`crate::patch::schema::list_meta`] says it is a set or a keyed map *and* every
//! item can be identified (set items are scalars, map items are objects carrying at
//! least one key field); otherwise it is one atomic value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{path_string, values_equal, FieldSet, Path, PathElement};
use crate::patch::schema::{list_meta, ListType};

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

impl Comparison {
    pub fn map(self, f: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: f(&self.added),
            modified: f(&self.modified),
            removed: f(&self.removed),
        }
    }

    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
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

/// List semantics for one kind: the `listType` of the list at a path of field names.
pub(crate) struct Lists<'a> {
    pub lookup: &'a dyn Fn(&[&str]) -> ListType,
}

/// The table of [`crate::patch::schema`] for `group`/`kind`.
pub(crate) fn schema_lookup<'a>(
    group: &'a str,
    kind: &'a str,
) -> impl Fn(&[&str]) -> ListType + 'a {
    move |path| list_meta(group, kind, path).apply
}

impl Lists<'_> {
    fn list_type(&self, spath: &[String]) -> ListType {
        let p: Vec<&str> = spath.iter().map(String::as_str).collect();
        (self.lookup)(&p)
    }

    fn keyed<'v>(&self, spath: &[String], items: &'v [Value]) -> Keyed<'v> {
        let lt = self.list_type(spath);
        if lt == ListType::Atomic {
            return Keyed::Atomic;
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some(pe) = item_element(lt, item) else {
                return Keyed::Atomic;
            };
            if !seen.insert(pe.clone()) {
                return Keyed::Duplicate(pe);
            }
            out.push((pe, item));
        }
        Keyed::Items(out)
    }

    /// The identified items of a list value, or `None` when it must be treated as
    /// atomic (a missing list counts as empty).
    fn items<'v>(
        &self,
        spath: &[String],
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
        let mut set = FieldSet::new();
        if let Value::Object(m) = cfg {
            self.set_fields(m, &mut Vec::new(), &mut Vec::new(), &mut set)?;
        }
        Ok(set)
    }

    fn set_fields(
        &self,
        m: &Map<String, Value>,
        spath: &mut Vec<String>,
        fpath: &mut Path,
        set: &mut FieldSet,
    ) -> Result<(), String> {
        for (k, v) in m {
            spath.push(k.clone());
            fpath.push(PathElement::Field(k.clone()));
            self.set_node(v, spath, fpath, set)?;
            fpath.pop();
            spath.pop();
        }
        Ok(())
    }

    fn set_node(
        &self,
        v: &Value,
        spath: &mut Vec<String>,
        fpath: &mut Path,
        set: &mut FieldSet,
    ) -> Result<(), String> {
        match v {
            Value::Object(m) if !m.is_empty() => self.set_fields(m, spath, fpath, set),
            Value::Array(items) => match self.keyed(spath, items) {
                Keyed::Atomic => {
                    set.insert(fpath);
                    Ok(())
                }
                Keyed::Duplicate(pe) => Err(format!(
                    "{}: duplicate entries for key {pe}",
                    path_string(fpath)
                )),
                Keyed::Items(items) => {
                    for (pe, item) in items {
                        fpath.push(pe);
                        set.insert(fpath);
                        if let Value::Object(m) = item {
                            self.set_fields(m, spath, fpath, set)?;
                        }
                        fpath.pop();
                    }
                    Ok(())
                }
            },
            _ => {
                set.insert(fpath);
                Ok(())
            }
        }
    }

    /// Compare `old` (None: did not exist) with `new`.
    pub fn compare(&self, old: Option<&Value>, new: Option<&Value>) -> Comparison {
        let mut out = Comparison::default();
        self.cmp(old, new, &mut Vec::new(), &mut Vec::new(), &mut out);
        out
    }

    fn cmp(
        &self,
        l: Option<&Value>,
        r: Option<&Value>,
        spath: &mut Vec<String>,
        fpath: &mut Path,
        out: &mut Comparison,
    ) {
        if l.is_none() && r.is_none() {
            return;
        }
        let obj_or_none = |v: Option<&Value>| v.is_none_or(Value::is_object);
        let arr_or_none = |v: Option<&Value>| v.is_none_or(Value::is_array);
        if obj_or_none(l) && obj_or_none(r) {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
                leaf(l, r, fpath, out);
                return;
            }
            for (k, lv) in lm.into_iter().flatten() {
                let rv = rm.and_then(|m| m.get(k));
                self.cmp_field(k, Some(lv), rv, spath, fpath, out);
            }
            for (k, rv) in rm.into_iter().flatten() {
                if !lm.is_some_and(|m| m.contains_key(k)) {
                    self.cmp_field(k, None, Some(rv), spath, fpath, out);
                }
            }
            container_presence(l, r, fpath, out);
            return;
        }
        if arr_or_none(l) && arr_or_none(r) {
            let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(Vec::is_empty);
            if !(empty(l) && empty(r)) {
                if let (Some(li), Some(ri)) = (self.items(spath, l), self.items(spath, r)) {
                    self.cmp_items(&li, &ri, spath, fpath, out);
                    container_presence(l, r, fpath, out);
                    return;
                }
            }
            leaf(l, r, fpath, out);
            return;
        }
        // Different shapes (or scalars): what was below the old value is gone, what is
        // below the new one is new, and the value itself changed.
        if let Some(lv) = l {
            self.cmp_below(lv, true, spath, fpath, out);
        }
        if let Some(rv) = r {
            self.cmp_below(rv, false, spath, fpath, out);
        }
        leaf(l, r, fpath, out);
    }

    fn cmp_field(
        &self,
        k: &str,
        l: Option<&Value>,
        r: Option<&Value>,
        spath: &mut Vec<String>,
        fpath: &mut Path,
        out: &mut Comparison,
    ) {
        spath.push(k.to_string());
        fpath.push(PathElement::Field(k.to_string()));
        self.cmp(l, r, spath, fpath, out);
        fpath.pop();
        spath.pop();
    }

    fn cmp_items(
        &self,
        li: &[(PathElement, &Value)],
        ri: &[(PathElement, &Value)],
        spath: &mut Vec<String>,
        fpath: &mut Path,
        out: &mut Comparison,
    ) {
        let rmap: BTreeMap<&PathElement, &Value> = ri.iter().map(|(pe, v)| (pe, *v)).collect();
        let lset: BTreeSet<&PathElement> = li.iter().map(|(pe, _)| pe).collect();
        for (pe, lv) in li {
            fpath.push(pe.clone());
            self.cmp(Some(lv), rmap.get(pe).copied(), spath, fpath, out);
            fpath.pop();
        }
        for (pe, rv) in ri {
            if !lset.contains(pe) {
                fpath.push(pe.clone());
                self.cmp(None, Some(rv), spath, fpath, out);
                fpath.pop();
            }
        }
    }

    /// Mark everything below a map or granular list as removed (`old`) or added.
    fn cmp_below(
        &self,
        v: &Value,
        old: bool,
        spath: &mut Vec<String>,
        fpath: &mut Path,
        out: &mut Comparison,
    ) {
        fn pair(x: &Value, old: bool) -> (Option<&Value>, Option<&Value>) {
            if old {
                (Some(x), None)
            } else {
                (None, Some(x))
            }
        }
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let (l, r) = pair(c, old);
                    self.cmp_field(k, l, r, spath, fpath, out);
                }
            }
            Value::Array(_) => {
                if let Some(items) = self.items(spath, Some(v)) {
                    for (pe, item) in items {
                        let (l, r) = pair(item, old);
                        fpath.push(pe);
                        self.cmp(l, r, spath, fpath, out);
                        fpath.pop();
                    }
                }
            }
            _ => {}
        }
    }

    /// Merge an applied configuration into the live object: maps key by key, granular
    /// lists item by item, everything else replaced by the configuration's value.
    pub fn merge(&self, live: Option<&Value>, cfg: &Value) -> Value {
        self.merge_node(live, cfg, &mut Vec::new())
    }

    fn merge_node(&self, live: Option<&Value>, cfg: &Value, spath: &mut Vec<String>) -> Value {
        match (live, cfg) {
            (Some(Value::Object(lm)), Value::Object(cm)) if !(lm.is_empty() && cm.is_empty()) => {
                let mut out = lm.clone();
                for (k, cv) in cm {
                    spath.push(k.clone());
                    let v = self.merge_node(lm.get(k), cv, spath);
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
    fn merge_items(
        &self,
        live: &[(PathElement, &Value)],
        cfg: &[(PathElement, &Value)],
        spath: &mut Vec<String>,
    ) -> Vec<Value> {
        let cpos: BTreeMap<&PathElement, usize> =
            cfg.iter().enumerate().map(|(i, (pe, _))| (pe, i)).collect();
        let lmap: BTreeMap<&PathElement, &Value> = live.iter().map(|(pe, v)| (pe, *v)).collect();
        let mut out = Vec::with_capacity(live.len().max(cfg.len()));
        let mut next = 0;
        let mut emit_cfg_through = |upto: usize, out: &mut Vec<Value>, spath: &mut Vec<String>| {
            while next <= upto && next < cfg.len() {
                let (pe, cv) = &cfg[next];
                out.push(self.merge_node(lmap.get(pe).copied(), cv, spath));
                next += 1;
            }
        };
        for (pe, lv) in live {
            match cpos.get(pe) {
                Some(&i) => emit_cfg_through(i, &mut out, spath),
                None => out.push((*lv).clone()),
            }
        }
        if !cfg.is_empty() {
            emit_cfg_through(cfg.len() - 1, &mut out, spath);
        }
        out
    }

    /// Remove from `obj` every field or item that is a member of `last` but not of
    /// `owned`, except the paths `keep` protects.
    pub fn prune(
        &self,
        obj: &mut Value,
        last: &FieldSet,
        owned: &FieldSet,
        keep: &dyn Fn(&[String]) -> bool,
    ) {
        self.prune_node(obj, last, Some(owned), keep, &mut Vec::new());
    }

    fn prune_node(
        &self,
        v: &mut Value,
        last: &FieldSet,
        owned: Option<&FieldSet>,
        keep: &dyn Fn(&[String]) -> bool,
        spath: &mut Vec<String>,
    ) {
        let drop =
            |pe: &PathElement| last.has_member(pe) && !owned.is_some_and(|o| o.has_member(pe));
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let pe = PathElement::Field(k.clone());
                    spath.push(k.clone());
                    if drop(&pe) && !keep(spath) {
                        m.shift_remove(&k);
                    } else if let (Some(below), Some(child)) = (last.child(&pe), m.get_mut(&k)) {
                        self.prune_node(
                            child,
                            below,
                            owned.and_then(|o| o.child(&pe)),
                            keep,
                            spath,
                        );
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
                    if drop(&pe) {
                        continue;
                    }
                    if let Some(below) = last.child(&pe) {
                        self.prune_node(
                            &mut item,
                            below,
                            owned.and_then(|o| o.child(&pe)),
                            keep,
                            spath,
                        );
                    }
                    items.push(item);
                }
            }
            _ => {}
        }
    }

    /// Remove the fields the configuration set to null (they are owned, but unset).
    pub fn drop_config_nulls(&self, obj: &mut Value, cfg: &Value) {
        self.drop_nulls(obj, cfg, &mut Vec::new());
    }

    fn drop_nulls(&self, v: &mut Value, cfg: &Value, spath: &mut Vec<String>) {
        match (v, cfg) {
            (Value::Object(m), Value::Object(cm)) => {
                for (k, cv) in cm {
                    if cv.is_null() {
                        if m.get(k).is_some_and(Value::is_null) {
                            m.shift_remove(k);
                        }
                    } else if let Some(child) = m.get_mut(k) {
                        spath.push(k.clone());
                        self.drop_nulls(child, cv, spath);
                        spath.pop();
                    }
                }
            }
            (Value::Array(items), Value::Array(_)) => {
                let Some(ci) = self.items(spath, Some(cfg)) else {
                    return;
                };
                let cmap: BTreeMap<PathElement, &Value> = ci.into_iter().collect();
                let ids: Vec<Option<PathElement>> = match self.keyed(spath, items) {
                    Keyed::Items(li) => li.into_iter().map(|(pe, _)| Some(pe)).collect(),
                    _ => return,
                };
                for (pe, item) in ids.into_iter().zip(items.iter_mut()) {
                    if let Some(cv) = pe.as_ref().and_then(|pe| cmap.get(pe)) {
                        self.drop_nulls(item, cv, spath);
                    }
                }
            }
            _ => {}
        }
    }
}

fn item_element(lt: ListType, item: &Value) -> Option<PathElement> {
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
                .filter_map(|k| obj.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
            (!fields.is_empty()).then(|| PathElement::key(fields))
        }
    }
}

fn leaf(l: Option<&Value>, r: Option<&Value>, fpath: &Path, out: &mut Comparison) {
    match (l, r) {
        (None, Some(_)) => out.added.insert(fpath),
        (Some(_), None) => out.removed.insert(fpath),
        (Some(a), Some(b)) if !values_equal(a, b) => out.modified.insert(fpath),
        _ => {}
    }
}

/// A map or granular list that appeared or went away as a whole.
fn container_presence(l: Option<&Value>, r: Option<&Value>, fpath: &Path, out: &mut Comparison) {
    if l.is_none() {
        out.added.insert(fpath);
    } else if r.is_none() {
        out.removed.insert(fpath);
    }
}
