//! The dispatcher's configuration, built from the FlowSchema and
//! PriorityLevelConfiguration objects kept in memory (`authz::follow`), plus the
//! mandatory objects when they are missing (as Kubernetes imagines them). Each change
//! rebuilds the schema list and keeps a level's queues unless its spec or seats changed.
//! Schemas naming a missing level are skipped, and get `Dangling` in their status.

use super::classify::{self, Schema};
use super::queueset::{QueueConfig, QueueSet};
use crate::authz::follow::Sink;
use crate::registry::{Registry, UserInfo, WriteOptions};
use keelson_resources::kinds::flowschemas;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

pub const SCHEMA_PREFIX: &str = "/registry/flowcontrol.apiserver.k8s.io/flowschemas/";
pub const LEVEL_PREFIX: &str =
    "/registry/flowcontrol.apiserver.k8s.io/prioritylevelconfigurations/";

/// One priority level as the dispatcher uses it.
pub struct Level {
    pub name: String,
    pub uid: String,
    /// `None` for Exempt levels: never limited.
    pub queues: Option<Arc<QueueSet>>,
    spec: Value,
}

/// What the dispatcher classifies against: schemas in matching order, levels by name.
pub struct Config {
    pub schemas: Vec<Schema>,
    pub levels: HashMap<String, Arc<Level>>,
    /// The schema used when none matches (the mandatory `catch-all`).
    pub catch_all: Schema,
}

impl Config {
    pub fn classify(&self, a: &crate::authz::Attributes) -> (&Schema, &Arc<Level>) {
        let schema = classify::classify(&self.schemas, a).unwrap_or(&self.catch_all);
        let level = self
            .levels
            .get(&schema.level)
            .or_else(|| self.levels.get(&self.catch_all.level))
            .expect("the catch-all level always exists");
        (schema, level)
    }
}

/// `ceil(server * shares / sum of shares)`, at least one seat (borrowing, which lets a
/// level with no shares of its own run, is not implemented).
fn seats(server: usize, shares: i64, total: i64) -> usize {
    if total <= 0 {
        return server.max(1);
    }
    let n = (server as f64 * shares.max(0) as f64 / total as f64).ceil() as usize;
    n.max(1)
}

