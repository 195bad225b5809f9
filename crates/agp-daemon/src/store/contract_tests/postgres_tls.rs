//! PostgreSQL over TCP with TLS: real servers (`ssl=on` with a test CA, or `ssl=off`), real
//! connections through the one connector every store and ledger uses.

use std::path::PathBuf;

use agp_testkit::postgres::PgServer;

use super::super::contract::StateStore;
use super::super::postgres::tls::connect_config;
use super::super::*;
use super::open_session;

/// `pem` written to a file in `dir`, for `sslrootcert=`.
fn root_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// Whether the server sees the connection made for `url` as TLS (`pg_stat_ssl`).
async fn server_sees_tls(url: &str) -> bool {
    let (config, tls) = connect_config(url).unwrap();
    let (client, connection) = config.connect(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    row.get(0)
}

async fn refused(url: &str) -> String {
    match PgStore::connect(url, "host-a").await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_connects_and_the_store_works_over_tls() {
    let Some(server) = PgServer::start_tcp(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = root_file(&dir, "ca.pem", server.ca_pem().unwrap());
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.tcp_url("localhost"),
        ca.display()
    );
    let store = PgStore::connect(&url, "host-a").await.unwrap();
    // The LISTEN connection comes up through the same connector.
    let mut listens = store.listens();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        listens.wait_for(|n| *n >= 1),
    )
    .await
    .expect("LISTEN connection up")
    .unwrap();
    open_session(&store, "s1", "run-1", 10).await;
    let ids: Vec<_> = store
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["s1"]);
    assert!(store
        .active_session_by_token("t-s1")
        .await
        .unwrap()
        .is_some());
    // The checkpoint ledger (agp verify --team, publishing) goes the same way.
    let ledger = PgLedger::connect(&url, "host-a").await.unwrap();
    assert!(ledger.member() == "host-a");
    assert!(server_sees_tls(&url).await, "the server sees TLS");
    // `require` means verify-full here, and works with the right CA.
    let require = url.replace("verify-full", "require");
    assert!(server_sees_tls(&require).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_host_name_mismatch_is_refused() {
    let Some(server) = PgServer::start_tcp(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let right = root_file(&dir, "right.pem", server.ca_pem().unwrap());
    let other_ca = agp_testkit::tls::TestCa::new().unwrap().ca_pem;
    let wrong = root_file(&dir, "wrong.pem", &other_ca);
    let localhost = server.tcp_url("localhost");
    for mode in ["verify-full", "require", "verify-ca"] {
        let url = format!("{localhost}?sslmode={mode}&sslrootcert={}", wrong.display());
        let e = refused(&url).await;
        assert!(e.contains("UnknownIssuer"), "{mode}: {e}");
    }
    // Without sslrootcert the webpki roots are used: a private CA is refused too.
    let e = refused(&localhost).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(
        e.contains("check sslrootcert="),
        "the line names the fix: {e}"
    );
    // The certificate names `localhost` only; 127.0.0.1 is not it.
    let by_ip = server.tcp_url("127.0.0.1");
    for mode in ["verify-full", "require"] {
        let url = format!("{by_ip}?sslmode={mode}&sslrootcert={}", right.display());
        let e = refused(&url).await;
        assert!(e.contains("not valid for name"), "{mode}: {e}");
    }
    // verify-ca checks the chain only: the same address is accepted with the right CA...
    let chain_only = format!("{by_ip}?sslmode=verify-ca&sslrootcert={}", right.display());
    assert!(server_sees_tls(&chain_only).await);
    // ...and a foreign chain is still refused there.
    let e = refused(&format!(
        "{by_ip}?sslmode=verify-ca&sslrootcert={}",
        wrong.display()
    ))
    .await;
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_url_never_falls_back_to_plain_text_unless_disable_is_written() {
    let Some(server) = PgServer::start_tcp(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let any_ca = root_file(
        &dir,
        "ca.pem",
        &agp_testkit::tls::TestCa::new().unwrap().ca_pem,
    );
    let tcp = server.tcp_url("127.0.0.1");
    for url in [
        tcp.clone(),
        format!("{tcp}?sslmode=require"),
        format!("{tcp}?sslmode=verify-ca&sslrootcert={}", any_ca.display()),
    ] {
        let e = refused(&url).await;
        assert!(e.contains("server does not support TLS"), "{url}: {e}");
        assert!(e.contains("sslmode=disable"), "the line names the fix: {e}");
    }
    assert!(PgLedger::connect(&tcp, "host-a").await.is_err());
    let plain = format!("{tcp}?sslmode=disable");
    let store = PgStore::connect(&plain, "host-a").await.unwrap();
    open_session(&store, "s1", "run-1", 10).await;
    assert_eq!(store.sessions().await.unwrap().len(), 1);
    assert!(!server_sees_tls(&plain).await);
    // An unknown or falling-back mode is refused before any connection is tried.
    for mode in ["prefer", "allow", "verify"] {
        let e = refused(&format!("{tcp}?sslmode={mode}")).await;
        assert!(e.contains("sslmode"), "{e}");
    }
}
