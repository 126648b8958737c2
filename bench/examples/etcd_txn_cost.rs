//! What a create costs etcd itself, without the apiserver: plain puts (the benchmark's
//! baseline) against the create-if-absent transaction every apiserver create must be
//! (compare mod_revision == 0, then put), with and without a prefix watch asking for
//! previous values as the apiserver's watch cache does. Prints rate and etcd CPU per op.
//!
//! `cargo build --release --workspace --bins --examples && ./target/release/examples/etcd_txn_cost`
//! (`KEELSON_ETCD_ARGS="--backend-batch-interval=10ms"` passes flags to etcd.)

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};
use keelson_testkit::Cluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const OPS: usize = 20_000;
const CONCURRENCY: usize = 64;

#[derive(Clone, Copy)]
enum Variant {
    Put,
    CreateTxn,
    CreateTxnWatched,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Put => "put",
            Variant::CreateTxn => "create txn",
            Variant::CreateTxnWatched => "create txn + prefix watch (prev_kv)",
        }
    }
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn run(client: &Client, etcd_pid: u32, variant: Variant, round: usize) -> anyhow::Result<()> {
    let prefix = format!("/txn-cost/{round}/");
    let watch = if matches!(variant, Variant::CreateTxnWatched) {
        let opts = WatchOptions::new().with_prefix().with_prev_key();
        let mut stream = client
            .watch_client()
            .watch(prefix.clone(), Some(opts))
            .await?;
        Some(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
        }))
    } else {
        None
    };
    let value = vec![b'x'; 1_300];
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_secs(etcd_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (mut kv, next, prefix, value) = (
            client.kv_client(),
            next.clone(),
            prefix.clone(),
            value.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= OPS {
                    return anyhow::Ok(());
                }
                let key = format!("{prefix}{i:06}");
                match variant {
                    Variant::Put => {
                        kv.put(key, value.clone(), None).await?;
                    }
                    Variant::CreateTxn | Variant::CreateTxnWatched => {
                        let txn = Txn::new()
                            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                        kv.txn(txn).await?;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = OPS as f64 / started.elapsed().as_secs_f64();
    let cpu_us = (cpu_secs(etcd_pid) - cpu0) * 1e6 / OPS as f64;
    println!("| {} | {rate:.0} | {cpu_us:.0} us |", variant.name());
    if let Some(w) = watch {
        w.abort();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let url = cluster.etcd.url.trim_start_matches("http://").to_string();
    let client = Client::connect([url], None).await?;
    println!("| etcd operation ({OPS} ops, concurrency {CONCURRENCY}) | ops/s | etcd CPU per op |");
    println!("| --- | --- | --- |");
    let order = [Variant::Put, Variant::CreateTxn, Variant::CreateTxnWatched];
    // Two rounds, interleaved, so drift on a noisy machine shows up as disagreement.
    for round in 0..2 {
        for (i, v) in order.iter().enumerate() {
            run(
                &client,
                cluster.etcd.proc_.pid(),
                *v,
                round * order.len() + i,
            )
            .await?;
        }
    }
    Ok(())
}
