//! Kubernetes' CEL library functions the interpreter lacks: the lists library
//! (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf` on lists) and the regex
//! library (`find`, `findAll`). The strings library (`lowerAscii`, `split`, ...) is the
//! interpreter's own strings extension.

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError, Value};
use std::cmp::Ordering;
use std::sync::Arc;

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload(
        "findAll",
        "string_find_all",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_n",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    Ok(())
}

fn owned<'b, 'v>(v: Value) -> Out<'b, 'v> {
    let boxed: Box<dyn Val> = v.try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn items(args: &Args<'_, '_>) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match args
        .first()
        .map(|a| Value::try_from(a.as_ref()))
        .transpose()?
    {
        Some(Value::List(l)) => Ok(l),
        Some(other) => Err(ExecutionError::UnexpectedType {
            got: other.type_of().to_string(),
            want: "list".into(),
        }),
        None => Err(ExecutionError::missing_argument_or_target()),
    }
}

fn arg(args: &Args<'_, '_>, i: usize) -> Result<Value, ExecutionError> {
    let a = args
        .get(i)
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    Value::try_from(a.as_ref())
}

fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::no_such_overload(
            function,
            vec![a.type_of().to_string(), b.type_of().to_string()],
        )
    })
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let l = items(&args)?;
    for w in l.windows(2) {
        if compare("isSorted", &w[0], &w[1])? == Ordering::Greater {
            return owned(Value::Bool(false));
        }
    }
    owned(Value::Bool(true))
}

fn sum<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let l = items(&args)?;
    let overflow = |a: &Value, b: &Value| ExecutionError::Overflow("sum", a.clone(), b.clone());
    let mut acc = match l.first() {
        None => return owned(Value::Int(0)),
        Some(v) => v.clone(),
    };
    for v in &l[1..] {
        acc = match (&acc, v) {
            (Value::Int(a), Value::Int(b)) => {
                Value::Int(a.checked_add(*b).ok_or_else(|| overflow(&acc, v))?)
            }
            (Value::UInt(a), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or_else(|| overflow(&acc, v))?)
            }
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Duration(a), Value::Duration(b)) => {
                Value::Duration(a.checked_add(b).ok_or_else(|| overflow(&acc, v))?)
            }
            (a, b) => {
                return Err(ExecutionError::no_such_overload(
                    "sum",
                    vec![a.type_of().to_string(), b.type_of().to_string()],
                ))
            }
        };
    }
    owned(acc)
}

fn extreme<'b, 'v>(args: Args<'b, 'v>, name: &str, keep: Ordering) -> Out<'b, 'v> {
    let l = items(&args)?;
    let mut best = l.first().cloned().ok_or_else(|| {
        ExecutionError::function_error(name, format!("{name} called on empty list"))
    })?;
    for v in &l[1..] {
        if compare(name, v, &best)? == keep {
            best = v.clone();
        }
    }
    owned(best)
}

fn min<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    extreme(args, "max", Ordering::Greater)
}

fn index_of<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let l = items(&args)?;
    let x = arg(&args, 1)?;
    let i = l.iter().position(|v| *v == x).map_or(-1, |i| i as i64);
    owned(Value::Int(i))
}

fn last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let l = items(&args)?;
    let x = arg(&args, 1)?;
    let i = l.iter().rposition(|v| *v == x).map_or(-1, |i| i as i64);
    owned(Value::Int(i))
}

fn strings(args: &Args<'_, '_>) -> Result<(String, regex::Regex), ExecutionError> {
    let s = match arg(args, 0)? {
        Value::String(s) => s.to_string(),
        other => return Err(other.error_expected_type(cel::objects::ValueType::String)),
    };
    let re = match arg(args, 1)? {
        Value::String(p) => regex::Regex::new(&p)
            .map_err(|e| ExecutionError::function_error("find", e.to_string()))?,
        other => return Err(other.error_expected_type(cel::objects::ValueType::String)),
    };
    Ok((s, re))
}

fn find<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (s, re) = strings(&args)?;
    let found = re
        .find(&s)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    owned(Value::String(Arc::new(found)))
}

fn all_matches(s: &str, re: &regex::Regex, n: i64) -> Value {
    let limit = if n < 0 { usize::MAX } else { n as usize };
    Value::List(Arc::new(
        re.find_iter(s)
            .take(limit)
            .map(|m| Value::String(Arc::new(m.as_str().to_string())))
            .collect(),
    ))
}

fn find_all<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (s, re) = strings(&args)?;
    owned(all_matches(&s, &re, -1))
}

fn find_all_n<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (s, re) = strings(&args)?;
    let n = match arg(&args, 2)? {
        Value::Int(n) => n,
        other => return Err(other.error_expected_type(cel::objects::ValueType::Int)),
    };
    owned(all_matches(&s, &re, n))
}
