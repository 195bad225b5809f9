//! Shared fixture for the sandbox tests: a host temp dir holding a repo and a sibling
//! "outside" directory, and a bubblewrap session on the repo.

#![allow(dead_code)]

pub mod provider;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agp_contracts::sandbox::{ExecOutput, ExecRequest, SandboxError, SandboxProvider, SandboxSpec};
use agp_sandbox::{BubblewrapProvider, BubblewrapSession};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub outside: PathBuf,
    pub provider: BubblewrapProvider,
    pub session: BubblewrapSession,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_spec(|_| {})
    }

    pub fn with_spec(edit: impl FnOnce(&mut SandboxSpec)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&repo).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let repo = std::fs::canonicalize(repo).unwrap();
        let outside = std::fs::canonicalize(outside).unwrap();
        let provider = BubblewrapProvider::new();
        let mut spec = SandboxSpec::new("test-session", &repo);
        edit(&mut spec);
        let session = provider.spawn(&spec).expect("spawn sandbox session");
        Self {
            dir,
            repo,
            outside,
            provider,
            session,
        }
    }

    /// Writes `text` to `rel` in the repo (from the host), creating its parent directories.
    pub fn put(&self, rel: &str, text: &str) {
        let path = self.repo.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Run a bash script inside the sandbox, in the repo.
    pub fn sh(&self, script: &str) -> ExecOutput {
        self.sh_timeout(script, Duration::from_secs(20))
    }

    pub fn sh_timeout(&self, script: &str, timeout: Duration) -> ExecOutput {
        let request = ExecRequest {
            timeout,
            ..bash_in(&self.repo, script)
        };
        self.provider
            .exec(&self.session, &request)
            .expect("exec in sandbox")
    }

    /// Run `argv` inside the sandbox, in the repo.
    pub fn run(&self, argv: &[impl AsRef<str>]) -> Result<ExecOutput, SandboxError> {
        self.provider.exec(&self.session, &run_in(&self.repo, argv))
    }
}

/// A request to run `argv` in `cwd` without stdin, given 20 s.
pub fn run_in(cwd: &Path, argv: &[impl AsRef<str>]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|a| a.as_ref().to_owned()).collect(),
        cwd: cwd.to_path_buf(),
        stdin: None,
        timeout: Duration::from_secs(20),
    }
}

/// A request to run the bash `script` in `cwd` without stdin, given 20 s.
pub fn bash_in(cwd: &Path, script: &str) -> ExecRequest {
    run_in(cwd, &["bash", "-c", script])
}

pub fn stdout(out: &ExecOutput) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &ExecOutput) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the tests run as root (which passes permission checks and RLIMIT_NPROC).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn real_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

pub fn token() -> String {
    let mut b = [0u8; 8];
    getrandom_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_bytes(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(b)
        .unwrap();
}

/// A file in the real HOME with secret content, removed on drop.
pub struct HomeCanary {
    pub path: PathBuf,
    pub content: String,
}

impl HomeCanary {
    pub fn place() -> Self {
        let path = real_home().join(format!(".agp-test-canary-{}", token()));
        let content = format!("secret-{}", token());
        std::fs::write(&path, &content).unwrap();
        Self { path, content }
    }
}

impl Drop for HomeCanary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Host processes whose command line contains `marker`.
pub fn host_pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
        {
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Wait (bounded) until no host process carries `marker`; returns the survivors.
pub fn wait_gone(marker: &str, within: Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pids = host_pids_with(marker);
        if pids.is_empty() || std::time::Instant::now() >= deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
