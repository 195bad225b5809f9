//! The governed loop with `--sandbox docker`: the real binary builds the default image in a
//! real engine (this test binary's own dockerd, or its own Podman service), pins it in config.toml, and a scripted session
//! runs its calls in a container, preflight journaled.

use std::path::Path;

use agp_testkit::docker::{container_exists, DockerEngine};
use agp_testkit::podman::PodmanEngine;

use super::support::looping::{
    agp_detached, agp_ok, bash_calls_yaml, init_home, journal, write_allow_everything,
};

/// The default image's non-root uid: the repository is given to it (the container runs as the
/// repository's owner).
const UID: u32 = 65534;

/// Builds the image with the binary, pins it in config.toml; the pinned reference.
fn build_and_pin(home: &Path, socket: &Path, runtime: &str) -> String {
    let socket = socket.to_str().unwrap();
    // One tag per test: the tests run at once, and a tag moved by another build is refused.
    let tag = format!("localhost/agp-e2e:{runtime}");
    let out = agp_ok(
        home,
        None,
        &[
            "sandbox", "image", "build", "--socket", socket, "--tag", &tag,
        ],
    );
    let pinned = out
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no pinned reference in: {out}"));
    assert!(pinned.starts_with(&format!("{tag}@sha256:")), "{out}");
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[sandbox.docker]\nimage = \"{pinned}\"\nsocket = \"{socket}\"\nruntime = \"{runtime}\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    pinned.to_string()
}

/// The engine's socket, its kind as `agp doctor` names it, and its log.
type Served = (&'static Path, &'static str, Box<dyn Fn() -> String>);

fn docker() -> Option<Served> {
    let engine = DockerEngine::shared()?;
    Some((engine.socket(), "Docker", Box::new(|| engine.log())))
}

fn podman() -> Option<Served> {
    let engine = PodmanEngine::shared()?;
    Some((engine.socket(), "Podman", Box::new(|| engine.log())))
}

fn scripted_session_runs_in_a_container(served: Option<Served>, runtime: &str) {
    let Some((socket, kind, log)) = served else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let user_home = dir.path().join("user");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&user_home).unwrap();
    std::fs::create_dir(&repo).unwrap();
    std::os::unix::fs::chown(&repo, Some(UID), Some(UID)).unwrap();
    init_home(&home, Some(&user_home));
    let pinned = build_and_pin(&home, socket, runtime);
    // With provider = "docker" in config.toml, doctor checks the engine, runtime and image.
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "\n[sandbox.docker]\nimage",
            "\n[sandbox]\nprovider = \"docker\"\n[sandbox.docker]\nimage",
        ),
    )
    .unwrap();
    let doctor = agp_detached(&home, &user_home)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let sandbox = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "sandbox")
        .unwrap();
    assert_eq!(sandbox["ok"], true, "{sandbox}");
    let detail = sandbox["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("runtime {runtime}"))
            && detail.contains(&format!("docker provider: {kind} "))
            && detail.contains("a default session runs (preflight passed"),
        "{sandbox}"
    );

    // A container an earlier agp of this home left behind (a crash), and one of another home.
    let orphan = |owner: &Path| {
        let provider = agp_sandbox::docker::DockerProvider::new(
            agp_sandbox::docker::Engine::at(socket).unwrap(),
            pinned.parse().unwrap(),
            agp_sandbox::docker::Runtime::Runc,
        )
        .owner(std::fs::canonicalize(owner).unwrap().display().to_string());
        let session = agp_contracts::SandboxProvider::spawn(
            &provider,
            &agp_contracts::sandbox::SandboxSpec::new("left-behind", &repo),
        )
        .unwrap();
        let id = session.container_id().to_string();
        std::mem::forget(session);
        id
    };
    let ours = orphan(&home);
    let theirs = orphan(&user_home);

    let script = dir.path().join("calls.yaml");
    std::fs::write(
        &script,
        bash_calls_yaml(&[
            "echo from-the-container > made.txt && id -u",
            "cat /proc/version",
            "echo pwned > /etc/agp-escape; ls /etc/agp-escape",
        ]),
    )
    .unwrap();
    let policy = write_allow_everything(dir.path());
    let out = agp_detached(&home, &user_home)
        .args([
            "run",
            "--intendant",
            "scripted",
            "--script",
            script.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--auto-approve",
            "--sandbox",
            "docker",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agp run ({runtime}) failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log().lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("removed 1 container(s)"), "{stderr}");
    assert!(
        !container_exists(socket, &ours),
        "the orphan of this home is still there"
    );
    assert!(
        container_exists(socket, &theirs),
        "another home's container was removed"
    );
    assert!(agp_sandbox::docker::remove_orphans(
        &agp_sandbox::docker::Engine::at(socket).unwrap(),
        &std::fs::canonicalize(&user_home)
            .unwrap()
            .display()
            .to_string(),
        |_| false,
    )
    .is_ok());
    assert_eq!(
        std::fs::read_to_string(repo.join("made.txt")).unwrap(),
        "from-the-container\n"
    );

    let entries = journal(&home);
    let preflight = entries
        .iter()
        .find(|e| e["kind"] == "sandbox.preflight")
        .expect("a sandbox.preflight entry");
    let report = &preflight["body"]["report"];
    assert_eq!(report["provider"], "docker", "{preflight}");
    assert_eq!(report["passed"], true, "{preflight}");
    let target = &report["target"];
    assert_eq!(target["runtime"], runtime, "{preflight}");
    assert_eq!(target["image"], pinned.as_str(), "{preflight}");
    assert_eq!(target["engine"], kind.to_ascii_lowercase(), "{preflight}");
    assert!(
        target["engine_version"]
            .as_str()
            .is_some_and(|v| v.starts_with(if kind == "Podman" { "4." } else { "20." })),
        "{preflight}"
    );
    assert_eq!(preflight["body"]["isolation"]["provider"], "docker");
    let results: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "tool_call.result")
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    let output = |i: usize| results[i]["body"]["output"].as_str().unwrap_or_default();
    assert_eq!(output(0), format!("{UID}\n"), "{:?}", results[0]);
    let host = std::fs::read_to_string("/proc/version").unwrap();
    match runtime {
        "runsc" => assert_ne!(output(1), host, "runsc showed the host kernel"),
        _ => assert_eq!(output(1), host, "runc shares the host kernel"),
    }
    assert_eq!(results[2]["body"]["exit_code"], 1, "{:?}", results[2]);
    assert!(
        output(2).contains("can't create /etc/agp-escape"),
        "{:?}",
        results[2]
    );
    assert!(!Path::new("/etc/agp-escape").exists());
}

