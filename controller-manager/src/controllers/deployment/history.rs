//! Revisions: finding or creating the new ReplicaSet with the revision annotations
//! `kubectl rollout history/undo` read, and deleting old ReplicaSets beyond
//! `revisionHistoryLimit`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{DeleteParams, KubeObject, Patch, PatchParams, PostParams};
use keelson_component::EventType;
use serde_json::json;

use super::status::{
    get_condition, new_condition, set_condition, FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED,
    PROGRESSING,
};
use super::util::{self, HASH_LABEL, REVISION, REVISION_HISTORY};
use super::{Controller, Family};
use crate::common::owner::{controller_of, controller_ref};

/// Longest `revision-history` annotation kept (oldest entries dropped first).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations that are bookkeeping, not to be copied to ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    util::REVISION,
    util::REVISION_HISTORY,
    util::DESIRED_REPLICAS,
    util::MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Copy the deployment's annotations (`kubernetes.io/change-cause`, ...) to `rs`.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if SKIP_COPY.contains(&k.as_str()) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copy the deployment's annotations, raise
/// the revision to `new_revision` (a reused ReplicaSet, i.e. a rollback, keeps its
/// former numbers in `revision-history`), and on creation record the replica counts.
pub(super) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    let old = annotations.get(REVISION).cloned().unwrap_or_default();
    let old_number = match old.as_str() {
        "" => 0,
        s => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if !old.is_empty() {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if let Some(h) = append_history(&history, &old) {
                annotations.insert(REVISION_HISTORY.into(), h);
            }
        }
    }
    let desired = util::replicas(d);
    if !exists && util::set_replicas_annotations(rs, desired, desired + util::max_surge(d)) {
        changed = true;
    }
    changed
}

/// `history,revision`, dropping the oldest entries to stay within the length limit.
fn append_history(history: &str, revision: &str) -> Option<String> {
    if history.is_empty() {
        return Some(revision.to_string());
    }
    let entries: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + revision.len() + 1;
    let mut start = 0;
    while total > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
        total -= entries[start].len() + 1;
        start += 1;
    }
    if total > MAX_REVISION_HISTORY_CHARS {
        return None;
    }
    let mut kept = entries[start..].to_vec();
    kept.push(revision);
    Some(kept.join(","))
}

