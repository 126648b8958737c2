//! CEL (the Common Expression Language) as Kubernetes uses it: CustomResourceDefinition
//! `x-kubernetes-validations` rules today; admission `matchConditions` and
//! ValidatingAdmissionPolicy later.
//!
//! - [`Env::compile`] parses an expression (never panicking: a parser panic is caught
//!   and reported as a syntax error), checks that it reads only the declared
//!   variables, and answers cel-go's issue text (`ERROR: <input>:1:16: Syntax error:
//!   ...`) when it cannot be compiled.
//! - [`Program::eval`] binds variables from JSON values and evaluates under a runtime
//!   cost limit (`operation cancelled: actual cost limit exceeded`); [`Program::eval_bool`]
//!   and [`Program::eval_string`] check the result's type.
//!
//! The interpreter is cel-rust (`cel`); its standard library plus its strings, lists
//! and math extensions are available, and [`library`] adds Kubernetes' list and regex
//! functions.

mod cost;
mod library;
mod names;
mod value;

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

pub use cost::LIMIT_EXCEEDED;
pub use names::{issue_at, Selection};
pub use value::{from_json, optional};

/// Kubernetes' cost limit for one evaluation of one expression (`PerCallLimit`).
pub const PER_CALL_LIMIT: u64 = 1_000_000;

/// Kubernetes' cost budget for all the rules of one object (`RuntimeCELCostBudget`).
pub const RUNTIME_BUDGET: u64 = 10_000_000;

/// The interpreter's environment: the standard library, the strings, lists and math
/// extensions, Kubernetes' additions and the cost meters. Built once.
fn interpreter() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        let added = env
            .add_extension(cel::extensions::strings)
            .and_then(|_| env.add_extension(cel::extensions::lists))
            .and_then(|_| env.add_extension(cel::extensions::math))
            .and_then(|_| library::register(&mut env))
            .and_then(|_| cost::register(&mut env));
        if let Err(e) = added {
            // Fixed declarations: a clash is a programming error caught by the tests.
            panic!("CEL environment: {e}");
        }
        Arc::new(env)
    })
}

/// What expressions may refer to: the names of their variables.
#[derive(Debug, Clone)]
pub struct Env {
    variables: Vec<String>,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    expr: IdedExpr,
    used: BTreeSet<String>,
    selections: Vec<Selection>,
    literal: Option<&'static str>,
}