fn shares(obj: &Value) -> i64 {
    obj.pointer("/spec/limited/nominalConcurrencyShares")
        .or_else(|| obj.pointer("/spec/exempt/nominalConcurrencyShares"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn queue_config(obj: &Value, concurrency: usize) -> QueueConfig {
    let q = obj.pointer("/spec/limited/limitResponse/queuing");
    let queued = obj.pointer("/spec/limited/limitResponse/type") == Some(&json!("Queue"));
    let field = |k: &str| {
        q.and_then(|q| q.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize
    };
    if !queued {
        return QueueConfig {
            concurrency,
            queues: 0,
            hand_size: 0,
            queue_length_limit: 0,
        };
    }
    QueueConfig {
        concurrency,
        queues: field("queues").max(1),
        hand_size: field("handSize").max(1),
        queue_length_limit: field("queueLengthLimit").max(1),
    }
}

/// Build the configuration from the objects, reusing `old`'s levels that did not change.
pub fn build(server: usize, objects: &[Arc<Value>], old: Option<&Config>) -> Config {
    let name = |o: &Value| o["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut levels: BTreeMap<String, Value> = BTreeMap::new();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    for o in objects {
        match o["kind"].as_str() {
            Some("PriorityLevelConfiguration") => {
                levels.insert(name(o), (**o).clone());
            }
            Some("FlowSchema") => {
                schemas.insert(name(o), (**o).clone());
            }
            _ => {}
        }
    }
    // The mandatory objects always exist for the dispatcher.
    for o in super::defaults::mandatory_levels() {
        levels.entry(name(&o)).or_insert(o);
    }
    for o in super::defaults::mandatory_schemas() {
        schemas.entry(name(&o)).or_insert(o);
    }
    let total: i64 = levels.values().map(shares).sum();
    let mut built = HashMap::new();
    for (n, obj) in &levels {
        let exempt = obj.pointer("/spec/type") == Some(&json!("Exempt"));
        let concurrency = seats(server, shares(obj), total);
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let config = queue_config(obj, concurrency);
        let reuse = old.and_then(|c| c.levels.get(n)).filter(|l| {
            l.uid == uid
                && l.spec == obj["spec"]
                && l.queues.as_ref().map(|q| q.config) == (!exempt).then_some(config)
        });
        let level = match reuse {
            Some(l) => l.clone(),
            None => Arc::new(Level {
                name: n.clone(),
                uid,
                queues: (!exempt).then(|| QueueSet::new(config)),
                spec: obj["spec"].clone(),
            }),
        };
        if let Some(q) = &level.queues {
            super::metrics::METRICS
                .nominal_limit
                .get_or_create(&super::metrics::LevelLabels {
                    priority_level: n.clone(),
                })
                .set(q.config.concurrency as i64);
        }
        built.insert(n.clone(), level);
    }
    let mut list: Vec<Schema> = schemas
        .values()
        .map(Schema::from_object)
        .filter(|s| built.contains_key(&s.level))
        .collect();
    classify::sort(&mut list);
    let catch_all = list
        .iter()
        .find(|s| s.name == "catch-all")
        .cloned()
        .unwrap_or_else(|| Schema::from_object(&super::defaults::mandatory_schemas()[1]));
    Config {
        schemas: list,
        levels: built,
        catch_all,
    }
}

/// The `Dangling` condition a schema should carry, if its status lacks it.
pub fn dangling_update(schema: &Value, levels: &[String]) -> Option<Value> {
    let level = schema
        .pointer("/spec/priorityLevelConfiguration/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let missing = !levels.iter().any(|l| l == level);
    let (status, reason, message) = if missing {
        (
            "True",
            "NotFound",
            format!("This FlowSchema references the PriorityLevelConfiguration object named {level:?} but there is no such object"),
        )
    } else {
        (
            "False",
            "Found",
            format!("This FlowSchema references the PriorityLevelConfiguration object named {level:?} and it exists"),
        )
    };
    let conditions = schema
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c["type"] == "Dangling");
    if current.is_some_and(|c| c["status"] == status && c["message"] == json!(message)) {
        return None;
    }
    let mut kept: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "Dangling")
        .collect();
    kept.push(json!({
        "type": "Dangling",
        "status": status,
        "lastTransitionTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "reason": reason,
        "message": message,
    }));
    let mut out = schema.clone();
    out["status"] = json!({"conditions": kept});
    Some(out)
}

/// Keeps the objects and the configuration built from them.
pub struct ConfigSink {
    server: usize,
    objects: Mutex<BTreeMap<String, Arc<Value>>>,
    pub current: RwLock<Arc<Config>>,
    /// Writes schemas' `Dangling` conditions; `None` in tests.
    registry: Option<Registry>,
    /// Schemas whose condition is being written: one write at a time each.
    writing: Arc<Mutex<HashSet<String>>>,
}

impl ConfigSink {
    pub fn new(server: usize, registry: Option<Registry>) -> ConfigSink {
        let initial: Vec<Arc<Value>> = super::defaults::all()
            .into_iter()
            .map(|(_, o, _)| Arc::new(o))
            .collect();
        ConfigSink {
            server,
            objects: Mutex::new(BTreeMap::new()),
            current: RwLock::new(Arc::new(build(server, &initial, None))),
            registry,
            writing: Arc::default(),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.current.read().expect("config").clone()
    }

    fn rebuild(&self) {
        let objects: Vec<Arc<Value>> = self
            .objects
            .lock()
            .expect("objects")
            .values()
            .cloned()
            .collect();
        let old = self.config();
        let config = build(self.server, &objects, Some(&old));
        *self.current.write().expect("config") = Arc::new(config);
        let Some(registry) = &self.registry else {
            return;
        };
        let levels: Vec<String> = objects
            .iter()
            .filter(|o| o["kind"] == "PriorityLevelConfiguration")
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect();
        for o in objects.iter().filter(|o| o["kind"] == "FlowSchema") {
            if let Some(updated) = dangling_update(o, &levels) {
                let name = updated["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !self.writing.lock().expect("writing").insert(name.clone()) {
                    continue;
                }
                let (registry, writing) = (registry.clone(), self.writing.clone());
                tokio::spawn(async move {
                    let opts = WriteOptions {
                        field_manager: "api-priority-and-fairness-config-consumer-v1".into(),
                        user: UserInfo::apiserver(),
                        ..Default::default()
                    };
                    // A conflict means the schema changed: its new version comes by here too.
                    if let Err(e) = registry
                        .update(&flowschemas::RESOURCE, "", &name, "status", updated, &opts)
                        .await
                    {
                        tracing::debug!(%name, error = %e, "writing a FlowSchema's Dangling condition");
                    }
                    writing.lock().expect("writing").remove(&name);
                });
            }
        }
    }
}

impl Sink for ConfigSink {
    fn prefixes(&self) -> &'static [&'static str] {
        &[SCHEMA_PREFIX, LEVEL_PREFIX]
    }

    fn reset(&self, objects: Vec<(String, Arc<Value>)>) {
        *self.objects.lock().expect("objects") = objects.into_iter().collect();
        self.rebuild();
    }

    fn apply(&self, key: &str, object: Option<&Arc<Value>>) {
        {
            let mut objects = self.objects.lock().expect("objects");
            match object {
                Some(o) => objects.insert(key.to_string(), o.clone()),
                None => objects.remove(key),
            };
        }
        self.rebuild();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels_share_the_server_concurrency() {
        let objects: Vec<Arc<Value>> = super::super::defaults::all()
            .into_iter()
            .map(|(_, o, _)| Arc::new(o))
            .collect();
        let config = build(600, &objects, None);
        let seats = |n: &str| {
            config.levels[n]
                .queues
                .as_ref()
                .map(|q| q.config.concurrency)
        };
        // 600 seats over 245 shares, as kube-apiserver's defaults (400 + 200).
        assert_eq!(seats("exempt"), None);
        assert_eq!(seats("catch-all"), Some(13));
        assert_eq!(seats("system"), Some(74));
        assert_eq!(seats("node-high"), Some(98));
        assert_eq!(seats("leader-election"), Some(25));
        assert_eq!(seats("workload-high"), Some(98));
        assert_eq!(seats("workload-low"), Some(245));
        assert_eq!(seats("global-default"), Some(49));
        assert_eq!(
            config.levels["catch-all"]
                .queues
                .as_ref()
                .unwrap()
                .config
                .queues,
            0
        );
        assert_eq!(config.schemas.first().unwrap().name, "exempt");
        assert_eq!(config.schemas.last().unwrap().name, "catch-all");
        // Unchanged levels keep their queues across a rebuild.
        let again = build(600, &objects, Some(&config));
        assert!(Arc::ptr_eq(
            &config.levels["system"],
            &again.levels["system"]
        ));
    }

    #[test]
    fn missing_levels_dangle_and_mandatory_ones_are_imagined() {
        let mut orphan = super::super::defaults::suggested_schemas().remove(0);
        orphan["spec"]["priorityLevelConfiguration"]["name"] = json!("nowhere");
        let config = build(10, &[Arc::new(orphan.clone())], None);
        assert!(config
            .schemas
            .iter()
            .all(|s| s.name != orphan["metadata"]["name"]));
        assert!(config.levels.contains_key("exempt") && config.levels.contains_key("catch-all"));
        let updated = dangling_update(&orphan, &["exempt".into()]).expect("condition");
        assert_eq!(updated["status"]["conditions"][0]["status"], "True");
        assert_eq!(updated["status"]["conditions"][0]["reason"], "NotFound");
        assert!(dangling_update(&updated, &["exempt".into()]).is_none());
    }
}
