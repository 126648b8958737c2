//! Label and field selectors.
//!
//! [`LabelSelector`] parses the string syntax of `?labelSelector=` (`app=web`,
//! `tier in (a,b)`, `!canary`, `version>2`, ...) and the `metav1.LabelSelector` object of
//! workload specs, matches label sets, and prints the canonical string Kubernetes prints
//! (requirements sorted by key, values sorted), e.g. for `Scale.status.selector`.
//! Parse errors are worded as `k8s.io/apimachinery/pkg/labels` words them.
//!
//! [`FieldSelector`] parses `?fieldSelector=` (`metadata.name=web,status.phase!=Running`,
//! with `\,` `\=` `\\` escapes in values). Which fields a resource supports is the
//! caller's business: it lists [`FieldSelector::requirements`] and answers
//! `field label not supported: X` for the others.

// `ApiError` is this crate's error type by design, large as it is.
#![allow(clippy::result_large_err)]

use std::fmt;

use serde_json::Value;

use crate::validation::{label_value, qualified_name};
use crate::{ApiError, Cause};

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    /// A bare key.
    Exists,
    /// `!key`
    DoesNotExist,
    /// `>`
    GreaterThan,
    /// `<`
    LessThan,
}

/// One requirement of a label selector: all of them must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// One value for the equality and comparison operators, at least one for
    /// `in`/`notin`, none for exists/does-not-exist.
    pub values: Vec<String>,
}

impl Requirement {
    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether the labels (looked up by `get`) satisfy this requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                get(&self.key).is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => {
                !get(&self.key).is_some_and(|v| self.has_value(v))
            }
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = get(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: requirements that must all hold, or nothing at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The empty selector, which matches everything.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches nothing: what a missing (`null`) `metav1.LabelSelector`
    /// means. It prints as "" and is not [`is_empty`](Self::is_empty).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parse the string syntax. Errors are 400 BadRequest with Kubernetes' wording.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Parser::new(s).parse().map_err(ApiError::bad_request)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// A `metav1.LabelSelector` object. `null` matches nothing; `{}` matches everything.
    /// Validation errors are causes with paths relative to the selector
    /// (`matchExpressions[0].values`).
    pub fn from_object(v: &Value) -> Result<Self, Vec<Cause>> {
        Self::from_object_at(v, "")
    }

    /// As [`from_object`](Self::from_object), with cause paths under `path` (e.g.
    /// `spec.selector`).
    pub fn from_object_at(v: &Value, path: &str) -> Result<Self, Vec<Cause>> {
        let at = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else if field.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        let obj = match v {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(o) => o,
            other => return Err(vec![Cause::invalid(at(""), other, "must be an object")]),
        };
        let mut causes = Vec::new();
        let mut requirements = Vec::new();

        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                let field = at("matchLabels");
                for (k, v) in labels {
                    for msg in qualified_name(k) {
                        causes.push(Cause::invalid(&field, &Value::String(k.clone()), msg));
                    }
                    let Some(v) = v.as_str() else {
                        causes.push(Cause::invalid(&field, v, "must be a string"));
                        continue;
                    };
                    for msg in label_value(v) {
                        causes.push(Cause::invalid(&field, &Value::String(v.into()), msg));
                    }
                    requirements.push(Requirement {
                        key: k.clone(),
                        operator: Operator::Equals,
                        values: vec![v.to_string()],
                    });
                }
            }
            Some(other) => causes.push(Cause::invalid(
                at("matchLabels"),
                other,
                "must be an object",
            )),
        }

        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    let base = at(&format!("matchExpressions[{i}]"));
                    if let Some(r) = expression(expr, &base, &mut causes) {
                        requirements.push(r);
                    }
                }
            }
            Some(other) => causes.push(Cause::invalid(
                at("matchExpressions"),
                other,
                "must be an array",
            )),
        }

        if !causes.is_empty() {
            return Err(causes);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// The selector matching exactly these labels (`matchLabels` alone, or a
    /// ReplicationController's `spec.selector`); no validation.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_string(),
                operator: Operator::Equals,
                values: vec![v.to_string()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        self.matches_with(|k| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v))
    }

    /// Whether every requirement holds for a JSON labels map (`metadata.labels`);
    /// `null` or a missing map is no labels, non-string values are ignored.
    pub fn matches_json(&self, labels: &Value) -> bool {
        let map = labels.as_object();
        self.matches_with(|k| map.and_then(|m| m.get(k)).and_then(Value::as_str))
    }

    /// Whether the labels of `obj` (`obj.metadata.labels`) match.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches_json(
            obj.get("metadata")
                .and_then(|m| m.get("labels"))
                .unwrap_or(&Value::Null),
        )
    }

    /// Whether every requirement holds for labels looked up by `get`.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(&get))
    }

    /// True for the selector that matches everything (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value `label` must have, when the selector pins it to one (`=`, `==`, or `in`
    /// with one value).
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        LabelSelector::parse(s)
    }
}

