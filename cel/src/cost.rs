//! The runtime cost limit. The interpreter has no cost tracking of its own, so a
//! compiled expression is rewritten to pass its work through two metering functions
//! (names with `@`, which no source can spell):
//!
//! - `@range(r)` around every comprehension's range charges one unit per element
//!   *before* the loop runs, so nested loops (`l.all(x, l.all(y, ...))`) are stopped
//!   by the iterations they would do, not after doing them;
//! - `@call(c)` around every other function call and operator charges one unit, plus
//!   one per ten elements (characters, list items, map entries) of its result, so
//!   work that grows with the data (concatenations, string functions) costs more.
//!
//! The meter is per thread: an evaluation runs on one thread, start to end, and
//! [`metered`] resets it around each. Once the limit is passed every further charge
//! fails, and [`metered`] reports the limit whatever the expression made of the
//! error (`error || true` is `true` in CEL).

use cel::common::ast::{operators, CallExpr, EntryExpr, Expr, IdedExpr};
use cel::common::types::DYN_TYPE;
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use std::cell::Cell;

const RANGE: &str = "@range";
const CALL: &str = "@call";

/// Kubernetes' message when one expression exceeds its cost limit.
pub const LIMIT_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

#[derive(Clone, Copy, Default)]
struct Meter {
    used: u64,
    limit: u64,
    exceeded: bool,
}

thread_local! {
    static METER: Cell<Meter> = Cell::new(Meter::default());
}

/// Runs `f` with a fresh meter of `limit`; returns its result, the cost used and
/// whether the limit was exceeded.
pub fn metered<T>(limit: u64, f: impl FnOnce() -> T) -> (T, u64, bool) {
    let saved = METER.with(|m| {
        m.replace(Meter {
            used: 0,
            limit,
            exceeded: false,
        })
    });
    let out = f();
    let meter = METER.with(|m| m.replace(saved));
    (out, meter.used, meter.exceeded)
}

fn charge(units: u64) -> Result<(), ExecutionError> {
    METER.with(|m| {
        let mut meter = m.get();
        // Once exceeded, loops that defer errors (`all`, `exists`) may still call in;
        // they fail at once and add nothing.
        if !meter.exceeded {
            meter.used = meter.used.saturating_add(units);
            meter.exceeded = meter.used > meter.limit;
        }
        m.set(meter);
        if meter.exceeded {
            Err(ExecutionError::function_error("cost", LIMIT_EXCEEDED))
        } else {
            Ok(())
        }
    })
}

fn size_of(v: &dyn Val) -> u64 {
    v.as_sizer()
        .map(|s| (*s.size().inner()).max(0) as u64)
        .unwrap_or(0)
}

fn range<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args
        .pop()
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    charge(1 + size_of(v.as_ref()))?;
    Ok(v)
}

fn call<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args
        .pop()
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    charge(1 + size_of(v.as_ref()) / 10)?;
    Ok(v)
}

pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(RANGE, "@range_dyn", vec![DYN_TYPE], range)?;
    env.add_overload(CALL, "@call_dyn", vec![DYN_TYPE], call)
}

fn wrap(func: &str, e: IdedExpr) -> IdedExpr {
    IdedExpr {
        id: e.id,
        expr: Expr::Call(CallExpr {
            func_name: func.to_string(),
            target: None,
            args: vec![e],
        }),
    }
}

/// `e` with its calls metered.
pub fn instrument(e: IdedExpr) -> IdedExpr {
    let e = instrument_inside(e);
    match e.expr {
        Expr::Call(_) => wrap(CALL, e),
        _ => e,
    }
}

/// The children of `e` instrumented, `e` itself left as it is.
fn instrument_inside(mut e: IdedExpr) -> IdedExpr {
    e.expr = match e.expr {
        Expr::Call(mut c) => {
            c.target = c.target.map(|t| Box::new(instrument(*t)));
            c.args = c.args.into_iter().map(instrument).collect();
            Expr::Call(c)
        }
        Expr::Comprehension(mut c) => {
            c.iter_range = wrap(RANGE, instrument(c.iter_range));
            c.accu_init = instrument(c.accu_init);
            // The interpreter recognises the shapes of the loop's own steps
            // (`@result && x`, `@result + [x]`, `c ? @result + [x] : @result`):
            // their top nodes stay unwrapped.
            c.loop_cond = instrument_inside(c.loop_cond);
            c.loop_step = match c.loop_step.expr {
                Expr::Call(ref call) if call.func_name == operators::CONDITIONAL => {
                    let mut step = c.loop_step;
                    if let Expr::Call(call) = &mut step.expr {
                        let args = std::mem::take(&mut call.args);
                        call.args = args
                            .into_iter()
                            .enumerate()
                            .map(|(i, a)| {
                                if i == 0 {
                                    instrument(a)
                                } else {
                                    instrument_inside(a)
                                }
                            })
                            .collect();
                    }
                    step
                }
                _ => instrument_inside(c.loop_step),
            };
            c.result = instrument_inside(c.result);
            Expr::Comprehension(c)
        }
        Expr::List(mut l) => {
            l.elements = l.elements.into_iter().map(instrument).collect();
            Expr::List(l)
        }
        Expr::Map(mut m) => {
            for entry in &mut m.entries {
                if let EntryExpr::MapEntry(me) = &mut entry.expr {
                    me.key = instrument(std::mem::take(&mut me.key));
                    me.value = instrument(std::mem::take(&mut me.value));
                }
            }
            Expr::Map(m)
        }
        Expr::Struct(mut s) => {
            for entry in &mut s.entries {
                if let EntryExpr::StructField(f) = &mut entry.expr {
                    f.value = instrument(std::mem::take(&mut f.value));
                }
            }
            Expr::Struct(s)
        }
        Expr::Select(mut s) => {
            s.operand = Box::new(instrument(*s.operand));
            Expr::Select(s)
        }
        other => other,
    };
    e
}
