//! A real browser for tests: Debian's ChromeDriver on a free loopback port, driving Debian's
//! Chromium headless with a fresh profile, stopped by its PID when dropped.
//!
//! Chromium is started with the flags seen to work on these machines: headless, no GPU, and
//! none of its background traffic (updates, sync, QUIC, component downloads), which the closed
//! network here would refuse at every start. As root it needs `--no-sandbox` (Chromium's own
//! sandbox refuses to run as root); the page under test is agp's own console on loopback.
//! Under `CI=true` a missing browser or driver fails the test with the reason; elsewhere the
//! test skips and says why.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::docker::{find, in_ci, stop, tail};

/// How long ChromeDriver may take to answer `/status` as ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

const INSTALL: &str = "install it with `apt-get install chromium chromium-driver` (.ci/run does)";

/// A running ChromeDriver and the Chromium it will start.
#[derive(Debug)]
pub struct Chromedriver {
    pid: i32,
    port: u16,
    chromium: PathBuf,
    dir: PathBuf,
}

impl Chromedriver {
    /// Starts ChromeDriver. `None` (after printing why) when it cannot run here and this is
    /// not CI; under `CI=true` that panics with the reason.
    pub fn start() -> Option<Chromedriver> {
        match Self::try_start() {
            Ok(driver) => Some(driver),
            Err(reason) => {
                assert!(
                    !in_ci(),
                    "CI=true and no browser for the web console tests: {reason}"
                );
                eprintln!("SKIPPED (not CI): no browser for the web console tests: {reason}");
                None
            }
        }
    }

    fn try_start() -> Result<Chromedriver, String> {
        let driver =
            find("chromedriver").ok_or_else(|| format!("chromedriver not found; {INSTALL}"))?;
        let chromium = find("chromium").ok_or_else(|| format!("chromium not found; {INSTALL}"))?;
        let port = free_port().map_err(|e| format!("no free port for chromedriver: {e}"))?;
        let dir = std::env::temp_dir().join(format!("agp-browser-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("chromedriver.log");
        let mut cmd = Command::new(&driver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl in the forked child before exec; async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", driver.display()))?;
        let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_string())?;
        let until = Instant::now() + READY_WITHIN;
        loop {
            if ready(port) {
                return Ok(Chromedriver {
                    pid,
                    port,
                    chromium,
                    dir,
                });
            }
            let log = || tail(&std::fs::read_to_string(&log).unwrap_or_default());
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("chromedriver exited ({status}): {}", log()));
            }
            if Instant::now() > until {
                stop(pid);
                return Err(format!(
                    "chromedriver did not report ready within {READY_WITHIN:?}: {}",
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The WebDriver endpoint (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The driver's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// New-session capabilities for a headless Chromium with its own fresh profile under
    /// `profile` (a directory the test owns).
    pub fn capabilities(&self, profile: &Path) -> Map<String, Value> {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".to_owned());
        }
        let mut caps = Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": self.chromium, "args": args}),
        );
        caps
    }

    /// A directory for the test's files (profiles), removed with the driver.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The driver ends the browsers it started when it is told to quit; a test that
        // panicked never told it, so its Chromium processes are ended by their group.
        stop(self.pid);
        kill_chromium_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends Chromium processes whose command line names a profile under `dir` (only ours).
fn kill_chromium_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle.as_str()) {
            // SAFETY: kill with a PID read from /proc; no memory passed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether ChromeDriver on `port` says it is ready (`GET /status`, `"ready": true`).
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") && reply.contains("\"ready\":true")
}
