use super::*;
use serde_json::json;

fn rule_env() -> Env {
    Env::new(&["self", "oldSelf"])
}

fn eval_with(src: &str, this: &serde_json::Value) -> Result<cel::Value, EvalError> {
    let p = rule_env()
        .compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    p.eval(&[("self", Binding::Json(this))], PER_CALL_LIMIT)
        .map(|(v, _)| v)
}

fn truth(src: &str, this: &serde_json::Value) -> bool {
    let p = rule_env()
        .compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    p.eval_bool(&[("self", Binding::Json(this))], PER_CALL_LIMIT)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .0
}

#[test]
fn syntax_errors_are_cel_go_issues() {
    let err = rule_env().compile("self.replicas <").unwrap_err();
    assert!(
        err.starts_with("ERROR: <input>:1:16: Syntax error:"),
        "{err}"
    );
    assert!(
        err.contains("\n | self.replicas <\n | ...............^"),
        "{err}"
    );
    let err = rule_env().compile("self.a == ").unwrap_err();
    assert!(err.starts_with("ERROR: <input>:1:"), "{err}");
}

#[test]
fn undeclared_references_are_compile_errors() {
    let err = rule_env().compile("self.x == other").unwrap_err();
    assert_eq!(
        err,
        "ERROR: <input>:1:11: undeclared reference to 'other' (in container '')\n | self.x == other\n | ..........^"
    );
    // Comprehension variables, type names and namespaces are not variables.
    let p = rule_env()
        .compile("self.all(x, type(x) == int) && math.greatest(1, 2) == 2")
        .unwrap();
    assert!(p.uses("self") && !p.uses("oldSelf"));
    assert!(rule_env()
        .compile("self == oldSelf")
        .unwrap()
        .uses("oldSelf"));
}

/// Malformed rules: truncations of real rules at every position, and token soup.
fn malformed() -> Vec<String> {
    let rules = [
        "self.replicas <= self.maxReplicas",
        "self.all(x, x.name.startsWith('a') && size(x.ports) > 0)",
        "has(self.spec) ? self.spec.items.exists(i, i in [1, 2, 3]) : true",
        "self.map(k, self[k] * 2).filter(v, v > 1.5e3) == [\"a\\n\", b'\\x00']",
        "{'a': [1u, -2], 'b': {}}.exists_one(k, k == 'a') || !(self.x != null)",
        "self.s.matches('^[a-z]+$') && self.t.split(',').size() < 3",
    ];
    let mut out = Vec::new();
    for r in rules {
        let chars: Vec<char> = r.chars().collect();
        for i in 0..chars.len() {
            out.push(chars[..i].iter().collect());
            out.push(chars[i..].iter().collect());
        }
    }
    let tokens = [
        "self", ".", "(", ")", "[", "]", "{", "}", ",", ":", "?", "!", "<", "<=", "==", "&&", "||",
        "+", "-", "*", "/", "%", "in", "has", "all", "x", "1", "1u", "2.5", "'s'", "\"", "'", "b'",
        "\\", "null", "true", ".?", "[?", "`", "@", "#", "\u{0}", "é", "\n", "0x", "1e", "--",
        "!!", "..",
    ];
    // A fixed linear congruential sequence: the same soup every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        let mut s = String::new();
        let n = 1 + (seed >> 60) as usize;
        for _ in 0..n {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s.push_str(tokens[(seed >> 33) as usize % tokens.len()]);
        }
        out.push(s);
    }
    out.push("[".repeat(500));
    out.push("(".repeat(300) + &")".repeat(300));
    out.push("-".repeat(1000) + "1");
    out
}

#[test]
fn malformed_rules_never_panic_the_parser() {
    let corpus = malformed();
    assert!(corpus.len() > 600, "{}", corpus.len());
    let mut panicked = Vec::new();
    let mut refused = 0;
    for src in &corpus {
        // The interpreter's parser itself, without the guard in `Env::compile`.
        let raw = catch_unwind(AssertUnwindSafe(|| interpreter().compile(src)));
        if raw.is_err() {
            panicked.push(src.clone());
        }
        match rule_env().compile(src) {
            Err(e) => {
                refused += 1;
                assert!(e.starts_with("ERROR: <input>:"), "{src:?}: {e}");
            }
            Ok(_) => assert!(raw.is_ok_and(|r| r.is_ok()), "{src:?}"),
        }
    }
    assert!(panicked.is_empty(), "the parser panicked on {panicked:?}");
    assert!(refused > 500, "only {refused} of {} refused", corpus.len());
}

