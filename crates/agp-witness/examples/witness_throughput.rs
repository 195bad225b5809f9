//! Measures the witness over loopback HTTP: sequential add-checkpoint requests (each growing
//! the log, each with a consistency proof, each persisted with fsync + rename) on one
//! keep-alive connection. `cargo run --release -p agp-witness --example witness_throughput [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use agp_journal::checkpoint::Checkpoint;
use agp_journal::cosig::WitnessSigner;
use agp_journal::merkle::leaf_hash;
use agp_journal::note::SignerKey;
use agp_witness::request::build;
use agp_witness::state::FileStore;
use agp_witness::tree::Tree;
use agp_witness::Witness;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let log = SignerKey::generate("bench/log").unwrap();
    let witness = Arc::new(Witness::new(
        WitnessSigner::generate("bench/witness").unwrap(),
        std::slice::from_ref(log.verifier()),
        Box::new(FileStore::open(dir.path()).unwrap()),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/add-checkpoint", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let tcp = tokio::net::TcpListener::from_std(listener).unwrap();
        agp_witness::server::serve(tcp, witness).await;
    });
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    // A log of 100,000 entries that grows by 10 per checkpoint.
    let mut tree = Tree::default();
    for i in 0..100_000u64 {
        tree.push(leaf_hash(&i.to_be_bytes()));
    }
    let mut old = 0;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for c in 0..n {
        for j in 0..10u64 {
            tree.push(leaf_hash(&(1_000_000 + c as u64 * 10 + j).to_be_bytes()));
        }
        let size = tree.size();
        let note = Checkpoint {
            origin: "bench/log".into(),
            size,
            root: tree.root(size),
        }
        .sign(&log)
        .unwrap();
        let body = build(old, &tree.consistency(old, size), note.as_bytes());
        let t = Instant::now();
        let r = agent.post(&url).send(&body[..]).unwrap();
        assert_eq!(r.status().as_u16(), 200);
        lat.push(t.elapsed());
        old = size;
    }
    let total = start.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{n} add-checkpoint requests in {total:.2?}: {:.0}/s; latency p50 {:.2?} p99 {:.2?}",
        n as f64 / total.as_secs_f64(),
        p(0.5),
        p(0.99)
    );
}
