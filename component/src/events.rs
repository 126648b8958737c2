//! Recording core/v1 Events about objects, as client-go's EventRecorder does, with
//! repeats folded into one Event whose `count` and `lastTimestamp` move (the
//! [`Correlator`], client-go's EventLogger): a controller retrying every few seconds
//! leaves one Event, not thousands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use keelson_client::{Api, Client, Patch, PatchParams, PostParams};
use serde_json::json;

/// Which Event an occurrence belongs to: the involved object (its uid, or its
/// namespace/name when it has none), the event type, reason and message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub object: String,
    pub kind: String,
    pub reason: String,
    pub message: String,
}

/// What to write for one occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Fold {
    /// The first of its kind: create an Event, then report its name with
    /// [`Correlator::created`].
    Create,
    /// Seen before: set the existing Event's `count` (and `lastTimestamp`).
    Repeat {
        namespace: String,
        name: String,
        count: i32,
    },
    /// Seen before, and the first one's create has not finished: counted, written
    /// with the next repeat.
    Pending,
}

struct Recent {
    namespace: String,
    /// The Event's name once created.
    name: Option<String>,
    count: i32,
}

/// An event's type, reason and message: what tells one object's Events apart.
type Occurrence = (String, String, String);

fn occurrence(key: &EventKey) -> Occurrence {
    (key.kind.clone(), key.reason.clone(), key.message.clone())
}

/// Remembers recent Events per involved object, so that forgetting an object is cheap
/// (the scheduler does it for every pod it binds). Bounded: past this many objects, or
/// this many distinct Events about one object (a ReplicaSet's "Created pod: ..."), it
/// starts that part afresh, which at worst writes a new Event instead of a count.
#[derive(Default)]
pub struct Correlator {
    recent: HashMap<String, HashMap<Occurrence, Recent>>,
}

/// client-go's event cache size.
const MAX_OBJECTS: usize = 4096;
const MAX_PER_OBJECT: usize = 256;

impl Correlator {
    /// One occurrence of `key` (an Event in `namespace`).
    pub fn observe(&mut self, key: &EventKey, namespace: &str) -> Fold {
        if !self.recent.contains_key(&key.object) && self.recent.len() >= MAX_OBJECTS {
            self.recent.clear();
        }
        let events = self.recent.entry(key.object.clone()).or_default();
        let occurrence = occurrence(key);
        if let Some(r) = events.get_mut(&occurrence) {
            r.count += 1;
            return match &r.name {
                Some(name) => Fold::Repeat {
                    namespace: r.namespace.clone(),
                    name: name.clone(),
                    count: r.count,
                },
                None => Fold::Pending,
            };
        }
        if events.len() >= MAX_PER_OBJECT {
            events.clear();
        }
        events.insert(
            occurrence,
            Recent {
                namespace: namespace.to_string(),
                name: None,
                count: 1,
            },
        );
        Fold::Create
    }

    /// The Event for `key` was created as `name`, or its create failed (`None`: the
    /// next occurrence creates one afresh).
    pub fn created(&mut self, key: &EventKey, name: Option<String>) {
        match name {
            Some(n) => {
                let events = self.recent.get_mut(&key.object);
                if let Some(r) = events.and_then(|e| e.get_mut(&occurrence(key))) {
                    r.name = Some(n);
                }
            }
            None => self.forget(key),
        }
    }

    /// The Event for `key` is gone (a repeat found it deleted or expired).
    pub fn forget(&mut self, key: &EventKey) {
        if let Some(events) = self.recent.get_mut(&key.object) {
            events.remove(&occurrence(key));
        }
    }

    /// Forget every Event about `object` (it was deleted, or its story is over).
    pub fn forget_object(&mut self, object: &str) {
        self.recent.remove(object);
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// The merge patch that records a repeat.
pub fn repeat_patch(count: i32) -> Patch<serde_json::Value> {
    let now = jiff::Timestamp::now();
    Patch::Merge(json!({"count": count, "lastTimestamp": Time(now)}))
}

/// Writes Events on behalf of one component (`source.component`, `reportingComponent`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    correlator: Arc<Mutex<Correlator>>,
}

/// `Normal` or `Warning`, as Kubernetes spells the event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            correlator: Arc::default(),
        }
    }

    /// Record an event about `object` (its kind, apiVersion, namespace, name, uid and
    /// resourceVersion): a new Event, or a higher count on the same one. Failures are
    /// logged, never returned: events are best effort.
    pub async fn record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let namespace = object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let key = EventKey {
            object: object.uid.clone().unwrap_or_else(|| {
                format!("{namespace}/{}", object.name.as_deref().unwrap_or_default())
            }),
            kind: format!("{kind:?}"),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let fold = self.correlator().observe(&key, &namespace);
        match fold {
            Fold::Pending => {}
            Fold::Repeat {
                namespace,
                name,
                count,
            } => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let patch = repeat_patch(count);
                if let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
                    tracing::debug!(error = %e, reason, "updating an event failed");
                    if e.is_not_found() {
                        // Expired (--event-ttl) or deleted: the next one starts afresh.
                        self.correlator().forget(&key);
                    }
                }
            }
            Fold::Create => {
                let event = self.new_event(object, &namespace, kind, reason, message);
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let name = match api.create(&PostParams::default(), &event).await {
                    Ok(created) => created.metadata.name,
                    Err(e) => {
                        tracing::debug!(error = %e, reason, "recording an event failed");
                        None
                    }
                };
                self.correlator().created(&key, name);
            }
        }
    }

    fn correlator(&self) -> std::sync::MutexGuard<'_, Correlator> {
        self.correlator.lock().expect("event correlator")
    }

    fn new_event(
        &self,
        object: &ObjectReference,
        namespace: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Event {
        let now = jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("unknown"),
            now.as_nanosecond()
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(format!("{kind:?}")),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some(reason.to_string()),
            count: Some(1),
            ..Default::default()
        }
    }
}

/// An ObjectReference to a typed object, for [`Recorder::record`].
pub fn reference<K>(obj: &K) -> ObjectReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let meta = obj.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(object: &str, message: &str) -> EventKey {
        EventKey {
            object: object.into(),
            kind: "Warning".into(),
            reason: "FailedCreate".into(),
            message: message.into(),
        }
    }

    #[test]
    fn repeats_fold_into_one_event_with_a_count() {
        let mut c = Correlator::default();
        let k = key("uid-1", "quota exceeded");
        assert_eq!(c.observe(&k, "ns"), Fold::Create);
        assert_eq!(c.observe(&k, "ns"), Fold::Pending, "create still in flight");
        c.created(&k, Some("web.1".into()));
        assert_eq!(
            c.observe(&k, "ns"),
            Fold::Repeat {
                namespace: "ns".into(),
                name: "web.1".into(),
                count: 3
            }
        );
        // Another message or object is another Event.
        assert_eq!(c.observe(&key("uid-1", "other"), "ns"), Fold::Create);
        assert_eq!(
            c.observe(&key("uid-2", "quota exceeded"), "ns"),
            Fold::Create
        );
        // A failed create, or a vanished Event, starts afresh.
        c.created(&key("uid-2", "quota exceeded"), None);
        assert_eq!(
            c.observe(&key("uid-2", "quota exceeded"), "ns"),
            Fold::Create
        );
        c.forget(&k);
        assert_eq!(c.observe(&k, "ns"), Fold::Create);
        c.forget_object("uid-1");
        c.forget_object("uid-2");
        assert!(c.is_empty());
    }
}
