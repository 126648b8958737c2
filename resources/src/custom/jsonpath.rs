//! The JSONPath subset CRDs use for printer columns and the scale subresource:
//! `.spec.replicas`, `.status.conditions[0].type`, `.spec.items[*].name`,
//! `.metadata.labels['app.kubernetes.io/name']`, optionally wrapped in `{...}`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    All,
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Key(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
            {
                Step::Key(q.to_string())
            } else {
                Step::Index(inner.parse().ok()?)
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Every value `path` reaches in `obj`, in order; empty when it reaches none (or the
/// path is not in the supported subset).
pub fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match (step, v) {
                (Step::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                (Step::Index(i), Value::Array(a)) => {
                    let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                    next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                }
                (Step::All, Value::Array(a)) => next.extend(a.iter()),
                (Step::All, Value::Object(m)) => next.extend(m.values()),
                _ => {}
            }
        }
        current = next;
    }
    current
}

/// The object a dotted path (`.spec.replicas`) ends in, created on the way; None when
/// the path is not a plain dotted path or crosses a non-object.
pub fn set(obj: &mut Value, path: &str, value: Value) -> Option<()> {
    let steps = parse(path)?;
    let (last, init) = steps.split_last()?;
    let mut cur = obj;
    for step in init {
        let Step::Key(k) = step else { return None };
        let m = cur.as_object_mut()?;
        cur = m
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        if cur.is_null() {
            *cur = Value::Object(Default::default());
        }
    }
    let Step::Key(k) = last else { return None };
    cur.as_object_mut()?.insert(k.clone(), value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_printer_columns_name() {
        let o = json!({"spec": {"replicas": 3, "items": [{"n": "a"}, {"n": "b"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}}});
        assert_eq!(find(&o, ".spec.replicas"), vec![&json!(3)]);
        assert_eq!(find(&o, "{.spec.items[1].n}"), vec![&json!("b")]);
        assert_eq!(find(&o, ".spec.items[*].n"), vec![&json!("a"), &json!("b")]);
        assert_eq!(
            find(&o, ".metadata.labels['app.kubernetes.io/name']"),
            vec![&json!("x")]
        );
        assert!(find(&o, ".spec.missing").is_empty());
        let mut o = json!({"spec": {}});
        set(&mut o, ".spec.scale.replicas", json!(4)).unwrap();
        assert_eq!(o, json!({"spec": {"scale": {"replicas": 4}}}));
    }
}
