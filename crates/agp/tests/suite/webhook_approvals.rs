//! Approvals through the webhook channel with the real `agp run` and `agp daemon`: a test
//! receiver (a real HTTP server that checks agp's signatures with its own HMAC code) gets each
//! approval request and calls back signed (or forged, replayed, late, mismatched) decisions.

use super::support::agents::{one_error_line, text, wait_output, World, AGP};
use super::support::looping::{journal, start_daemon};
use super::support::webhook::{callback, configure, decision, now_secs, Receiver, Signing, SECRET};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const ENV: [&str; 3] = [
    "AGP_APPROVAL_CHANNEL",
    "AGP_APPROVAL_TIMEOUT_SECS",
    "AGP_HOME",
];

fn script(world: &World, commands: &[&str]) -> std::path::PathBuf {
    let mut yaml = String::from("calls:\n");
    for c in commands {
        yaml.push_str(&format!(
            "  - tool: Bash\n    input: {{ command: \"{c}\" }}\n"
        ));
    }
    world.file("script.yaml", &yaml)
}

/// `agp run` of the scripted intendant with `script` on the world's repo; `extra` args.
fn agp_run(world: &World, script: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(AGP);
    for var in ENV {
        cmd.env_remove(var);
    }
    cmd.arg("--home")
        .arg(&world.home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(script)
        .arg("--repo")
        .arg(&world.repo)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A world whose agp asks `Receiver::start(fail_first)` (webhook `extra` settings).
async fn configured(fail_first: u32, extra: &str) -> (World, Receiver) {
    let world = World::new();
    let receiver = Receiver::start(fail_first).await;
    configure(&world.home, &receiver.url(), extra);
    (world, receiver)
}

/// A rule that needs two approvers for `mkdir`; edits are allowed.
const QUORUM_OF_TWO: &str = "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"two-people\"\n\
     effect = \"require\"\nmatch = [\"Bash(mkdir *)\"]\nreason = \"two people must agree\"\n\
     quorum = 2\n\n[[rule]]\nid = \"write-project\"\neffect = \"allow\"\nmatch = [\"Edit(/**)\"]\n";

/// [`agp_run`] on the world's policy with `--approval-timeout SECS`, started.
fn spawn_on_policy(world: &World, script: &Path, approval_timeout: &str) -> Child {
    let policy = world.policy.to_str().unwrap().to_owned();
    agp_run(
        world,
        script,
        &["--policy", &policy, "--approval-timeout", approval_timeout],
    )
    .spawn()
    .unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The callback was refused with `status` and `reason`.
fn refused(got: (u16, Value), status: u16, reason: &str) {
    let (code, answer) = got;
    assert_eq!(code, status, "{reason}: {answer}");
    assert_eq!(answer["status"], "refused", "{answer}");
    assert_eq!(answer["reason"], reason, "{answer}");
}

fn accepted(got: (u16, Value), status: &str) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["status"], status, "{}", got.1);
    got.1
}

fn of_kind<'a>(j: &'a [Value], kind: &str) -> Vec<&'a Value> {
    j.iter().filter(|e| e["kind"] == kind).collect()
}

/// The journal's one entry of `kind`.
fn the_one<'a>(j: &'a [Value], kind: &str) -> &'a Value {
    let all = of_kind(j, kind);
    assert_eq!(all.len(), 1, "{j:#?}");
    all[0]
}