#[test]
fn scripted_session_runs_in_a_runc_container() {
    scripted_session_runs_in_a_container(docker(), "runc");
}

#[test]
fn scripted_session_runs_in_a_podman_runc_container() {
    scripted_session_runs_in_a_container(podman(), "runc");
}

#[test]
fn scripted_session_runs_in_a_runsc_container() {
    scripted_session_runs_in_a_container(docker(), "runsc");
}

/// The sandbox check of `agp doctor --json` for a home whose config.toml selects the docker
/// provider.
fn doctor_sandbox(home: &Path, user_home: &Path) -> serde_json::Value {
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    if !text.contains("\n[sandbox]\nprovider = \"docker\"") {
        std::fs::write(
            &config,
            text.replace(
                "\n[sandbox.docker]\nimage",
                "\n[sandbox]\nprovider = \"docker\"\n[sandbox.docker]\nimage",
            ),
        )
        .unwrap();
    }
    let doctor = agp_detached(home, user_home)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "sandbox")
        .unwrap()
        .clone()
}

/// Podman runs every container with its default runtime (runc here): doctor says a runsc
/// home's sessions are refused, why, and a fix; the fix it names for this home (runc in
/// [sandbox.docker]) makes the check pass, proven by a default session.
#[test]
fn doctor_says_why_podman_refuses_runsc_and_the_fix_works() {
    let Some((socket, _, _)) = podman() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let user_home = dir.path().join("user");
    std::fs::create_dir_all(&user_home).unwrap();
    init_home(&home, Some(&user_home));
    build_and_pin(&home, socket, "runsc");
    let sandbox = doctor_sandbox(&home, &user_home);
    assert_eq!(sandbox["ok"], false, "{sandbox}");
    let detail = sandbox["detail"].as_str().unwrap();
    let fix = sandbox["fix"].as_str().unwrap();
    assert!(detail.contains("containers/podman#28429"), "{sandbox}");
    assert!(
        fix.contains("`runtime = \"runsc\"` under [engine]")
            && fix.contains("runtime = \"runc\" under [sandbox.docker]"),
        "{sandbox}"
    );
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("runtime = \"runsc\"", "runtime = \"runc\""),
    )
    .unwrap();
    let sandbox = doctor_sandbox(&home, &user_home);
    assert_eq!(sandbox["ok"], true, "{sandbox}");
    assert!(
        sandbox["detail"]
            .as_str()
            .unwrap()
            .contains("a default session runs"),
        "{sandbox}"
    );
}

/// The other fix doctor names, applied: a Podman service whose containers.conf makes runsc
/// its default, started with the runtime flag the fix names; a runsc home's default
/// sessions then run there (on gVisor: the preflight checks the kernel).
#[test]
fn doctor_passes_runsc_on_a_podman_whose_default_is_runsc() {
    let Some(engine) = PodmanEngine::runsc() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let user_home = dir.path().join("user");
    std::fs::create_dir_all(&user_home).unwrap();
    init_home(&home, Some(&user_home));
    build_and_pin(&home, engine.socket(), "runsc");
    let sandbox = doctor_sandbox(&home, &user_home);
    assert_eq!(sandbox["ok"], true, "{sandbox}\n{}", engine.log());
    let detail = sandbox["detail"].as_str().unwrap();
    assert!(
        detail.contains("runtime runsc") && detail.contains("a default session runs"),
        "{sandbox}"
    );
}
