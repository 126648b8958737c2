//! The CronJob rules as pure functions of the CronJob, its Jobs and the time: whether
//! and for which time to start a Job now ([`decide`]), the Job for a time
//! ([`job_for`]), and the finished Jobs beyond the history limits
//! ([`history_to_delete`]).

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::KubeObject;
use keelson_component::EventType;

use super::schedule;
use crate::common::owner::controller_ref;
use crate::controllers::job::finished;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Requeue a little after the schedule time, for clock skew.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// What a sync should do at `now`, decided from the CronJob alone.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<(EventType, &'static str, String)>,
    /// Start a Job for this scheduled time.
    pub start: Option<Timestamp>,
    /// Delete the active Jobs first (concurrencyPolicy Replace).
    pub replace_active: bool,
    /// Look again after this long (`None`: only when something changes).
    pub requeue: Option<Duration>,
}

/// The scheduling rules: time zone, suspension, the most recent missed time, the
/// starting deadline, and the concurrency policy. `local` is the zone of schedules
/// without `timeZone`.
pub fn decide(cj: &CronJob, now: Timestamp, local: &TimeZone) -> Decision {
    let mut d = Decision::default();
    let Some(spec) = cj.spec.as_ref() else {
        return d;
    };
    let warn =
        |d: &mut Decision, reason, message| d.events.push((EventType::Warning, reason, message));
    let zone = match spec.time_zone.as_deref() {
        None => local.clone(),
        Some(name) => match TimeZone::get(name) {
            Ok(z) => z,
            Err(e) => {
                warn(
                    &mut d,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                );
                return d;
            }
        },
    };
    if spec.suspend == Some(true) {
        return d;
    }
    if spec.schedule.contains("TZ") {
        // Honoured, but not supported: Kubernetes warns on every sync.
        warn(&mut d, "UnsupportedSchedule", format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule));
    }
    let sched = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            warn(
                &mut d,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            );
            return d;
        }
    };
    let status = cj.status.clone().unwrap_or_default();
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut earliest = last
        .or(cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let deadline = spec
        .starting_deadline_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64));
    if let Some(cutoff) = deadline.and_then(|d| now.checked_sub(d).ok()) {
        // Times older than the deadline are not going to be started anyway.
        earliest = earliest.max(cutoff);
    }
    let (recent, missed) = match sched.most_recent(earliest, now, &zone) {
        Ok(r) => r,
        Err(e) => {
            warn(
                &mut d,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            );
            return d;
        }
    };
    d.requeue = sched
        .next(now, &zone)
        .map(|t| Duration::try_from(t - now).unwrap_or_default() + NEXT_SCHEDULE_DELTA);
    let Some(scheduled) = recent else {
        return d;
    };
    if missed > 100 {
        warn(&mut d, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into());
    }
    if deadline.is_some_and(|dl| scheduled + dl < now) {
        let at =
            jiff::fmt::strtime::format("%a, %d %b %Y %H:%M:%S %z", scheduled).unwrap_or_default();
        warn(
            &mut d,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {at}"),
        );
        return d;
    }
    let active = status.active.unwrap_or_default();
    let name = job_name(cj, scheduled);
    if active.iter().any(|r| r.name.as_deref() == Some(&name)) || last == Some(scheduled) {
        return d; // this time was handled already
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            d.events.push((
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return d;
        }
        Some("Replace") => d.replace_active = !active.is_empty(),
        _ => {}
    }
    d.start = Some(scheduled);
    d
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!("{}-{}", cj.name(), scheduled.as_second().div_euclid(60))
}

