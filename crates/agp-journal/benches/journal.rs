//! Criterion benches for the journal's hot paths. The end-to-end targets (durable appends per
//! second, verification rate and memory) are measured by `agp bench journal|verify`.
// Test and bench code panics on a broken fixture by design: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use agp_contracts::Journal as _;
use agp_journal::merkle::{leaf_hash, Frontier};
use agp_journal::{
    verify_dir, Durability, JournalOptions, JournalWriter, SignerKey, VerifyOptions,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

fn body(i: u64) -> serde_json::Value {
    json!({
        "call_id": format!("c{i}"),
        "tool": "Bash",
        "input": {"command": format!("cargo test -p agp-journal --lib case_{i}")},
        "input_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    })
}

fn merkle(c: &mut Criterion) {
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(1024));
    let leaves: Vec<_> = (0u32..1024).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    g.bench_function("frontier_push_1024", |b| {
        b.iter(|| {
            let mut f = Frontier::new();
            for l in &leaves {
                f.push(*l);
            }
            black_box(f.root())
        });
    });
    g.finish();
}

fn event_line(c: &mut Criterion) {
    let b0 = body(7);
    c.bench_function("event/canonical_body_and_line", |b| {
        b.iter(|| {
            let body = agp_journal::event::canonical_body(black_box(&b0)).unwrap();
            let line = agp_journal::event::compose_line(
                7,
                "2026-01-02T03:04:05.000006Z",
                "tool_call.requested",
                Some("s-1"),
                agp_journal::event::GENESIS_PREV,
                "abcd0123",
                &body,
            );
            black_box(leaf_hash(line.as_bytes()))
        });
    });
}

fn verify(c: &mut Criterion) {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let key = SignerKey::generate("agp.bench/journal").unwrap();
    let w = Arc::new(
        JournalWriter::open(
            dir.path(),
            key.clone(),
            JournalOptions::with_durability(Durability::Group),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in (t..N - 1).step_by(16) {
                    w.append("tool_call.requested", Some("bench"), body(i))
                        .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    w.close().unwrap();
    drop(w);
    let opts = VerifyOptions {
        trusted_key: key.verifier().clone(),
        trusted_checkpoint: None,
    };
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("verify_dir_20k", |b| {
        b.iter(|| {
            let r = verify_dir(dir.path(), &opts).unwrap();
            assert!(r.intact);
            black_box(r.entries)
        });
    });
    g.finish();
}

fn append_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2048));
    g.bench_function("group_2048_by_32_threads", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let key = SignerKey::generate("agp.bench/journal").unwrap();
                let w = JournalWriter::open(
                    dir.path(),
                    key,
                    JournalOptions::with_durability(Durability::Group),
                )
                .unwrap();
                (dir, Arc::new(w))
            },
            |(dir, w)| {
                let threads: Vec<_> = (0..32u64)
                    .map(|t| {
                        let w = w.clone();
                        std::thread::spawn(move || {
                            for i in 0..64 {
                                w.append("tool_call.requested", None, body(t * 64 + i))
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                threads.into_iter().for_each(|t| t.join().unwrap());
                w.close().unwrap();
                drop(dir);
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, merkle, event_line, verify, append_group);
criterion_main!(benches);