impl Controller {
    /// Kubernetes' `getNewReplicaSet`: bring an existing new ReplicaSet's annotations
    /// and minReadySeconds up to date and the deployment's revision with it; or, when
    /// `create`, create the new ReplicaSet (revision = highest old + 1).
    pub(super) async fn sync_new_rs(
        &self,
        d: &mut Deployment,
        fam: &mut Family,
        create: bool,
    ) -> anyhow::Result<()> {
        let new_revision = fam.old.iter().map(util::revision).max().unwrap_or(0) + 1;
        if let Some(rs) = fam.new.as_mut() {
            let mut updated = rs.clone();
            let annotations_changed = set_new_rs_annotations(d, &mut updated, new_revision, true);
            let min_ready = util::min_ready_seconds(d);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations_changed || rs_min_ready.unwrap_or(0) != min_ready {
                let patch = json!({
                    "metadata": {"annotations": updated.metadata.annotations},
                    "spec": {"minReadySeconds": min_ready},
                });
                return self.patch_rs(d, rs, patch).await;
            }
            let revision = util::annotation(rs, REVISION)
                .unwrap_or_default()
                .to_string();
            let name = rs.name().to_string();
            self.set_deployment_revision(d, &revision).await?;
            // First sight of progress for a deployment that had no condition yet.
            let mut status = d.status.clone().unwrap_or_default();
            if util::progress_deadline(d).is_some() && get_condition(&status, PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set {name:?}");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg),
                );
                self.write_status(d, status).await?;
            }
            return Ok(());
        }
        if create {
            self.create_new_rs(d, fam, new_revision).await?;
        }
        Ok(())
    }

    async fn create_new_rs(
        &self,
        d: &mut Deployment,
        fam: &mut Family,
        new_revision: i64,
    ) -> anyhow::Result<()> {
        let template = util::template(d);
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::pod_template_hash(&template, collision_count);
        let mut rs_template = template.clone();
        let meta = rs_template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.name());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels,
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(util::min_ready_seconds(d)),
                selector,
                template: Some(rs_template),
            }),
            status: None,
        };
        let replicas = util::new_rs_new_replicas(d, fam.all().chain([&rs]), &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        set_new_rs_annotations(d, &mut rs, new_revision, false);

        let api = self.rs_api(d);
        let mut already_existed = false;
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(e) if e.is_already_exists() => {
                // Ours, with our template: our cache had not seen it yet. Anything else
                // is a hash collision: count it, so the next attempt hashes differently.
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing.metadata).map(|r| r.uid.as_str()) == d.uid();
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &template));
                if !(ours && same) {
                    let mut status = d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    self.write_status(d, status).await?;
                    return Err(e.into());
                }
                already_existed = true;
                existing
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                if util::progress_deadline(d).is_some() {
                    let mut status = d.status.clone().unwrap_or_default();
                    let cond = new_condition(PROGRESSING, "False", FAILED_RS_CREATE, msg.clone());
                    set_condition(&mut status, cond);
                    // The creation error is the one worth returning.
                    let _ = self.write_status(d, status).await;
                }
                self.event(d, EventType::Warning, FAILED_RS_CREATE, &msg)
                    .await;
                return Err(e.into());
            }
        };
        if !already_existed && replicas > 0 {
            let msg = format!("Scaled up replica set {name} from 0 to {replicas}");
            self.event(d, EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        self.set_deployment_revision(d, &new_revision.to_string())
            .await?;
        if !already_existed && util::progress_deadline(d).is_some() {
            let mut status = d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg),
            );
            self.write_status(d, status).await?;
        }
        fam.new = Some(created);
        Ok(())
    }

    /// Record the new ReplicaSet's revision on the deployment (a metadata patch; the
    /// generation does not change).
    async fn set_deployment_revision(
        &self,
        d: &mut Deployment,
        revision: &str,
    ) -> anyhow::Result<()> {
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "annotations": {REVISION: revision},
            "resourceVersion": d.metadata.resource_version,
        }});
        let updated = self
            .api(d)
            .patch(d.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        d.metadata = updated.metadata;
        Ok(())
    }

    /// Kubernetes' `cleanupDeployment`: delete the lowest-revision old ReplicaSets
    /// beyond `revisionHistoryLimit`, only those scaled to zero with no pods left.
    pub(super) async fn cleanup(&self, d: &Deployment, fam: &Family) -> anyhow::Result<()> {
        let Some(limit) = util::revision_history_limit(d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = fam
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        let api = self.rs_api(d);
        for rs in cleanable.into_iter().take(excess as usize) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if util::rs_status_replicas(rs) != 0
                || util::rs_replicas(rs) != 0
                || rs.metadata.generation > observed
            {
                continue;
            }
            match api.delete(rs.name(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(annotations: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}}}
        }))
        .unwrap()
    }

    #[test]
    fn new_rs_gets_revision_counts_and_change_cause() {
        let d = deployment(json!({
            "kubernetes.io/change-cause": "kubectl set image",
            "deployment.kubernetes.io/revision": "7",
        }));
        let mut rs = ReplicaSet::default();
        assert!(set_new_rs_annotations(&d, &mut rs, 1, false));
        let a = rs.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "kubectl set image");
        assert_eq!(a[util::DESIRED_REPLICAS], "3");
        assert_eq!(a[util::MAX_REPLICAS], "4");
        assert!(!a.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn reused_rs_keeps_its_old_revisions() {
        let d = deployment(json!({}));
        let mut rs = ReplicaSet::default();
        set_new_rs_annotations(&d, &mut rs, 1, false);
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true));
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a[REVISION].as_str(), a[REVISION_HISTORY].as_str()),
            ("5", "1,3")
        );
        // Nothing to do when the revision is already the highest.
        assert!(!set_new_rs_annotations(&d, &mut rs, 4, true));
    }

    #[test]
    fn history_drops_oldest_entries_past_the_limit() {
        let long = vec!["12345"; 333].join(",");
        let h = append_history(&long, "99").unwrap();
        assert!(h.len() <= MAX_REVISION_HISTORY_CHARS);
        assert!(h.ends_with(",99"));
    }
}
