//! Events about pods, with repeats folded into one Event whose `count` grows (as
//! client-go's event correlator does for identical events).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Event;

use crate::api;
use crate::podinfo::PodInfo;

/// What to write for an event.
pub enum EventWrite {
    Create {
        key: EventKey,
        event: Box<Event>,
    },
    Repeat {
        ns: String,
        name: String,
        count: i32,
    },
}

/// Pod uid, reason, message.
pub type EventKey = (String, String, String);

struct Recent {
    reason: String,
    message: String,
    /// The Event's name once created.
    name: Option<String>,
    namespace: String,
    count: i32,
}

/// Keeps the last Events per pod (by reason and message).
pub struct Recorder {
    component: String,
    /// Pod uid -> its recent events.
    recent: HashMap<String, Vec<Recent>>,
}

/// Forget everything past this many pods with events (a bound, not a policy).
const MAX_REMEMBERED: usize = 10_000;

impl Recorder {
    pub fn new(component: &str) -> Recorder {
        Recorder {
            component: component.to_string(),
            recent: HashMap::new(),
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
        if !self.recent.contains_key(&pod.uid) && self.recent.len() >= MAX_REMEMBERED {
            self.recent.clear();
        }
        let events = self.recent.entry(pod.uid.clone()).or_default();
        if let Some(r) = events
            .iter_mut()
            .find(|r| r.reason == reason && r.message == message)
        {
            r.count += 1;
            return r.name.as_ref().map(|name| EventWrite::Repeat {
                ns: r.namespace.clone(),
                name: name.clone(),
                count: r.count,
            });
        }
        events.push(Recent {
            reason: reason.to_string(),
            message: message.to_string(),
            name: None,
            namespace: pod.namespace.clone(),
            count: 1,
        });
        let event = api::pod_event(pod, kind, reason, message, &self.component);
        Some(EventWrite::Create {
            key: (pod.uid.clone(), reason.to_string(), message.to_string()),
            event: Box::new(event),
        })
    }

    /// The Event for `key` was created as `name` (or failed: `None`, so the next one
    /// is created afresh).
    pub fn created(&mut self, key: EventKey, name: Option<String>) {
        let (uid, reason, message) = key;
        let Some(events) = self.recent.get_mut(&uid) else {
            return;
        };
        let i = events
            .iter()
            .position(|r| r.reason == reason && r.message == message);
        match (i, name) {
            (Some(i), Some(n)) => events[i].name = Some(n),
            (Some(i), None) => {
                events.remove(i);
            }
            (None, _) => {}
        }
    }

    /// The pod is gone or scheduled: its events are history.
    pub fn forget_pod(&mut self, uid: &str) {
        self.recent.remove(uid);
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
        assert!(r.recent.is_empty());
    }
}