/// One `metav1.LabelSelectorRequirement`, validated as Kubernetes validates it.
fn expression(expr: &Value, base: &str, causes: &mut Vec<Cause>) -> Option<Requirement> {
    let Some(obj) = expr.as_object() else {
        causes.push(Cause::invalid(base, expr, "must be an object"));
        return None;
    };
    let before = causes.len();
    let key = match obj.get("key") {
        Some(Value::String(k)) => k.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            causes.push(Cause::invalid(
                format!("{base}.key"),
                other,
                "must be a string",
            ));
            String::new()
        }
    };
    let mut values = Vec::new();
    match obj.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(vs)) => {
            for (j, v) in vs.iter().enumerate() {
                match v.as_str() {
                    Some(s) => values.push(s.to_string()),
                    None => causes.push(Cause::invalid(
                        format!("{base}.values[{j}]"),
                        v,
                        "must be a string",
                    )),
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(
            format!("{base}.values"),
            other,
            "must be an array",
        )),
    }
    let op_value = obj
        .get("operator")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let operator = match op_value.as_str().unwrap_or("") {
        "In" => Some(Operator::In),
        "NotIn" => Some(Operator::NotIn),
        "Exists" => Some(Operator::Exists),
        "DoesNotExist" => Some(Operator::DoesNotExist),
        _ => None,
    };
    match operator {
        Some(Operator::In | Operator::NotIn) if values.is_empty() => causes.push(Cause::new(
            "FieldValueRequired",
            format!("{base}.values"),
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        )),
        Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
            causes.push(Cause::forbidden(
                format!("{base}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ))
        }
        Some(_) => {}
        None => causes.push(Cause::invalid(
            format!("{base}.operator"),
            &op_value,
            "not a valid selector operator",
        )),
    }
    for msg in qualified_name(&key) {
        causes.push(Cause::invalid(
            format!("{base}.key"),
            &Value::String(key.clone()),
            msg,
        ));
    }
    for (j, v) in values.iter().enumerate() {
        for msg in label_value(v) {
            causes.push(Cause::invalid(
                format!("{base}.values[{j}]"),
                &Value::String(v.clone()),
                msg,
            ));
        }
    }
    if causes.len() != before {
        return None;
    }
    Some(Requirement {
        key,
        operator: operator?,
        values,
    })
}

// ---- The string syntax, after k8s.io/apimachinery/pkg/labels' lexer and parser. ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<(Token, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < chars.len() && is_whitespace(chars[pos]) {
            pos += 1;
        }
        if pos == chars.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        let c = chars[pos];
        if is_special(c) {
            let two: String = chars[pos..chars.len().min(pos + 2)].iter().collect();
            let (tok, len) = match two.as_str() {
                "!=" => (Token::NotEquals, 2),
                "==" => (Token::DoubleEquals, 2),
                _ => match c {
                    '=' => (Token::Equals, 1),
                    '!' => (Token::DoesNotExist, 1),
                    '(' => (Token::OpenPar, 1),
                    ')' => (Token::ClosedPar, 1),
                    ',' => (Token::Comma, 1),
                    '>' => (Token::GreaterThan, 1),
                    _ => (Token::LessThan, 1),
                },
            };
            out.push((tok, chars[pos..pos + len].iter().collect()));
            pos += len;
        } else {
            let start = pos;
            while pos < chars.len() && !is_special(chars[pos]) && !is_whitespace(chars[pos]) {
                pos += 1;
            }
            let word: String = chars[start..pos].iter().collect();
            let tok = match word.as_str() {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            out.push((tok, word));
        }
    }
}

