//! Events about pods, with repeats folded into one Event whose `count` grows (the
//! shared [`Correlator`]); the writes themselves run as the scheduler's tasks.

use k8s_openapi::api::core::v1::Event;
use keelson_component::events::{Correlator, Fold};

pub use keelson_component::events::EventKey;

use crate::api;
use crate::podinfo::PodInfo;

/// What to write for an event.
pub enum EventWrite {
    Create {
        key: EventKey,
        event: Box<Event>,
    },
    Repeat {
        key: EventKey,
        ns: String,
        name: String,
        count: i32,
    },
}

/// The scheduler's events about pods.
pub struct Recorder {
    component: String,
    correlator: Correlator,
}

impl Recorder {
    pub fn new(component: &str) -> Recorder {
        Recorder {
            component: component.to_string(),
            correlator: Correlator::default(),
        }
    }

    /// A Warning or Normal event about `pod`; what to write, if anything yet.
    pub fn record(
        &mut self,
        pod: &PodInfo,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> Option<EventWrite> {
        let key = EventKey {
            object: pod.uid.clone(),
            kind: kind.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        match self.correlator.observe(&key, &pod.namespace) {
            Fold::Create => Some(EventWrite::Create {
                event: Box::new(api::pod_event(pod, kind, reason, message, &self.component)),
                key,
            }),
            Fold::Repeat {
                namespace,
                name,
                count,
            } => Some(EventWrite::Repeat {
                key,
                ns: namespace,
                name,
                count,
            }),
            Fold::Pending => None,
        }
    }

    /// The Event for `key` was created as `name` (or failed: `None`, so the next one
    /// is created afresh).
    pub fn created(&mut self, key: EventKey, name: Option<String>) {
        self.correlator.created(&key, name);
    }

    /// A repeat found the Event for `key` gone (expired or deleted).
    pub fn gone(&mut self, key: EventKey) {
        self.correlator.forget(&key);
    }

    /// The pod is gone or scheduled: its events are history.
    pub fn forget_pod(&mut self, uid: &str) {
        self.correlator.forget_object(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::testing::pod;
    use serde_json::json;

    #[test]
    fn repeats_fold_into_counts() {
        let mut r = Recorder::new("default-scheduler");
        let p = pod(json!({"metadata": {"name": "web"}}));
        let Some(EventWrite::Create { key, event }) =
            r.record(&p, "Warning", "FailedScheduling", "m")
        else {
            panic!("create first");
        };
        assert_eq!(event.reason.as_deref(), Some("FailedScheduling"));
        assert_eq!(
            event.source.as_ref().unwrap().component.as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(event.involved_object.name.as_deref(), Some("web"));
        assert!(
            r.record(&p, "Warning", "FailedScheduling", "m").is_none(),
            "create in flight"
        );
        r.created(key, Some("web.1".into()));
        match r.record(&p, "Warning", "FailedScheduling", "m") {
            Some(EventWrite::Repeat { name, count, .. }) => {
                assert_eq!((name.as_str(), count), ("web.1", 3))
            }
            _ => panic!("repeat"),
        }
        assert!(matches!(
            r.record(&p, "Warning", "FailedScheduling", "other"),
            Some(EventWrite::Create { .. })
        ));
        r.forget_pod(&p.uid);
        assert!(r.correlator.is_empty());
    }
}
