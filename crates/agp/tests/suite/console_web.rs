//! The web console with the real binary: an `agp daemon` (approvals to a FIFO nobody answers),
//! a scripted `agp run` whose call needs a human, and `agp console` in its own process. Pages
//! are fetched over a real TCP socket with the token-to-cookie flow; the pending call is
//! approved with the console's web form (CSRF token, Origin, the daemon's nonce) and runs;
//! the timeline shows it approved via web with its result. `agp daemon --console` serves the
//! same console in-process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::console::{console_url, start_console, Killed, CONSOLE_POLICY};
use super::support::daemon::mkfifo;
use super::support::looping::{
    bash_calls_yaml, journal, policy_world, start_daemon, wait_for_daemon, Daemon, AGP,
};
use super::support::wait_exit;

/// Longest any step may take before the test gives up (a hang, not a measurement).
const WAIT: Duration = Duration::from_secs(120);

const HOSTILE_TASK: &str = "<script>alert(1)</script>\" onclick=\"x\u{202e}txt.exe";

struct Web {
    host: String,
    cookie: String,
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn exchange(host: &str, request: &str) -> Answer {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

impl Web {
    /// The first visit: the token in the URL is traded for the session cookie.
    fn open(url: &str) -> Web {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let first = exchange(
            host,
            &format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(first.status, 303, "{}", first.head);
        let cookie = first
            .head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("set-cookie:")
                    .then(|| l.split_once(':').unwrap().1.trim())
            })
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Web {
            host: host.to_owned(),
            cookie,
        }
    }

    fn get(&self, path: &str) -> Answer {
        exchange(
            &self.host,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
                self.host, self.cookie
            ),
        )
    }

