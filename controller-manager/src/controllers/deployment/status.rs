//! Deployment status: replica counts summed over the ReplicaSets, and the Available,
//! Progressing and ReplicaFailure conditions with Kubernetes' reasons and messages.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::{KubeObject, Patch, PatchParams};
use keelson_component::Requeue;
use serde_json::{json, Value};

use super::util;
use super::{Controller, Family};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Now, to the second (what the apiserver keeps), so an unchanged status compares equal.
fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default()
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let t = now();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(t)),
        last_transition_time: Some(Time(t)),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Kubernetes' `SetDeploymentCondition`: no change when status and reason are the
/// same; the transition time is kept while the status is.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get_condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Kubernetes' `calculateStatus`: counts from the ReplicaSets, the Available condition.
fn calculate_status(fam: &Family, d: &Deployment) -> DeploymentStatus {
    let available: i32 = fam.all().map(util::rs_available).sum();
    let total: i32 = fam.all().map(util::rs_replicas).sum();
    let mut status = d.status.clone().unwrap_or_default();
    status.observed_generation = d.metadata.generation;
    status.replicas = Some(fam.all().map(util::rs_status_replicas).sum());
    status.updated_replicas = Some(fam.new.as_ref().map_or(0, util::rs_status_replicas));
    status.ready_replicas = Some(fam.all().map(util::rs_ready).sum());
    status.available_replicas = Some(available);
    status.unavailable_replicas = Some((total - available).max(0));
    let cond = if available >= util::replicas(d) - util::max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
        )
    };
    set_condition(&mut status, cond);
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Kubernetes' `DeploymentComplete`: every replica updated and available, no old ones,
/// and the latest spec observed.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = util::replicas(d);
    count(s.updated_replicas) == want
        && count(s.replicas) == want
        && count(s.available_replicas) == want
        && s.observed_generation >= d.metadata.generation
}

/// Kubernetes' `DeploymentProgressing`: more updated, ready or available replicas, or
/// fewer old ones, than the deployment's current status says.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// When the Progressing condition was last updated plus the deadline.
fn deadline_at(d: &Deployment, cond: &DeploymentCondition) -> Option<jiff::Timestamp> {
    let deadline = util::progress_deadline(d)?;
    let from = cond.last_update_time.as_ref()?.0;
    Some(from + Duration::from_secs(deadline.max(0) as u64))
}

/// Kubernetes' `DeploymentTimedOut`.
fn timed_out(d: &Deployment, new: &DeploymentStatus) -> bool {
    let Some(cond) = get_condition(new, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => deadline_at(d, cond).is_some_and(|at| at < jiff::Timestamp::now()),
    }
}

/// Counts compared with absent as zero (the apiserver may omit zeros); conditions exactly.
fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let counts = |s: &DeploymentStatus| {
        [
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas,
            s.collision_count,
        ]
        .map(count)
    };
    let conditions = |s: &DeploymentStatus| s.conditions.clone().unwrap_or_default();
    counts(a) == counts(b)
        && a.observed_generation.unwrap_or(0) == b.observed_generation.unwrap_or(0)
        && conditions(a) == conditions(b)
}

