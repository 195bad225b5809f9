//! `agp run` with agent CLIs as users have them: which binary runs (pins, versions), missing
//! logins, and a model that cannot be reached. Stand-in executables play the CLI where only
//! agp's side is tested, so those tests run whether or not the real clients are installed.

use super::support::agents as agents_support;

use std::path::{Path, PathBuf};

use agents_support::*;
use serde_json::Value;

/// A stand-in `claude` that prints `version` for `--version` and records any other start.
fn stand_in(world: &World, version: &str) -> PathBuf {
    write_executable(
        &world.dir.path().join("bin/claude"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version} (Claude Code)'; exit 0; fi\n\
             touch ran-ungoverned\n"
        ),
    )
}

fn run_claude(world: &World, exe: &std::path::Path) -> std::process::Output {
    world.run(
        "claude-code",
        &[
            ("AGP_CLAUDE_BIN", exe.to_str().unwrap()),
            ("ANTHROPIC_API_KEY", "sk-test-not-a-real-key"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
        ],
        "",
    )
}

#[test]
fn a_version_below_the_minimum_is_refused_saying_why() {
    let world = World::new();
    let exe = stand_in(&world, "2.1.100");
    let out = run_claude(&world, &exe);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("claude-code 2.1.100 is older than 2.1.197"),
        "{err}"
    );
    assert!(err.contains("PostToolUseFailure"), "{err}");
    assert!(!world.repo.join("ran-ungoverned").exists());
}

#[test]
fn a_binary_that_is_not_pinned_is_refused_naming_hash_and_file() {
    let world = World::new();
    let exe = stand_in(&world, "2.1.331");
    let config = world.home.join("config.toml");
    let mut text_cfg = std::fs::read_to_string(&config).unwrap();
    text_cfg.push_str(&format!(
        "\n[intendants.claude-code]\nsha256 = [\"{}\"]\n",
        "0".repeat(64)
    ));
    std::fs::write(&config, text_cfg).unwrap();
    let out = run_claude(&world, &exe);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    let sha = agp_contracts::canonical::sha256_hex(&std::fs::read(&exe).unwrap());
    assert!(err.contains(&sha), "{err}");
    assert!(err.contains(&exe.display().to_string()), "{err}");
    assert!(err.contains("[intendants.claude-code] sha256"), "{err}");
    assert!(!world.repo.join("ran-ungoverned").exists());
}

/// `SCOPE/claude-code` as `npm install --ignore-scripts` leaves it: the package's
/// `bin/claude.exe` is still the stub that only says the native binary is missing; its path.
fn stub_claude_package(scope: &Path) -> PathBuf {
    let root = scope.join("claude-code");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(
        root.join("package.json"),
        r#"{"name":"@anthropic-ai/claude-code","version":"2.1.332"}"#,
    )
    .unwrap();
    write_executable(
        &root.join("bin/claude.exe"),
        "echo \"Error: claude native binary not installed.\" >&2\nexit 1\n",
    )
}

#[test]
fn a_stub_claude_exe_left_by_ignore_scripts_is_explained() {
    let world = World::new();
    let stub = stub_claude_package(&world.dir.path().join("node_modules/@anthropic-ai"));
    let out = run_claude(&world, &stub);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("--ignore-scripts"), "{err}");
    assert!(!err.contains("Exec format error"), "{err}");
}

/// The stderr of a launch refused before the agent started (exit 2), which must be one line.
fn one_line_refusal(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn claude_code_without_a_login_says_so_in_one_line() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let world = World::new();
    let home = world.new_dir("empty-home");
    let mut cmd = world.run_command("claude-code", "do it");
    cmd.env("HOME", &home)
        .env("AGP_CLAUDE_BIN", &client.native)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN");
    let err = one_line_refusal(&cmd.output().unwrap());
    assert!(
        err.contains("Claude Code is not logged in: set ANTHROPIC_API_KEY"),
        "{err}"
    );
}

fn upstream_failures(j: &[Value], host: &str, port: u16) -> usize {
    j.iter()
        .filter(|e| {
            e["kind"] == "egress.upstream_failed"
                && e["body"]["host"] == host
                && e["body"]["port"] == port
                && e["body"]["error"].as_str().is_some_and(|s| !s.is_empty())
        })
        .count()
}

/// A model API nobody listens on: the proxy sees each connection fail, journals it, and agp
/// stops the run with the reason instead of letting the CLI retry for minutes.
#[test]
fn claude_code_with_an_unreachable_model_stops_with_the_reason() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let world = World::new();
    // Held for the whole test, so no test running beside it can start listening there.
    let refused = agp_testkit::RefusedPort::new().unwrap();
    let port = refused.port();
    let url = format!("http://127.0.0.1:{port}");
    let out = world.run(
        "claude-code",
        &[
            ("PATH", &client.path_env()),
            ("ANTHROPIC_API_KEY", "sk-test-not-a-real-key"),
            ("ANTHROPIC_BASE_URL", &url),
        ],
        "",
    );
    assert!(!out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the model API at 127.0.0.1:{port} cannot be reached"
        )),
        "{err}"
    );
    let j = world.journal();
    assert!(upstream_failures(&j, "127.0.0.1", port) >= 1, "{j:#?}");
    assert!(j
        .iter()
        .any(|e| e["kind"] == "session.ended" && e["body"]["status"] == "failed"));
}

