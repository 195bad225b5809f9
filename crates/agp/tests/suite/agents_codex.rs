//! The real Codex (pinned 0.169.0) under agp, against a fake OpenAI Responses API that scripts
//! its tool calls and records what the model was told.
//!
//! One governed session covers allow, deny, a compound-command bypass, a write outside the
//! repository, an edit of the managed hook requirements, egress to a host not on the allowlist and
//! both approval outcomes; separate tests cover the hook's fail-closed paths (no daemon, daemon
//! killed while an approval is pending).

use super::support::agents as agents_support;

use std::process::Command;

use agents_support::*;
use agp_testkit::{FakeModel, Turn};
use serde_json::Value;

/// A Codex home on the host with the fake provider, as a user's `$CODEX_HOME` would be.
fn codex_home(world: &World, model: &FakeModel) -> std::path::PathBuf {
    codex_home_with_fake_provider(world, model, "")
}

#[test]
fn codex_governed_session_pinned() {
    governed_session(CODEX_VERSION, Via::NativeVar("AGP_CODEX_BIN"));
}

#[test]
fn codex_governed_session_newest() {
    governed_session("0.171.0", Via::NpmPath);
}

fn governed_session(version: &'static str, via: Via) {
    let Some(governed) = governed(codex_at(version), via, "/etc/codex/requirements.toml") else {
        return;
    };
    let world = &governed.world;
    // A hostile repository brings its own allow-all hooks and re-enables TTY sessions: managed
    // requirements (allow_managed_hooks_only) and agp's flags win, as the denies below show.
    std::fs::create_dir(world.repo.join(".codex")).unwrap();
    let allow_all = r#"{"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command",
        "command": "echo {}"}]}]}}"#;
    std::fs::write(world.repo.join(".codex/hooks.json"), allow_all).unwrap();
    std::fs::write(
        world.repo.join(".codex/config.toml"),
        "[features]\nunified_exec_tty = true\n",
    )
    .unwrap();
    let mut turns = governed_session_turns(
        // 6: the same from the shell, past the policy
        Turn::Shell("echo {} > /etc/codex/requirements.toml".into()),
    );
    turns.extend([
        // 10, 11: a TTY session and `write_stdin` into it (Codex runs no hook for write_stdin)
        Turn::Tool {
            name: "exec_command".into(),
            input: serde_json::json!({"cmd": "cat > typed.txt", "tty": true, "yield_time_ms": 300}),
        },
        Turn::WriteStdin("typed past the hook\n".into()),
        // 12: allowed, and fails
        Turn::Shell("python3 no-such-script.py".into()),
        Turn::Text("finished".into()),
    ]);
    let model = FakeModel::openai(turns).unwrap();
    let home = codex_home(world, &model).display().to_string();
    let env = [
        ("CODEX_HOME", home.as_str()),
        ("FAKE_API_KEY", "not-a-real-key"),
    ];
    let (results, _) = governed.run("codex", &env, &model, CODEX_CALLS, 12);

    // 10, 11: no TTY sessions, so nothing can be typed into a running command past the hook.
    let told = result_for(&results, &CODEX_CALLS.harness(10));
    assert!(told.contains("TTY execution is disabled"), "{told}");
    assert!(
        !world.repo.join("typed.txt").exists()
            || std::fs::read_to_string(world.repo.join("typed.txt"))
                .unwrap()
                .is_empty()
    );
}

/// Codex with agp's hook (outside any sandbox: this tests the hook binary itself) and a
/// gateway that is not there: the call is denied, nothing runs.
#[test]
fn codex_hook_denies_when_the_daemon_is_not_running() {
    check_denied_without_daemon(&CODEX_ON_HOST);
}

/// A daemon killed (SIGKILL) while an approval is pending: the waiting hook denies.
#[test]
fn codex_hook_denies_when_the_daemon_dies_mid_approval() {
    kill_daemon_mid_approval(&CODEX_ON_HOST);
}

/// `codex exec` with agp's hook, for the hook's own tests.
const CODEX_ON_HOST: HostAgent = HostAgent {
    name: "codex",
    client: codex,
    model: FakeModel::openai,
    command: codex_exec,
    calls: CODEX_CALLS,
};

/// `codex exec` on the host with agp's hook in the user config. Outside agp's launcher the hook
/// is not managed, so these tests (of `agp hook` itself) pass `--dangerously-bypass-hook-trust`;
/// `agp run` never does and proves the managed wiring instead.
fn codex_exec(world: &World, model: &FakeModel, codex: &std::path::Path) -> Command {
    let home = codex_home(world, model);
    let hooks = format!(
        "\n[[hooks.PreToolUse]]\nmatcher = \"*\"\n[[hooks.PreToolUse.hooks]]\ntype = \"command\"\n\
         command = \"{AGP} hook --harness codex\"\ntimeout = 120\n"
    );
    let mut config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    config.push_str(&hooks);
    std::fs::write(home.join("config.toml"), config).unwrap();
    codex_exec_command(world, codex, &home)
}

/// A Codex whose `hooks/list` does not show agp's hook as managed and enabled (as an old or
/// patched build that would skip it silently): `agp run` refuses to start it. A stand-in
/// executable plays that Codex, so this runs whether or not the real client is installed.
#[test]
fn codex_launch_is_refused_when_the_hook_cannot_be_proven() {
    let (world, stderr) = refused_fake_codex(
        "0.169.0",
        "if [ \"$1\" = app-server ]; then\n\
           while read -r line; do\n\
             case \"$line\" in *'\"id\":2'*) echo '{\"id\":2,\"result\":{\"data\":[{\"cwd\":\"/\",\"hooks\":[],\"warnings\":[],\"errors\":[]}]}}';; esac\n\
           done\n\
           exit 0\n\
         fi\n\
         touch ran-ungoverned\n",
    );
    assert!(stderr.contains("hook wiring not verified"), "{stderr}");
    assert!(
        !world.repo.join("ran-ungoverned").exists(),
        "the agent started anyway"
    );
    let j = world.journal();
    assert!(j
        .iter()
        .any(|e| e["kind"] == "session.ended" && e["body"]["status"] == "failed"));
}

/// `agp install-hooks --codex` asks Codex whether it will run the hook: a fresh user hook is
/// untrusted (Codex would skip it silently), which is reported with exit code 1.
#[test]
fn codex_install_hooks_reports_an_untrusted_hook() {
    let Some(codex) = codex() else { return };
    let world = World::new();
    let codex_home = world.new_dir("codex-home");
    let out = Command::new(AGP)
        .arg("--home")
        .arg(&world.home)
        .args(["install-hooks", "--codex", "--user"])
        .env("CODEX_HOME", &codex_home)
        .env("AGP_CODEX_BIN", &codex)
        .current_dir(&world.repo)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Codex will SKIP the agp preToolUse hook (status: untrusted)"),
        "{stdout}"
    );
    let hooks: Value =
        serde_json::from_str(&std::fs::read_to_string(codex_home.join("hooks.json")).unwrap())
            .unwrap();
    assert!(hooks["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .ends_with("hook --harness codex --attach"));
}
