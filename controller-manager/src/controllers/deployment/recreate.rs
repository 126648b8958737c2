//! Recreate: scale every old ReplicaSet to zero, wait until their pods are gone, then
//! create (or scale up) the new ReplicaSet. Old and new pods never run together.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::Deployment;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::KubeObject;
use keelson_component::Requeue;

use super::status::complete;
use super::util;
use super::{Controller, Family};
use crate::common::owner::controller_of;
use crate::common::pods;

impl Controller {
    /// Kubernetes' `rolloutRecreate`.
    pub(super) async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        mut fam: Family,
        selector: &LabelSelector,
    ) -> anyhow::Result<Requeue> {
        let mut scaled_down = false;
        for rs in fam.old.iter_mut().filter(|rs| util::rs_replicas(rs) > 0) {
            scaled_down |= self.scale_rs_and_record(d, rs, 0).await?;
        }
        if scaled_down || self.old_pods_running(d, &fam, selector) {
            return self.sync_rollout_status(d, &fam).await;
        }
        if fam.new.is_none() {
            self.sync_new_rs(d, &mut fam, true).await?;
        }
        if let Some(rs) = fam.new.as_mut() {
            self.scale_rs_and_record(d, rs, util::replicas(d)).await?;
        }
        if d.status.as_ref().is_some_and(|s| complete(d, s)) {
            self.cleanup(d, &fam).await?;
        }
        self.sync_rollout_status(d, &fam).await
    }

    /// Whether an old ReplicaSet still reports pods, or a pod of one is not finished
    /// (pods being deleted still count: their containers may still run).
    fn old_pods_running(&self, d: &Deployment, fam: &Family, selector: &LabelSelector) -> bool {
        if fam.old.iter().map(util::rs_status_replicas).sum::<i32>() > 0 {
            return true;
        }
        let old_uids: HashSet<&str> = fam.old.iter().filter_map(|rs| rs.uid()).collect();
        self.pods
            .list_namespace(d.namespace().unwrap_or_default())
            .iter()
            .filter(|p| pods::selects(selector, &p.metadata))
            .filter(|p| {
                controller_of(&p.metadata).is_some_and(|r| old_uids.contains(r.uid.as_str()))
            })
            .any(|p| !pods::is_terminal(p))
    }
}
