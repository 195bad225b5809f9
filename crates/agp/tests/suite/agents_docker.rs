//! The real Claude Code and Codex under `agp run --sandbox docker`: the CLI runs inside the
//! session container (this test binary's own dockerd, runc and gVisor's runsc) with the same
//! managed hook wiring, egress proxy and wiring proof as under bubblewrap, against the fake
//! model servers. One pinned version of each per runtime.
//!
//! The default image is a static busybox root: there is no python3 inside, so what the
//! bubblewrap tests do with python scripts (invisible to the policy) is done here with `sh`
//! scripts, which the test policy allows for that reason.

use super::support::agents as agents_support;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;

use agents_support::*;
use agp_testkit::docker::DockerEngine;
use agp_testkit::{FakeModel, Turn};
use serde_json::Value;

/// The default image's non-root uid: the container runs as the repository's owner.
const UID: u32 = 65534;

/// The bubblewrap tests' policy, with `sh FILE` allowed in place of `python3 FILE` (it runs
/// scripts the policy cannot see into).
const POLICY: &str = r#"
version = 1
default = "deny"

[[rule]]
id = "harmless"
effect = "allow"
match = ["Bash(echo *)", "Bash(cat *)", "Bash(sh *)"]
reason = "harmless commands"

[[rule]]
id = "write-project"
effect = "allow"
match = ["Edit(/**)"]
reason = "writing inside the project"

[[rule]]
id = "needs-human"
effect = "require"
match = ["Bash(mkdir *)"]
reason = "creating directories needs a human"
"#;

#[test]
fn claude_code_in_a_runc_container() {
    claude_session("runc");
}

#[test]
fn claude_code_in_a_runsc_container() {
    claude_session("runsc");
}

#[test]
fn codex_in_a_runc_container() {
    codex_session("runc");
}

#[test]
fn codex_in_a_runsc_container() {
    codex_session("runsc");
}

fn claude_session(runtime: &str) {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let managed = "/etc/claude-code/managed-settings.json";
    let world = docker_world(engine.socket(), runtime, managed);
    let model = FakeModel::anthropic(turns()).unwrap();
    let url = model.base_url();
    let native = client.native.display().to_string();
    let env = [
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-test-not-a-real-key"),
        ("AGP_CLAUDE_BIN", native.as_str()),
    ];
    let out = world.run("claude-code", &env, "allow\ndeny not today\n");
    check_session(&world, &model, &out, CLAUDE_CALLS, runtime, engine);
}