/// The reasons of the journaled `approval.rejected` entries, in order; each is the webhook's.
fn rejections(j: &[Value]) -> Vec<String> {
    of_kind(j, "approval.rejected")
        .into_iter()
        .map(|e| {
            assert_eq!(e["body"]["channel"], "webhook", "{e:#}");
            e["body"]["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn assert_secret_kept(world: &World) {
    let raw = std::fs::read_to_string(world.home.join("journal/entries.jsonl")).unwrap();
    assert!(!raw.contains(SECRET), "the shared secret is in the journal");
    world.assert_verified();
}

/// One session, two `require` calls: the first is approved by Alice after every kind of bad
/// decision was refused (forged, unsigned, stale, other input, not an approver, unknown nonce)
/// and its approval cannot be replayed; the second is denied by Bob. The receiver's first
/// answer is a 503, so agp's delivery is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_approves_denies_and_refuses_forged_or_replayed_decisions() {
    let (world, receiver) = configured(1, "").await;
    // The third call tries to read the shared secret: an agent that could would approve its
    // own calls, so the policy denies it (nobody is asked).
    let read_secret = format!("cat {}", world.home.join("keys/webhook.secret").display());
    let script = script(
        &world,
        &[
            "mkdir approved-dir",
            "mkdir denied-dir",
            read_secret.as_str(),
        ],
    );
    let child = spawn_on_policy(&world, &script, "120");

    let req = receiver.wait_request("mkdir approved-dir", 120).await;
    // What a receiver is told (README "Webhook approvals").
    assert_eq!(req["type"], "agp.approval.request");
    assert_eq!(req["version"], 1);
    assert_eq!(req["tool"], "Bash");
    assert_eq!(req["input"], json!({"command": "mkdir approved-dir"}));
    assert_eq!(req["rule"], "needs-human");
    assert!(req["reason"]
        .as_str()
        .unwrap()
        .starts_with("creating directories needs a human"));
    assert_eq!(req["approvers"], json!(["alice", "bob"]));
    assert_eq!(req["quorum"], 1);
    assert_eq!(req["nonce"].as_str().unwrap().len(), 64);
    assert_eq!(req["input_sha256"].as_str().unwrap().len(), 64);
    assert!(req["expires_at_ms"].as_u64().unwrap() > now_secs() * 1000);
    assert!(req["callback_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let first_call = req["call_id"].clone();
    let answered: Vec<u16> = receiver
        .received()
        .iter()
        .filter(|r| r.doc["call_id"] == first_call)
        .map(|r| r.answered)
        .collect();
    assert_eq!(answered, [503, 200], "delivery is retried after a 5xx");

    let good = decision(&req, "allow", "alice");
    let other_secret = "an-attacker-guess-at-the-secret-0123456789abcdef";
    let mut other_input = good.clone();
    other_input["input_sha256"] = json!("0".repeat(64));
    let mut unknown = good.clone();
    unknown["nonce"] = json!("ab".repeat(32));
    let mallory = decision(&req, "allow", "mallory");
    // Every kind of bad decision, in this order (the journal's rejections follow it).
    let bad: [(&Value, Signing, u16, &str); 6] = [
        (&good, Signing::Key(other_secret), 401, "bad_signature"),
        (&good, Signing::None, 401, "missing_signature"),
        (&good, Signing::At(now_secs() - 400), 401, "stale_timestamp"),
        (&other_input, Signing::Good, 409, "input_hash_mismatch"),
        (&mallory, Signing::Good, 403, "not_an_approver"),
        (&unknown, Signing::Good, 404, "unknown_call"),
    ];
    for (body, signing, status, reason) in bad {
        refused(callback(&req, body, signing).await, status, reason);
    }
    assert!(
        !world.repo.join("approved-dir").exists(),
        "a refused decision let the call run"
    );
    accepted(callback(&req, &good, Signing::Good).await, "granted");
    refused(callback(&req, &good, Signing::Good).await, 409, "replayed");

    let req2 = receiver.wait_request("mkdir denied-dir", 120).await;
    assert_ne!(
        req2["nonce"], req["nonce"],
        "each request has its own nonce"
    );
    // The first call's (burned) nonce cannot decide the second call.
    let mut cross = decision(&req2, "allow", "alice");
    cross["nonce"] = req["nonce"].clone();
    refused(
        callback(&req2, &cross, Signing::Good).await,
        409,
        "call_mismatch",
    );
    let mut deny = decision(&req2, "deny", "bob");
    deny["approver_name"] = json!("Bob B.");
    deny["reason"] = json!("not today");
    accepted(callback(&req2, &deny, Signing::Good).await, "denied");

    let out = wait_output(child).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("approvals via webhook"), "{stdout}");
    assert!(
        stdout.contains("denied by approver Bob B.: not today"),
        "{stdout}"
    );
    let secret_line = stdout
        .lines()
        .find(|l| l.contains("cat ") && l.contains("DENY"))
        .unwrap_or_else(|| panic!("reading the secret was not denied: {stdout}"));
    assert!(secret_line.contains("signing keys"), "{secret_line}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert_eq!(
        receiver.received().len(),
        3,
        "only the two mkdirs were put to the receiver (the first twice)"
    );
    assert!(
        world.repo.join("approved-dir").is_dir(),
        "the approved call did not run"
    );
    assert!(
        !world.repo.join("denied-dir").exists(),
        "the denied call ran"
    );

    let j = journal(&world.home);
    let granted = the_one(&j, "approval.granted");
    assert_eq!(granted["body"]["call_id"], first_call);
    assert_eq!(granted["body"]["channel"], "webhook");
    assert_eq!(
        granted["body"]["by"],
        json!([{"id": "alice", "name": "alice", "via": "webhook"}])
    );
    let denied = the_one(&j, "approval.denied");
    assert_eq!(
        denied["body"]["by"],
        json!({"id": "bob", "name": "Bob B.", "via": "webhook"})
    );
    assert_eq!(denied["body"]["reason"], "not today");
    assert_eq!(
        rejections(&j),
        [
            "bad_signature",
            "missing_signature",
            "stale_timestamp",
            "input_hash_mismatch",
            "not_an_approver",
            "unknown_call",
            "replayed",
            "call_mismatch",
        ]
    );
    // An authenticated refusal is journaled with its session; the approver it claimed is named.
    let rejected = of_kind(&j, "approval.rejected");
    assert_eq!(rejected[4]["body"]["user"]["id"], "mallory");
    assert_eq!(rejected[4]["session"], granted["session"]);
    let started = of_kind(&j, "session.started");
    assert_eq!(started[0]["body"]["approval_channel"], "webhook");
    assert_secret_kept(&world);
}

/// `agp daemon` with `[approvals] channel = "webhook"` in config.toml, and a rule that needs
/// two approvers: Alice's allow is counted (twice is once), Bob's makes the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_quorum_of_two_on_the_daemon() {
    let (world, receiver) = configured(0, "").await;
    std::fs::write(&world.policy, QUORUM_OF_TWO).unwrap();
    let _daemon = start_daemon(
        &world.home,
        [
            "--policy",
            world.policy.to_str().unwrap(),
            "--approval-timeout",
            "120",
        ],
    );
    let script = script(&world, &["mkdir agreed-dir"]);
    let child = agp_run(&world, &script, &[]).spawn().unwrap();

    let req = receiver.wait_request("mkdir agreed-dir", 120).await;
    assert_eq!(req["quorum"], 2);
    assert_eq!(req["rule"], "two-people");
    let alice = decision(&req, "allow", "alice");
    let counted = accepted(callback(&req, &alice, Signing::Good).await, "counted");
    assert_eq!(
        (counted["have"].clone(), counted["need"].clone()),
        (json!(1), json!(2))
    );
    refused(
        callback(&req, &alice, Signing::Good).await,
        409,
        "duplicate_vote",
    );
    assert!(
        !world.repo.join("agreed-dir").exists(),
        "one approval was enough"
    );
    accepted(
        callback(&req, &decision(&req, "allow", "bob"), Signing::Good).await,
        "granted",
    );

    let out = wait_output(child).await;
    assert_ok(&out);
    assert!(
        world.repo.join("agreed-dir").is_dir(),
        "the approved call did not run"
    );
    let j = journal(&world.home);
    let granted = the_one(&j, "approval.granted");
    let by: Vec<&str> = granted["body"]["by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["alice", "bob"]);
    assert_eq!(rejections(&j), ["duplicate_vote"]);
    // Each counted vote is journaled as it arrives, before the outcome; the duplicate is not.
    let votes: Vec<(&str, &str, u64, u64)> = of_kind(&j, "approval.vote")
        .iter()
        .map(|v| {
            let b = &v["body"];
            (
                b["by"]["id"].as_str().unwrap(),
                b["vote"].as_str().unwrap(),
                b["have"].as_u64().unwrap(),
                b["need"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(votes, [("alice", "allow", 1, 2), ("bob", "allow", 2, 2)]);
    let seq = |kind: &str| of_kind(&j, kind).last().unwrap()["seq"].as_u64().unwrap();
    assert!(seq("approval.vote") < seq("approval.granted"), "{j:#?}");
    assert_secret_kept(&world);
}

/// Nobody decides the first call in time: it is denied as timed out, and a decision arriving
/// afterwards (while the session's next command runs) is refused as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_timeout_denies_and_a_late_decision_is_refused() {
    let (world, receiver) = configured(0, "").await;
    // The second call (allowed) marks that the first was settled, then keeps the session, and
    // so agp's listener, alive while the late decision is sent.
    std::fs::write(
        world.repo.join("mark.py"),
        "import pathlib, time\npathlib.Path('settled').touch()\ntime.sleep(10)\n",
    )
    .unwrap();
    let script = script(&world, &["mkdir late-dir", "python3 mark.py"]);
    let child = spawn_on_policy(&world, &script, "2");
    let late = receiver.wait_request("mkdir late-dir", 120).await;
    let settled = world.repo.join("settled");
    for _ in 0..1200 {
        if settled.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled.exists(), "the session's second command never ran");
    refused(
        callback(&late, &decision(&late, "allow", "alice"), Signing::Good).await,
        410,
        "expired",
    );
    let out = wait_output(child).await;
    assert_ok(&out);
    assert!(
        !world.repo.join("late-dir").exists(),
        "a timed-out call ran"
    );
    let j = journal(&world.home);
    let timeout = the_one(&j, "approval.timeout");
    assert_eq!(timeout["body"]["call_id"], late["call_id"]);
    assert!(of_kind(&j, "approval.granted").is_empty());
    assert_eq!(rejections(&j), ["expired"]);
    assert_secret_kept(&world);
}

/// agp fails closed: a secret others can read refuses to start; a receiver that refuses agp's
/// signature (another secret) or cannot be reached denies the call at once, journaled with
/// why, instead of leaving it waiting with nobody asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_misconfigured_or_undeliverable_fails_closed() {
    use std::os::unix::fs::PermissionsExt;
    let (world, receiver) = configured(0, "deliver_within_secs = 2").await;
    let script = script(&world, &["mkdir never-dir"]);
    let policy = world.policy.to_str().unwrap().to_owned();
    let args = ["--policy", policy.as_str(), "--approval-timeout", "60"];
    let secret = world.home.join("keys/webhook.secret");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = wait_output(agp_run(&world, &script, &args).spawn().unwrap()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        one_error_line(&out).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    let j = journal(&world.home);
    assert!(
        of_kind(&j, "session.started").is_empty(),
        "a session started anyway: {j:#?}"
    );

    // agp signs with another secret than the receiver's: the receiver answers 401.
    std::fs::write(&secret, "x".repeat(40)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = wait_output(agp_run(&world, &script, &args).spawn().unwrap()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(receiver
        .received()
        .iter()
        .all(|r| !r.verified && r.answered == 401));
    assert_eq!(receiver.received().len(), 1, "a refusal is not retried");

    // Nothing listens at the URL: retried for deliver_within_secs, then denied.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", closed.local_addr().unwrap());
    // The path is the receiver's (it may hold a token): only the origin is journaled.
    let url = format!("{origin}/approvals/t0ken");
    drop(closed);
    let config = world.home.join("config.toml");
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_now.replace(&receiver.url(), &url)).unwrap();
    let out = wait_output(agp_run(&world, &script, &args).spawn().unwrap()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    assert!(!world.repo.join("never-dir").exists());
    let j = journal(&world.home);
    let denied = of_kind(&j, "approval.denied");
    assert_eq!(denied.len(), 2, "{j:#?}");
    for d in &denied {
        assert_eq!(d["body"]["unavailable"], true, "{d:#}");
        assert!(d["body"]["by"].is_null());
    }
    let why = |d: &Value| d["body"]["reason"].as_str().unwrap().to_owned();
    assert!(
        why(denied[0]).contains("refused the approval request with HTTP 401"),
        "{}",
        why(denied[0])
    );
    assert!(
        why(denied[1]).contains("could not deliver the approval request"),
        "{}",
        why(denied[1])
    );
    assert!(why(denied[1]).contains(&origin), "{}", why(denied[1]));
    let raw = std::fs::read_to_string(world.home.join("journal/entries.jsonl")).unwrap();
    assert!(
        !raw.contains("t0ken"),
        "the receiver's path is in the journal"
    );
}

/// `agp doctor` checks the webhook section: nothing to say while it is not used, then the
/// secret's mode, an inline secret (never echoed), and the listen address.
#[test]
fn doctor_checks_the_webhook_section() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let doctor = || {
        let out = Command::new(AGP)
            .arg("--home")
            .arg(&world.home)
            .args(["doctor", "--json"])
            .env_remove("AGP_APPROVAL_CHANNEL")
            .output()
            .unwrap();
        let all = text(&out.stdout);
        let v: Value = serde_json::from_str(&all).unwrap_or_else(|e| panic!("{e}: {all}"));
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "webhook")
            .cloned();
        (check, all)
    };
    assert_eq!(
        doctor().0,
        None,
        "no webhook check while it is not configured"
    );
    // The webhook check failed, its `field` saying `what`.
    let failing = |check: &Option<Value>, field: &str, what: &str| {
        let check = check.as_ref().unwrap();
        assert_eq!(check["ok"], false, "{check:#}");
        assert!(check[field].as_str().unwrap().contains(what), "{check:#}");
    };

    configure(&world.home, "http://127.0.0.1:9/approvals", "");
    let (check, _) = doctor();
    let check = check.unwrap();
    assert_eq!(check["ok"], true, "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("keys/webhook.secret"), "{detail}");
    assert!(detail.contains("2 approver(s)"), "{detail}");

    let secret = world.home.join("keys/webhook.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    failing(&doctor().0, "fix", "chmod 600");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A secret written into config.toml is refused by name, and not printed.
    let config = world.home.join("config.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let inline = good.replacen(
        "listen = \"127.0.0.1:0\"\n",
        &format!("listen = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n"),
        1,
    );
    assert_ne!(good, inline);
    std::fs::write(&config, &inline).unwrap();
    let (check, all) = doctor();
    failing(&check, "detail", "never written in config.toml");
    assert!(!all.contains(SECRET), "{all}");

    // A listen address this user cannot bind.
    std::fs::write(
        &config,
        good.replacen("listen = \"127.0.0.1:0\"", "listen = \"192.0.2.1:9\"", 1),
    )
    .unwrap();
    failing(&doctor().0, "detail", "cannot listen on 192.0.2.1:9");
}

/// examples/webhook/receiver.py (Python's standard library, not agp's code) follows the README's
/// wire format: it verifies agp's request and its signed decisions are accepted. Bob's allow
/// before Alice's deny is counted; the deny wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_receiver_decides_approvals() {
    use std::io::{BufRead, Write};
    let world = World::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/webhook/receiver.py");
    // The secret must exist before the receiver reads it: configure first with a placeholder
    // URL, then point agp at the port the receiver reports.
    configure(&world.home, "http://127.0.0.1:9/approvals", "");
    let mut receiver = Command::new("python3")
        .arg(&example)
        .arg("0")
        .env(
            "AGP_WEBHOOK_SECRET_FILE",
            world.home.join("keys/webhook.secret"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = receiver.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the receiver said nothing ({e}); expected {what}"));
        assert!(line.contains(what), "expected {what:?}: {line}");
        line
    };
    let listening = next("listening on ");
    let url = listening.trim_start_matches("listening on ").to_owned();
    let config = world.home.join("config.toml");
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_now.replace("http://127.0.0.1:9/approvals", &url),
    )
    .unwrap();
    std::fs::write(&world.policy, QUORUM_OF_TWO).unwrap();
    let script = script(&world, &["mkdir example-dir"]);
    let child = spawn_on_policy(&world, &script, "120");
    let asked = next("approval needed: Bash 'mkdir example-dir'");
    assert!(asked.contains("quorum 2"), "{asked}");
    let mut stdin = receiver.stdin.take().unwrap();
    writeln!(stdin, "allow bob").unwrap();
    next(r#"agp answered: {"have": 1, "need": 2, "status": "counted"}"#);
    writeln!(stdin, "deny alice not in this repository").unwrap();
    next(r#"agp answered: {"status": "denied"}"#);

    let out = wait_output(child).await;
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !world.repo.join("example-dir").exists(),
        "the denied call ran"
    );
    let j = journal(&world.home);
    let denied = the_one(&j, "approval.denied");
    assert_eq!(
        denied["body"]["by"],
        json!({"id": "alice", "name": "alice", "via": "webhook"})
    );
    assert_eq!(denied["body"]["reason"], "not in this repository");
    assert!(rejections(&j).is_empty(), "{j:#?}");
}
