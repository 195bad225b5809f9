//! C2SP witnesses end to end: a real `agp witness serve`, a real `agp daemon` submitting its
//! checkpoints to it ([[journal.witness]]) during a scripted session, then `agp verify
//! --witness`: one witness's cosignature passes `--min-witnesses 1` and fails `2`. A journal
//! rolled back and regrown is refused by the witness and fails verification although it is
//! intact to the journal's own verifier. The cosignature is checked with an independent
//! Ed25519 (Python `cryptography`).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agp_gateway::{Client, ToolCallRequest};

use super::support::journal::copy_dir;
use super::support::looping::{agp_ok, open_gate_session, policy_world, start_daemon, Daemon};

const AGP: &str = env!("CARGO_BIN_EXE_agp");

/// A running `agp witness serve` on a free loopback port; killed on drop.
struct WitnessServer {
    child: Child,
    url: String,
}

impl Drop for WitnessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agp(args: &[&str]) -> std::process::Output {
    Command::new(AGP)
        .args(args)
        .env_remove("AGP_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `agp witness keygen`: the key file and the verifier key printed.
fn witness_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{}.key", name.replace('/', "_")));
    let o = agp(&[
        "witness",
        "keygen",
        "--name",
        name,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        file,
        String::from_utf8(o.stdout).unwrap().trim().to_string(),
    )
}

fn journal_vkey(home: &Path) -> String {
    std::fs::read_to_string(home.join("keys/journal.pub"))
        .unwrap()
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap()
        .trim()
        .to_string()
}

fn serve_witness(key: &Path, log_vkey: &str, state: &Path) -> WitnessServer {
    let origin = log_vkey.split('+').next().unwrap();
    let mut child = Command::new(AGP)
        .args(["--home", state.to_str().unwrap(), "witness", "serve"])
        .args(["--listen", "127.0.0.1:0", "--key", key.to_str().unwrap()])
        .args(["--log", &format!("{origin}={log_vkey}")])
        .args(["--state", state.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(state.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    WitnessServer { child, url }
}

fn configure_witness(home: &Path, url: &str, vkey: &str) {
    let cfg = home.join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[[journal.witness]]\nurl = \"{url}\"\nkey = \"{vkey}\"\n"
    ));
    std::fs::write(&cfg, text).unwrap();
}

/// Runs a daemon for one gate session of `calls` allowed calls, then stops it with SIGTERM
/// (the way an operator does), so it closes the journal and has the final checkpoint
/// cosigned before it exits.
fn session(home: &Path, repo: &Path, policy: &Path, calls: usize) {
    let mut daemon = start_daemon(home, ["--policy", policy.to_str().unwrap()]);
    let token = open_gate_session(home, repo);
    let mut c = Client::connect(&home.join("run/gateway.sock"), Duration::from_secs(10)).unwrap();
    c.hello(&token).unwrap();
    for i in 0..calls {
        let v = c
            .request(&ToolCallRequest {
                id: format!("echo-{i}"),
                tool_use_id: None,
                tool: "Bash".into(),
                input: serde_json::json!({"command": format!("echo {i}")}),
                cwd: repo.display().to_string(),
            })
            .unwrap();
        assert!(v.is_allow());
    }
    drop(c);
    stop(&mut daemon);
}

fn stop(daemon: &mut Daemon) {
    let sent = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn verify(home: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(AGP)
        .arg("--home")
        .arg(home)
        .arg("verify")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

const POLICY: &str =
    "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"echo\"\neffect = \"allow\"\nmatch = [\"Bash(echo:*)\"]\n";

/// Checks every cosignature line by `vkey` in the `cosignatures` file with Python's
/// `cryptography` (tlog-cosignature v1 rebuilt from the spec, not from agp's code); prints how
/// many verified.
const PY_CHECK: &str = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
name, keyid, b64 = sys.argv[1].split("+", 2)
raw = base64.b64decode(b64)
assert raw[0] == 4 and len(raw) == 33
pk = raw[1:]
assert hashlib.sha256(name.encode() + b"\n" + b"\x04" + pk).digest()[:4].hex() == keyid
records, text, sigs, in_sigs = [], [], [], False
for line in open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]:
    if in_sigs and not line.startswith("\u2014 "):
        records.append((text, sigs))
        text, sigs, in_sigs = [], [], False
    if in_sigs:
        sigs.append(line)
    elif line == "":
        in_sigs = True
    else:
        text.append(line)
records.append((text, sigs))
ok = 0
for text, sigs in records:
    body = "".join(l + "\n" for l in text)
    for line in sigs:
        who, sig = line[2:].split(" ", 1)
        sig = base64.b64decode(sig)
        if who != name or sig[:4].hex() != keyid:
            continue
        ts = int.from_bytes(sig[4:12], "big")
        msg = ("cosignature/v1\ntime %d\n" % ts + body).encode()
        Ed25519PublicKey.from_public_bytes(pk).verify(sig[12:], msg)
        ok += 1
print(ok)
"#;

#[test]
fn a_daemon_gets_its_checkpoints_cosigned_and_verify_counts_the_witnesses() {
    let w = policy_world(POLICY);
    let (w1_key, w1) = witness_key(w.dir.path(), "witness.test/w1");
    let (_, w2) = witness_key(w.dir.path(), "witness.test/w2");
    let server = serve_witness(&w1_key, &journal_vkey(&w.home), &w.dir.path().join("w1"));
    configure_witness(&w.home, &server.url, &w1);
    session(&w.home, &w.repo, &w.policy, 3);

    let (code, out) = verify(&w.home, &["--witness", &w1]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("journal intact"), "{out}");
    assert!(
        out.contains("is cosigned by 1 of the 1 required (witness.test/w1)"),
        "{out}"
    );
    let (code, out) = verify(
        &w.home,
        &["--witness", &w1, "--witness", &w2, "--min-witnesses", "2"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("NOT WITNESSED: ")
            && l.contains("1 valid witness cosignature of the 2 required")
            && l.contains("witness.test/w2 never cosigned this log")),
        "{out}"
    );
    // Only w2: none.
    let (code, out) = verify(&w.home, &["--witness", &w2, "--json"]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["witnessed"]["ok"], false);
    assert_eq!(report["witnessed"]["witnesses"][0]["status"], "missing");
    // The journal's own tools still accept it: the cosignatures live beside the checkpoints.
    agp_ok(&w.home, None, &["verify"]);
    agp_ok(&w.home, None, &["journal", "proof", "--seq", "1"]);

    // An independent Ed25519 accepts the cosignatures agp stored.
    let py = Command::new("python3")
        .args(["-c", PY_CHECK, &w1])
        .arg(w.home.join("journal/cosignatures"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let n: u32 = String::from_utf8_lossy(&py.stdout).trim().parse().unwrap();
    assert!(n >= 1, "{n}");

    // A forged cosignature (one bit of a stored signature flipped) is reported, not counted.
    let cos = w.home.join("journal/cosignatures");
    let text = std::fs::read_to_string(&cos).unwrap();
    let last_line = text.lines().last().unwrap().to_string();
    let (prefix, b64) = last_line.rsplit_once(' ').unwrap();
    let mut chars: Vec<char> = b64.chars().collect();
    let k = chars.len() - 5;
    chars[k] = if chars[k] == 'A' { 'B' } else { 'A' };
    let forged = format!("{prefix} {}", chars.into_iter().collect::<String>());
    std::fs::write(&cos, text.replace(&last_line, &forged)).unwrap();
    let (code, out) = verify(&w.home, &["--witness", &w1]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is forged or altered"), "{out}");
}

#[test]
fn a_witness_refuses_a_journal_rolled_back_and_regrown() {
    let w = policy_world(POLICY);
    let (w1_key, w1) = witness_key(w.dir.path(), "witness.test/w1");
    let server = serve_witness(&w1_key, &journal_vkey(&w.home), &w.dir.path().join("w1"));
    configure_witness(&w.home, &server.url, &w1);
    let before = w.dir.path().join("home-before");
    copy_dir(&w.home, &before);
    session(&w.home, &w.repo, &w.policy, 2);
    let (code, out) = verify(&w.home, &["--witness", &w1]);
    assert_eq!(code, 0, "{out}");
    let witnessed_size: u64 = out
        .split("(size ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .parse()
        .unwrap();

    // The machine's whole agp home is put back as it was before that session, and a longer
    // session writes a different history past the size the witness cosigned.
    std::fs::remove_dir_all(&w.home).unwrap();
    copy_dir(&before, &w.home);
    session(&w.home, &w.repo, &w.policy, 8);
    let (code, out) = verify(&w.home, &["--json"]);
    assert_eq!(
        code, 0,
        "the rewritten journal is intact to its own key: {out}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["sealed_size"].as_u64().unwrap() > witnessed_size,
        "{out}"
    );
    // The witness was asked (its size, then a proof from there over the new history) and
    // refused with 422.
    let log = std::fs::read_to_string(w.dir.path().join("w1.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("refused a checkpoint") && l.contains("status=422")),
        "{log}"
    );
    let (code, out) = verify(&w.home, &["--witness", &w1]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("has 0 valid witness cosignatures of the 1 required"),
        "{out}"
    );

    // The witness kept the size it cosigned: it was not rolled back.
    let hash = {
        use sha2::Digest as _;
        let vkey = journal_vkey(&w.home);
        hex::encode(sha2::Sha256::digest(
            vkey.split('+').next().unwrap().as_bytes(),
        ))
    };
    let mut resp = ureq::get(&format!("{}/{hash}/checkpoint", server.url))
        .call()
        .unwrap();
    let latest = resp.body_mut().read_to_string().unwrap();
    assert_eq!(
        latest.lines().nth(1).unwrap().parse::<u64>().unwrap(),
        witnessed_size,
        "{latest}"
    );
}

#[test]
fn agp_run_gets_its_final_checkpoint_cosigned() {
    let env = super::support::looping::demo_world();
    let (w1_key, w1) = witness_key(env.dir.path(), "witness.test/w1");
    let server = serve_witness(
        &w1_key,
        &journal_vkey(&env.home),
        &env.dir.path().join("w1"),
    );
    configure_witness(&env.home, &server.url, &w1);
    let script = env.dir.path().join("one-call.yaml");
    std::fs::write(
        &script,
        "calls:\n  - tool: Bash\n    input: { command: \"git push origin main\" }\n    expect: deny\n",
    )
    .unwrap();
    let out =
        super::support::looping::run_scripted(&env.home, &env.user_home, &script, &env.repo, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out) = verify(&env.home, &["--witness", &w1]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is cosigned by 1 of the 1 required"), "{out}");
}