#[test]
fn json_values_are_bound() {
    let obj = json!({"replicas": 3, "maxReplicas": 5, "name": "web", "ratio": 0.5,
        "ports": [80, 443], "labels": {"app": "x"}, "gone": null, "big": 18446744073709551615u64});
    assert!(truth("self.replicas <= self.maxReplicas", &obj));
    assert!(!truth("self.replicas > self.maxReplicas", &obj));
    assert!(truth("has(self.name) && !has(self.image)", &obj));
    assert!(truth("self.ratio == 0.5 && self.ratio < 1", &obj));
    assert!(truth(
        "size(self.ports) == 2 && self.ports.all(p, p > 0)",
        &obj
    ));
    assert!(truth(
        "self.ports.exists(p, p == 443) && 80 in self.ports",
        &obj
    ));
    assert!(truth(
        "self.labels['app'] == 'x' && 'app' in self.labels",
        &obj
    ));
    assert!(truth(
        "self.gone == null && self.big == 18446744073709551615u",
        &obj
    ));
    assert!(truth(
        "self.name.startsWith('w') && self.name.matches('^[a-z]+$')",
        &obj
    ));
    assert!(truth(
        "self.name.upperAscii() == 'WEB' && 'A,B'.lowerAscii().split(',') == ['a', 'b']",
        &obj
    ));
    assert!(truth(
        "self.name.replace('w', 'v') == 'veb' && ' x '.trim() == 'x' && self.name.indexOf('b') == 2",
        &obj
    ));
    assert!(truth(
        "self.ports.isSorted() && self.ports.sum() == 523 && self.ports.min() == 80 && self.ports.max() == 443",
        &obj
    ));
    assert!(truth(
        "[1, 2, 1].indexOf(1) == 0 && [1, 2, 1].lastIndexOf(1) == 2 && [3, 1].isSorted() == false",
        &obj
    ));
    assert!(truth(
        "'abc123def'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
        &obj
    ));
    assert!(truth("self.ports.map(p, p * 2) == [160, 886]", &obj));
    assert!(truth(
        "duration('1h') > duration('30m') && timestamp('2026-01-01T00:00:00Z') < timestamp('2027-01-01T00:00:00Z')",
        &obj
    ));
    assert!(truth("math.greatest(1, 5, 3) == 5", &obj));
}

#[test]
fn old_self_and_optional_old_self() {
    let p = rule_env().compile("self == oldSelf").unwrap();
    let (a, b) = (json!("x"), json!("y"));
    let run = |new: &serde_json::Value, old: &serde_json::Value| {
        p.eval_bool(
            &[
                ("self", Binding::Json(new)),
                ("oldSelf", Binding::Json(old)),
            ],
            PER_CALL_LIMIT,
        )
        .unwrap()
        .0
    };
    assert!(run(&a, &a));
    assert!(!run(&a, &b));
    let opt = rule_env()
        .compile("!oldSelf.hasValue() || self >= oldSelf.value()")
        .unwrap();
    let run = |old: Option<&serde_json::Value>| {
        opt.eval_bool(
            &[
                ("self", Binding::Json(&json!(5))),
                ("oldSelf", Binding::Optional(old)),
            ],
            PER_CALL_LIMIT,
        )
        .unwrap()
        .0
    };
    assert!(run(None));
    assert!(run(Some(&json!(4))));
    assert!(!run(Some(&json!(6))));
}

