//! Crash safety: a writer process is killed with SIGKILL mid-stream again and again; every
//! append that had returned must still be in the journal, and the journal must verify.
//!
//! The writer is this test binary re-executed (`crash_child_writer`, ignored in normal runs),
//! using the real agp-journal writer on a home made by the real `agp` binary.

use super::support::journal as common_journal;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use agp_contracts::Journal as _;
use agp_journal::{Durability, JournalOptions, JournalWriter};
use common_journal::{error_codes, run, text, Home};
use serde_json::json;

const CHILD_ENV: &str = "AGP_TEST_CRASH_HOME";
const MODE_ENV: &str = "AGP_TEST_CRASH_MODE";

/// The child: appends until killed, printing `ok <seq> <leaf hex>` once each append returned.
#[test]
#[ignore = "helper process for sigkill_mid_stream_loses_nothing_acknowledged"]
fn crash_child_writer() {
    let Ok(home) = std::env::var(CHILD_ENV) else {
        return;
    };
    let group = std::env::var(MODE_ENV).as_deref() == Ok("group");
    let key =
        agp_journal::keys::load_signer_key(&std::path::Path::new(&home).join("keys/journal.key"))
            .unwrap();
    let opts = JournalOptions::with_durability(if group {
        Durability::Group
    } else {
        Durability::Entry
    });
    let w = Arc::new(
        JournalWriter::open(&std::path::Path::new(&home).join("journal"), key, opts).unwrap(),
    );
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads = if group { 8 } else { 2 };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (w, out) = (w.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0..1_000_000u64 {
                    // Odd threads append pairs with one durable wait, as the daemon does.
                    let receipts = if t % 2 == 1 {
                        w.append_batch(&[
                            (
                                "tool_call.requested",
                                Some("crash"),
                                json!({"t": t, "i": i}),
                            ),
                            ("policy.decided", Some("crash"), json!({"t": t, "i": i})),
                        ])
                        .unwrap()
                    } else {
                        vec![w
                            .append("tool_call.result", Some("crash"), json!({"t": t, "i": i}))
                            .unwrap()]
                    };
                    let mut o = out.lock().unwrap();
                    for r in receipts {
                        writeln!(o, "ok {} {}", r.seq, hex(&r.leaf_hash)).unwrap();
                    }
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let h = Home::new();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..20u64 {
        let mode = if round % 2 == 0 { "entry" } else { "group" };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "suite::journal_crash::crash_child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, &h.root)
            .env(MODE_ENV, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        // Kill after a varying number of acknowledged appends, i.e. somewhere mid-stream.
        let kill_after = 3 + (round * 37) % 60;
        let mut seen = 0;
        let mut line = String::new();
        while seen < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("the writer exited early in round {round}");
            }
            if let Some(rest) = line.strip_prefix("ok ") {
                let (seq, leaf) = rest.trim().split_once(' ').unwrap();
                acked.push((seq.parse().unwrap(), leaf.to_string()));
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements already in the pipe were given before the kill: they count too.
        for l in reader.lines() {
            if let Some(rest) = l.unwrap().strip_prefix("ok ") {
                let (seq, leaf) = rest.trim().split_once(' ').unwrap();
                acked.push((seq.parse().unwrap(), leaf.to_string()));
            }
        }
        // Straight after a crash: a torn or unsealed tail or an unfinished checkpoint is fine
        // (warnings), an error finding is not; checkpoint.sig always matches checkpoint.
        let (code, r) = h.verify(&[]);
        assert_eq!(
            (code, error_codes(&r)),
            (0, Vec::<String>::new()),
            "round {round}: unexpected findings after a crash: {r:#}"
        );
        let o = h.ssh_verify(&std::fs::read(h.journal().join("checkpoint")).unwrap());
        assert!(
            o.status.success(),
            "round {round}: ssh-keygen refuses the pair: {}",
            text(&o)
        );
    }

    let o = run(&["--home", h.home_arg(), "journal", "recover"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["findings"], serde_json::Value::Array(vec![]), "{r:#}");

    let lines = h.lines();
    assert!(
        acked.len() > 50,
        "only {} appends acknowledged",
        acked.len()
    );
    for (seq, leaf) in &acked {
        let line = lines
            .get(*seq as usize)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} is missing"));
        assert_eq!(
            &hex(&agp_journal::merkle::leaf_hash(line.as_bytes())),
            leaf,
            "acknowledged seq {seq} changed"
        );
    }
}
