//! `pods/eviction`: delete a pod only if its PodDisruptionBudget allows it, as
//! Kubernetes' EvictionREST does. `kubectl drain` evicts every pod of a node this way.
//!
//! The budget is spent by a compare-and-swap on the PDB's status (`disruptionsAllowed`
//! down by one, the pod noted in `disruptedPods` so the disruption controller does not
//! count it healthy before its deletion shows), then the pod gets the
//! `DisruptionTarget` condition and is deleted with its own grace period. A pod that
//! disrupts nothing (Pending, finished, already being deleted) is deleted without
//! asking any budget; so is an unready pod when the budget is met anyway.

use super::{metadata, DeleteOptions, ListOptions, Registry, UserInfo, WriteOptions};
use keelson_apimachinery::{meta, ApiError, Cause};
use keelson_resources::podspec::selector_matches;
use keelson_resources::ResourceType;
use serde_json::{json, Value};

/// Beyond this many evictions the controller has not yet seen, more are refused.
const MAX_DISRUPTED_PODS: usize = 2000;

const EVICTION_REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

impl Registry {
    pub async fn evict(
        &self,
        pods: &'static ResourceType,
        ns: &str,
        name: &str,
        mut eviction: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let api_version = meta::str_field(&eviction, "apiVersion").to_string();
        let kind = meta::str_field(&eviction, "kind");
        if !matches!(api_version.as_str(), "policy/v1" | "policy/v1beta1" | "")
            || !matches!(kind, "Eviction" | "")
        {
            return Err(ApiError::bad_request(format!(
                "the body of an eviction must be a policy/v1 Eviction, not {api_version} {kind}"
            )));
        }
        super::fields::check_kind(
            &keelson_resources::typed::bodies::EVICTION,
            &mut eviction,
            opts.field_validation,
        )?;
        if meta::name(&eviction) != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let mut delete = DeleteOptions {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        if let Some(body) = eviction.get("deleteOptions") {
            delete.merge_body(body)?;
        }
        let client_rv = delete.precondition_resource_version.is_some();
        // Dry run may come from the query or from the Eviction's deleteOptions.
        let opts = &WriteOptions {
            dry_run: delete.dry_run,
            ..opts.clone()
        };

        let pod = self.get(pods, ns, name).await?;
        if disrupts_nothing(&pod) {
            let mut delete = delete.clone();
            if !client_rv && !finished_or_deleting(&pod) {
                // Do not race with the pod becoming ready and counting again.
                delete.precondition_resource_version = Some(meta::resource_version(&pod).into());
            }
            return self.mark_and_delete(pods, ns, name, delete, opts).await;
        }

        let pdbs = self.budgets_of(ns, &pod).await?;
        if pdbs.len() > 1 {
            return Err(ApiError::new(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let mut pinned = false;
        if let Some(pdb) = pdbs.first() {
            let pdb_name = meta::name(pdb).to_string();
            if !is_ready(&pod) && unhealthy_may_go(pdb) {
                pinned = true;
            } else {
                self.spend_budget(ns, &pdb_name, name, opts).await?;
            }
            if pinned && !client_rv {
                delete.precondition_resource_version = Some(meta::resource_version(&pod).into());
            }
            return match self.mark_and_delete(pods, ns, name, delete, opts).await {
                // The pod changed since it was judged unready: let the client come back.
                Err(e) if e.code == 409 && pinned && !client_rv => Err(still_processing(&pdb_name)),
                other => other,
            };
        }
        self.mark_and_delete(pods, ns, name, delete, opts).await
    }

    /// The PDBs in the pod's namespace whose selector picks it (an empty selector picks
    /// every pod, a missing one none).
    async fn budgets_of(&self, ns: &str, pod: &Value) -> Result<Vec<Value>, ApiError> {
        let rt = keelson_resources::find("policy", "poddisruptionbudgets")
            .expect("poddisruptionbudgets are served");
        let all = self.list(rt, ns, &ListOptions::default()).await?.items;
        let labels = pod.pointer("/metadata/labels");
        Ok(all
            .into_iter()
            .filter(|pdb| selector_matches(pdb.pointer("/spec/selector"), labels))
            .collect())
    }

    /// Take one disruption from the budget (a CAS on its status, retried on conflict
    /// with a fresh read), or fail with 429 when none is left.
    async fn spend_budget(
        &self,
        ns: &str,
        pdb_name: &str,
        pod_name: &str,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        let rt = keelson_resources::find("policy", "poddisruptionbudgets")
            .expect("poddisruptionbudgets are served");
        let status_opts = WriteOptions {
            field_manager: "eviction".into(),
            ..opts.clone()
        };
        self.guaranteed_update(rt, ns, pdb_name, opts, |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, pdb_name))?;
            let mut new = old.clone();
            decrement(&mut new, pod_name)?;
            self.apply_update(rt, Some(old), new, "", "status", &status_opts)
        })
        .await?;
        Ok(())
    }

    /// Give the pod the `DisruptionTarget` condition, then delete it with the caller's
    /// options (a resourceVersion precondition moves to the revision the condition made).
    async fn mark_and_delete(
        &self,
        pods: &'static ResourceType,
        ns: &str,
        name: &str,
        mut delete: DeleteOptions,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !delete.dry_run {
            let status_opts = WriteOptions {
                field_manager: "eviction".into(),
                ..opts.clone()
            };
            // The DisruptionTarget condition is the apiserver's own write.
            let internal_opts = WriteOptions {
                user: UserInfo::apiserver(),
                ..Default::default()
            };
            let (uid, rv) = (
                delete.precondition_uid.clone(),
                delete.precondition_resource_version.clone(),
            );
            let marked = self
                .guaranteed_update(pods, ns, name, &internal_opts, |old| {
                    let old = old.ok_or_else(|| ApiError::not_found("", "pods", name))?;
                    for (want, have) in [(&uid, meta::uid(old)), (&rv, meta::resource_version(old))] {
                        if want.as_deref().is_some_and(|w| !w.is_empty() && w != have) {
                            return Err(ApiError::conflict("", "pods", name, "the object has been modified; please apply your changes to the latest version and try again"));
                        }
                    }
                    let mut new = old.clone();
                    set_pod_condition(&mut new, "DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting");
                    self.apply_update(pods, Some(old), new, "", "status", &status_opts)
                })
                .await?;
            if rv.is_some() {
                delete.precondition_resource_version =
                    Some(meta::resource_version(&marked.object).to_string());
            }
        }
        self.delete(pods, ns, name, &delete).await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }
}

/// Pending, finished or already deleting: evicting it disrupts nothing.
fn disrupts_nothing(pod: &Value) -> bool {
    finished_or_deleting(pod) || phase(pod) == "Pending"
}

fn finished_or_deleting(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
        || pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn status_int(pdb: &Value, key: &str) -> i64 {
    pdb.pointer(&format!("/status/{key}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether an unready pod may go without spending the budget: always under
/// `AlwaysAllow`; under the default `IfHealthyBudget` when the budget is met.
fn unhealthy_may_go(pdb: &Value) -> bool {
    let policy = pdb
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str);
    policy == Some("AlwaysAllow")
        || (status_int(pdb, "currentHealthy") >= status_int(pdb, "desiredHealthy")
            && status_int(pdb, "desiredHealthy") > 0)
}

/// 429 for a budget the controller has not caught up with (Retry-After 10 s).
fn still_processing(pdb_name: &str) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", EVICTION_REFUSED);
    e.retry_after_seconds = Some(10);
    e.causes.push(Cause::new(
        "DisruptionBudget",
        "",
        format!("The disruption budget {pdb_name} is still being processed by the server."),
    ));
    e
}

/// Kubernetes' checkAndDecrement on a PDB as stored.
fn decrement(pdb: &mut Value, pod_name: &str) -> Result<(), ApiError> {
    let name = meta::name(pdb).to_string();
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        return Err(still_processing(&name));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    let forbidden = |why: &str| {
        ApiError::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: {why}"
        ))
        .with_details("policy", "poddisruptionbudgets", &name)
    };
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        let mut e = ApiError::new(429, "TooManyRequests", EVICTION_REFUSED);
        e.causes.push(Cause::new(
            "DisruptionBudget",
            "",
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status_int(pdb, "desiredHealthy"),
                status_int(pdb, "currentHealthy")
            ),
        ));
        return Err(e);
    }
    let observed = status_int(pdb, "observedGeneration");
    let status = &mut pdb["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_condition(
            status,
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "", "observedGeneration": observed}),
        );
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(metadata::now_rfc3339());
    Ok(())
}

