//! RollingUpdate: grow the new ReplicaSet up to `replicas + maxSurge` pods in all,
//! shrink the old ones while at least `replicas - maxUnavailable` stay available.

use k8s_openapi::api::apps::v1::Deployment;
use keelson_component::Requeue;

use super::status::complete;
use super::util;
use super::{Controller, Family};

impl Controller {
    /// Kubernetes' `rolloutRolling`: one step per sync (scale up, else scale down);
    /// every ReplicaSet change brings the deployment back for the next step.
    pub(super) async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        mut fam: Family,
    ) -> anyhow::Result<Requeue> {
        self.sync_new_rs(d, &mut fam, true).await?;
        if self.reconcile_new_rs(d, &mut fam).await? || self.reconcile_old_rss(d, &mut fam).await? {
            return self.sync_rollout_status(d, &fam).await;
        }
        if d.status.as_ref().is_some_and(|s| complete(d, s)) {
            self.cleanup(d, &fam).await?;
        }
        self.sync_rollout_status(d, &fam).await
    }

    /// Scale the new ReplicaSet toward `replicas`, as far as the surge allows.
    async fn reconcile_new_rs(&self, d: &Deployment, fam: &mut Family) -> anyhow::Result<bool> {
        let Some(new) = fam.new.as_ref() else {
            return Ok(false);
        };
        let want = util::replicas(d);
        let current = util::rs_replicas(new);
        let size = match current.cmp(&want) {
            std::cmp::Ordering::Equal => return Ok(false),
            std::cmp::Ordering::Greater => want,
            std::cmp::Ordering::Less => util::new_rs_new_replicas(d, fam.all(), new),
        };
        match fam.new.as_mut() {
            Some(new) => self.scale_rs_and_record(d, new, size).await,
            None => Ok(false),
        }
    }

    /// Kubernetes' `reconcileOldReplicaSets`: scale old ReplicaSets down without going
    /// below the minimum available, counting the new ReplicaSet's unavailable pods
    /// against the budget; unhealthy old pods go first.
    async fn reconcile_old_rss(&self, d: &Deployment, fam: &mut Family) -> anyhow::Result<bool> {
        let old_pods: i32 = fam.old.iter().map(util::rs_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = fam.all().map(util::rs_replicas).sum();
        let min_available = util::replicas(d) - util::max_unavailable(d);
        let new_unavailable = fam.new.as_ref().map_or(0, |rs| {
            util::rs_replicas(rs) - util::rs_available_after_scaling(rs)
        });
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(d, fam, max_scaled_down).await?;
        let scaled = self.scale_down_old(d, fam).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Remove old ReplicaSets' unavailable pods (at most `max`): losing them costs no
    /// availability, and they could otherwise block the rollout.
    async fn cleanup_unhealthy(
        &self,
        d: &Deployment,
        fam: &mut Family,
        max: i32,
    ) -> anyhow::Result<i32> {
        let mut total = 0;
        for rs in fam.old.iter_mut() {
            if total >= max {
                break;
            }
            let replicas = util::rs_replicas(rs);
            let unhealthy = replicas - util::rs_available_after_scaling(rs);
            if replicas == 0 || unhealthy == 0 {
                continue;
            }
            let down = (max - total).min(unhealthy);
            self.scale_rs_and_record(d, rs, replicas - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Scale old ReplicaSets (oldest first) down by what is available above the
    /// minimum. Availability counts each ReplicaSet at most at its size: a status not
    /// yet updated after a scale-down must not pass for spare capacity.
    async fn scale_down_old(&self, d: &Deployment, fam: &mut Family) -> anyhow::Result<i32> {
        let min_available = util::replicas(d) - util::max_unavailable(d);
        let available: i32 = fam.all().map(util::rs_available_after_scaling).sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let mut total = 0;
        for rs in fam.old.iter_mut() {
            if total >= budget {
                break;
            }
            let replicas = util::rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget - total);
            self.scale_rs_and_record(d, rs, replicas - down).await?;
            total += down;
        }
        Ok(total)
    }
}