    /// A form post as Chromium sends it from the console's page: under the console's
    /// `Referrer-Policy: no-referrer` its Origin is `null`, and Sec-Fetch-Site says
    /// same-origin.
    fn post(&self, path: &str, form: &str) -> Answer {
        exchange(
            &self.host,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {h}\r\nOrigin: null\r\n\
                 Sec-Fetch-Site: same-origin\r\nCookie: {c}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {n}\r\n\
                 Connection: close\r\n\r\n{form}",
                h = self.host,
                c = self.cookie,
                n = form.len()
            ),
        )
    }

    /// Fetches `path` until `ready` holds for its body.
    fn wait_for(&self, path: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let got = self.get(path);
            assert_eq!(got.status, 200, "{path}: {}", got.head);
            if ready(&got.body) {
                return got.body;
            }
            assert!(start.elapsed() < WAIT, "{what}: {}", got.body);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of the hidden input `name` in the form that carries `after`.
fn field(html: &str, after: &str, name: &str) -> String {
    let from = html.find(after).unwrap();
    let marker = format!("name=\"{name}\" value=\"");
    let at = from + html[from..].find(&marker).unwrap() + marker.len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A server-sent event stream's `journal` events, one count at a time.
struct Events {
    raw: TcpStream,
    seen: String,
}

impl Events {
    fn new(raw: TcpStream) -> Self {
        Events {
            raw,
            seen: String::new(),
        }
    }

    fn next_count(&mut self) -> u64 {
        let marker = "event: journal\ndata: ";
        loop {
            if let Some(at) = self.seen.find(marker) {
                let rest = &self.seen[at + marker.len()..];
                if let Some(end) = rest.find('\n') {
                    let n = rest[..end].parse().unwrap();
                    self.seen = rest[end..].to_owned();
                    return n;
                }
            }
            let mut buf = [0u8; 4096];
            let n = self.raw.read(&mut buf).unwrap();
            assert!(n > 0, "the event stream ended: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

fn os_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_call_waiting_for_a_human_is_approved_from_the_web_console_and_runs() {
    let w = policy_world(CONSOLE_POLICY);
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    let _daemon: Daemon = start_daemon(
        &w.home,
        [
            "--policy",
            w.policy.to_str().unwrap(),
            "--approver-script",
            fifo.to_str().unwrap(),
        ],
    );
    let (_console, url) = start_console(&w.home, &[]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let web = Web::open(&url);

    // Without the cookie, or on another Host, nothing is served.
    let bare = exchange(
        &web.host,
        &format!(
            "GET /approvals HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            web.host
        ),
    );
    assert_eq!(bare.status, 401);
    let rebound = exchange(
        &web.host,
        &format!(
            "GET /approvals HTTP/1.1\r\nHost: evil.example\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            web.cookie
        ),
    );
    assert_eq!(rebound.status, 421);

    // Live updates: the event stream opens with the journal's size now.
    let mut events = TcpStream::connect(&web.host).unwrap();
    events.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        events,
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        web.host, web.cookie
    )
    .unwrap();
    let mut stream = Events::new(events);
    let before = stream.next_count();

    let script = w.dir.path().join("calls.yaml");
    std::fs::write(&script, bash_calls_yaml(&["touch approved-by-web"])).unwrap();
    let run = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(&script)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--task", HOSTILE_TASK])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The pending call appears on the approvals page, with its form.
    let page = web.wait_for("/approvals", "the call was never listed", |b| {
        b.contains("data-testid=\"decide-form\"")
    });
    assert!(page.contains("touch approved-by-web"), "{page}");
    assert!(page.contains(&format!("tty:{}", os_user())));
    assert!(!w.repo.join("approved-by-web").exists());
    let form_at = "data-testid=\"decide-form\"";
    let call_id = field(&page, form_at, "call_id");
    let csrf = field(&page, form_at, "csrf");
    let hash = field(&page, form_at, "input_sha256");
    let nonce = field(&page, form_at, "nonce");

    // A forged CSRF token decides nothing.
    let forged = format!(
        "csrf={}&call_id={call_id}&input_sha256={hash}&nonce={nonce}&decision=allow",
        "0".repeat(64)
    );
    assert_eq!(web.post("/approvals/decide", &forged).status, 403);
    assert!(!w.repo.join("approved-by-web").exists());

    let allow = format!(
        "csrf={csrf}&call_id={}&input_sha256={hash}&nonce={nonce}&decision=allow&reason={}",
        urlencode(&call_id),
        urlencode("looked at it in the console")
    );
    let decided = web.post("/approvals/decide", &allow);
    assert_eq!(decided.status, 200, "{}", decided.body);
    assert!(
        decided.body.contains("data-testid=\"decided\""),
        "{}",
        decided.body
    );

    let out = wait_exit(run, WAIT, "the approved run did not end");
    assert!(out.status.success(), "{out:?}");
    assert!(w.repo.join("approved-by-web").exists(), "the call ran");

    // Journaled via web, as this OS user.
    let j = journal(&w.home);
    let granted: Vec<_> = j
        .iter()
        .filter(|e| e["kind"] == "approval.granted")
        .collect();
    assert_eq!(granted.len(), 1, "{j:#?}");
    let by = &granted[0]["body"]["by"][0];
    assert_eq!(by["via"], "web", "{by}");
    assert_eq!(by["name"], os_user());
    let session = granted[0]["session"].as_str().unwrap().to_owned();

    // The stream said the journal grew, up to at least the entries the run journaled.
    let total = j.len() as u64;
    let mut last = before;
    while last < total {
        let n = stream.next_count();
        assert!(n > last, "counts only grow: {last} then {n}");
        last = n;
    }

    // The sessions page and the timeline catch up (the index follows the journal).
    let list = web.wait_for("/", "the session was never listed", |b| {
        b.contains(&format!("data-session=\"{session}\""))
    });
    assert!(!list.contains("<script>alert"), "hostile task shown raw");
    assert!(!list.contains("\" onclick=\""));
    assert!(!list.contains('\u{202e}'));
    assert!(list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let timeline = web.wait_for(
        &format!("/sessions/{session}"),
        "the timeline never showed the result",
        |b| b.contains("data-testid=\"call-result\">ok"),
    );
    assert!(timeline.contains("data-outcome=\"approved\""), "{timeline}");
    assert!(
        timeline.contains(&format!("by tty:{} via web", os_user()))
            || timeline.contains(&format!("by {} via web", os_user())),
        "{timeline}"
    );
    assert!(timeline.contains("exit 0"), "{timeline}");

    // The journal verifies from the console.
    let journal_page = web.get("/journal").body;
    let csrf = field(&journal_page, "data-testid=\"verify-form\"", "csrf");
    let verified = web.post("/journal/verify", &format!("csrf={csrf}"));
    assert!(
        verified.body.contains("data-testid=\"verify-intact\""),
        "{}",
        verified.body
    );
}

#[test]
fn the_daemon_serves_the_console_in_process_and_a_view_only_console_decides_nothing() {
    let w = policy_world(CONSOLE_POLICY);
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    let mut child = Command::new("setsid")
        .arg("-w")
        .arg(AGP)
        .arg("--home")
        .arg(&w.home)
        .args([
            "daemon",
            "--sandbox",
            "none",
            "--console",
            "--console-view-only",
        ])
        .arg("--policy")
        .arg(&w.policy)
        .arg("--approver-script")
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = console_url(child.stdout.take().unwrap());
    let _daemon = Daemon(child);
    wait_for_daemon(&w.home);
    let web = Web::open(&url);

    let script = w.dir.path().join("calls.yaml");
    std::fs::write(&script, bash_calls_yaml(&["touch never"])).unwrap();
    let run = Killed(
        Command::new(AGP)
            .arg("--home")
            .arg(&w.home)
            .args(["run", "--intendant", "scripted", "--script"])
            .arg(&script)
            .arg("--repo")
            .arg(&w.repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let page = web.wait_for("/approvals", "the call was never listed", |b| {
        b.contains("data-testid=\"approval\"")
    });
    assert!(page.contains("data-testid=\"view-only\""));
    assert!(!page.contains("data-testid=\"allow\""));
    let csrf = field(
        &web.get("/journal").body,
        "data-testid=\"verify-form\"",
        "csrf",
    );
    let tried = web.post(
        "/approvals/decide",
        &format!("csrf={csrf}&call_id=x&input_sha256=y&nonce=z&decision=allow"),
    );
    assert_eq!(tried.status, 403);
    let policy = web.get("/policy");
    assert!(
        policy.body.contains("touch-needs-a-human"),
        "the daemon's policy"
    );
    drop(run);
    assert!(!w.repo.join("never").exists());
}

#[test]
fn a_console_on_another_address_without_tls_is_refused_with_the_fix() {
    let w = policy_world(CONSOLE_POLICY);
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = Command::new(AGP)
            .arg("--home")
            .arg(&w.home)
            .args(["console", "--listen", addr])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(out.stdout.is_empty(), "no address printed: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("without TLS"), "{err}");
        assert!(err.contains("--tls-cert FILE --tls-key FILE"), "{err}");
    }
    // Half a TLS configuration is a usage error.
    let out = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["console", "--tls-cert", "cert.pem"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
