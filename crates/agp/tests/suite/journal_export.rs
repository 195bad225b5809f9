//! `agp journal export` end to end with the real binary: journals of real scripted sessions,
//! exported as OCSF (validated against a JSON Schema of the mapped fields) and as JSON lines
//! (round-tripped to the journal's own lines), sent to a real OTLP/HTTP receiver on a loopback
//! port, followed while a session runs, resumed from a cursor after a kill, and refused when
//! the journal was tampered with.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use agp_contracts::Journal as _;
use agp_journal::merkle::{leaf_hash, root_of, to_base64};
use agp_journal::{keys, Checkpoint, JournalOptions, JournalWriter};
use serde_json::{json, Value};

use super::support::agents::wait_until;
use super::support::journal::Home as JournalHome;
use super::support::looping::{demo_world, journal, run_scripted, workspace, DemoWorld, AGP};

const SCHEMA: &str = include_str!("schemas/ocsf_export.schema.json");

/// A short session: allowed reads and a shell command, a denied one. Nothing needs a human.
const SCRIPT: &str = r#"
calls:
  - name: list the repository
    tool: Bash
    input: { command: "ls -la" }
    expect: allow
  - name: read the README
    tool: Read
    input: { file_path: README.md }
    expect: allow
  - name: wipe the machine
    tool: Bash
    input: { command: "rm -rf /" }
    expect: deny
"#;

fn agp(home: &Path) -> Command {
    let mut c = Command::new(AGP);
    c.arg("--home").arg(home).stdin(Stdio::null());
    c
}

fn export(home: &Path, args: &[&str]) -> Output {
    agp(home)
        .args(["journal", "export"])
        .args(args)
        .output()
        .unwrap()
}