fn codex_session(runtime: &str) {
    let Some(client) = codex_at(CODEX_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    // Known under runsc (gVisor 20221219, Codex 0.171.0), 5 runs of 53 here, none of 20 with
    // runc: Codex never sees a command's process end (`sh` at calls 4 and 5, `mkdir` at call
    // 7; at call 5 it had forked nothing, so not the hook's shell). It exited and stays an
    // unreaped zombie, the bridge has no connection open, Codex's threads are idle, and a
    // SIGCHLD sent by hand does not wake it; the run hangs until killed. Not the egress path:
    // egress_docker.rs. So under runsc a run that does not finish (a normal one takes
    // seconds) is stopped, which must leave no container, and tried again on a fresh world,
    // at most three times; a run that finishes is checked in full, whatever it did.
    let attempts = if runtime == "runsc" { 3 } else { 1 };
    for attempt in 1..=attempts {
        let world = docker_world(engine.socket(), runtime, "/etc/codex/requirements.toml");
        let model = FakeModel::openai(turns()).unwrap();
        let home = codex_home_with_fake_provider(&world, &model, "")
            .display()
            .to_string();
        let native = client.native.display().to_string();
        let env = [
            ("CODEX_HOME", home.as_str()),
            ("FAKE_API_KEY", "not-a-real-key"),
            ("AGP_CODEX_BIN", native.as_str()),
        ];
        let approvals = "allow\ndeny not today\n";
        let Some(out) = world.run_bounded("codex", &env, approvals, CODEX_HANG) else {
            let j = world.journal();
            let session = j
                .iter()
                .find(|e| e["kind"] == "session.started")
                .and_then(|e| e["session"].as_str())
                .expect("the stopped run had started a session");
            assert!(
                session_containers(engine.socket(), session).is_empty(),
                "the stopped run left its container"
            );
            assert!(
                attempt < attempts,
                "Codex under {runtime} hung {attempts} times in a row (the known gVisor hang, \
                 see above, or a new one)"
            );
            eprintln!("attempt {attempt}: Codex under {runtime} hung (known, see the test); again");
            continue;
        };
        check_codex(&world, &model, &out, runtime, engine);
        return;
    }
}

/// Longer than any finished Codex run here takes (seconds), short of the test harness's.
const CODEX_HANG: std::time::Duration = std::time::Duration::from_secs(60);

fn check_codex(
    world: &World,
    model: &FakeModel,
    out: &std::process::Output,
    runtime: &str,
    engine: &DockerEngine,
) {
    let j = check_session(world, model, out, CODEX_CALLS, runtime, engine);
    // The hook wiring was proven from inside the container before Codex started.
    assert!(
        j.iter().any(|e| e["kind"] == "intendant.wiring_verified"
            && e["body"]["method"] == "codex app-server hooks/list"),
        "{j:#?}"
    );
}

/// The scripted calls: what must run, what must not, and where it ran.
fn turns() -> Vec<Turn> {
    vec![
        // 1: allowed
        Turn::Shell("echo hello > made.txt".into()),
        // 2: denied by policy
        Turn::Shell("rm -rf keep".into()),
        // 3: allowed; records where it ran (the container's hostname and kernel)
        Turn::Shell("sh where.sh".into()),
        // 4: allowed by policy, a write outside the repository the container must stop
        Turn::Shell("sh escape.sh".into()),
        // 5: editing the managed hook settings from inside
        Turn::Shell("sh edit_settings.sh".into()),
        // 6: egress to a host not on the allowlist
        Turn::Shell("sh fetch.sh".into()),
        // 7, 8: approval granted, approval denied
        Turn::Shell("mkdir approved-dir".into()),
        Turn::Shell("mkdir denied-dir".into()),
        Turn::Text("finished".into()),
    ]
}

/// A world for a container session: the image built and pinned in config.toml, the test
/// policy, the scripts, and the repository given to the image's non-root uid.
pub(super) fn docker_world(socket: &Path, runtime: &str, managed: &str) -> World {
    let world = World::new();
    std::fs::write(&world.policy, POLICY).unwrap();
    // One tag per test: the tests run at once, and a tag moved by another build is refused.
    let name = world.dir.path().file_name().unwrap().to_string_lossy();
    let tag = format!("localhost/agp-agents:{runtime}-{}", name.to_lowercase());
    let out = std::process::Command::new(AGP)
        .arg("--home")
        .arg(&world.home)
        .args(["sandbox", "image", "build", "--socket"])
        .arg(socket)
        .args(["--tag", &tag])
        .output()
        .unwrap();
    let built = assert_ran(&out);
    let pinned = built
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no pinned reference in: {built}"));
    let config = world.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[sandbox]\nprovider = \"docker\"\n[sandbox.docker]\nimage = \"{pinned}\"\nsocket = \"{}\"\nruntime = \"{runtime}\"\n",
        socket.display()
    ));
    std::fs::write(&config, text).unwrap();
    let outside = host_only_dir(&world);
    let w = |name: &str, body: String| std::fs::write(world.repo.join(name), body).unwrap();
    w(
        "escape.sh",
        format!("echo x > {}\n", outside.join("pwned.txt").display()),
    );
    w("edit_settings.sh", format!("echo '{{}}' > {managed}\n"));
    w(
        "where.sh",
        "cat /etc/hostname /proc/version > where.txt\n".to_string(),
    );
    // Unbounded on purpose: the refused fetch returns by itself (egress_docker.rs proves it
    // many times over under runsc and runc).
    w(
        "fetch.sh",
        "wget -q -O - http://blocked.example/x\n".to_string(),
    );
    std::fs::create_dir(world.repo.join("keep")).unwrap();
    for entry in [
        "",
        "keep",
        "escape.sh",
        "edit_settings.sh",
        "where.sh",
        "fetch.sh",
    ] {
        chown(world.repo.join(entry), Some(UID), Some(UID)).unwrap();
    }
    world
}

