//! flowcontrol.apiserver.k8s.io/v1 PriorityLevelConfiguration.
//!
//! A priority level of API Priority and Fairness: `Exempt` (never waits) or `Limited`
//! (a share of the server's concurrency in proportion to `nominalConcurrencyShares`,
//! and what happens beyond it: `Reject`, or `Queue` with shuffle-sharded queues).
//! Defaults as Kubernetes' v1: 30 shares, `lendablePercent` 0, 64 queues, hand size 8,
//! 50 requests a queue. Only the level named `exempt` may be `Exempt`.

use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, Cause};
use serde_json::{json, Map, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "flowcontrol.apiserver.k8s.io",
    version: "v1",
    kind: "PriorityLevelConfiguration",
    plural: "prioritylevelconfigurations",
    singular: "prioritylevelconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &PriorityLevels,
    typed: Some(Typed::of::<
        k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
    >()),
    merge: Some(Root::FlowControl),
};

struct PriorityLevels;

const TYPES: &[&str] = &["Exempt", "Limited"];
const RESPONSES: &[&str] = &["Queue", "Reject"];
/// `shufflesharding.MaxHashBits`: a hand must be dealt from 60 bits of the flow's hash.
const MAX_HASH_BITS: f64 = 60.0;

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn set_default_positive(map: &mut Map<String, Value>, key: &str, value: i64) {
    if map
        .get(key)
        .is_none_or(|v| v.is_null() || v.as_i64() == Some(0))
    {
        map.insert(key.into(), json!(value));
    }
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// `shufflesharding.RequiredEntropyBits`.
fn entropy_bits(queues: i64, hand: i64) -> f64 {
    ((queues as f64).log2() * hand as f64).ceil()
}

fn validate_queuing(q: &Value, path: &str, out: &mut Vec<Cause>) {
    let field = |k: &str| q.get(k).and_then(Value::as_i64).unwrap_or(0);
    let (queues, hand, limit) = (
        field("queues"),
        field("handSize"),
        field("queueLengthLimit"),
    );
    if limit <= 0 {
        out.push(Cause::invalid(
            format!("{path}.queueLengthLimit"),
            &json!(limit),
            "must be positive",
        ));
    }
    if queues <= 0 {
        out.push(Cause::invalid(
            format!("{path}.queues"),
            &json!(queues),
            "must be positive",
        ));
    }
    if hand <= 0 {
        out.push(Cause::invalid(
            format!("{path}.handSize"),
            &json!(hand),
            "must be positive",
        ));
    } else if queues > 0 {
        if hand > queues {
            out.push(Cause::invalid(
                format!("{path}.handSize"),
                &json!(hand),
                format!("should not be greater than queues ({queues})"),
            ));
        } else if entropy_bits(queues, hand) > MAX_HASH_BITS {
            out.push(Cause::invalid(
                format!("{path}.handSize"),
                &json!(hand),
                format!(
                    "required entropy bits of deckSize {queues} and handSize {hand} should not be greater than 60"
                ),
            ));
        }
    }
}

fn validate_shares(v: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = int(v, "/nominalConcurrencyShares").filter(|n| *n < 0) {
        out.push(Cause::invalid(
            format!("{path}.nominalConcurrencyShares"),
            &json!(n),
            "must be a non-negative integer",
        ));
    }
    if let Some(n) = int(v, "/lendablePercent").filter(|n| !(0..=100).contains(n)) {
        out.push(Cause::invalid(
            format!("{path}.lendablePercent"),
            &json!(n),
            "must be between 0 and 100, inclusive",
        ));
    }
}

fn validate_limited(l: &Value, out: &mut Vec<Cause>) {
    let path = "spec.limited";
    validate_shares(l, path, out);
    if let Some(n) = int(l, "/borrowingLimitPercent").filter(|n| *n < 0) {
        out.push(Cause::invalid(
            format!("{path}.borrowingLimitPercent"),
            &json!(n),
            "if specified, must be a non-negative integer",
        ));
    }
    let response = l.get("limitResponse").cloned().unwrap_or(Value::Null);
    let kind = response.get("type").and_then(Value::as_str).unwrap_or("");
    let queuing = response.get("queuing").filter(|q| !q.is_null());
    match kind {
        "Queue" => match queuing {
            Some(q) => validate_queuing(q, &format!("{path}.limitResponse.queuing"), out),
            None => out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.limitResponse.queuing"),
                "Required value: must not be empty if limited.limitResponse.type is Queue",
            )),
        },
        "Reject" => {
            if queuing.is_some() {
                out.push(Cause::forbidden(
                    format!("{path}.limitResponse.queuing"),
                    "must be nil if limited.limitResponse.type is not Limited",
                ));
            }
        }
        other => out.push(Cause::not_supported(
            format!("{path}.limitResponse.type"),
            &json!(other),
            RESPONSES,
        )),
    }
}

