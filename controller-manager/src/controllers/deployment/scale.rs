//! Sizing ReplicaSets: a paused deployment or a change of `replicas` alone scales the
//! existing ReplicaSets without rolling out; mid-rollout the extra (or fewer) replicas
//! are shared among the active ReplicaSets in proportion to their size.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use keelson_client::KubeObject;
use keelson_component::{EventType, Requeue};
use serde_json::json;

use super::util;
use super::{Controller, Family};

impl Controller {
    /// Kubernetes' `sync`: scale, prune history while paused, write status.
    pub(super) async fn sync_scaling(
        &self,
        d: &mut Deployment,
        mut fam: Family,
    ) -> anyhow::Result<Requeue> {
        self.scale(d, &mut fam).await?;
        if util::is_paused(d) {
            self.cleanup(d, &fam).await?;
        }
        self.sync_status(d, &fam).await?;
        Ok(None)
    }

    /// Kubernetes' `scale`.
    async fn scale(&self, d: &Deployment, fam: &mut Family) -> anyhow::Result<()> {
        let want = util::replicas(d);
        // One active ReplicaSet (or none: the newest) takes every replica.
        if let Some(name) = active_or_latest(fam) {
            if let Some(rs) = fam.get_mut(&name) {
                let op = if util::rs_replicas(rs) < want {
                    "up"
                } else {
                    "down"
                };
                self.scale_rs(d, rs, want, op).await?;
            }
            return Ok(());
        }
        // A saturated new ReplicaSet: the old ones go (e.g. after adopting them).
        if fam.new.as_ref().is_some_and(|rs| util::is_saturated(d, rs)) {
            for rs in fam.old.iter_mut().filter(|rs| util::rs_replicas(rs) > 0) {
                self.scale_rs_and_record(d, rs, 0).await?;
            }
            return Ok(());
        }
        if util::is_recreate(d) {
            return Ok(());
        }
        // Mid-rollout: share the difference proportionally, largest first; ties go to
        // the newest when adding and to the oldest when removing.
        let mut active: Vec<&ReplicaSet> =
            fam.all().filter(|rs| util::rs_replicas(rs) > 0).collect();
        let current: i32 = active.iter().map(|rs| util::rs_replicas(rs)).sum();
        let allowed = if want > 0 {
            want + util::max_surge(d)
        } else {
            0
        };
        let to_add = allowed - current;
        active.sort_by(|a, b| {
            let by_size = util::rs_replicas(b).cmp(&util::rs_replicas(a));
            if to_add > 0 {
                by_size.then_with(|| util::by_creation(b, a))
            } else {
                by_size.then_with(|| util::by_creation(a, b))
            }
        });
        let op = if to_add > 0 { "up" } else { "down" };
        let mut added = 0;
        let mut sizes: Vec<(String, i32)> = Vec::new();
        for rs in &active {
            let p = util::proportion(rs, d, to_add, added);
            added += p;
            sizes.push((rs.name().to_string(), util::rs_replicas(rs) + p));
        }
        // Rounding leftovers go to the largest.
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (name, size) in sizes {
            if let Some(rs) = fam.get_mut(&name) {
                self.scale_rs(d, rs, size, op).await?;
            }
        }
        Ok(())
    }

    /// Scale `rs` to `size` if it differs, recording the event; whether it scaled.
    pub(super) async fn scale_rs_and_record(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        size: i32,
    ) -> anyhow::Result<bool> {
        let current = util::rs_replicas(rs);
        if current == size {
            return Ok(false);
        }
        let op = if current < size { "up" } else { "down" };
        self.scale_rs(d, rs, size, op).await
    }

    /// Kubernetes' `scaleReplicaSet`: set the size and the desired/max-replicas
    /// annotations (written even when the size stays, so that a finished scaling is not
    /// mistaken for a new one); whether the size changed.
    async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        size: i32,
        op: &str,
    ) -> anyhow::Result<bool> {
        let desired = util::replicas(d);
        let max = desired + util::max_surge(d);
        let old = util::rs_replicas(rs);
        let resize = old != size;
        if !resize && !util::replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"annotations": {
                util::DESIRED_REPLICAS: desired.to_string(),
                util::MAX_REPLICAS: max.to_string(),
            }},
            "spec": {"replicas": size},
        });
        self.patch_rs(d, rs, patch).await?;
        if resize {
            let msg = format!("Scaled {op} replica set {} from {old} to {size}", rs.name());
            self.event(d, EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(resize)
    }
}

/// Kubernetes' `FindActiveOrLatest`: the only ReplicaSet with replicas; with none, the
/// new one or else the newest old one; with several, none.
fn active_or_latest(fam: &Family) -> Option<String> {
    let mut old: Vec<&ReplicaSet> = fam.old.iter().collect();
    old.sort_by(|a, b| util::by_creation(b, a));
    let active: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .chain(fam.new.iter())
        .filter(|rs| util::rs_replicas(rs) > 0)
        .collect();
    let pick = match active.len() {
        0 => fam.new.as_ref().or(old.first().copied()),
        1 => Some(active[0]),
        _ => None,
    };
    pick.map(|rs| rs.name().to_string())
}
