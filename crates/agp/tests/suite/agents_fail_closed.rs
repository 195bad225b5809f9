//! A hook process that cannot do its job must block the call, on every supported version of
//! both CLIs: the hook wiring agp generates (`agp hook … || exit 2`, plus `"onFailure":
//! "block"` on Claude Code 2.1.295+) is run with a broken `agp` — missing, exiting 1, killed by
//! a signal — and the scripted call must not run. A control run with a hook that merely does
//! not object shows the same call does run, so the marker file's absence means something.
//!
//! The CLIs run on the host (not in agp's sandbox: the subject is the harness's handling of a
//! failed hook process), with agp's generated hook entries loaded through `--settings` (Claude
//! Code) or the user config with `--dangerously-bypass-hook-trust` (Codex).

use super::support::agents as agents_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agents_support::*;
use agp_contracts::intendant::{GatewayEndpoint, LaunchContext};
use agp_intendants::claude_code::ClaudeCodeAdapter;
use agp_intendants::codex::CodexAdapter;
use agp_intendants::identity::Version;
use agp_intendants::live::LiveConfig;
use agp_testkit::{FakeModel, Turn};

/// The ways `agp hook` can be broken, and a control that does not object.
const BROKEN: &[(&str, Option<&str>)] = &[
    ("missing", None),
    ("exits 1", Some("#!/bin/sh\ncat >/dev/null\nexit 1\n")),
    ("killed by SIGKILL", Some("#!/bin/sh\nkill -9 $$\n")),
    ("crashes (SIGSEGV)", Some("#!/bin/sh\nkill -SEGV $$\n")),
];
const NO_OBJECTION: &str = "#!/bin/sh\ncat >/dev/null\nexit 0\n";

fn fake_agp(world: &World, name: &str, script: Option<&str>) -> PathBuf {
    let p = world
        .dir
        .path()
        .join(format!("agp-{}", name.replace(' ', "-")));
    if let Some(s) = script {
        write_executable(&p, s);
    }
    p
}

fn ctx(world: &World, agp: &Path) -> LaunchContext {
    LaunchContext {
        session: "s".into(),
        repo: world.repo.clone(),
        task: Some("do it".into()),
        gateway: GatewayEndpoint {
            socket: world.dir.path().join("none.sock"),
            token: "t".into(),
        },
        agp_exe: agp.to_path_buf(),
        interactive: false,
    }
}

fn live_config(version: &str) -> LiveConfig {
    LiveConfig {
        binary: "/unused".into(),
        hook_timeout_secs: 30,
        version: Version::find_in(version),
        ..Default::default()
    }
}

/// Runs Claude Code with agp's generated hook entries calling `agp`; whether the call ran.
fn claude_call_ran(client: &Client, agp: &Path) -> bool {
    let world = World::new();
    let adapter = ClaudeCodeAdapter {
        config: live_config(client.version),
        credentials: None,
    };
    let settings = world.file(
        "settings.json",
        &adapter.managed_settings(&ctx(&world, agp)).to_string(),
    );
    let model = FakeModel::anthropic(vec![
        Turn::Shell("echo ran > ran.txt".into()),
        Turn::Text("done".into()),
    ])
    .unwrap();
    let home = world.new_dir("claude-home");
    let out = Command::new(&client.native)
        // Bash is pre-approved: only the hook stands between the model and the call.
        .args([
            "-p",
            "do it",
            "--output-format",
            "json",
            "--allowedTools",
            "Bash",
            "--settings",
        ])
        .arg(&settings)
        .current_dir(&world.repo)
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    world.repo.join("ran.txt").exists()
}

/// Runs Codex with agp's generated hook entries calling `agp`; whether the call ran.
fn codex_call_ran(client: &Client, agp: &Path) -> bool {
    let world = World::new();
    let adapter = CodexAdapter {
        config: live_config(client.version),
        auth: None,
        user_config: None,
        provider_base_url: None,
    };
    let hooks: String = adapter
        .requirements(&ctx(&world, agp))
        .lines()
        .filter(|l| !l.starts_with("allow_managed_hooks_only"))
        .map(|l| format!("{l}\n"))
        .collect();
    let model = FakeModel::openai(vec![
        Turn::Shell("echo ran > ran.txt".into()),
        Turn::Text("done".into()),
    ])
    .unwrap();
    let home = codex_home_with_fake_provider(&world, &model, &format!("\n{hooks}"));
    let out = codex_exec_command(&world, &client.native, &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    world.repo.join("ran.txt").exists()
}

fn check(client: &Client, ran: fn(&Client, &Path) -> bool) {
    let world = World::new();
    assert!(
        ran(
            client,
            &fake_agp(&world, "no-objection", Some(NO_OBJECTION))
        ),
        "control: a hook that does not object must let the call run ({})",
        client.version
    );
    for (name, script) in BROKEN {
        let agp = fake_agp(&world, name, *script);
        assert!(
            !ran(client, &agp),
            "a hook whose agp {name} let the call run ({})",
            client.version
        );
    }
}

fn claude(version: &'static str) {
    if let Some(client) = claude_at(version) {
        check(&client, claude_call_ran);
    }
}

fn codex(version: &'static str) {
    if let Some(client) = codex_at(version) {
        check(&client, codex_call_ran);
    }
}

// One test per version of `CLAUDE_VERSIONS` / `CODEX_VERSIONS` (checked below), so they run
// in parallel and a failure names its version.
#[test]
fn claude_code_2_1_197_blocks_when_agp_hook_is_broken() {
    claude("2.1.197");
}

#[test]
fn claude_code_2_1_331_blocks_when_agp_hook_is_broken() {
    claude("2.1.331");
}

#[test]
fn claude_code_2_1_332_blocks_when_agp_hook_is_broken() {
    claude("2.1.332");
}

#[test]
fn codex_0_169_0_blocks_when_agp_hook_is_broken() {
    codex("0.169.0");
}

#[test]
fn codex_0_171_0_blocks_when_agp_hook_is_broken() {
    codex("0.171.0");
}

#[test]
fn every_tested_version_has_its_test() {
    let src = include_str!("agents_fail_closed.rs");
    for v in CLAUDE_VERSIONS.iter().chain(CODEX_VERSIONS) {
        let name = format!("_{}_blocks_when_agp_hook_is_broken()", v.replace('.', "_"));
        assert!(src.contains(&name), "no fail-closed test for version {v}");
    }
}
