//! The witness's HTTP surface as tlog-witness specifies it: statuses, the 409 body and content
//! type, the body limit, the monitoring endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agp_journal::checkpoint::Checkpoint;
use agp_journal::cosig::{accept_response, WitnessSigner};
use agp_journal::merkle::{self, leaf_hash};
use agp_journal::note::SignerKey;
use agp_witness::request::build;
use agp_witness::state::FileStore;
use agp_witness::Witness;
use sha2::Digest as _;

struct Server {
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    url: String,
    log: SignerKey,
    signer: WitnessSigner,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = SignerKey::generate("agp.test/journal").unwrap();
    let signer = WitnessSigner::generate("witness.test/w1").unwrap();
    let witness = Arc::new(Witness::new(
        signer.clone(),
        std::slice::from_ref(log.verifier()),
        Box::new(FileStore::open(dir.path()).unwrap()),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let tcp = tokio::net::TcpListener::from_std(listener).unwrap();
        agp_witness::server::serve(tcp, witness).await;
    });
    Server {
        _dir: dir,
        _rt: rt,
        url,
        log,
        signer,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post(url: &str, body: &[u8]) -> (u16, Option<String>, String) {
    let mut r = agent()
        .post(&format!("{url}/add-checkpoint"))
        .send(body)
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        ct,
        r.body_mut().read_to_string().unwrap(),
    )
}

fn note(log: &SignerKey, n: usize) -> (String, Vec<[u8; 32]>) {
    let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
    let note = Checkpoint {
        origin: log.name().into(),
        size: n as u64,
        root: merkle::root_of(&leaves),
    }
    .sign(log)
    .unwrap();
    (note, leaves)
}

#[test]
fn add_checkpoint_over_http_speaks_the_spec() {
    let s = server();
    let (n3, _) = note(&s.log, 3);
    let (status, _, body) = post(&s.url, &build(0, &[], n3.as_bytes()));
    assert_eq!(status, 200, "{body}");
    let text = &n3.as_bytes()[..=n3.find("\n\n").unwrap()];
    accept_response(s.signer.verifier(), text, body.as_bytes()).unwrap();

    // 409: the body is the witness's size and a newline, typed text/x.tlog.size.
    let (n5, leaves) = note(&s.log, 5);
    let (status, ct, body) = post(&s.url, &build(0, &[], n5.as_bytes()));
    assert_eq!(
        (status, ct.as_deref(), body.as_str()),
        (409, Some("text/x.tlog.size"), "3\n")
    );
    let proof = merkle::consistency_proof(&leaves, 3).unwrap();
    let (status, _, body) = post(&s.url, &build(3, &proof, n5.as_bytes()));
    assert_eq!(status, 200, "{body}");

    // 400, 404, 422 over the wire.
    assert_eq!(post(&s.url, b"nonsense").0, 400);
    let stranger = SignerKey::generate("someone/else").unwrap();
    assert_eq!(
        post(&s.url, &build(0, &[], note(&stranger, 1).0.as_bytes())).0,
        404
    );
    assert_eq!(
        post(&s.url, &build(5, &[[9; 32]], note(&s.log, 6).0.as_bytes())).0,
        422
    );
    // Too large a body is refused before it is parsed.
    let big = vec![b'a'; agp_witness::server::MAX_BODY_BYTES + 1];
    assert_eq!(post(&s.url, &big).0, 413);
    // add-checkpoint is a POST.
    let r = agent()
        .get(&format!("{}/add-checkpoint", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // The monitoring endpoint serves the latest cosigned checkpoint with both signatures.
    let hash = hex::encode(sha2::Sha256::digest(s.log.name().as_bytes()));
    let mut r = agent()
        .get(&format!("{}/{hash}/checkpoint", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let latest = r.body_mut().read_to_string().unwrap();
    assert!(latest.starts_with(&n5), "{latest}");
    s.log.verifier().open(latest.as_bytes()).unwrap();
    assert!(matches!(
        s.signer.verifier().check(latest.as_bytes()).unwrap(),
        agp_journal::cosig::CosignatureCheck::Valid(_)
    ));
    let unknown = hex::encode(sha2::Sha256::digest(b"someone/else"));
    let r = agent()
        .get(&format!("{}/{unknown}/checkpoint", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
