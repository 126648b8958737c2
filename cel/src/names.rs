//! What an expression refers to, found by walking its syntax tree: the variables it
//! reads (an undeclared one is a compile error, as cel-go's checker reports it) and
//! the fields it selects from them (for callers that know the variables' schemas).

use cel::common::ast::{EntryExpr, Expr, IdedExpr, SourceInfo};
use std::collections::BTreeSet;

/// Type names an expression may use as values (`type(x) == int`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "type",
    "uint",
];

/// Function namespaces: `math.greatest(...)` is a call on `math`, not a variable.
const NAMESPACES: &[&str] = &["math", "strings", "lists", "optional", "base64"];

/// A field selection `var.a.b` (or `has(var.a.b)`), with where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub variable: String,
    pub path: Vec<String>,
    /// 1-based line and column of the last field.
    pub line: usize,
    pub column: usize,
}

pub struct Walk<'a> {
    declared: &'a [String],
    info: &'a SourceInfo,
    source: &'a str,
    bound: Vec<String>,
    pub used: BTreeSet<String>,
    pub errors: Vec<String>,
    pub selections: Vec<Selection>,
}

impl<'a> Walk<'a> {
    pub fn new(declared: &'a [String], info: &'a SourceInfo, source: &'a str) -> Self {
        Walk {
            declared,
            info,
            source,
            bound: Vec::new(),
            used: BTreeSet::new(),
            errors: Vec::new(),
            selections: Vec::new(),
        }
    }

    /// 1-based line and column of node `id`.
    fn position(&self, id: u64) -> (usize, usize) {
        let Some((start, _)) = self.info.offset_for(id) else {
            return (1, 1);
        };
        let start = (start as usize).min(self.source.len());
        let before = self.source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// cel-go's issue text: `ERROR: <input>:1:1: message` and the line pointed at.
    pub fn issue(&self, id: u64, message: &str) -> String {
        let (line, column) = self.position(id);
        issue_at(self.source, line, column, message)
    }

    pub fn walk(&mut self, e: &IdedExpr) {
        match &e.expr {
            Expr::Ident(name) => {
                if self.bound.iter().any(|b| b == name) || TYPE_NAMES.contains(&name.as_str()) {
                    return;
                }
                if self.declared.iter().any(|d| d == name) {
                    self.used.insert(name.clone());
                } else {
                    let msg = format!("undeclared reference to '{name}' (in container '')");
                    self.errors.push(self.issue(e.id, &msg));
                }
            }
            Expr::Select(s) => {
                if let Some((variable, path)) = selection(e) {
                    if self.declared.contains(&variable) && !self.bound.contains(&variable) {
                        let (line, column) = self.position(e.id);
                        self.selections.push(Selection {
                            variable,
                            path,
                            line,
                            column,
                        });
                    }
                }
                self.walk(&s.operand);
            }
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    let namespace = matches!(&t.expr, Expr::Ident(n)
                        if NAMESPACES.contains(&n.as_str()) && !self.declared.contains(n));
                    if !namespace {
                        self.walk(t);
                    }
                }
                for a in &c.args {
                    self.walk(a);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                self.bound.push(c.iter_var.clone());
                self.bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.bound.pop();
                self.bound.pop();
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key);
                        self.walk(&me.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value);
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// `var.a.b` as (`var`, [`a`, `b`]).
fn selection(e: &IdedExpr) -> Option<(String, Vec<String>)> {
    let mut path = Vec::new();
    let mut cur = e;
    loop {
        match &cur.expr {
            Expr::Select(s) => {
                path.push(s.field.clone());
                cur = &s.operand;
            }
            Expr::Ident(name) => {
                path.reverse();
                return Some((name.clone(), path));
            }
            _ => return None,
        }
    }
}

/// `ERROR: <input>:line:column: message`, then the source line and a caret under
/// the column, as cel-go prints issues.
pub fn issue_at(source: &str, line: usize, column: usize, message: &str) -> String {
    let mut out = format!("ERROR: <input>:{line}:{column}: {message}");
    if let Some(text) = source.lines().nth(line.saturating_sub(1)) {
        out.push_str(&format!(
            "\n | {text}\n | {}^",
            ".".repeat(column.saturating_sub(1))
        ));
    }
    out
}