impl Controller {
    /// Write `status` through the status subresource (a merge patch conditioned on the
    /// resourceVersion, naming every count so that zeros are written) and keep it.
    pub(super) async fn write_status(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> anyhow::Result<()> {
        let mut body = serde_json::to_value(&status)?;
        if status.conditions.as_ref().is_none_or(Vec::is_empty) {
            body["conditions"] = Value::Null;
        }
        let patch = json!({
            "metadata": {"resourceVersion": d.metadata.resource_version},
            "status": body,
        });
        let updated = self
            .api(d)
            .patch_status(d.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        d.metadata = updated.metadata;
        d.status = Some(status);
        Ok(())
    }

    /// Kubernetes' `syncDeploymentStatus`: counts and availability, no progress check.
    pub(super) async fn sync_status(&self, d: &mut Deployment, fam: &Family) -> anyhow::Result<()> {
        let status = calculate_status(fam, d);
        if same_status(&d.status.clone().unwrap_or_default(), &status) {
            return Ok(());
        }
        self.write_status(d, status).await
    }

    /// Kubernetes' `syncRolloutStatus`: status plus the Progressing condition (complete,
    /// progressing, or past its deadline) and any ReplicaSet's ReplicaFailure. Asks to
    /// be looked at again when the deadline could pass.
    pub(super) async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        fam: &Family,
    ) -> anyhow::Result<Requeue> {
        let mut new = calculate_status(fam, d);
        let has_deadline = util::progress_deadline(d).is_some();
        if !has_deadline {
            remove_condition(&mut new, PROGRESSING);
        }
        let old = d.status.clone().unwrap_or_default();
        let current = get_condition(&old, PROGRESSING).cloned();
        let was_complete = count(new.replicas) == count(new.updated_replicas)
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if has_deadline && !was_complete {
            let subject = match &fam.new {
                Some(rs) => format!("ReplicaSet {:?}", rs.name()),
                None => format!("Deployment {:?}", d.name()),
            };
            if complete(d, &new) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut new,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg),
                );
            } else if progressing(d, &new) {
                // Progress refreshes lastUpdateTime even with the same reason.
                let msg = format!("{subject} is progressing.");
                let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        cond.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut new, PROGRESSING);
                }
                set_condition(&mut new, cond);
            } else if timed_out(d, &new) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut new,
                    new_condition(PROGRESSING, "False", TIMED_OUT, msg),
                );
            }
        }
        match replica_failure(fam) {
            Some(cond) => set_condition(&mut new, cond),
            None => remove_condition(&mut new, REPLICA_FAILURE),
        }
        if same_status(&old, &new) {
            return Ok(requeue_stuck(d, &new));
        }
        // The write's watch event brings the deployment back for the deadline check.
        self.write_status(d, new).await?;
        Ok(None)
    }

    /// Kubernetes' `checkPausedConditions`: Progressing Unknown while paused, so that
    /// paused time never counts against the progress deadline.
    pub(super) async fn check_paused_conditions(&self, d: &mut Deployment) -> anyhow::Result<()> {
        if util::progress_deadline(d).is_none() {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED);
        let cond = match (util::is_paused(d), paused_recorded) {
            (true, false) => new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
            ),
            (false, true) => new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
            ),
            _ => return Ok(()),
        };
        set_condition(&mut status, cond);
        self.write_status(d, status).await
    }
}

/// The new ReplicaSet's ReplicaFailure condition, else any old one's.
fn replica_failure(fam: &Family) -> Option<DeploymentCondition> {
    let failure = |rs: &k8s_openapi::api::apps::v1::ReplicaSet| {
        let c = rs
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)?;
        Some(DeploymentCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
    };
    fam.new
        .as_ref()
        .and_then(failure)
        .or_else(|| fam.all().find_map(failure))
}

/// Kubernetes' `requeueStuckDeployment`: a rollout still in progress is looked at again
/// when its deadline passes (a second late, to be past it).
fn requeue_stuck(d: &Deployment, new: &DeploymentStatus) -> Requeue {
    let cond = get_condition(d.status.as_ref()?, PROGRESSING)?;
    if complete(d, new) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let at = deadline_at(d, cond)?;
    let after = Duration::try_from(at - jiff::Timestamp::now()).unwrap_or_default();
    Some(after + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_condition_keeps_times_unless_status_changes() {
        let mut s = DeploymentStatus::default();
        let mut c = new_condition(PROGRESSING, "True", NEW_RS_CREATED, "a".into());
        c.last_transition_time = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        set_condition(&mut s, c);
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", RS_UPDATED, "b".into()),
        );
        let got = get_condition(&s, PROGRESSING).unwrap();
        assert_eq!(got.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(
            got.last_transition_time,
            Some(Time(jiff::Timestamp::UNIX_EPOCH))
        );
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "False", TIMED_OUT, "c".into()),
        );
        let got = get_condition(&s, PROGRESSING).unwrap();
        assert_ne!(
            got.last_transition_time,
            Some(Time(jiff::Timestamp::UNIX_EPOCH))
        );
        assert_eq!(s.conditions.as_ref().unwrap().len(), 1);
    }
}