/// The Job for one scheduled time: the template's labels, annotations and spec, the
/// scheduled time (RFC 3339, in `timeZone`, else UTC) and the CronJob as controller.
pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let zone = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC);
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, &zone));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Go's RFC 3339 layout: `Z` for UTC, else `+hh:mm`.
fn rfc3339(t: Timestamp, zone: &TimeZone) -> String {
    let dt = zone.to_datetime(t);
    let offset = zone.to_offset(t).seconds();
    let suffix = match offset {
        0 => "Z".to_string(),
        s => format!(
            "{}{:02}:{:02}",
            if s < 0 { '-' } else { '+' },
            s.abs() / 3600,
            s.abs() % 3600 / 60
        ),
    };
    format!("{}{suffix}", dt.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`,
/// oldest (by start time, unstarted last, then name) first.
pub fn history_to_delete(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let Some(spec) = cj.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j).is_some_and(|c| c.type_ == kind))
            .collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
        };
        done.sort_by(|a, b| {
            let (sa, sb) = (start(a), start(b));
            sa.is_none()
                .cmp(&sb.is_none())
                .then(sa.cmp(&sb))
                .then_with(|| a.name().cmp(b.name()))
        });
        out.extend(done.into_iter().take(excess).cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut full = json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "metadata": {"name": "cj", "namespace": "ns", "uid": "u1", "creationTimestamp": "2024-01-01T10:00:00Z"},
            "spec": full, "status": status,
        }))
        .unwrap()
    }

    fn at(cj: &CronJob, now: &str) -> Decision {
        decide(cj, ts(now), &TimeZone::UTC)
    }

    fn reasons(d: &Decision) -> Vec<&str> {
        d.events.iter().map(|e| e.1).collect()
    }

    #[test]
    fn schedules_the_most_recent_time_when_not_suspended() {
        let cj = cronjob(json!({}), json!({}));
        let d = at(&cj, "2024-01-01T10:12:00Z");
        assert_eq!(d.start, Some(ts("2024-01-01T10:10:00Z")));
        assert_eq!(d.requeue, Some(Duration::from_millis(180_100)));
        // Before the first time: nothing, but a wake-up at it.
        let d = at(&cj, "2024-01-01T10:04:00Z");
        assert_eq!(
            (d.start, d.requeue),
            (None, Some(Duration::from_millis(60_100)))
        );
        // Already scheduled.
        let done = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2024-01-01T10:10:00Z"}),
        );
        assert_eq!(at(&done, "2024-01-01T10:12:00Z").start, None);
        assert_eq!(job_name(&cj, ts("2024-01-01T10:10:00Z")), "cj-28401730");
    }

    #[test]
    fn does_not_schedule_when_suspended() {
        let cj = cronjob(json!({"suspend": true}), json!({}));
        assert_eq!(at(&cj, "2024-01-01T10:12:00Z"), Decision::default());
    }

    #[test]
    fn forbid_skips_while_a_job_runs_and_replace_replaces_it() {
        let running = json!({"active": [{"kind": "Job", "name": "cj-28401235", "uid": "j1"}],
                             "lastScheduleTime": "2024-01-01T10:05:00Z"});
        let forbid = cronjob(json!({"concurrencyPolicy": "Forbid"}), running.clone());
        let d = at(&forbid, "2024-01-01T10:10:01Z");
        assert_eq!(d.start, None);
        assert_eq!(reasons(&d), ["JobAlreadyActive"]);
        let replace = cronjob(json!({"concurrencyPolicy": "Replace"}), running.clone());
        let d = at(&replace, "2024-01-01T10:10:01Z");
        assert_eq!(
            (d.start, d.replace_active),
            (Some(ts("2024-01-01T10:10:00Z")), true)
        );
        let allow = cronjob(json!({"concurrencyPolicy": "Allow"}), running);
        let d = at(&allow, "2024-01-01T10:10:01Z");
        assert_eq!(
            (d.start, d.replace_active),
            (Some(ts("2024-01-01T10:10:00Z")), false)
        );
    }

    #[test]
    fn starting_deadline_and_missed_times() {
        // Down for a day with no deadline: too many missed, the latest still runs.
        let cj = cronjob(json!({}), json!({}));
        let d = at(&cj, "2024-01-02T10:01:00Z");
        assert_eq!(reasons(&d), ["TooManyMissedTimes"]);
        assert_eq!(d.start, Some(ts("2024-01-02T10:00:00Z")));
        // With a deadline the window is short: no warning.
        let cj = cronjob(json!({"startingDeadlineSeconds": 200}), json!({}));
        let d = at(&cj, "2024-01-02T10:01:00Z");
        assert!(d.events.is_empty());
        assert_eq!(d.start, Some(ts("2024-01-02T10:00:00Z")));
        // The last time is older than the deadline: skipped.
        let cj = cronjob(json!({"startingDeadlineSeconds": 30}), json!({}));
        let d = at(&cj, "2024-01-02T10:04:00Z");
        assert_eq!(d.start, None);
    }

    #[test]
    fn time_zone_and_bad_schedules() {
        let cj = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}),
            json!({}),
        );
        let d = at(&cj, "2024-01-02T08:30:00Z");
        assert_eq!(d.start, Some(ts("2024-01-02T08:00:00Z")));
        let job = job_for(&cj, ts("2024-01-02T08:00:00Z"));
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-02T09:00:00+01:00"
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
        let utc = cronjob(json!({}), json!({}));
        let job = job_for(&utc, ts("2024-01-01T10:10:00Z"));
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T10:10:00Z"
        );
        let bad_zone = cronjob(json!({"timeZone": "Mars/Olympus"}), json!({}));
        assert_eq!(
            reasons(&at(&bad_zone, "2024-01-01T10:12:00Z")),
            ["UnknownTimeZone"]
        );
        let bad = cronjob(json!({"schedule": "61 * * * *"}), json!({}));
        assert_eq!(
            reasons(&at(&bad, "2024-01-01T10:12:00Z")),
            ["UnparseableSchedule"]
        );
        let tz = cronjob(json!({"schedule": "TZ=UTC */5 * * * *"}), json!({}));
        let d = at(&tz, "2024-01-01T10:12:00Z");
        assert_eq!(reasons(&d), ["UnsupportedSchedule"]);
        assert_eq!(d.start, Some(ts("2024-01-01T10:10:00Z")));
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let job = |name: &str, start: &str, kind: &str| -> Arc<Job> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name}, "status": {
                    "startTime": start, "conditions": [{"type": kind, "status": "True"}]}}))
                .unwrap(),
            )
        };
        let jobs = vec![
            job("c", "2024-01-01T10:10:00Z", "Complete"),
            job("a", "2024-01-01T10:00:00Z", "Complete"),
            job("b", "2024-01-01T10:05:00Z", "Complete"),
            job("f1", "2024-01-01T10:00:00Z", "Failed"),
            job("f2", "2024-01-01T10:05:00Z", "Failed"),
        ];
        let cj = cronjob(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            json!({}),
        );
        let names: Vec<String> = history_to_delete(&cj, &jobs)
            .iter()
            .map(|j| j.name().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "f1"]);
        let unlimited = cronjob(json!({}), json!({}));
        assert!(history_to_delete(&unlimited, &jobs).is_empty());
    }
}