/// What every container session must show: the run succeeded, each call was allowed, denied,
/// contained or approved as it must be, the commands ran in the container (under runsc on
/// gVisor's kernel), the preflight and the model's traffic through the egress proxy are
/// journaled, and the journal verifies. The journal.
fn check_session(
    world: &World,
    model: &FakeModel,
    out: &std::process::Output,
    calls: CallNames,
    runtime: &str,
    engine: &DockerEngine,
) -> Vec<Value> {
    let stdout = assert_ran(out);
    assert!(
        stdout.contains(&format!("sandbox docker ({runtime})")),
        "{stdout}"
    );
    assert_eq!(
        model.remaining_turns(),
        0,
        "the agent stopped early: {stdout}{}\n{}",
        text(&out.stderr),
        engine.log()
    );
    let results = model.tool_results();
    let j = world.journal();

    // 1: allowed and ran, as the repository's owner.
    let made = world.repo.join("made.txt");
    assert_eq!(
        std::fs::read_to_string(&made).ok().as_deref(),
        Some("hello\n"),
        "{results:#?}\n{stdout}{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&made).unwrap()),
        UID
    );
    assert_eq!(
        of_call(&j, "policy.decided", &calls.journal(1))[0]["body"]["decision"],
        "allow"
    );
    assert_eq!(of_call(&j, "tool_call.result", &calls.journal(1)).len(), 1);

    // 2: denied, nothing ran, the model was told agp's reason.
    assert!(world.repo.join("keep").is_dir(), "a denied rm ran");
    let told = result_for(&results, &calls.harness(2));
    assert!(told.contains("agp denied this call"), "{told}");
    assert!(of_call(&j, "tool_call.result", &calls.journal(2)).is_empty());

    // 3: it ran inside the container; under runsc, on gVisor's kernel, not the host's.
    let whereabouts = std::fs::read_to_string(world.repo.join("where.txt")).unwrap();
    assert!(whereabouts.starts_with("agp-sandbox\n"), "{whereabouts}");
    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    let kernel = whereabouts.lines().nth(1).unwrap_or_default();
    match runtime {
        "runsc" => assert_ne!(kernel, host_kernel.trim(), "runsc ran on the host kernel"),
        _ => assert_eq!(kernel, host_kernel.trim()),
    }

    // 4, 5: allowed by policy, stopped by the container's read-only root.
    assert!(!host_only_dir(world).join("pwned.txt").exists());
    for n in [4, 5] {
        let told = result_for(&results, &calls.harness(n));
        assert!(
            told.contains("Read-only file system") || told.contains("nonexistent directory"),
            "call {n}: {told}"
        );
    }

    // 6: egress refused by the proxy and journaled; the model API itself went through it.
    assert!(
        j.iter().any(|e| e["kind"] == "egress.denied"
            && e["body"]["host"] == "blocked.example"
            && e["body"]["port"] == 80),
        "{j:#?}"
    );
    let model_port = model.addr().port();
    assert!(j.iter().any(|e| e["kind"] == "egress.allowed"
        && e["body"]["host"] == "127.0.0.1"
        && e["body"]["port"] == model_port));

    // 7, 8: approval granted runs the call; approval denied does not, and says why.
    assert!(world.repo.join("approved-dir").is_dir());
    assert_eq!(of_call(&j, "approval.granted", &calls.journal(7)).len(), 1);
    assert!(!world.repo.join("denied-dir").exists());
    let told = result_for(&results, &calls.harness(8));
    assert!(told.contains("not today"), "{told}");

    // The container was proven before the agent started, as the docker provider's preflight.
    assert!(
        j.iter().any(|e| e["kind"] == "sandbox.preflight"
            && e["body"]["passed"] == true
            && e["body"]["provider"] == "docker"),
        "{j:#?}"
    );
    // Nothing reached the gateway that it had to turn away (the readiness check's connection
    // included).
    assert!(!j.iter().any(|e| e["kind"] == "gateway.rejected"), "{j:#?}");
    world.assert_verified();
    j
}

