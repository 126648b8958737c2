//! One file per controller. Each exposes `run(ctx)`, which wires its informers and
//! event handlers to a queue and runs the queue's workers until dropped.

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::Context;

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod service_lb;
pub mod serviceaccount;
pub mod serviceaccount_token;
pub mod statefulset;
pub mod ttlafterfinished;

type Start = fn(Context) -> BoxFuture<'static, ()>;

/// Every controller by its `--controllers` name.
pub const ALL: &[(&str, Start)] = &[
    ("clusterrole-aggregation", |ctx| {
        clusterrole_aggregation::run(ctx).boxed()
    }),
    ("cronjob", |ctx| cronjob::run(ctx).boxed()),
    ("csrapproving", |ctx| csrapproving::run(ctx).boxed()),
    ("csrsigning", |ctx| csrsigning::run(ctx).boxed()),
    ("daemonset", |ctx| daemonset::run(ctx).boxed()),
    ("deployment", |ctx| deployment::run(ctx).boxed()),
    ("disruption", |ctx| disruption::run(ctx).boxed()),
    ("endpoints", |ctx| endpoints::run(ctx).boxed()),
    ("endpointslice", |ctx| endpointslice::run(ctx).boxed()),
    ("endpointslicemirroring", |ctx| {
        endpointslicemirroring::run(ctx).boxed()
    }),
    ("garbagecollector", |ctx| garbagecollector::run(ctx).boxed()),
    ("job", |ctx| job::run(ctx).boxed()),
    ("nodeipam", |ctx| nodeipam::run(ctx).boxed()),
    ("nodelifecycle", |ctx| nodelifecycle::run(ctx).boxed()),
    ("replicaset", |ctx| replicaset::run_replicasets(ctx).boxed()),
    ("replicationcontroller", |ctx| {
        replicaset::run_replication_controllers(ctx).boxed()
    }),
    ("resourcequota", |ctx| resourcequota::run(ctx).boxed()),
    ("root-ca-cert-publisher", |ctx| {
        rootcacertpublisher::run(ctx).boxed()
    }),
    ("service-lb", |ctx| service_lb::run(ctx).boxed()),
    ("statefulset", |ctx| statefulset::run(ctx).boxed()),
    ("ttlafterfinished", |ctx| ttlafterfinished::run(ctx).boxed()),
    ("namespace", |ctx| namespace::run(ctx).boxed()),
    ("podgc", |ctx| podgc::run(ctx).boxed()),
    ("serviceaccount", |ctx| serviceaccount::run(ctx).boxed()),
    ("serviceaccount-token", |ctx| {
        serviceaccount_token::run(ctx).boxed()
    }),
];