/// Where `in`/`notin` are read as keywords (after a key) or as plain identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

/// A `field.Invalid` error as Go prints it: `<path>: Invalid value: "v": detail`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}

impl Parser {
    fn new(s: &str) -> Self {
        Parser {
            items: lex(s),
            position: 0,
        }
    }

    fn token(&self, at: usize, ctx: Context) -> (Token, String) {
        let (tok, lit) = self.items[at.min(self.items.len() - 1)].clone();
        let tok = match tok {
            Token::In | Token::NotIn if ctx == Context::Values => Token::Identifier,
            t => t,
        };
        (tok, lit)
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.token(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let t = self.token(self.position, ctx);
        self.position += 1;
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut out = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    out.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::End => return Ok(out),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(out),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(op) = inferred {
            return new_requirement(key, op, Vec::new());
        }
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        let operator = match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        values.sort();
        values.dedup();
        new_requirement(key, operator, values)
    }

    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let mut op = None;
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = qualified_name(&lit);
        if !errs.is_empty() {
            return Err(invalid("<nil>", &lit, &errs.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::End || next == Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.identifiers()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// A possibly empty list of possibly empty identifiers: `a,b`, `,a`, `a,,b`, `a,`.
    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    values.push(lit);
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if t2 == Token::Comma {
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::End || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// `labels.NewRequirement`'s checks of the values, with its error wording.
fn new_requirement(
    key: String,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, String> {
    let mut errs = Vec::new();
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(invalid(
                    &format!("values[{i}]"),
                    v,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = label_value(v);
        if !msgs.is_empty() {
            errs.push(invalid(&format!("values[{i}][{key}]"), v, &msgs.join("; ")));
        }
    }
    match errs.len() {
        0 => Ok(Requirement {
            key,
            operator,
            values,
        }),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

// ---- Field selectors. ----

/// A field selector operator; `==` parses as `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// Unescaped.
    pub value: String,
}

/// A field selector: terms that must all hold. Empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The empty selector.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parse `a=b,c!=d`. Errors are 400 BadRequest with Kubernetes' wording.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape(raw).map_err(ApiError::bad_request)?;
            // Kept even when the field is empty (`=`, `==`): Kubernetes converts every
            // field label before matching, and an empty one is not a known field.
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The terms, in Kubernetes' order (sorted by their text).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every term holds; `get` returns a field's value, a missing field
    /// compares as "".
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// The value `field` must have, when a `=` term pins it.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape(&r.value))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        FieldSelector::parse(s)
    }
}

/// Escape `\`, `,` and `=` in a field selector value.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    ))
                }
                None => return Err("invalid field selector: invalid escape sequence: \\".into()),
            },
            // Go prints the rune as a number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Split on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Split a term at its first operator (`!=`, `==`, `=`, tried in that order at each
/// position); field names have no escapes.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        let e = LabelSelector::parse(s).unwrap_err();
        assert_eq!(e.code, 400, "{s}");
        assert_eq!(e.reason, "BadRequest");
        e.message
    }

    #[test]
    fn parses_every_operator_and_prints_canonically() {
        let cases = [
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("  tier in ( b , a ) , app = web ", "app=web,tier in (a,b)"),
            ("!canary", "!canary"),
            ("a>1,b<3", "a>1,b<3"),
            ("a=", "a="),
            ("a=,b", "a=,b"),
            ("example.com/role notin (db)", "example.com/role notin (db)"),
            ("in in (in, notin)", "in in (in,notin)"),
            ("", ""),
            ("x in (a,)", "x in (,a)"),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).to_string(), canonical, "{input:?}");
        }
        let s = parse("b,a in (x,y)");
        assert_eq!(
            s.requirements()[0],
            Requirement {
                key: "a".into(),
                operator: Operator::In,
                values: vec!["x".into(), "y".into()]
            }
        );
        assert_eq!(s.requirements()[1].operator, Operator::Exists);
        assert!(parse("").is_empty());
        assert!(!parse("a").is_empty());
    }

    #[test]
    fn matching() {
        let labels = [("app", "web"), ("tier", "fe"), ("version", "3")];
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "tier in (fe,be)",
            "tier notin (be)",
            "missing notin (x)",
            "app",
            "!missing",
            "version>2",
            "version<4",
            "app=web,tier,version>2",
        ];
        let no = [
            "app=db",
            "missing=",
            "app!=web",
            "tier in (be)",
            "tier notin (fe)",
            "missing in (x)",
            "missing",
            "!app",
            "version>3",
            "version<3",
            "app>1",
            "missing<5",
            "app=web,tier=be",
        ];
        for s in yes {
            assert!(parse(s).matches(&labels), "{s} should match");
        }
        for s in no {
            assert!(!parse(s).matches(&labels), "{s} should not match");
        }
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(parse("app=web").matches_object(&obj));
        assert!(!parse("app=db").matches_object(&obj));
        assert!(parse("!app").matches_json(&Value::Null));
        assert!(parse("").matches_object(&json!({})));
        assert!(!LabelSelector::nothing().matches(&[]));
        assert!(!LabelSelector::nothing().is_empty());
        assert_eq!(LabelSelector::nothing().to_string(), "");
    }