/// `agp run` killed outright (SIGKILL, nothing of it can clean up) while the agent's call waits
/// for a human: the agent does not outlive it. The relay it started dies with it and removes
/// the session container, and with it Claude Code and its waiting hook.
#[test]
fn a_run_killed_mid_approval_leaves_no_container() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let world = docker_world(
        engine.socket(),
        "runc",
        "/etc/claude-code/managed-settings.json",
    );
    let model = FakeModel::anthropic(vec![
        Turn::Shell("mkdir approved-dir".into()),
        Turn::Text("finished".into()),
    ])
    .unwrap();
    // Nobody writes to the FIFO: the approval stays pending.
    let fifo = world.dir.path().join("approvals.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut cmd = world.run_command("claude-code", "do the scripted work");
    cmd.arg("--approver-script")
        .arg(&fifo)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .env("AGP_CLAUDE_BIN", &client.native)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(world.dir.path().join("run.err")).unwrap());
    let mut run = cmd.spawn().unwrap();
    wait_until(60, "the approval was never requested", || {
        if let Some(status) = run.try_wait().unwrap() {
            let err = std::fs::read_to_string(world.dir.path().join("run.err")).unwrap();
            panic!("agp run ended ({status}) before asking: {err}");
        }
        world.home.join("journal/entries.jsonl").exists()
            && world
                .journal()
                .iter()
                .any(|e| e["kind"] == "approval.requested")
    });
    let session = world
        .journal()
        .iter()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_owned))
        .expect("a session started");
    let containers = session_containers(engine.socket(), &session);
    assert_eq!(containers.len(), 1, "{containers:?}");
    run.kill().unwrap();
    run.wait().unwrap();
    wait_until(60, "the session container outlived the killed run", || {
        !agp_testkit::docker::container_exists(engine.socket(), &containers[0])
    });
    assert!(!world.repo.join("approved-dir").exists());
}

/// The ids of the containers (running or not) labelled with `session`, asked with curl.
pub(super) fn session_containers(socket: &Path, session: &str) -> Vec<String> {
    let filter = format!("{{\"label\":[\"agp.session={session}\"]}}");
    let out = std::process::Command::new("curl")
        .args(["-s", "-G", "--unix-socket"])
        .arg(socket)
        .arg("http://docker/v1.41/containers/json")
        .args(["--data-urlencode", "all=1", "--data-urlencode"])
        .arg(format!("filters={filter}"))
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// An image the agent cannot work in (here: a HOME only root may enter, as images made before
/// agents ran in containers had) is refused before the agent starts, naming the fix, and no
/// container is left.
#[test]
fn an_image_without_a_writable_home_is_refused_naming_the_fix() {
    let Some(client) = codex_at(CODEX_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let world = docker_world(engine.socket(), "runc", "/etc/codex/requirements.toml");
    // The busybox root `agp sandbox image build` makes, but with HOME 0700 for the image's
    // account (the HOME tmpfs then takes that mode, owned by root).
    let root = world.new_dir("rootfs");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox-static");
    for dir in ["bin", "etc", "proc", "sys", "dev", "tmp", "home/agent"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let applets = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    for applet in text(&applets.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nagent:x:65534:65534::/home/agent:/bin/sh\n",
    )
    .unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(
        root.join("home/agent"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    chown(root.join("home/agent"), Some(UID), Some(UID)).unwrap();
    let tar = world.dir.path().join("rootfs.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let tag = "localhost/agp-agents:home-0700";
    let out = std::process::Command::new(AGP)
        .arg("--home")
        .arg(&world.home)
        .args(["sandbox", "image", "build", "--from-rootfs"])
        .arg(&tar)
        .arg("--socket")
        .arg(engine.socket())
        .args(["--tag", tag])
        .output()
        .unwrap();
    let built = assert_ran(&out);
    let pinned = built
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap();
    let config = world.home.join("config.toml");
    let repinned: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("image = ") {
                format!("image = \"{pinned}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&config, repinned).unwrap();
    let model = FakeModel::openai(vec![Turn::Text("finished".into())]).unwrap();
    let home = codex_home_with_fake_provider(&world, &model, "")
        .display()
        .to_string();
    let native = client.native.display().to_string();
    let out = world.run(
        "codex",
        &[
            ("CODEX_HOME", home.as_str()),
            ("FAKE_API_KEY", "not-a-real-key"),
            ("AGP_CODEX_BIN", native.as_str()),
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run an agent") && stderr.contains("agp sandbox image build"),
        "{stderr}"
    );
    assert!(model.requests().is_empty(), "the agent started");
    let session = world
        .journal()
        .iter()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_owned))
        .expect("a session started");
    assert!(session_containers(engine.socket(), &session).is_empty());
}
