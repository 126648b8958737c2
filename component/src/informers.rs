//! One shared informer per resource type for the whole process, as client-go's
//! SharedInformerFactory: the ReplicaSet, Job, endpoints and garbage-collector
//! controllers all read the same Pod cache from the same watch.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keelson_client::runtime::{watcher, SharedInformer};
use keelson_client::{Api, Client, KubeObject};

/// Hands out one [`SharedInformer`] per type, cluster-wide. Cheap to clone. Informers
/// live as long as any clone of the factory.
#[derive(Clone)]
pub struct Informers {
    client: Client,
    by_type: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Informers {
    pub fn new(client: Client) -> Self {
        Informers {
            client,
            by_type: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer for `K` across all namespaces, started on first use.
    pub fn get<K>(&self) -> Arc<SharedInformer<K>>
    where
        K: KubeObject + k8s_openapi::Resource,
    {
        let mut map = self.by_type.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(TypeId::of::<K>()).or_insert_with(|| {
            let api: Api<K> = Api::all(self.client.clone());
            Arc::new(SharedInformer::new(api, watcher::Config::default()))
        });
        entry
            .clone()
            .downcast::<SharedInformer<K>>()
            .expect("one informer type per TypeId")
    }

    /// Wait until every informer handed out so far has listed once.
    pub async fn wait_for_sync<K>(&self)
    where
        K: KubeObject + k8s_openapi::Resource,
    {
        self.get::<K>().wait_for_sync().await
    }
}