/// `meta.SetStatusCondition`: replace the condition of the same type, keeping its
/// `lastTransitionTime` unless the status changes.
fn set_condition(status: &mut Value, mut cond: Value) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conds = status["conditions"].as_array_mut().expect("array");
    let kind = cond["type"].clone();
    match conds.iter_mut().find(|c| c["type"] == kind) {
        Some(old) => {
            cond["lastTransitionTime"] = if old["status"] == cond["status"] {
                old["lastTransitionTime"].clone()
            } else {
                json!(metadata::now_rfc3339())
            };
            *old = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(metadata::now_rfc3339());
            conds.push(cond);
        }
    }
}

/// `podutil.UpdatePodCondition` for a True condition.
fn set_pod_condition(pod: &mut Value, kind: &str, reason: &str, message: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let cond = json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": null});
    set_condition(&mut pod["status"], cond);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 2, "observedGeneration": observed},
        })
    }

    #[test]
    fn decrement_spends_one_and_notes_the_pod() {
        let mut p = pdb(1, 1, 1);
        decrement(&mut p, "web-1").unwrap();
        assert_eq!(p["status"]["disruptionsAllowed"], 0);
        assert!(p["status"]["disruptedPods"]["web-1"].is_string());
        let cond = &p["status"]["conditions"][0];
        assert_eq!(cond["type"], "DisruptionAllowed");
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "InsufficientPods");
    }

    #[test]
    fn an_empty_or_stale_budget_is_429_with_the_kubernetes_cause() {
        let e = decrement(&mut pdb(0, 1, 1), "web-1").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (429, EVICTION_REFUSED));
        assert_eq!(
            e.causes[0].message,
            "The disruption budget web needs 2 healthy pods and has 3 currently"
        );
        assert_eq!(e.causes[0].reason, "DisruptionBudget");
        let e = decrement(&mut pdb(5, 2, 1), "web-1").unwrap_err();
        assert_eq!((e.code, e.retry_after_seconds), (429, Some(10)));
        assert!(e.causes[0].message.contains("still being processed"));
        assert_eq!(decrement(&mut pdb(-1, 1, 1), "p").unwrap_err().code, 403);
    }

    #[test]
    fn only_running_pods_ask_the_budget() {
        assert!(disrupts_nothing(&json!({"status": {"phase": "Pending"}})));
        assert!(disrupts_nothing(&json!({"status": {"phase": "Succeeded"}})));
        assert!(disrupts_nothing(
            &json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!disrupts_nothing(&json!({"status": {"phase": "Running"}})));
    }

    #[test]
    fn unready_pods_go_free_only_when_the_budget_allows() {
        let met = json!({"status": {"currentHealthy": 2, "desiredHealthy": 2}});
        let short = json!({"status": {"currentHealthy": 1, "desiredHealthy": 2}});
        let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}, "status": {"currentHealthy": 0, "desiredHealthy": 2}});
        assert!(unhealthy_may_go(&met));
        assert!(!unhealthy_may_go(&short));
        assert!(unhealthy_may_go(&always));
    }
}