#[test]
fn runtime_errors_and_wrong_types_are_reported() {
    let obj = json!({"a": 1, "l": [1]});
    let e = eval_with("self.b == 1", &obj).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (EvalErrorKind::Other, "no such key: b")
    );
    let e = eval_with("self.a == 'x' || self.a > 'x'", &obj).unwrap_err();
    assert_eq!(e.kind, EvalErrorKind::NoSuchOverload);
    let e = eval_with("self.a / 0 == 1", &obj).unwrap_err();
    assert_eq!(e.message, "division by zero");
    let e = eval_with("self.l[3] == 1", &obj).unwrap_err();
    assert_eq!(e.message, "index out of bounds: 3");
    let p = rule_env().compile("self.a + 1").unwrap();
    let e = p
        .eval_bool(&[("self", Binding::Json(&obj))], PER_CALL_LIMIT)
        .unwrap_err();
    assert_eq!(e.kind, EvalErrorKind::WrongType);
    assert_eq!(
        rule_env().compile("42").unwrap().literal_type(),
        Some("int")
    );
    let m = rule_env().compile("'a is ' + string(self.a)").unwrap();
    assert_eq!(
        m.eval_string(&[("self", Binding::Json(&obj))], PER_CALL_LIMIT)
            .unwrap()
            .0,
        "a is 1"
    );
}

#[test]
fn the_cost_limit_stops_nested_loops_early() {
    let list = json!((0..200).collect::<Vec<i64>>());
    // 200^3 = 8,000,000 innermost iterations.
    let p = rule_env()
        .compile("self.all(x, self.all(y, self.all(z, x + y + z >= 0)))")
        .unwrap();
    let e = p
        .eval_bool(&[("self", Binding::Json(&list))], PER_CALL_LIMIT)
        .unwrap_err();
    assert_eq!(e.kind, EvalErrorKind::CostLimit);
    assert_eq!(e.message, "operation cancelled: actual cost limit exceeded");
    // Stopped just past the limit, not after the 8 million iterations.
    assert!(
        e.cost > PER_CALL_LIMIT && e.cost < PER_CALL_LIMIT + 1_000,
        "{}",
        e.cost
    );
    // The same rule on a small list fits, and its cost is counted.
    let small = json!([1, 2, 3]);
    let (ok, cost) = p
        .eval_bool(&[("self", Binding::Json(&small))], PER_CALL_LIMIT)
        .unwrap();
    assert!(ok && cost >= 27, "{cost}");
    // `||` cannot absorb the limit: an exceeded evaluation fails whatever its value.
    let q = rule_env()
        .compile("self.all(x, self.all(y, x >= 0)) || true")
        .unwrap();
    let e = q
        .eval_bool(&[("self", Binding::Json(&list))], 1_000)
        .unwrap_err();
    assert_eq!(e.kind, EvalErrorKind::CostLimit);
    // Growing strings cost by their size.
    let r = rule_env()
        .compile("self.map(x, 'abcdefghij' + 'abcdefghij' + 'abcdefghij').size() > 0")
        .unwrap();
    let (_, cost) = r
        .eval_bool(&[("self", Binding::Json(&list))], PER_CALL_LIMIT)
        .unwrap();
    assert!(cost > 200 * 5, "{cost}");
}

#[test]
fn edge_cases_evaluate_to_values_or_errors() {
    let obj = json!({"s": "abc", "l": [1, 2]});
    let edgy = [
        "lists.range(-1) == []",
        "self.s.substring(2, 1) == ''",
        "self.s.charAt(10) == ''",
        "math.bitShiftLeft(1, 200) == 0",
        "self.l[-1] == 1",
        "int('x') == 1",
        "duration('x') > duration('1s')",
        "timestamp('x') > timestamp('2020-01-01T00:00:00Z')",
        "9223372036854775807 + 1 > 0",
        "-9223372036854775807 - 1 == (-9223372036854775807 - 1) / -1",
        "self.s.split('') == []",
        "self.s.replace('', 'x') == ''",
        "self.s.indexOf('c', 10) == 0",
        "[].min() == 0",
        "self.s.matches('(') ",
        "self.s.find('[') == ''",
        "self.l.sum() == 3 && [1.5, 2].sum() == 3.5",
        "{'a': 1}.all(k, k == 'a') && [[1], [2]].flatten() == [1, 2]",
        "string(b'\\xff') == ''",
        "dyn(1) == 1.0",
    ];
    for src in edgy {
        let p = rule_env()
            .compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        // Whatever the interpreter makes of these, it is a value or an error.
        let out = p.eval(&[("self", Binding::Json(&obj))], PER_CALL_LIMIT);
        if let Err(e) = &out {
            assert!(!e.message.is_empty(), "{src}");
        }
    }
}