/// [`export`] to the OTLP endpoint `url`, resuming from and keeping `cursor`.
fn export_to(home: &Path, url: &str, cursor: &Path) -> Output {
    export(
        home,
        &["--otlp-endpoint", url, "--cursor", cursor.to_str().unwrap()],
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The records of an export that must have succeeded.
fn records(out: &Output) -> Vec<Value> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "export failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The demo session (13 calls: allowed, denied, approved and refused by the approver), then
/// egress events as the egress proxy journals them, appended with the real writer.
fn demo_journal() -> DemoWorld {
    let w = demo_world();
    let out = run_scripted(
        &w.home,
        &w.user_home,
        &workspace().join("examples/demo.yaml"),
        &w.repo,
        &[
            "--approver-script",
            workspace().join("examples/demo.answers").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let session = journal(&w.home)
        .iter()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_string))
        .unwrap();
    let key = keys::load_signer_key(&w.home.join("keys").join(keys::SIGNER_FILE)).unwrap();
    let writer =
        JournalWriter::open(&w.home.join("journal"), key, JournalOptions::default()).unwrap();
    let s = Some(session.as_str());
    writer
        .append(
            "egress.allowed",
            s,
            json!({"method": "CONNECT", "reason": "allowed by [egress] allow: pypi.org", "host": "pypi.org", "port": 443, "peer_pid": 4242}),
        )
        .unwrap();
    writer
        .append(
            "egress.denied",
            s,
            json!({"method": "GET", "reason": "203.0.113.7 is not in [egress] allow", "host": "203.0.113.7", "port": 80}),
        )
        .unwrap();
    writer
        .append(
            "egress.upstream_failed",
            s,
            json!({"host": "pypi.org", "port": 443, "error": "connection refused"}),
        )
        .unwrap();
    writer.close().unwrap();
    w
}

fn journal_lines(home: &Path) -> Vec<String> {
    std::fs::read_to_string(home.join("journal/entries.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Checks a record's evidence against the journal: the leaf hash is the line's, the
/// checkpoint is signed by the home's key, covers the entry, and its root is the root of the
/// journal's first `size` lines.
fn check_evidence(home: &Path, lines: &[String], seq: u64, evidence: &Value) {
    assert_eq!(evidence["index"], seq);
    let line = lines[seq as usize].as_bytes();
    assert_eq!(evidence["leaf_hash"], hex(&leaf_hash(line)), "seq {seq}");
    let cp = &evidence["checkpoint"];
    let vkey = keys::load_verifier_key(home.join("keys/journal.pub").to_str().unwrap()).unwrap();
    let signed = Checkpoint::open(cp["note"].as_str().unwrap().as_bytes(), &vkey).unwrap();
    let size = cp["size"].as_u64().unwrap();
    assert_eq!(signed.size, size);
    assert!(
        seq < size,
        "seq {seq} is not covered by the checkpoint of size {size}"
    );
    assert_eq!(cp["root"], to_base64(&signed.root));
    let leaves: Vec<_> = lines[..size as usize]
        .iter()
        .map(|l| leaf_hash(l.as_bytes()))
        .collect();
    assert_eq!(root_of(&leaves), signed.root, "seq {seq}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn ocsf_export_of_a_scripted_session_matches_the_ocsf_schema_and_carries_its_evidence() {
    let w = demo_journal();
    let lines = journal_lines(&w.home);
    let out = export(&w.home, &["--format", "ocsf"]);
    let events = records(&out);
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for e in &events {
        let errors: Vec<String> = validator.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}\n{e:#}");
        let class = e["class_uid"].as_u64().unwrap();
        let activity = e["activity_id"].as_u64().unwrap();
        assert_eq!(
            e["type_uid"].as_u64().unwrap(),
            class * 100 + activity,
            "{e:#}"
        );
        let seq = e["metadata"]["sequence"].as_u64().unwrap();
        assert_eq!(e["raw_data"], lines[seq as usize]);
        check_evidence(&w.home, &lines, seq, &e["unmapped"]["agp"]["evidence"]);
    }
    // The schema has teeth: an API Activity without its api, or a Network Activity without
    // its destination, or an invented top-level attribute, is refused.
    let api = events.iter().find(|e| e["class_uid"] == 6003).unwrap();
    let net = events.iter().find(|e| e["class_uid"] == 4001).unwrap();
    let mut broken = vec![api.clone(), net.clone(), api.clone()];
    broken[0].as_object_mut().unwrap().remove("api");
    broken[1].as_object_mut().unwrap().remove("dst_endpoint");
    broken[2]["agp_seq"] = json!(1);
    for b in &broken {
        assert!(!validator.is_valid(b), "{b:#}");
    }
    // Every entry, once, in order: unmapped kinds are Base Events, not dropped.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..lines.len() as u64).collect::<Vec<_>>());

    let kind = |e: &Value| e["metadata"]["event_code"].as_str().unwrap().to_string();
    let class_of = |k: &str| -> BTreeSet<u64> {
        events
            .iter()
            .filter(|e| kind(e) == k)
            .map(|e| e["class_uid"].as_u64().unwrap())
            .collect()
    };
    for k in [
        "tool_call.requested",
        "policy.decided",
        "approval.requested",
        "approval.granted",
        "approval.denied",
    ] {
        assert_eq!(class_of(k), BTreeSet::from([6003]), "{k}");
    }
    for k in ["egress.allowed", "egress.denied", "egress.upstream_failed"] {
        assert_eq!(class_of(k), BTreeSet::from([4001]), "{k}");
    }
    for k in ["journal.created", "session.started", "session.ended"] {
        assert_eq!(class_of(k), BTreeSet::from([0]), "{k}");
    }
    // Results: shell commands are processes launched, the other tools API calls.
    assert_eq!(class_of("tool_call.result"), BTreeSet::from([1007, 6003]));
    let make_test = events
        .iter()
        .find(|e| e["class_uid"] == 1007 && e["process"]["cmd_line"] == "make test")
        .expect("the sandboxed `make test` as a Process Activity");
    assert_eq!(make_test["activity_id"], 1);
    assert_eq!(make_test["process"]["name"], "make");
    assert_eq!(make_test["exit_code"], 0);
    assert_eq!(make_test["status_id"], 1);
    assert_eq!(make_test["actor"]["app_name"], "scripted");

    // Decisions: allowed, denied (medium severity, blocked), required approval.
    let decided = |cmd: &str| {
        let req = events
            .iter()
            .find(|e| {
                kind(e) == "tool_call.requested"
                    && e["unmapped"]["agp"]["body"]["input"]["command"] == cmd
            })
            .unwrap();
        let call = req["api"]["request"]["uid"].clone();
        events
            .iter()
            .find(|e| kind(e) == "policy.decided" && e["api"]["request"]["uid"] == call)
            .unwrap()
            .clone()
    };
    let wipe = decided("rm -rf /");
    assert_eq!(
        (wipe["action_id"].clone(), wipe["disposition_id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(wipe["status_id"], 2);
    assert_eq!(wipe["severity_id"], 3);
    assert_eq!(
        wipe["actor"]["authorizations"][0]["policy"]["name"],
        "destructive"
    );
    assert_eq!(
        wipe["metadata"]["correlation_uid"],
        wipe["api"]["request"]["uid"]
    );
    let ls = decided("ls -la");
    assert_eq!(
        (ls["action_id"].clone(), ls["status_id"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(decided("git push origin main")["action_id"], 99);
    // The approval carries who approved.
    let granted = events
        .iter()
        .find(|e| kind(e) == "approval.granted")
        .unwrap();
    assert_eq!(granted["actor"]["user"]["uid"], "script:demo.answers");
    assert_eq!(granted["disposition_id"], 1);
    let refused = events
        .iter()
        .find(|e| kind(e) == "approval.denied")
        .unwrap();
    assert_eq!(refused["disposition_id"], 2);

    // Egress: opened, refused, failed, with the destination.
    let egress = |k: &str| events.iter().find(|e| kind(e) == k).unwrap().clone();
    let allowed = egress("egress.allowed");
    assert_eq!(
        (allowed["activity_id"].clone(), allowed["type_uid"].clone()),
        (json!(1), json!(400101))
    );
    assert_eq!(
        allowed["dst_endpoint"],
        json!({"hostname": "pypi.org", "port": 443})
    );
    assert_eq!(allowed["actor"]["process"]["pid"], 4242);
    let denied = egress("egress.denied");
    assert_eq!(
        (
            denied["activity_id"].clone(),
            denied["disposition_id"].clone()
        ),
        (json!(5), json!(2))
    );
    assert_eq!(denied["http_request"]["http_method"], "GET");
    assert_eq!(egress("egress.upstream_failed")["activity_id"], 4);

    // The summary names the classes.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Network Activity") && stderr.contains("Process Activity"),
        "{stderr}"
    );
}

#[test]
fn jsonl_export_round_trips_to_the_journal_lines_and_filters_by_time() {
    let w = demo_journal();
    let lines = journal_lines(&w.home);
    let recs = records(&export(&w.home, &["--format", "jsonl"]));
    assert_eq!(recs.len(), lines.len());
    for (i, r) in recs.iter().enumerate() {
        // The event's RFC 8785 form is the journal line, byte for byte.
        let line = agp_contracts::canonical::to_canonical_string(&r["event"]).unwrap();
        assert_eq!(line, lines[i]);
        assert_eq!(r["seq"], i as u64);
        assert_eq!(r["kind"], r["event"]["kind"]);
        assert_eq!(r["session"], r["event"]["session"]);
        assert_eq!(r["ts"], r["event"]["ts"]);
        check_evidence(&w.home, &lines, i as u64, &r["evidence"]);
    }
    // --since: exactly the entries at or after that time.
    let mid = recs[recs.len() / 2]["ts"].as_str().unwrap().to_string();
    let since = records(&export(&w.home, &["--since", &mid]));
    let expected: Vec<&Value> = recs
        .iter()
        .filter(|r| r["ts"].as_str().unwrap() >= mid.as_str())
        .collect();
    assert_eq!(since.iter().collect::<Vec<_>>(), expected);
    assert!(!since.is_empty() && since.len() < recs.len());
    // A span back from now takes them all (the session just ran).
    assert_eq!(
        records(&export(&w.home, &["--since", "1d"])).len(),
        recs.len()
    );
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    api_key: Option<String>,
    body: Value,
}

/// A real OTLP/HTTP receiver on a loopback port: answers each request with the next status of
/// `statuses` (then 200), and records what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(statuses: Vec<u16>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (server.clone(), got.clone());
        let thread = std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                let content_type = header("Content-Type").unwrap_or_default();
                let api_key = header("api-key");
                g.lock().unwrap().push(Received {
                    path: req.url().to_string(),
                    content_type,
                    api_key,
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                });
                let status = statuses.next().unwrap_or(200);
                let mut resp = tiny_http::Response::from_string(if status == 200 {
                    "{}".to_string()
                } else {
                    format!("{{\"code\":{status},\"message\":\"test receiver says {status}\"}}")
                })
                .with_status_code(status);
                if status == 429 {
                    resp.add_header(tiny_http::Header::from_bytes("Retry-After", "0").unwrap());
                }
                req.respond(resp).unwrap();
            }
        });
        Self {
            url,
            got,
            server,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_decimal(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn otlp_export_posts_export_logs_service_requests_and_retries_429_and_503() {
    let w = demo_journal();
    let lines = journal_lines(&w.home);
    let rx = Receiver::start(vec![503, 429]);
    // The collector's API key comes from the variable OpenTelemetry SDKs read.
    let out = agp(&w.home)
        .args([
            "journal",
            "export",
            "--format",
            "ocsf",
            "--otlp-endpoint",
            &rx.url,
        ])
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "records go to the endpoint, not stdout"
    );
    let got = rx.received();
    // The first two answers asked for a retry: the same batch came three times.
    assert_eq!(got.len(), 3, "{got:#?}");
    // The retried batch is the same request.
    assert_eq!(got[0].body, got[2].body);
    let req = &got[2];
    assert_eq!(req.path, "/v1/logs");
    assert_eq!(req.api_key.as_deref(), Some("s3cr=t"));
    assert!(
        req.content_type.starts_with("application/json"),
        "{}",
        req.content_type
    );
    let rl = &req.body["resourceLogs"];
    assert_eq!(rl.as_array().unwrap().len(), 1);
    let resource_attrs = rl[0]["resource"]["attributes"].as_array().unwrap();
    assert!(resource_attrs
        .iter()
        .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "agp"));
    let scope = &rl[0]["scopeLogs"][0];
    assert_eq!(scope["scope"]["name"], "agp.journal.export");
    let logs = scope["logRecords"].as_array().unwrap();
    assert_eq!(logs.len(), lines.len());
    for (i, log) in logs.iter().enumerate() {
        assert!(is_decimal(&log["timeUnixNano"]), "{log:#}");
        assert!(is_decimal(&log["observedTimeUnixNano"]), "{log:#}");
        let sev = log["severityNumber"].as_u64().unwrap();
        assert!((1..=24).contains(&sev), "{log:#}");
        let attrs = log["attributes"].as_array().unwrap();
        for a in attrs {
            assert!(a["key"].is_string(), "{a}");
            let v = a["value"].as_object().unwrap();
            assert_eq!(v.len(), 1, "{a}");
            if let Some(n) = v.get("intValue") {
                assert!(is_decimal(n), "{a}");
            } else {
                assert!(v["stringValue"].is_string(), "{a}");
            }
        }
        let attr = |k: &str| attrs.iter().find(|a| a["key"] == k).unwrap()["value"].clone();
        assert_eq!(attr("agp.seq"), json!({"intValue": i.to_string()}));
        // The body is the OCSF event; its time is the log's time.
        let event: Value =
            serde_json::from_str(log["body"]["stringValue"].as_str().unwrap()).unwrap();
        assert_eq!(event["metadata"]["sequence"], i as u64);
        assert_eq!(event["raw_data"], lines[i]);
        let nanos: i128 = log["timeUnixNano"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            nanos / 1_000_000,
            i128::from(event["time"].as_i64().unwrap())
        );
        assert_eq!(
            attr("ocsf.class_uid"),
            json!({"intValue": event["class_uid"].to_string()})
        );
        assert_eq!(
            attr("agp.evidence.leaf_hash")["stringValue"],
            event["unmapped"]["agp"]["evidence"]["leaf_hash"]
        );
    }
    // A denial is a warning, an allowed call information.
    let sev_of = |code: &str, decision: &str| {
        logs.iter()
            .find(|l| {
                let e: Value =
                    serde_json::from_str(l["body"]["stringValue"].as_str().unwrap()).unwrap();
                e["metadata"]["event_code"] == code
                    && e["unmapped"]["agp"]["body"]["decision"] == decision
            })
            .unwrap()["severityNumber"]
            .clone()
    };
    assert_eq!(sev_of("policy.decided", "deny"), 13);
    assert_eq!(sev_of("policy.decided", "allow"), 9);
}

#[test]
fn an_endpoint_that_refuses_the_logs_ends_the_export_with_exit_2_and_keeps_the_cursor() {
    let w = demo_journal();
    let rx = Receiver::start(vec![400]);
    let cursor = w.dir.path().join("cursor.json");
    let out = export_to(&w.home, &rx.url, &cursor);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused the logs: HTTP 400"), "{stderr}");
    assert!(
        stderr.contains("nothing from seq 0 on was sent"),
        "{stderr}"
    );
    assert_eq!(rx.received().len(), 1, "a refusal is not retried");
    assert!(!cursor.exists(), "nothing was delivered: no cursor");
}

#[test]
fn a_tampered_journal_is_refused_and_nothing_is_exported() {
    let w = demo_journal();
    let mut lines = journal_lines(&w.home);
    lines[5] = lines[5].replacen("\"ok\":true", "\"ok\":false", 1);
    std::fs::write(
        w.home.join("journal/entries.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    for format in ["ocsf", "jsonl"] {
        let out = export(&w.home, &["--format", format]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("fails verification"), "{stderr}");
        assert!(stderr.contains("agp verify"), "{stderr}");
    }
}

#[test]
fn lines_no_checkpoint_covers_are_not_exported() {
    // Someone who can write the journal appends a well-chained line but cannot sign it.
    let w = demo_journal();
    let mut lines = journal_lines(&w.home);
    let last = lines.last().unwrap().clone();
    let seq = lines.len();
    let forged = format!(
        "{{\"body\":{{\"call_id\":\"call-99\",\"decision\":\"allow\",\"reason\":\"forged\",\"tool\":\"Bash\"}},\"key_id\":\"{}\",\"kind\":\"policy.decided\",\"prev\":\"{}\",\"seq\":{seq},\"session\":null,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"v\":1}}",
        serde_json::from_str::<Value>(&last).unwrap()["key_id"].as_str().unwrap(),
        hex(&leaf_hash(last.as_bytes()))
    );
    lines.push(forged);
    std::fs::write(
        w.home.join("journal/entries.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let out = export(&w.home, &[]);
    let recs = records(&out);
    assert_eq!(recs.len(), seq, "the unsigned line was exported");
    assert!(recs
        .iter()
        .all(|r| r["event"]["body"]["reason"] != "forged"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 entry after the latest checkpoint not exported"),
        "{stderr}"
    );
}

/// `agp journal export --follow` writing to a file; its output's complete lines.
struct Follower {
    child: Child,
    out: PathBuf,
}

impl Follower {
    fn start(home: &Path, out: &Path, cursor: &Path) -> Self {
        Self::start_with(home, out, cursor, &[])
    }

    fn start_with(home: &Path, out: &Path, cursor: &Path, extra: &[&str]) -> Self {
        let child = agp(home)
            .args(["journal", "export", "--follow", "--cursor"])
            .arg(cursor)
            .args(extra)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            out: out.to_path_buf(),
        }
    }

    /// The records written so far (only whole lines: the exporter may be mid-write).
    fn records(&self) -> Vec<Value> {
        let t = std::fs::read_to_string(&self.out).unwrap_or_default();
        let whole = t.rfind('\n').map_or("", |i| &t[..i]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn has(&self, kind: &str, session: Option<&str>) -> bool {
        self.records()
            .iter()
            .any(|r| r["kind"] == kind && (session.is_none() || r["session"].as_str() == session))
    }

    /// Waits (60 s at most) for the follower to end by itself.
    fn ended(&mut self) -> Output {
        let mut status = None;
        wait_until(60, "the follower did not end", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let mut stderr = Vec::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_end(&mut stderr).unwrap();
        }
        Output {
            status: status.unwrap(),
            stdout: Vec::new(),
            stderr,
        }
    }

    fn signal(&mut self, sig: rustix::process::Signal) -> Output {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        let status = self.child.wait().unwrap();
        let mut stderr = Vec::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_end(&mut stderr).unwrap();
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }
}

fn seqs(recs: &[Value]) -> Vec<u64> {
    recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

fn cursor_next(cursor: &Path) -> u64 {
    let c: Value = serde_json::from_str(&std::fs::read_to_string(cursor).unwrap()).unwrap();
    c["next_seq"].as_u64().unwrap()
}

fn run_session(w: &DemoWorld, script: &Path) -> String {
    let out = run_scripted(&w.home, &w.user_home, script, &w.repo, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    journal(&w.home)
        .iter()
        .rev()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_string))
        .unwrap()
}

#[test]
fn follow_streams_a_running_session_and_resumes_from_its_cursor_after_a_kill() {
    let w = demo_world();
    let script = w.file("short.yaml", SCRIPT);
    let cursor = w.dir.path().join("export.cursor");

    // 1. Following before the session starts: its events arrive as they are journaled.
    let mut f = Follower::start(&w.home, &w.dir.path().join("out1.jsonl"), &cursor);
    wait_until(60, "the follower never exported journal.created", || {
        f.has("journal.created", None)
    });
    let session = run_session(&w, &script);
    wait_until(60, "the follower never exported the session's end", || {
        f.has("session.ended", Some(&session))
    });
    let ended = f.signal(rustix::process::Signal::TERM);
    assert_eq!(ended.status.code(), Some(0), "{}", text(&ended.stderr));
    let stderr = text(&ended.stderr);
    assert!(stderr.contains("export stopped by SIGTERM"), "{stderr}");
    let first = f.records();
    let total = journal_lines(&w.home).len() as u64;
    assert_eq!(seqs(&first), (0..total).collect::<Vec<_>>());
    assert_eq!(
        cursor_next(&cursor),
        total,
        "a clean stop saves the cursor after the last batch"
    );

    // 2. A second session while nobody follows; a new follower resumes at the cursor.
    let second = run_session(&w, &script);
    let mut g = Follower::start(&w.home, &w.dir.path().join("out2.jsonl"), &cursor);
    wait_until(
        60,
        "the resumed follower never exported the second session",
        || g.has("session.ended", Some(&second)),
    );
    // Killed without a chance to clean up.
    g.signal(rustix::process::Signal::KILL);
    let resumed = g.records();
    let total2 = journal_lines(&w.home).len() as u64;
    assert_eq!(
        seqs(&resumed),
        (total..total2).collect::<Vec<_>>(),
        "nothing repeated, nothing lost"
    );

    // 3. Whatever the kill interrupted, the cursor resumes exactly after what it recorded.
    let at = cursor_next(&cursor);
    assert!(
        (total..=total2).contains(&at),
        "cursor at {at}, journal {total}..{total2}"
    );
    let rest = records(&export(&w.home, &["--cursor", cursor.to_str().unwrap()]));
    assert_eq!(seqs(&rest), (at..total2).collect::<Vec<_>>());
    assert_eq!(cursor_next(&cursor), total2);
    // Nothing new: a run from the cursor exports nothing.
    assert!(records(&export(&w.home, &["--cursor", cursor.to_str().unwrap()])).is_empty());

    // A cursor whose last entry is not this journal's (a rewritten history) is refused.
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cursor).unwrap()).unwrap();
    c["last_leaf_hash"] = json!("00".repeat(32));
    std::fs::write(&cursor, c.to_string()).unwrap();
    let out = export(&w.home, &["--cursor", cursor.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not the one the cursor recorded"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn follow_goes_on_across_a_key_rotation_and_stops_at_a_checkpoint_the_retired_key_signed() {
    let h = JournalHome::with_20_entries();
    let cursor = h.tmp.path().join("export.cursor");
    let mut f = Follower::start(&h.root, &h.tmp.path().join("out.jsonl"), &cursor);
    wait_until(
        60,
        "the follower never exported the first 20 entries",
        || f.records().len() == 20,
    );
    let o = agp(&h.root).args(["keygen", "--rotate"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    h.append(3);
    let total = h.lines().len();
    wait_until(60, "the follower stopped at the rotation", || {
        f.records().len() == total
    });
    assert_eq!(seqs(&f.records()), (0..total as u64).collect::<Vec<_>>());

    // Whoever kept the retired key appends a well-chained line and signs a checkpoint over it.
    let retired = std::fs::read_dir(h.root.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("retired"))
        .unwrap();
    let old_key = keys::load_signer_key(&retired).unwrap();
    let mut lines = h.lines();
    let last = lines.last().unwrap().clone();
    let last_v: Value = serde_json::from_str(&last).unwrap();
    lines.push(format!(
        "{{\"body\":{{\"forged\":true}},\"key_id\":{},\"kind\":\"approval.granted\",\"prev\":\"{}\",\"seq\":{},\"session\":null,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"v\":1}}",
        last_v["key_id"],
        hex(&leaf_hash(last.as_bytes())),
        lines.len()
    ));
    // Appended, not rewritten: the follower must not see the file shrink midway.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(h.entries())
        .unwrap();
    std::io::Write::write_all(&mut file, format!("{}\n", lines.last().unwrap()).as_bytes())
        .unwrap();
    let leaves: Vec<_> = lines.iter().map(|l| leaf_hash(l.as_bytes())).collect();
    let note = Checkpoint {
        origin: old_key.name().to_string(),
        size: lines.len() as u64,
        root: root_of(&leaves),
    }
    .sign(&old_key)
    .unwrap();
    std::fs::write(h.journal().join("checkpoint"), note).unwrap();
    let out = f.ended();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("fails verification"), "{stderr}");
    assert!(
        f.records()
            .iter()
            .all(|r| r["event"]["body"]["forged"].is_null()),
        "the forged entry was exported"
    );
    assert_eq!(cursor_next(&cursor), total as u64);
}

#[test]
fn a_follower_stopped_while_the_endpoint_is_unavailable_resends_from_its_cursor() {
    let h = JournalHome::with_20_entries();
    let cursor = h.tmp.path().join("export.cursor");
    let out = h.tmp.path().join("out");
    // The collector is down for maintenance: it answers 503 to everything.
    let down = Receiver::start(vec![503; 100]);
    let mut f = Follower::start_with(&h.root, &out, &cursor, &["--otlp-endpoint", &down.url]);
    wait_until(60, "the follower never tried the endpoint", || {
        !down.received().is_empty()
    });
    let stopped = f.signal(rustix::process::Signal::INT);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(
        text(&stopped.stderr).contains("export stopped by SIGINT"),
        "{}",
        text(&stopped.stderr)
    );
    assert!(
        !cursor.exists(),
        "nothing was accepted, nothing may be marked as sent"
    );

    // Back up: the next run sends everything, once.
    let up = Receiver::start(vec![]);
    let o = export_to(&h.root, &up.url, &cursor);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let sent: Vec<u64> = up
        .received()
        .iter()
        .flat_map(|r| {
            r.body["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|l| {
            let e: Value =
                serde_json::from_str(l["body"]["stringValue"].as_str().unwrap()).unwrap();
            e["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(sent, (0..h.lines().len() as u64).collect::<Vec<_>>());
    assert_eq!(cursor_next(&cursor), h.lines().len() as u64);
}
