//! The submitter against the real witness server over loopback HTTP, with a real journal:
//! a witness that is down at first, a witness that already holds a checkpoint (409), and a
//! restart that goes on from the cosignatures kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::Journal as _;
use agp_journal::cosig::WitnessSigner;
use agp_journal::{witnessed, JournalOptions, JournalWriter, SignerKey};
use agp_witness::state::FileStore;
use agp_witness::submit::{Options, Submitter, Target};
use agp_witness::Witness;

struct World {
    dir: tempfile::TempDir,
    log: SignerKey,
    signer: WitnessSigner,
}

fn world() -> World {
    World {
        dir: tempfile::tempdir().unwrap(),
        log: SignerKey::generate("agp.test/journal").unwrap(),
        signer: WitnessSigner::generate("witness.test/w1").unwrap(),
    }
}

impl World {
    fn journal(&self) -> std::path::PathBuf {
        self.dir.path().join("journal")
    }
    fn witness(&self) -> Arc<Witness> {
        let store = FileStore::open(&self.dir.path().join("witness")).unwrap();
        Arc::new(Witness::new(
            self.signer.clone(),
            std::slice::from_ref(self.log.verifier()),
            Box::new(store),
        ))
    }
    fn append(&self, n: usize) {
        let w = JournalWriter::open(&self.journal(), self.log.clone(), JournalOptions::default())
            .unwrap();
        for i in 0..n {
            w.append("test.event", None, serde_json::json!({ "n": i }))
                .unwrap();
        }
        w.close().unwrap();
    }
    fn submitter(&self, url: &str) -> Submitter {
        Submitter::start(
            &self.journal(),
            self.log.verifier().clone(),
            vec![Target {
                url: url.to_string(),
                key: self.signer.verifier().clone(),
            }],
            Options {
                poll: Duration::from_millis(50),
                timeout: Duration::from_secs(5),
                max_backoff: Duration::from_millis(200),
            },
        )
    }
    /// The size of the journal's latest checkpoint.
    fn size(&self) -> u64 {
        agp_journal::proof::latest_checkpoint(&self.journal(), self.log.verifier())
            .unwrap()
            .0
            .size
    }
    fn check(&self) -> witnessed::WitnessReport {
        witnessed::check(
            &self.journal(),
            self.log.verifier(),
            std::slice::from_ref(self.signer.verifier()),
            1,
        )
        .unwrap()
    }
}

/// Serves `witness` on a loopback port in a runtime of its own; the URL and the runtime
/// (dropping it stops the server).
fn serve_on(witness: Arc<Witness>, listener: std::net::TcpListener) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let tcp = tokio::net::TcpListener::from_std(listener).unwrap();
        agp_witness::server::serve(tcp, witness).await;
    });
    rt
}

#[test]
fn a_witness_down_at_first_gets_the_checkpoint_once_it_is_up() {
    let w = world();
    w.append(5);
    // A port nobody listens on yet: connections are refused until the witness starts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let down = listener.try_clone().unwrap();
    drop(listener);
    drop(down);
    let sub = w.submitter(&url);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!w.check().ok);
    let listener = std::net::TcpListener::bind(url.trim_start_matches("http://")).unwrap();
    let _rt = serve_on(w.witness(), listener);
    assert!(sub.finish(Duration::from_secs(20)));
    let report = w.check();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoint_size, w.size());
}

#[test]
fn a_conflict_is_resolved_from_the_witness_size_and_a_restart_goes_on_from_there() {
    let w = world();
    w.append(3);
    let witness = w.witness();
    // The witness already cosigned this log's checkpoint at size 4 (another submitter).
    let note = std::fs::read(w.journal().join("checkpoint")).unwrap();
    witness
        .add_checkpoint(&agp_witness::request::build(0, &[], &note))
        .unwrap();
    let cosigned_size = w.size();
    w.append(4);
    assert!(w.size() > cosigned_size);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _rt = serve_on(witness.clone(), listener);
    // The submitter knows nothing (no cosignatures file): it sends old 0, is told the
    // witness's size, and proves from there.
    assert!(w.submitter(&url).finish(Duration::from_secs(20)));
    let report = w.check();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoint_size, w.size());
    // A restart with nothing new sends nothing; with more entries, it proves from the size
    // cosigned last at once.
    let before = witnessed::records(&w.journal()).unwrap().len();
    assert!(w.submitter(&url).finish(Duration::from_secs(20)));
    assert_eq!(witnessed::records(&w.journal()).unwrap().len(), before);
    w.append(2);
    assert!(w.submitter(&url).finish(Duration::from_secs(20)));
    assert_eq!(witnessed::records(&w.journal()).unwrap().len(), before + 1);
    let report = w.check();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoint_size, w.size());
}

#[test]
fn a_witness_for_another_log_refuses_and_finish_does_not_hang() {
    let w = world();
    w.append(2);
    let other = world();
    // A witness that knows only another log: 404, settled as refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _rt = serve_on(other.witness(), listener);
    let sub = Submitter::start(
        &w.journal(),
        w.log.verifier().clone(),
        vec![Target {
            url,
            key: other.signer.verifier().clone(),
        }],
        Options::default(),
    );
    assert!(!sub.finish(Duration::from_secs(20)));
    assert!(witnessed::records(&w.journal()).unwrap().is_empty());
}