/// A variable's value for one evaluation.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    Json(&'a serde_json::Value),
    /// An `optional` value (`optionalOldSelf`): `optional.none()` when absent.
    Optional(Option<&'a serde_json::Value>),
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalErrorKind {
    /// The cost limit was passed ([`LIMIT_EXCEEDED`]).
    CostLimit,
    /// No function or operator takes these argument types (cel-go's `no such overload`).
    NoSuchOverload,
    /// The result is not of the type asked for.
    WrongType,
    /// Anything else: a missing key, an index out of bounds, division by zero ...
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub kind: EvalErrorKind,
    /// cel-go's wording where it has one (`no such key: x`, `division by zero`).
    pub message: String,
    /// The cost used before the evaluation stopped.
    pub cost: u64,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Env {
    pub fn new(variables: &[&str]) -> Env {
        Env {
            variables: variables.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// Compile `source`; the error is cel-go's issue text (one `ERROR: <input>:l:c:
    /// ...` per issue), to which Kubernetes prefixes `compilation failed: `.
    pub fn compile(&self, source: &str) -> Result<Program, String> {
        let env = interpreter();
        // The parser is generated ANTLR code; should any input still make it panic,
        // that input is a syntax error, not a crashed request.
        let parsed = catch_unwind(AssertUnwindSafe(|| env.compile(source)));
        let program = match parsed {
            Ok(Ok(p)) => p,
            // cel-go indents the quoted source line: ` | `.
            Ok(Err(errors)) => return Err(errors.to_string().replace("\n| ", "\n | ")),
            Err(_) => {
                return Err(names::issue_at(
                    source,
                    1,
                    1,
                    "Syntax error: the expression could not be parsed",
                ))
            }
        };
        let mut walk = names::Walk::new(&self.variables, program.source_info(), source);
        walk.walk(program.expression());
        if !walk.errors.is_empty() {
            return Err(walk.errors.join("\n"));
        }
        let literal = literal_type(program.expression());
        Ok(Program {
            source: source.to_string(),
            expr: cost::instrument(program.expression().clone()),
            used: walk.used,
            selections: walk.selections,
            literal,
        })
    }
}

/// The type of an expression that is a literal (`42`, `'x'`, `[..]`), the only
/// result type known without a type checker.
fn literal_type(e: &IdedExpr) -> Option<&'static str> {
    match &e.expr {
        Expr::Literal(l) => Some(match l {
            LiteralValue::Boolean(_) => "bool",
            LiteralValue::Int(_) => "int",
            LiteralValue::UInt(_) => "uint",
            LiteralValue::Double(_) => "double",
            LiteralValue::String(_) => "string",
            LiteralValue::Bytes(_) => "bytes",
            LiteralValue::Null => "null_type",
        }),
        Expr::List(_) => Some("list"),
        Expr::Map(_) => Some("map"),
        _ => None,
    }
}

fn eval_error(e: &cel::ExecutionError, cost: u64) -> EvalError {
    use cel::ExecutionError as E;
    let (kind, message) = match e {
        E::NoSuchOverload(_) | E::ValuesNotComparable(..) | E::UnsupportedBinaryOperator(..) => (
            EvalErrorKind::NoSuchOverload,
            "no such overload".to_string(),
        ),
        E::NoSuchKey(k) => (EvalErrorKind::Other, format!("no such key: {k}")),
        E::DivisionByZero(_) => (EvalErrorKind::Other, "division by zero".into()),
        E::RemainderByZero(_) => (EvalErrorKind::Other, "modulus by zero".into()),
        E::Overflow(..) => (EvalErrorKind::Other, "integer overflow".into()),
        E::IndexOutOfBounds(i) => (
            EvalErrorKind::Other,
            format!("index out of bounds: {}", show(i)),
        ),
        E::UndeclaredReference(name) => (
            EvalErrorKind::Other,
            format!("undeclared reference to '{name}'"),
        ),
        other => (EvalErrorKind::Other, other.to_string()),
    };
    EvalError {
        kind,
        message,
        cost,
    }
}

fn show(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => u.to_string(),
        other => format!("{other:?}"),
    }
}

impl Program {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads variable `name` (a transition rule reads `oldSelf`).
    pub fn uses(&self, name: &str) -> bool {
        self.used.contains(name)
    }

    /// The field selections on declared variables (`self.spec.replicas`), for
    /// checking them against a schema.
    pub fn selections(&self) -> &[Selection] {
        &self.selections
    }

    /// The result type when the expression is a literal; `None` when only
    /// evaluating tells.
    pub fn literal_type(&self) -> Option<&'static str> {
        self.literal
    }

    /// Evaluate with `bindings`, stopping once the cost passes `limit`. Returns the
    /// value and the cost used.
    pub fn eval(
        &self,
        bindings: &[(&str, Binding<'_>)],
        limit: u64,
    ) -> Result<(cel::Value, u64), EvalError> {
        let mut ctx = cel::Context::with_env(interpreter().clone());
        for (name, b) in bindings {
            let v = match b {
                Binding::Json(v) => value::from_json(v),
                Binding::Optional(v) => value::optional(*v),
            };
            ctx.add_variable_from_value(*name, v);
        }
        // A panic inside the interpreter or a library function fails this
        // evaluation, not the request.
        let (out, cost, exceeded) = cost::metered(limit, || {
            catch_unwind(AssertUnwindSafe(|| cel::Value::resolve(&self.expr, &ctx)))
        });
        let out = match out {
            Ok(out) => out,
            Err(_) => {
                return Err(EvalError {
                    kind: EvalErrorKind::Other,
                    message: "internal error: the interpreter failed on this expression".into(),
                    cost,
                })
            }
        };
        if exceeded {
            return Err(EvalError {
                kind: EvalErrorKind::CostLimit,
                message: LIMIT_EXCEEDED.into(),
                cost,
            });
        }
        out.map(|v| (v, cost)).map_err(|e| eval_error(&e, cost))
    }

    /// Evaluate to a `bool`; another type is a [`EvalErrorKind::WrongType`] error.
    pub fn eval_bool(
        &self,
        bindings: &[(&str, Binding<'_>)],
        limit: u64,
    ) -> Result<(bool, u64), EvalError> {
        match self.eval(bindings, limit)? {
            (cel::Value::Bool(b), cost) => Ok((b, cost)),
            (other, cost) => Err(EvalError {
                kind: EvalErrorKind::WrongType,
                message: format!(
                    "cel expression must evaluate to a bool, got {}",
                    value::type_name(&other)
                ),
                cost,
            }),
        }
    }

    /// Evaluate to a `string`; another type is a [`EvalErrorKind::WrongType`] error.
    pub fn eval_string(
        &self,
        bindings: &[(&str, Binding<'_>)],
        limit: u64,
    ) -> Result<(String, u64), EvalError> {
        match self.eval(bindings, limit)? {
            (cel::Value::String(s), cost) => Ok((s.to_string(), cost)),
            (other, cost) => Err(EvalError {
                kind: EvalErrorKind::WrongType,
                message: format!(
                    "expression must evaluate to a string, got {}",
                    value::type_name(&other)
                ),
                cost,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
