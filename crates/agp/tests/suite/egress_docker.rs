//! The agent's egress path inside a session container, refused many times over: the real
//! egress proxy on the host, the real `agp egress-bridge` inside (as `agp run` starts it, the
//! command's parent, listening on the container's loopback), and busybox's `wget` and `nc`
//! sending requests the allowlist refuses. Under gVisor's runsc (and runc) every refused fetch
//! must come back with the proxy's answer. (Codex under runsc was once seen hanging after the
//! proxy refused its fetch; the hang is Codex's own, at any call: see agents_docker.rs.)
//!
//! Bounded by the exec's own timeout: if any fetch hung, the exec is killed and reported as
//! timed out, with what ran so far.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::sandbox::{BindMount, ExecRequest, SandboxSpec};
use agp_contracts::SandboxProvider;
use agp_egress::{Allowlist, EgressAttempt, EgressObserver, EgressProxy, ProxyConfig};
use agp_sandbox::docker::{DockerProvider, Engine, ImageRef, Runtime};
use agp_testkit::docker::DockerEngine;

use super::support::agents::{assert_ran, AGP};

/// The default image's non-root uid; the container runs as the repository's owner.
const UID: u32 = 65534;
/// Refused fetches per client per session.
const ROUNDS: usize = 40;
const AGP_INSIDE: &str = "/run/agp/bin/agp";
const EGRESS_INSIDE: &str = "/run/agp/egress";
const BRIDGE: &str = "127.0.0.1:3128";

#[test]
fn refused_fetches_all_return_under_runsc() {
    refused_fetches_all_return("runsc");
}

#[test]
fn refused_fetches_all_return_under_runc() {
    refused_fetches_all_return("runc");
}

/// Every attempt the proxy judged.
#[derive(Default)]
struct Seen(Mutex<Vec<EgressAttempt>>);

impl EgressObserver for Seen {
    fn observe(&self, attempt: &EgressAttempt) -> Result<(), String> {
        self.0.lock().unwrap().push(attempt.clone());
        Ok(())
    }
}

fn refused_fetches_all_return(runtime: &str) {
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    chown(&repo, Some(UID), Some(UID)).unwrap();
    let egress = dir.path().join("egress");
    std::fs::create_dir(&egress).unwrap();
    chown(&egress, Some(UID), Some(UID)).unwrap();

    let seen = Arc::new(Seen::default());
    let socket = egress.join("egress.sock");
    let allowlist = Allowlist::parse(&["allowed.example:80".to_string()]).unwrap();
    let proxy = EgressProxy::start(ProxyConfig::new(&socket, allowlist), seen.clone()).unwrap();
    chown(&socket, Some(UID), Some(UID)).unwrap();

    let provider = DockerProvider::new(
        Engine::at(engine.socket()).unwrap(),
        image(dir.path(), engine.socket(), runtime),
        runtime.parse::<Runtime>().unwrap(),
    );
    let session = provider.spawn(&spec(&repo, &egress)).unwrap();
    // What an agent's shell would run, with nothing bounding each fetch: `wget` through the
    // proxy (a plain request), `nc` asking for a tunnel (CONNECT).
    let script = format!(
        "i=0; while [ $i -lt {ROUNDS} ]; do i=$((i+1)); \
         wget -q -O - http://blocked.example/x; echo \"wget $i: $?\"; \
         printf 'CONNECT blocked.example:443 HTTP/1.1\\r\\n\\r\\n' | nc {} {}; \
         echo \"nc $i: $?\"; done",
        BRIDGE.split(':').next().unwrap(),
        BRIDGE.split(':').nth(1).unwrap(),
    );
    let out = provider.exec(
        &session,
        &ExecRequest {
            argv: [
                AGP_INSIDE,
                "egress-bridge",
                "--listen",
                BRIDGE,
                "--socket",
                &format!("{EGRESS_INSIDE}/egress.sock"),
                "--",
                "/bin/sh",
                "-c",
                &script,
            ]
            .map(String::from)
            .to_vec(),
            cwd: repo.clone(),
            stdin: None,
            timeout: Duration::from_secs(300),
        },
    );
    let _ = provider.teardown(session);
    proxy.stop();
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ran = format!("{runtime}: {out:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!out.timed_out, "a refused fetch never returned; {ran}");
    assert_eq!(out.exit_code, Some(0), "{ran}");

    for i in 1..=ROUNDS {
        // wget reports the refusal as a failure; nc ends once the proxy has closed.
        assert!(stdout.contains(&format!("wget {i}: 1\n")), "{ran}");
        assert!(stdout.contains(&format!("nc {i}: 0\n")), "{ran}");
    }
    assert_eq!(
        stdout.matches("HTTP/1.1 403 Forbidden").count(),
        ROUNDS,
        "each CONNECT got the proxy's refusal: {ran}"
    );
    let seen = seen.0.lock().unwrap();
    let refused = |method: &str, port: u16| {
        seen.iter()
            .filter(|a| {
                !a.allowed
                    && a.method == method
                    && a.host.as_deref() == Some("blocked.example")
                    && a.port == Some(port)
            })
            .count()
    };
    assert_eq!(refused("GET", 80), ROUNDS, "{seen:#?}");
    assert_eq!(refused("CONNECT", 443), ROUNDS, "{seen:#?}");
    assert_eq!(seen.len(), 2 * ROUNDS, "{seen:#?}");
}

/// The default image, built by the real binary and pinned.
fn image(dir: &Path, socket: &Path, runtime: &str) -> ImageRef {
    let home = dir.join("home");
    let out = std::process::Command::new(AGP)
        .arg("--home")
        .arg(&home)
        .args(["sandbox", "image", "build", "--socket"])
        .arg(socket)
        // One tag per test: the tests run at once, and a tag moved by another build is refused.
        .args(["--tag", &format!("localhost/agp-egress:{runtime}")])
        .output()
        .unwrap();
    let built = assert_ran(&out);
    built
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no pinned reference in: {built}"))
        .parse()
        .unwrap()
}

/// No network but the container's own loopback; agp and the egress socket's directory bound
/// read-only, as `agp run` binds them, with what agp's loader needs.
fn spec(repo: &Path, egress: &Path) -> SandboxSpec {
    let mut spec = SandboxSpec::new("egress-docker", repo);
    spec.env
        .push(("http_proxy".into(), format!("http://{BRIDGE}")));
    let ro = |source: PathBuf, dest: PathBuf| BindMount {
        source,
        dest,
        writable: false,
    };
    spec.binds
        .push(ro(egress.to_path_buf(), PathBuf::from(EGRESS_INSIDE)));
    spec.binds.push(ro(AGP.into(), PathBuf::from(AGP_INSIDE)));
    for (source, dest) in agp_sandbox::docker::loader_files(Path::new(AGP)).unwrap() {
        spec.binds.push(ro(source, dest));
    }
    spec
}
