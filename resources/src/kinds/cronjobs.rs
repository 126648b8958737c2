//! batch/v1 CronJob.
//!
//! Schedules are checked the way Kubernetes checks them (`cron.ParseStandard` from
//! robfig/cron v3): five fields with their ranges and names, or a descriptor such as
//! `@hourly` or `@every 1h30m`, with the parser's own error wording.

use crate::kinds::jobs::validate_job_spec;
use crate::podspec::{
    self, container_cells, default_field, default_template_metadata, ensure_object,
    format_label_selector, go_label_selector, invalid_shown, items, nonnegative, str_at,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{age_of, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "batch",
    version: "v1",
    kind: "CronJob",
    plural: "cronjobs",
    singular: "cronjob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    strategy: &CronJobs,
    typed: Some(Typed::of::<k8s_openapi::api::batch::v1::CronJob>()),
    merge: Some(Root::CronJob),
};

struct CronJobs;

/// Jobs are named `<cronjob>-<11 characters>`, and job names are at most 63.
const MAX_NAME: usize = 52;

impl Strategy for CronJobs {
    fn validate_name(&self, name: &str) -> Vec<String> {
        let mut errs = validation::dns1123_subdomain(name);
        if name.len() > MAX_NAME {
            errs.push(format!("must be no more than {MAX_NAME} characters"));
        }
        errs
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    /// `SetDefaults_CronJob`; the job template gets pod template defaults but not the
    /// job defaults (those apply when the controller creates each job).
    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(Value::Null));
        if spec
            .get("concurrencyPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("concurrencyPolicy".into(), json!("Allow"));
        }
        default_field(spec, "suspend", json!(false));
        default_field(spec, "successfulJobsHistoryLimit", json!(3));
        default_field(spec, "failedJobsHistoryLimit", json!(1));
        let jt = ensure_object(spec.entry("jobTemplate").or_insert(Value::Null));
        default_template_metadata(jt);
        let job_spec = ensure_object(jt.entry("spec").or_insert(Value::Null));
        podspec::default_pod_template(job_spec.entry("template").or_insert(Value::Null));
    }

    /// `validateCronJobSpec`.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();
        let schedule = str_at(spec, "schedule");
        if schedule.is_empty() {
            causes.push(Cause::required("spec.schedule"));
        } else {
            if let Err(e) = parse_schedule(schedule) {
                causes.push(Cause::invalid("spec.schedule", &json!(schedule), e));
            }
            if schedule.contains("TZ") {
                causes.push(Cause::invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
        nonnegative(spec, "startingDeadlineSeconds", "spec", &mut causes);
        if let Some(tz) = spec.get("timeZone").filter(|t| !t.is_null()) {
            validate_time_zone(tz.as_str().unwrap_or(""), &mut causes);
        }
        let cp = str_at(spec, "concurrencyPolicy");
        if cp.is_empty() {
            causes.push(Cause::required("spec.concurrencyPolicy"));
        } else if !["Allow", "Forbid", "Replace"].contains(&cp) {
            causes.push(Cause::not_supported(
                "spec.concurrencyPolicy",
                &json!(cp),
                &["Allow", "Forbid", "Replace"],
            ));
        }
        let job_spec = spec
            .get("jobTemplate")
            .and_then(|t| t.get("spec"))
            .unwrap_or(&null);
        validate_job_spec(job_spec, "spec.jobTemplate.spec", &mut causes);
        if let Some(sel) = job_spec.get("selector").filter(|s| !s.is_null()) {
            causes.push(invalid_shown(
                "spec.jobTemplate.spec.selector",
                &go_label_selector(Some(sel)),
                "`selector` will be auto-generated",
            ));
        }
        if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
            causes.push(Cause::not_supported(
                "spec.jobTemplate.spec.manualSelector",
                &json!(true),
                &["nil", "false"],
            ));
        }
        nonnegative(spec, "successfulJobsHistoryLimit", "spec", &mut causes);
        nonnegative(spec, "failedJobsHistoryLimit", "spec", &mut causes);
        causes
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            Column::new("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
            Column::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            Column::new("Active", "integer", "A list of pointers to currently running jobs."),
            Column::new("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
        ]);
        cols.extend(podspec::wide_columns("A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let last = match status.get("lastScheduleTime").and_then(Value::as_str) {
            Some(t) => age_of(t),
            None => "<none>".to_string(),
        };
        let tz = spec
            .get("timeZone")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        let suspend = match spec.get("suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let mut row = name_age_row(
            obj,
            vec![
                json!(str_at(spec, "schedule")),
                json!(tz),
                json!(suspend),
                json!(items(status, "active").len()),
                json!(last),
            ],
        );
        let job_spec = spec.get("jobTemplate").and_then(|t| t.get("spec"));
        let (names, images) = container_cells(
            job_spec
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("spec")),
        );
        row.extend([
            names,
            images,
            json!(format_label_selector(
                job_spec.and_then(|s| s.get("selector"))
            )),
        ]);
        row
    }
}

/// `validateTimeZone`, without a time zone database: the name's shape is checked
/// (IANA naming rules) and `Local` refused.
fn validate_time_zone(tz: &str, causes: &mut Vec<Cause>) {
    let path = "spec.timeZone";
    if tz.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(tz),
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 14
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !tz.split('/').all(part_ok) {
        causes.push(Cause::invalid(
            path,
            &json!(tz),
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("local") {
        causes.push(Cause::invalid(
            path,
            &json!(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
}

// ------------------------------------------------------------------ cron schedules

/// `cron.ParseStandard`: `Ok` when Kubernetes accepts the schedule, else the error text.
pub fn parse_schedule(spec: &str) -> Result<(), String> {
    keelson_apimachinery::cron::parse(spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob() -> Value {
        json!({"metadata": {"name": "hello", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"schedule": "*/5 * * * *",
                        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                            "containers": [{"name": "hello", "image": "busybox:1.36"}]}}}}}})
    }

    #[test]
    fn defaults() {
        let mut c = cronjob();
        RESOURCE.strategy.prepare_for_create(&mut c);
        RESOURCE.strategy.default(&mut c);
        let s = &c["spec"];
        assert_eq!(s["concurrencyPolicy"], "Allow");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["successfulJobsHistoryLimit"], 3);
        assert_eq!(s["failedJobsHistoryLimit"], 1);
        assert!(s["jobTemplate"]["metadata"]
            .as_object()
            .unwrap()
            .contains_key("creationTimestamp"));
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert_eq!(
            s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(
            RESOURCE.strategy.validate(&c).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&c)
        );
    }

    #[test]
    fn schedules() {
        for ok in [
            "* * * * *",
            "0 */2 1-15 jan-jun mon,wed",
            "@hourly",
            "@every 1h30m",
            "5 4 * * sun",
            "0 0 ? * *",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_schedule("* * * *").unwrap_err(),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            parse_schedule("60 * * * *").unwrap_err(),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            parse_schedule("* * 0 * *").unwrap_err(),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            parse_schedule("* * * * 7").unwrap_err(),
            "end of range (7) above maximum (6): 7"
        );
        assert_eq!(
            parse_schedule("x * * * *").unwrap_err(),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_schedule("@fortnightly").unwrap_err(),
            "unrecognized descriptor: @fortnightly"
        );
        assert_eq!(
            parse_schedule("@every 1d").unwrap_err(),
            "failed to parse duration @every 1d: time: unknown unit \"d\" in duration \"1d\""
        );
    }

    #[test]
    fn validation() {
        let mut c = cronjob();
        c["spec"]["schedule"] = json!("61 * * * *");
        c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        c["spec"]["timeZone"] = json!("Local");
        RESOURCE.strategy.default(&mut c);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&c)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61".to_string(),
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".to_string(),
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string(),
            ]
        );
        assert_eq!(
            RESOURCE.strategy.validate_name(&"a".repeat(53)),
            vec!["must be no more than 52 characters"]
        );
    }

    #[test]
    fn table_row() {
        let mut c = cronjob();
        RESOURCE.strategy.default(&mut c);
        c["status"] = json!({"active": [{"name": "hello-1"}]});
        let row = RESOURCE.strategy.row(&c);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(
            &row[1..6],
            &[
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("<none>")
            ]
        );
        assert_eq!(
            &row[7..],
            &[json!("hello"), json!("busybox:1.36"), json!("<none>")]
        );
    }
}
