//! A throwaway PostgreSQL server for tests: Debian's `initdb` and `postgres` (PostgreSQL 15, from
//! `/usr/lib/postgresql/*/bin` or `PATH`) on a private data directory, listening only on a unix
//! socket inside that directory (no TCP port: parallel tests cannot collide, and a restarted
//! server is found at the same address), trust authentication for the role `agp`, and stopped by
//! its PID (never by name) when dropped.
//!
//! `initdb` refuses to run as root, and so does `postgres`; as root (CI, this machine) both run as
//! `nobody`, which owns the directory. Under `CI=true` missing binaries fail the test with the
//! reason; elsewhere the test skips and says why.
//!
//! [`PgServer::start_tcp`] instead listens on `127.0.0.1` and a free TCP port, with or without
//! TLS (a server certificate for `localhost` only, issued by a fresh CA: connecting to
//! `127.0.0.1` under verify-full is a host-name mismatch), for the TLS tests.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::docker::{in_ci, stop_with, tail};

/// How long a starting server may take to say "ready" in its pid file.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The socket file's number (`.s.PGSQL.<port>`) of a socket-only server.
const PORT: u16 = 5432;
/// The superuser role `initdb` creates; trust authentication, so no password.
pub const ROLE: &str = "agp";

/// A running (or, between [`Self::stop`] and [`Self::start`], stopped) private server.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    /// `(uid, gid)` the server runs as when the tests run as root.
    run_as: Option<(u32, u32)>,
    pid: Mutex<Option<i32>>,
    port: u16,
    /// `Some` for a TCP server; `Some(Some(ca_pem))` when it has TLS on.
    tcp: Option<Option<String>>,
}

impl PgServer {
    /// A fresh server. `None` (after printing why) when it cannot run here and this is not CI;
    /// under `CI=true` that panics with the reason.
    pub fn start_new() -> Option<PgServer> {
        Self::or_skip(Self::try_new())
    }

    /// A fresh server on `127.0.0.1` and a free TCP port (and its socket), `ssl=on` with a
    /// certificate for `localhost` when `tls`. Skips like [`Self::start_new`].
    pub fn start_tcp(tls: bool) -> Option<PgServer> {
        Self::or_skip(Self::try_with(Some(tls)))
    }

    fn or_skip(server: Result<PgServer, String>) -> Option<PgServer> {
        match server {
            Ok(server) => Some(server),
            Err(reason) => {
                assert!(
                    !in_ci(),
                    "CI=true and no PostgreSQL server for the store tests: {reason}"
                );
                eprintln!("SKIPPED (not CI): no PostgreSQL server for the store tests: {reason}");
                None
            }
        }
    }

    /// A fresh server, or why not.
    pub fn try_new() -> Result<PgServer, String> {
        Self::try_with(None)
    }