/// Codex with nothing but `OPENAI_API_KEY` (no config.toml, no auth.json: CODEX_HOME must still
/// exist in the sandbox) starts through npm's launcher, and its unreachable default API (no
/// network here) is reported as such.
#[test]
fn codex_with_only_an_api_key_starts_and_reports_the_unreachable_api() {
    let Some(client) = codex_at("0.171.0") else {
        return;
    };
    let world = World::new();
    let codex_home = world.new_dir("codex-home");
    let out = world.run(
        "codex",
        &[
            ("PATH", &client.path_env()),
            ("CODEX_HOME", codex_home.to_str().unwrap()),
            ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ],
        "",
    );
    assert!(!out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(!err.contains("CODEX_HOME"), "{err}");
    assert!(
        err.contains("the model API at api.openai.com:443 cannot be reached")
            || err.contains("the model API at chatgpt.com:443 cannot be reached"),
        "{err}"
    );
    let j = world.journal();
    assert!(
        j.iter().any(|e| e["kind"] == "intendant.wiring_verified"),
        "Codex started and proved its hooks: {j:#?}"
    );
    assert!(upstream_failures(&j, "api.openai.com", 443) >= 1, "{j:#?}");
}

#[test]
fn a_version_outside_the_tested_range_runs_with_a_journaled_warning() {
    let world = World::new();
    let exe = stand_in(&world, "2.1.999");
    let out = run_claude(&world, &exe);
    assert!(out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: claude-code 2.1.999 is not among the versions agp was tested with"),
        "{err}"
    );
    // The stand-in ran (in the sandbox) as the agent.
    assert!(world.repo.join("ran-ungoverned").exists());
    let j = world.journal();
    let warned = of_kind(&j, "intendant.version_untested");
    assert_eq!(warned.len(), 1, "{j:#?}");
    assert_eq!(warned[0]["body"]["version"], "2.1.999");
    let started = j.iter().find(|e| e["kind"] == "session.started").unwrap();
    let id = &started["body"]["intendant_identity"];
    assert_eq!(id["version"], "2.1.999");
    assert_eq!(id["tested"], false);
    assert_eq!(
        id["sha256"],
        agp_contracts::canonical::sha256_hex(&std::fs::read(&exe).unwrap()).as_str()
    );
}

#[test]
fn codex_without_a_key_says_so_in_one_line() {
    let world = World::new();
    let codex_home = world.new_dir("codex-home");
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = world.run_command("codex", "do it");
        cmd.env("CODEX_HOME", &codex_home)
            .env("AGP_CODEX_BIN", "/nonexistent/codex")
            .env_remove("OPENAI_API_KEY")
            .env_remove("CODEX_API_KEY");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let err = one_line_refusal(&run(&[]));
    assert!(
        err.contains("Codex is not logged in: set OPENAI_API_KEY"),
        "{err}"
    );

    // A provider whose env_key is not set names that variable.
    std::fs::write(
        codex_home.join("config.toml"),
        "model_provider = \"corp\"\n[model_providers.corp]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         env_key = \"CORP_KEY\"\n",
    )
    .unwrap();
    let err = text(&run(&[]).stderr);
    assert!(
        err.contains("Codex has no credentials: set CORP_KEY"),
        "{err}"
    );
}

/// A Codex whose `app-server` dies at once: the launch failure shows its exit status and the
/// end of its stderr, not a timeout.
#[test]
fn codex_that_exits_early_is_reported_with_status_and_stderr() {
    let (_world, err) = refused_fake_codex(
        "0.171.0",
        "echo 'Error: Missing optional dependency @openai/codex-linux-x64' >&2\nexit 3\n",
    );
    assert!(
        err.contains(
            "`codex app-server` stopped before listing its hooks: it exited with status 3"
        ),
        "{err}"
    );
    assert!(
        err.contains("Missing optional dependency @openai/codex-linux-x64"),
        "{err}"
    );
    assert!(!err.contains("in time"), "{err}");
}

/// `npm install --ignore-scripts` leaves `claude.exe` as a stub: agp runs the platform
/// package's real binary instead (here a real Claude Code behind a stub, hoisted beside it).
#[test]
fn a_stub_claude_exe_runs_the_platform_packages_binary() {
    let Some(client) = claude_at("2.1.332") else {
        return;
    };
    let world = World::new();
    let nm = world.dir.path().join("node_modules/@anthropic-ai");
    let stub = stub_claude_package(&nm);
    let platform = client.native.parent().unwrap();
    std::os::unix::fs::symlink(platform, nm.join(platform.file_name().unwrap())).unwrap();
    let out = run_claude(&world, &stub);
    // The real CLI started (the model port is closed, so the run stops on that).
    let err = text(&out.stderr);
    assert!(
        err.contains("the model API at 127.0.0.1:9 cannot be reached"),
        "{err}"
    );
    let j = world.journal();
    check_identity(&j, &client);
    let started = j.iter().find(|e| e["kind"] == "session.started").unwrap();
    assert_eq!(
        started["body"]["intendant_identity"]["layout"],
        "npm platform package"
    );
}