fn level_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Strategy for PriorityLevels {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(e) = spec.get_mut("exempt").and_then(Value::as_object_mut) {
            set_default(e, "nominalConcurrencyShares", json!(0));
            set_default(e, "lendablePercent", json!(0));
        }
        if let Some(l) = spec.get_mut("limited").and_then(Value::as_object_mut) {
            set_default(l, "nominalConcurrencyShares", json!(30));
            set_default(l, "lendablePercent", json!(0));
            let queuing = l
                .get_mut("limitResponse")
                .and_then(|r| r.get_mut("queuing"))
                .and_then(Value::as_object_mut);
            if let Some(q) = queuing {
                set_default_positive(q, "queues", 64);
                set_default_positive(q, "handSize", 8);
                set_default_positive(q, "queueLengthLimit", 50);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let t = level_type(obj);
        let present = |k: &str| {
            obj.pointer(&format!("/spec/{k}"))
                .is_some_and(|v| !v.is_null())
        };
        match t {
            "" => out.push(Cause::required("spec.type")),
            "Exempt" | "Limited" => {}
            other => out.push(Cause::not_supported("spec.type", &json!(other), TYPES)),
        }
        if (t == "Exempt") != (meta::name(obj) == "exempt") && !t.is_empty() {
            out.push(Cause::invalid(
                "spec.type",
                &json!(t),
                "type must be 'Exempt' if and only if name is 'exempt'",
            ));
        }
        if t == "Limited" {
            match obj.pointer("/spec/limited").filter(|l| !l.is_null()) {
                Some(l) => validate_limited(l, &mut out),
                None => out.push(Cause::new(
                    "FieldValueRequired",
                    "spec.limited",
                    "Required value: must not be empty when type is Limited",
                )),
            }
            if present("exempt") {
                out.push(Cause::forbidden(
                    "spec.exempt",
                    "must be nil if the type is Limited",
                ));
            }
        } else if t == "Exempt" {
            if present("limited") {
                out.push(Cause::forbidden(
                    "spec.limited",
                    "must be nil if the type is not Limited",
                ));
            }
            if let Some(e) = obj.pointer("/spec/exempt").filter(|e| !e.is_null()) {
                validate_shares(e, "spec.exempt", &mut out);
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Type",
                "string",
                "`type` indicates whether this priority level is subject to limitation on request execution.  A value of `\"Exempt\"` means that requests of this priority level are not subject to a limit (and thus are never queued) and do not detract from the capacity made available to other priority levels.  A value of `\"Limited\"` means that (a) requests of this priority level _are_ subject to limits and (b) some of the server's limited capacity is made available exclusively to this priority level. Required.",
            ),
            Column::new(
                "NominalConcurrencyShares",
                "string",
                "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
            ),
            Column::new(
                "Queues",
                "string",
                "`queues` is the number of queues for this priority level. The queues exist independently at each apiserver. The value must be positive.  Setting it to 1 effectively precludes shufflesharding and thus makes the distinguisher method of associated flow schemas irrelevant.  This field has a default value of 64.",
            ),
            Column::new(
                "HandSize",
                "string",
                "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.  When enqueuing a request at this priority level the request's flow identifier (a string pair) is hashed and the hash value is used to shuffle the list of queues and deal a hand of the size specified here.",
            ),
            Column::new(
                "QueueLengthLimit",
                "string",
                "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected.  This value must be positive.  If not specified, it will be defaulted to 50.",
            ),
            Column::age(),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let none = || json!("<none>");
        let shares = int(obj, "/spec/limited/nominalConcurrencyShares")
            .or_else(|| int(obj, "/spec/exempt/nominalConcurrencyShares"))
            .map(|n| json!(n))
            .unwrap_or_else(none);
        let q = |k: &str| {
            int(obj, &format!("/spec/limited/limitResponse/queuing/{k}"))
                .map(|n| json!(n))
                .unwrap_or_else(none)
        };
        vec![
            name_cell(obj),
            json!(level_type(obj)),
            shares,
            q("queues"),
            q("handSize"),
            q("queueLengthLimit"),
            age_cell(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(name: &str, spec: Value) -> Value {
        let mut pl = json!({"metadata": {"name": name}, "spec": spec});
        RESOURCE.strategy.default(&mut pl);
        pl
    }

    fn shown(obj: &Value) -> Vec<String> {
        RESOURCE
            .strategy
            .validate(obj)
            .iter()
            .map(Cause::display)
            .collect()
    }

    #[test]
    fn defaults_as_v1() {
        let pl = level(
            "mine",
            json!({"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}),
        );
        assert_eq!(pl["spec"]["limited"]["nominalConcurrencyShares"], 30);
        assert_eq!(pl["spec"]["limited"]["lendablePercent"], 0);
        assert_eq!(
            pl["spec"]["limited"]["limitResponse"]["queuing"],
            json!({"queues": 64, "handSize": 8, "queueLengthLimit": 50})
        );
        assert!(shown(&pl).is_empty(), "{:?}", shown(&pl));
        let row = RESOURCE.strategy.row(&pl);
        assert_eq!(
            row[1..6],
            [json!("Limited"), json!(30), json!(64), json!(8), json!(50)]
        );
    }

    #[test]
    fn reports_kubernetes_messages() {
        let pl = level(
            "mine",
            json!({"type": "Limited", "limited": {"nominalConcurrencyShares": -1, "lendablePercent": 101,
                "limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 5, "queueLengthLimit": -2}}}}),
        );
        assert_eq!(
            shown(&pl),
            [
                "spec.limited.nominalConcurrencyShares: Invalid value: -1: must be a non-negative integer",
                "spec.limited.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive",
                "spec.limited.limitResponse.queuing.queueLengthLimit: Invalid value: -2: must be positive",
                "spec.limited.limitResponse.queuing.handSize: Invalid value: 5: should not be greater than queues (4)",
            ]
        );
        let entropy = level(
            "mine",
            json!({"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 9}}}}),
        );
        assert_eq!(
            shown(&entropy),
            ["spec.limited.limitResponse.queuing.handSize: Invalid value: 9: required entropy bits of deckSize 128 and handSize 9 should not be greater than 60"]
        );
        let exempt = level("mine", json!({"type": "Exempt"}));
        assert_eq!(
            shown(&exempt),
            ["spec.type: Invalid value: \"Exempt\": type must be 'Exempt' if and only if name is 'exempt'"]
        );
        let limited = level("mine", json!({"type": "Limited"}));
        assert_eq!(
            shown(&limited),
            ["spec.limited: Required value: must not be empty when type is Limited"]
        );
        let reject = level(
            "mine",
            json!({"type": "Limited", "limited": {"limitResponse": {"type": "Reject", "queuing": {"queues": 1}}}}),
        );
        assert_eq!(
            shown(&reject),
            ["spec.limited.limitResponse.queuing: Forbidden: must be nil if limited.limitResponse.type is not Limited"]
        );
        assert!(shown(&level("exempt", json!({"type": "Exempt", "exempt": {}}))).is_empty());
    }
}