    #[test]
    fn parse_errors_are_worded_like_kubernetes() {
        assert_eq!(
            parse_err("a=b,"),
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("x in a"),
            "unable to parse requirement: found 'a' expected: '('"
        );
        assert_eq!(
            parse_err("x in (a b)"),
            "unable to parse requirement: found 'b', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("a=b c"),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("!a=b"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("a>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        let m = parse_err("-bad=x");
        assert!(m.starts_with("unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of"), "{m}");
        let m = parse_err("a=-x-");
        assert!(m.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-x-\": a valid label must be"), "{m}");
    }

    /// `labelSelector=a%3D` + 62 `a` + `%C3%A9a`: a character across byte 63 of a value
    /// or a key used to panic; now both of Kubernetes' errors, joined by "; ".
    #[test]
    fn multi_byte_characters_across_byte_63_are_parse_errors() {
        let long = format!("{}\u{e9}a", "a".repeat(62));
        let m = parse_err(&format!("a={long}"));
        assert_eq!(
            m,
            format!("unable to parse requirement: values[0][a]: Invalid value: {long:?}: must be no more than 63 characters; a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
        );
        let m = parse_err(&format!("{long}=x"));
        assert!(
            m.starts_with(&format!("unable to parse requirement: <nil>: Invalid value: {long:?}: name part must be no more than 63 characters; name part must consist of")),
            "{m}"
        );
        let m = parse_err(&format!("example.com/{long} in (x)"));
        assert!(
            m.contains("name part must be no more than 63 characters"),
            "{m}"
        );
    }

    /// `notin ()` is `notin ("")` in Kubernetes (labels.Parse keeps the empty value), so
    /// it is accepted and matches every object without that label or with a value.
    #[test]
    fn empty_value_sets_hold_the_empty_string() {
        let s = parse("a notin ()");
        assert_eq!(s.to_string(), "a notin ()");
        assert!(s.matches(&[]));
        assert!(s.matches(&[("a", "x")]));
        assert!(!s.matches(&[("a", "")]));
    }

    #[test]
    fn from_object() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
                {"key": "gpu", "operator": "Exists", "values": []},
            ],
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env in (dev,prod),gpu,tier=fe,zone notin (x)"
        );
        assert!(s.matches(&[("app", "web"), ("tier", "fe"), ("env", "dev"), ("gpu", "")]));
        assert!(!s.matches(&[("app", "web"), ("tier", "fe"), ("env", "dev")]));
        assert_eq!(s.requires_exact_match("app"), Some("web"));
        assert_eq!(s.requires_exact_match("env"), None);

        let everything = LabelSelector::from_object(&json!({})).unwrap();
        assert!(everything.is_empty());
        assert!(everything.matches(&[("a", "b")]));
        let nothing = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(nothing.matches_nothing());
        assert!(!nothing.matches(&[("a", "b")]));
    }

    #[test]
    fn from_object_validation() {
        let causes = LabelSelector::from_object_at(
            &json!({
                "matchLabels": {"bad key!": "v", "ok": "bad value"},
                "matchExpressions": [
                    {"key": "a", "operator": "In"},
                    {"key": "b", "operator": "Exists", "values": ["x"]},
                    {"key": "c", "operator": "Gt", "values": ["1"]},
                    {"key": "", "operator": "NotIn", "values": ["-x"]},
                ],
            }),
            "spec.selector",
        )
        .unwrap_err();
        let shown: Vec<(String, String)> = causes
            .iter()
            .map(|c| (c.field.clone(), c.reason.clone()))
            .collect();
        let want = [
            ("spec.selector.matchLabels", "FieldValueInvalid"),
            ("spec.selector.matchLabels", "FieldValueInvalid"),
            (
                "spec.selector.matchExpressions[0].values",
                "FieldValueRequired",
            ),
            (
                "spec.selector.matchExpressions[1].values",
                "FieldValueForbidden",
            ),
            (
                "spec.selector.matchExpressions[2].operator",
                "FieldValueInvalid",
            ),
            // An empty key is both empty and not matching the pattern, as in Go.
            ("spec.selector.matchExpressions[3].key", "FieldValueInvalid"),
            ("spec.selector.matchExpressions[3].key", "FieldValueInvalid"),
            (
                "spec.selector.matchExpressions[3].values[0]",
                "FieldValueInvalid",
            ),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(shown, want);
        assert_eq!(
            causes[2].message,
            "Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            causes[4].message,
            "Invalid value: \"Gt\": not a valid selector operator"
        );
        let causes = LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
        )
        .unwrap_err();
        assert_eq!(causes[0].field, "matchExpressions[0].values");
    }

    #[test]
    fn from_labels() {
        let s = LabelSelector::from_labels([("b", "2"), ("a", "1")]);
        assert_eq!(s.to_string(), "a=1,b=2");
        assert!(LabelSelector::from_labels([]).is_empty());
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("status.phase!=Running,metadata.name==web").unwrap();
        assert_eq!(s.to_string(), "metadata.name=web,status.phase!=Running");
        let fields: Vec<&str> = s.requirements().iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "status.phase"]);
        let get = |phase: &'static str| {
            move |f: &str| match f {
                "metadata.name" => Some("web".to_string()),
                "status.phase" => Some(phase.to_string()),
                _ => None,
            }
        };
        assert!(s.matches(get("Pending")));
        assert!(!s.matches(get("Running")));
        assert_eq!(s.requires_exact_match("metadata.name"), Some("web"));
        assert_eq!(s.requires_exact_match("status.phase"), None);

        // A missing field is "".
        let s = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(s.matches(|_| None));
        let s = FieldSelector::parse("spec.nodeName!=").unwrap();
        assert!(!s.matches(|_| None));

        // Escapes.
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=y").unwrap();
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
    }

    #[test]
    fn field_selector_errors() {
        let e = FieldSelector::parse("metadata.name").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().message,
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().message,
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().message,
            "invalid field selector: unescaped character in value: 61"
        );
        // `fieldSelector===` (the value "=="): an empty field, left for the caller to
        // refuse as an unknown field; "===" itself is an unescaped '='.
        let empty = FieldSelector::parse("==").unwrap();
        assert_eq!(empty.requirements().len(), 1);
        assert_eq!(empty.requirements()[0].field, "");
        assert_eq!(
            FieldSelector::parse("===").unwrap_err().message,
            "invalid field selector: unescaped character in value: 61"
        );
    }
}