    fn try_with(tcp: Option<bool>) -> Result<PgServer, String> {
        let install = "install it with `apt-get install postgresql` (.ci/run does)";
        let bin = find_bin().ok_or_else(|| format!("initdb/postgres not found; {install}"))?;
        // SAFETY: geteuid has no preconditions.
        let run_as = (unsafe { libc::geteuid() } == 0).then_some((65534, 65534));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // /tmp, not TMPDIR: `nobody` must be able to reach it, and the socket path must stay
        // short (108 bytes).
        let dir = PathBuf::from("/tmp").join(format!("agp-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut server = PgServer {
            dir,
            bin,
            run_as,
            pid: Mutex::new(None),
            port: match tcp {
                Some(_) => free_port()?,
                None => PORT,
            },
            tcp: None,
        };
        server.own(&server.dir)?;
        server.initdb()?;
        server.tcp = match tcp {
            None => None,
            Some(false) => Some(None),
            Some(true) => Some(Some(server.certificates()?)),
        };
        server.start()?;
        Ok(server)
    }

    /// The connection URL (unix socket, role [`ROLE`], database `postgres`).
    pub fn url(&self) -> String {
        let host: String = self
            .dir
            .to_string_lossy()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_string(),
                _ => (b as char).to_string(),
            })
            .collect();
        format!("postgres://{ROLE}@{host}:{}/postgres", self.port)
    }

    /// The TCP URL through `host` (`localhost` or `127.0.0.1`), with no TLS parameters, for a
    /// server from [`Self::start_tcp`].
    pub fn tcp_url(&self, host: &str) -> String {
        format!("postgres://{ROLE}@{host}:{}/postgres", self.port)
    }

    /// The PEM of the CA that issued a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tcp.as_ref()?.as_deref()
    }

    /// The server's directory (data in `data/`, socket and log beside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        *self
            .pid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping its data.
    pub fn stop(&self) {
        let taken = self
            .pid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(pid) = taken {
            stop_with(pid, libc::SIGINT);
        }
    }

    /// Stops, then starts again on the same data and socket.
    pub fn restart(&self) -> Result<(), String> {
        self.stop();
        self.start()
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let mut pid = self
            .pid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pid.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .map_err(|e| format!("cannot open the server log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot dup the server log: {e}"))?;
        let data = self.dir.join("data");
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string());
        match &self.tcp {
            None => cmd.args(["-c", "listen_addresses="]),
            Some(None) => cmd.args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=off"]),
            Some(Some(_)) => cmd
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    self.dir.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    self.dir.join("server.key").display()
                )),
        };
        cmd
            // A test server: durability across a machine crash is not wanted, speed is.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: prctl in the forked child before exec (after std dropped privileges, so the
        // credential change does not clear it); async-signal-safe, no allocation. SIGQUIT is
        // PostgreSQL's immediate shutdown: a killed test binary takes its server down.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        let mut child = spawn_kept(cmd).map_err(|e| format!("cannot start postgres: {e}"))?;
        let child_pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_string())?;
        let until = Instant::now() + READY_WITHIN;
        loop {
            // postmaster.pid's last line says "ready" once connections are accepted.
            let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            if status.lines().nth(7).map(str::trim) == Some("ready") {
                *pid = Some(child_pid);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited ({status}): {}", tail(&self.log())));
            }
            if Instant::now() > until {
                stop_with(child_pid, libc::SIGQUIT);
                return Err(format!(
                    "postgres was not ready within {READY_WITHIN:?}: {}",
                    tail(&self.log())
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `server.crt` and `server.key` (a leaf for `localhost` only, from a fresh CA) and
    /// returns the CA's PEM.
    fn certificates(&self) -> Result<String, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.distinguished_name
            .push(DnType::CommonName, "agp test PostgreSQL CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
        let leaf_key = KeyPair::generate().map_err(e)?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(e)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(e)?;
        for (name, pem) in [
            ("server.crt", leaf_cert.pem()),
            ("server.key", leaf_key.serialize_pem()),
        ] {
            let path = self.dir.join(name);
            std::fs::write(&path, pem).map_err(|e| format!("cannot write {name}: {e}"))?;
            // PostgreSQL refuses a key others can read; the server user must own it.
            self.own(&path)?;
        }
        Ok(ca_cert.pem())
    }

    fn initdb(&self) -> Result<(), String> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-U", ROLE, "--auth=trust", "--no-sync", "--no-locale"])
            .args(["-E", "UTF8", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            ));
        }
        Ok(())
    }

    /// `program` from the server's bin directory, as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups, then sets the gid and uid, in the child.
            cmd.uid(uid).gid(gid).current_dir(&self.dir);
        }
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    fn own(&self, path: &Path) -> Result<(), String> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port free on the loopback now (the kernel's pick; the server binds it moments later).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port: {e}"))
}

/// The directory holding `initdb` and `postgres`: Debian keeps them off `PATH`, under
/// `/usr/lib/postgresql/<version>/bin` (the newest is taken).
fn find_bin() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|d| has_both(d))
}

/// Forks `cmd` from one thread kept for the life of the test binary. PR_SET_PDEATHSIG fires
/// when the *thread* that forked the child exits, not the process: a server started from a
/// short-lived thread (tokio's blocking pool, whose idle threads end after 10 s) would be
/// killed with it in the middle of a test.
fn spawn_kept(cmd: Command) -> std::io::Result<std::process::Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let gone = || std::io::Error::other("the thread that starts PostgreSQL servers is gone");
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // The sender lives in a static, so this loop (and the thread) never ends.
        let _ = std::thread::Builder::new()
            .name("agp-postgres-parent".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((cmd, reply))
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_answers_on_its_socket_restarts_and_is_gone_after_drop() {
        let Some(server) = PgServer::start_new() else {
            return;
        };
        assert!(server.ca_pem().is_none());
        let socket = server.dir().join(format!(".s.PGSQL.{PORT}"));
        assert!(socket.exists(), "{}", server.log());
        let pid = server.pid().unwrap();
        server.restart().unwrap();
        let again = server.pid().unwrap();
        assert_ne!(pid, again);
        // SAFETY: kill with signal 0 only checks that the process exists.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "the old server is gone");
        assert!(server.url().starts_with("postgres://agp@%2Ftmp%2Fagp-pg-"));
        let dir = server.dir().to_path_buf();
        drop(server);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(again, 0) }, -1, "stopped on drop");
        assert!(!dir.exists());
    }

    #[test]
    fn a_tcp_server_listens_on_the_loopback_with_tls_when_asked() {
        let Some(server) = PgServer::start_tcp(true) else {
            return;
        };
        assert!(server.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
        let url = server.tcp_url("127.0.0.1");
        let port: u16 = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // The server accepts TCP; TLS itself is exercised by agp-daemon's store tests.
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(
            server
                .log()
                .contains("listening on IPv4 address \"127.0.0.1\""),
            "{}",
            server.log()
        );
        let plain = PgServer::start_tcp(false).unwrap();
        assert!(plain.ca_pem().is_none());
        assert_ne!(plain.tcp_url("localhost"), server.tcp_url("localhost"));
    }
}
