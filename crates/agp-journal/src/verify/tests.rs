//! Hostile bodies for the entries the verifier reads itself (genesis and rotation): each is a
//! finding, never a panic, whatever shape the members have.

use super::*;
use crate::writer::{JournalOptions, JournalWriter};
use crate::SignerKey;
use agp_contracts::Journal as _;
use serde_json::json;

/// A journal of a genesis, one entry, a rotation and one entry; its lines and both keys.
fn rotated_journal(dir: &Path) -> (Vec<Value>, SignerKey) {
    let k1 = SignerKey::generate("agp.test/log").unwrap();
    let k2 = SignerKey::generate("agp.test/log").unwrap();
    let w = JournalWriter::open(dir, k1.clone(), JournalOptions::default()).unwrap();
    w.append("a.b", None, json!({})).unwrap();
    w.rotate(k2).unwrap();
    w.append("a.b", None, json!({})).unwrap();
    w.close().unwrap();
    let text = std::fs::read_to_string(dir.join(ENTRIES_FILE)).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, k1)
}

/// Verifies the journal with entry `seq`'s body replaced by `body` (the line kept canonical).
fn verify_with_body(
    dir: &Path,
    lines: &[Value],
    key: &SignerKey,
    seq: usize,
    body: &Value,
) -> Report {
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut line = line.clone();
        if i == seq {
            line["body"] = body.clone();
        }
        text.push_str(&to_canonical_string(&line).unwrap());
        text.push('\n');
    }
    std::fs::write(dir.join(ENTRIES_FILE), text).unwrap();
    let opts = VerifyOptions {
        trusted_key: key.verifier().clone(),
        trusted_checkpoint: None,
    };
    verify_dir(dir, &opts).unwrap()
}

#[test]
fn hostile_genesis_and_rotation_bodies_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, k1) = rotated_journal(dir.path());
    assert_eq!(lines[2]["kind"], KEY_ROTATED);
    let genesis = lines[0]["body"].clone();
    let rotation = lines[2]["body"].clone();
    // `base` with `member` set to `v`, or without it when `v` is null.
    let with = |base: &Value, member: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(member);
        } else {
            b[member] = v;
        }
        b
    };
    let hostile_genesis = vec![
        with(&genesis, "key", Value::Null),
        with(&genesis, "key", json!(7)),
        with(&genesis, "key", json!("agp.test/log+00000000+AQ==")),
        with(&genesis, "origin", Value::Null),
        with(&genesis, "origin", json!(["agp.test/log"])),
        with(&genesis, "origin", json!("another/log")),
        json!({}),
    ];
    let hostile_rotation = vec![
        with(&rotation, "old_key", Value::Null),
        with(&rotation, "old_key", json!(1)),
        with(&rotation, "new_key", json!("not a key")),
        with(&rotation, "new_key", json!({"k": 1})),
        with(&rotation, "signature", Value::Null),
        with(&rotation, "signature", json!("!!not base64")),
        with(&rotation, "signature", json!("AAAA")),
        with(&rotation, "signature", json!(B64.encode([0u8; 64]))),
        json!({}),
    ];
    for (seq, code, bodies) in [
        (0, Code::BadGenesis, hostile_genesis),
        (2, Code::BadRotation, hostile_rotation),
    ] {
        for body in bodies {
            let report = verify_with_body(dir.path(), &lines, &k1, seq, &body);
            assert!(report.has(code), "{body}: {:?}", report.findings);
        }
    }
    // The untouched journal verifies clean through the same path.
    let report = verify_with_body(dir.path(), &lines, &k1, 0, &genesis);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}
