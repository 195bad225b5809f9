//! Interop: the checkpoint agp writes is checked by tools that are not agp: OpenSSH's
//! `ssh-keygen -Y verify` for checkpoint.sig, and a small Python program following the C2SP
//! signed-note, tlog-checkpoint and RFC 6962 texts with the `cryptography` package's Ed25519.

use super::support::journal as common_journal;

use std::process::Command;

use common_journal::{json_ok, run, text, Home};

#[test]
fn ssh_keygen_verifies_checkpoint_sig() {
    let h = Home::with_20_entries();
    let checkpoint = std::fs::read(h.journal().join("checkpoint")).unwrap();
    let o = h.ssh_verify(&checkpoint);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Good \"agp-journal-checkpoint\" signature"),
        "{}",
        text(&o)
    );
    // The same signature over an altered checkpoint is refused.
    let mut altered = checkpoint.clone();
    let n = altered.len();
    altered[n - 5] ^= 1;
    let o = h.ssh_verify(&altered);
    assert!(!o.status.success(), "{}", text(&o));
}

/// Written from the C2SP texts (signed-note, tlog-checkpoint) and RFC 6962, sharing no code
/// with agp.
const PYTHON_VERIFIER: &str = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature

vkey = open(sys.argv[1]).read().strip()
note = open(sys.argv[2], 'rb').read()
entries = open(sys.argv[3], 'rb').read()

# Verifier key: <name>+<hex key hash>+<base64(alg byte || public key)>
name, key_hash_hex, key_b64 = vkey.split('+', 2)
key = base64.b64decode(key_b64)
assert key[0] == 0x01 and len(key) == 33, 'not an Ed25519 verifier key'
pub = key[1:]
key_hash = hashlib.sha256(name.encode() + b'\n' + b'\x01' + pub).digest()[:4]
assert key_hash.hex() == key_hash_hex, 'key hash mismatch'

# Signed note: text, a blank line, signature lines "— <name> <base64(key hash || signature)>".
text = note[:note.rindex(b'\n\n') + 1]
sigs = note[note.rindex(b'\n\n') + 2:]
ok = False
for line in sigs.decode().splitlines():
    assert line.startswith('\u2014 '), 'bad signature line'
    sig_name, sig_b64 = line[2:].split(' ')
    raw = base64.b64decode(sig_b64)
    if sig_name == name and raw[:4] == key_hash:
        Ed25519PublicKey.from_public_bytes(pub).verify(raw[4:], text)
        ok = True
assert ok, 'no signature by the key'

# tlog-checkpoint body: origin, tree size, base64 root hash.
origin, size, root_b64 = text.decode().split('\n')[:3]
assert origin == name, 'origin is not the key name'
size = int(size)
root = base64.b64decode(root_b64)

# RFC 6962 Merkle tree hash over the first `size` lines of entries.jsonl.
lines = entries.split(b'\n')[:size]
def mth(leaves):
    if len(leaves) == 0:
        return hashlib.sha256(b'').digest()
    if len(leaves) == 1:
        return hashlib.sha256(b'\x00' + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b'\x01' + mth(leaves[:k]) + mth(leaves[k:])).digest()
assert mth(lines) == root, 'root hash does not match the entries'
print('OK', origin, size)
"#;

fn python(h: &Home) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(PYTHON_VERIFIER)
        .arg(h.vkey_file())
        .arg(h.journal().join("checkpoint"))
        .arg(h.entries())
        .output()
        .expect("python3 is installed")
}

#[test]
fn independent_python_ed25519_verifies_the_c2sp_checkpoint_and_root() {
    let h = Home::with_20_entries();
    let o = python(&h);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("OK "), "{}", text(&o));
    assert!(text(&o).contains(" 20"), "{}", text(&o));

    // A flipped bit in the signed text makes the independent verifier refuse it.
    let path = h.journal().join("checkpoint");
    let mut cp = std::fs::read(&path).unwrap();
    let first_newline = cp.iter().position(|&b| b == b'\n').unwrap();
    cp[first_newline + 1] ^= 1; // the tree size digit
    std::fs::write(&path, cp).unwrap();
    let o = python(&h);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn key_show_prints_every_public_form() {
    let h = Home::new();
    let o = run(&["--home", h.home_arg(), "key", "show", "--json"]);
    let v = json_ok(&o);
    let vkey = std::fs::read_to_string(h.vkey_file()).unwrap();
    assert_eq!(v["verifier_key"].as_str().unwrap(), vkey.trim());
    assert!(v["pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(v["allowed_signers"]
        .as_str()
        .unwrap()
        .contains("namespaces=\"agp-journal-checkpoint\" ssh-ed25519 "));
    // The PEM is a standard SPKI Ed25519 key: Python's cryptography loads it.
    let o = Command::new("python3")
        .arg("-c")
        .arg("import sys; from cryptography.hazmat.primitives.serialization import load_pem_public_key as l; l(sys.argv[1].encode()); print('ok')")
        .arg(v["pem"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
