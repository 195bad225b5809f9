//! A running `agp daemon` follows its policy file: an edit in place, a file renamed over it, a
//! retargeted symlink and SIGHUP each put the new policy in force for the next call, journaled
//! as `policy.reloaded` with both hashes; an invalid edit is refused with its file:line:col and
//! the previous policy keeps judging; SIGHUP no longer stops the daemon; a call waiting for
//! approval during a reload stays judged by the policy it started under; a policy a live
//! session's agent can write is not reloaded while that session lives.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use agp_gateway::{Client, ToolCallRequest, VerdictMessage};
use serde_json::Value;

use super::support::daemon::{
    self, bodies, entries_so_far, mkfifo, sighup, ALLOW_ECHO, DENY_ECHO, PATIENCE,
};
use super::support::looping::{
    agp_ok, open_session, policy_world, start_daemon_with_sandbox, Daemon,
};

/// `git push` needs an approval.
const PUSH_ASKS: &str = "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"push-asks\"\neffect = \"require\"\nmatch = [\"Bash(git push:*)\"]\n";

fn of_kind(home: &Path, kind: &str) -> Vec<Value> {
    bodies(entries_so_far(home), kind)
}

/// Polls the journal until it holds `n` entries of `kind`; their bodies.
fn wait_for_n(home: &Path, kind: &str, n: usize) -> Vec<Value> {
    daemon::wait_for_n(home, entries_so_far, kind, n)
}

/// A proxy-exec session (each call runs in agp's sandbox, so its agent is confined: a
/// daemon reloads its policy while it lives) opened with the daemon's admin token; its token.
fn open_sandboxed_session(home: &Path, repo: &Path) -> String {
    open_session(home, repo, agp_gateway::SessionMode::ProxyExec, PATIENCE)
}

/// The daemon on `policy` with a sandboxed session open, and a client of that session.
struct Running {
    daemon: Daemon,
    client: Client,
    home: PathBuf,
    repo: PathBuf,
    token: String,
}

fn start(home: &Path, repo: &Path, policy: &Path, extra: &[&OsStr]) -> Running {
    let mut args = vec![OsStr::new("--policy"), policy.as_os_str()];
    args.extend_from_slice(extra);
    let daemon = start_daemon_with_sandbox(home, "bwrap", args);
    let token = open_sandboxed_session(home, repo);
    let mut client = Client::connect(&home.join("run/gateway.sock"), PATIENCE).unwrap();
    client.hello(&token).unwrap();
    Running {
        daemon,
        client,
        home: home.to_path_buf(),
        repo: repo.to_path_buf(),
        token,
    }
}

impl Running {
    fn call(&mut self, id: &str, command: &str) -> VerdictMessage {
        self.client
            .request_exec(&request(id, command, &self.repo))
            .unwrap()
            .verdict
    }

    /// Call `id` runs `command`: allowed or not as `allowed`, judged by the policy `sha256`.
    fn judged(&mut self, id: &str, command: &str, allowed: bool, sha256: &str) {
        let v = self.call(id, command);
        assert_eq!(v.is_allow(), allowed, "{v:?}");
        assert_eq!(self.judged_by(id), sha256);
    }

    /// The SHA-256 of the policy that judged call `id` (its one `policy.decided`).
    fn judged_by(&self, id: &str) -> String {
        let decided: Vec<Value> = of_kind(&self.home, "policy.decided")
            .into_iter()
            .filter(|b| b["call_id"] == id)
            .collect();
        assert_eq!(decided.len(), 1, "call {id} is judged once: {decided:?}");
        decided[0]["policy_sha256"].as_str().unwrap().to_owned()
    }

    fn sighup(&self) {
        sighup(&self.daemon.0);
    }

    /// Stops the daemon; the journal it wrote verifies.
    fn end_and_verify(self) {
        let home = self.home.clone();
        drop(self);
        agp_ok(&home, None, &["verify"]);
    }

    fn still_running(&mut self) {
        assert!(
            self.daemon.0.try_wait().unwrap().is_none(),
            "the daemon must keep running"
        );
    }
}

fn request(id: &str, command: &str, repo: &Path) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: serde_json::json!({ "command": command }),
        cwd: repo.display().to_string(),
    }
}

/// Writes `text` next to `path` and renames it over `path`, as editors save.
fn replace_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits for the `n`-th reload and checks it as [`reloaded`]; the new policy's hash.
fn nth_reload(home: &Path, n: usize, old: &str, trigger: &str) -> String {
    let events = wait_for_n(home, "policy.reloaded", n);
    reloaded(&events[n - 1], old, trigger)
}

fn reloaded(body: &Value, old: &str, trigger: &str) -> String {
    assert_eq!(body["old_sha256"], old, "{body}");
    assert_eq!(body["trigger"], trigger, "{body}");
    let new = body["new_sha256"].as_str().unwrap().to_owned();
    assert_eq!(new.len(), 64);
    assert_ne!(new, old, "an unchanged policy is not a reload");
    new
}

#[test]
fn edits_in_place_and_by_rename_judge_the_next_call() {
    let w = policy_world(DENY_ECHO);
    let mut d = start(&w.home, &w.repo, &w.policy, &[]);
    assert!(!d.call("c1", "echo one").is_allow());
    let first = d.judged_by("c1");

    // In place (truncate and write, as `>` or many editors do).
    std::fs::write(&w.policy, ALLOW_ECHO).unwrap();
    let events = wait_for_n(&w.home, "policy.reloaded", 1);
    let second = reloaded(&events[0], &first, "watch");
    assert_eq!(events[0]["path"], w.policy.display().to_string());
    let v = d.call("c2", "echo two");
    assert!(v.is_allow(), "{v:?}");
    assert_eq!(v.rule_id.as_deref(), Some("echo-ok"));
    assert_eq!(d.judged_by("c2"), second);

    // Renamed over the file: the watch on the directory sees it.
    replace_by_rename(&w.policy, &format!("# saved by an editor\n{DENY_ECHO}"));
    let third = nth_reload(&w.home, 2, &second, "watch");
    d.judged("c3", "echo three", false, &third);

    // The same policy saved again is no reload; the next one is.
    std::fs::write(&w.policy, format!("# saved by an editor\n{DENY_ECHO}")).unwrap();
    replace_by_rename(&w.policy, ALLOW_ECHO);
    assert_eq!(nth_reload(&w.home, 3, &third, "watch"), second);
    assert!(d.call("c4", "echo four").is_allow());
    drop(d);
    assert_eq!(of_kind(&w.home, "policy.reloaded").len(), 3);
    agp_ok(&w.home, None, &["verify"]);
}

#[test]
fn an_invalid_edit_is_refused_with_its_place_and_the_old_policy_keeps_judging() {
    let w = policy_world(ALLOW_ECHO);
    let mut d = start(&w.home, &w.repo, &w.policy, &[]);
    assert!(d.call("c1", "echo one").is_allow());
    let first = d.judged_by("c1");

    std::fs::write(&w.policy, "version = 1\ndefault = \"maybe\"\n").unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 1);
    let body = &refused[0];
    assert_eq!(body["kept_sha256"], first.as_str(), "{body}");
    assert_eq!(body["trigger"], "watch");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{}:2:11:", w.policy.display())),
        "the refusal names file:line:col: {error}"
    );
    // The old policy still judges, and nothing was reloaded.
    d.judged("c2", "echo two", true, &first);
    assert!(of_kind(&w.home, "policy.reloaded").is_empty());

    // A policy that cannot even be read (an unknown key, a half-written table) is refused too.
    std::fs::write(&w.policy, "version = 1\n[[rule]\n").unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 2);
    assert!(
        refused[1]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{}:2:", w.policy.display())),
        "{}",
        refused[1]
    );
    d.judged("c3", "echo three", true, &first);

    // Fixed: the fix is a reload from the policy that was kept.
    std::fs::write(&w.policy, DENY_ECHO).unwrap();
    let fixed = nth_reload(&w.home, 1, &first, "watch");
    d.judged("c4", "echo four", false, &fixed);
    d.end_and_verify();
}

#[test]
fn sighup_reloads_and_the_daemon_keeps_running() {
    let w = policy_world(DENY_ECHO);
    // Without the watch, only SIGHUP reloads: what is reloaded is SIGHUP's doing.
    let config = w.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[policy]\nwatch = false\n");
    std::fs::write(&config, text).unwrap();
    let mut d = start(&w.home, &w.repo, &w.policy, &[]);
    assert!(!d.call("c1", "echo one").is_allow());
    let first = d.judged_by("c1");

    // Every file below is replaced whole (renamed over it): a SIGHUP is handled while the test
    // goes on, and must never read a file half written.
    replace_by_rename(&w.policy, ALLOW_ECHO);
    assert!(
        !d.call("c3", "echo three").is_allow(),
        "without the watch an edit waits for SIGHUP"
    );
    assert_eq!(d.judged_by("c3"), first);
    d.sighup();
    let second = nth_reload(&w.home, 1, &first, "sighup");
    let v = d.call("c4", "echo four");
    assert!(v.is_allow(), "{v:?}");
    assert_eq!(d.judged_by("c4"), second);
    d.still_running();

    // SIGHUP with nothing changed: the daemon stays and goes on judging. (It is handled in the
    // background: it may read the file the next step writes, which it then refuses as well.)
    d.sighup();
    d.judged("c2", "echo two", true, &second);
    d.still_running();

    // An invalid file on SIGHUP is refused and journaled as such.
    replace_by_rename(&w.policy, "version = 1\ndefault = \"maybe\"\n");
    d.sighup();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 1);
    assert_eq!(refused[0]["trigger"], "sighup");
    assert_eq!(refused[0]["kept_sha256"], second.as_str());
    assert!(d.call("c5", "echo five").is_allow());
    d.still_running();
    drop(d);
    assert_eq!(of_kind(&w.home, "policy.reloaded").len(), 1);
    agp_ok(&w.home, None, &["verify"]);
}

#[test]
fn a_symlinked_policy_follows_edits_of_its_target_and_a_retargeted_link() {
    let w = policy_world(DENY_ECHO);
    let team = w.dir.path().join("team");
    std::fs::create_dir(&team).unwrap();
    let target = team.join("strict.toml");
    std::fs::write(&target, DENY_ECHO).unwrap();
    let link = w.dir.path().join("linked-policy.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut d = start(&w.home, &w.repo, &link, &[]);
    assert!(!d.call("c1", "echo one").is_allow());
    let first = d.judged_by("c1");

    // The file the link points at is edited (in another directory).
    std::fs::write(&target, ALLOW_ECHO).unwrap();
    let events = wait_for_n(&w.home, "policy.reloaded", 1);
    let second = reloaded(&events[0], &first, "watch");
    assert_eq!(events[0]["path"], link.display().to_string());
    assert!(d.call("c2", "echo two").is_allow());

    // The link is pointed elsewhere (replaced by rename, as `ln -sfn` tools do).
    let other = team.join("asks.toml");
    std::fs::write(&other, PUSH_ASKS).unwrap();
    let new_link = w.dir.path().join("linked-policy.toml.new");
    std::os::unix::fs::symlink(&other, &new_link).unwrap();
    std::fs::rename(&new_link, &link).unwrap();
    let third = nth_reload(&w.home, 2, &second, "watch");
    d.judged("c3", "echo three", false, &third);
    d.end_and_verify();
}

#[test]
fn a_call_waiting_for_approval_during_a_reload_is_judged_by_one_policy() {
    let w = policy_world(PUSH_ASKS);
    // Approvals come from a FIFO the test answers once the reload is in.
    let fifo = w.dir.path().join("approver.fifo");
    mkfifo(&fifo);
    let d = start(
        &w.home,
        &w.repo,
        &w.policy,
        &[
            OsStr::new("--approval-timeout"),
            OsStr::new("120"),
            OsStr::new("--approver-script"),
            fifo.as_os_str(),
        ],
    );
    let socket = w.home.join("run/gateway.sock");
    let (token, repo) = (d.token.clone(), w.repo.clone());
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, PATIENCE * 2).unwrap();
        c.hello(&token).unwrap();
        c.request_exec(&request("push-1", "git push origin main", &repo))
            .unwrap()
            .verdict
    });
    wait_for_n(&w.home, "approval.requested", 1);
    let first = d.judged_by("push-1");

    // The new policy denies every push; the call in flight was already judged.
    std::fs::write(&w.policy, DENY_ECHO).unwrap();
    let second = nth_reload(&w.home, 1, &first, "watch");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"allow\n")
        .unwrap();
    let verdict = waiting.join().unwrap();
    assert!(
        verdict.is_allow(),
        "approved under the policy it started with: {verdict:?}"
    );
    // One judgment, by the first policy, and its approval.
    assert_eq!(d.judged_by("push-1"), first);
    let granted = wait_for_n(&w.home, "approval.granted", 1);
    assert_eq!(granted[0]["call_id"], "push-1");

    // The next push is judged by the new policy.
    let mut d = d;
    let v = d.call("push-2", "git push origin main");
    assert!(!v.is_allow(), "{v:?}");
    assert_eq!(d.judged_by("push-2"), second);
    d.end_and_verify();
}

/// `agp run` builds the same daemon: its policy is reloaded mid-run too (SIGHUP there still
/// interrupts the run: it means the run's terminal is gone).
#[test]
fn agp_run_reloads_its_policy_mid_run() {
    let w = super::support::looping::git_world();
    let policy = w.file(
        "policy.toml",
        "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"status-asks\"\neffect = \"require\"\nmatch = [\"Bash(git status:*)\"]\n",
    );
    let script = w.file(
        "script.yaml",
        &super::support::looping::bash_calls_yaml(&["git status", "echo after"]),
    );
    let fifo = w.dir.path().join("approver.fifo");
    mkfifo(&fifo);
    let run = super::support::looping::agp_detached(&w.home, &w.user_home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(&script)
        .arg("--repo")
        .arg(&w.repo)
        .arg("--policy")
        .arg(&policy)
        .arg("--approver-script")
        .arg(&fifo)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Reaped(Some(run));
    wait_for_n(&w.home, "approval.requested", 1);
    let first = of_kind(&w.home, "policy.decided")[0]["policy_sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    std::fs::write(
        &policy,
        format!("{ALLOW_ECHO}\n[[rule]]\nid = \"status-asks\"\neffect = \"require\"\nmatch = [\"Bash(git status:*)\"]\n"),
    )
    .unwrap();
    let second = nth_reload(&w.home, 1, &first, "watch");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"allow\n")
        .unwrap();
    let out = run.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The echo was requested after the reload: judged (and allowed) by the new policy.
    let echo = of_kind(&w.home, "tool_call.requested")
        .into_iter()
        .find(|b| b["input"]["command"] == "echo after")
        .unwrap();
    let decided = of_kind(&w.home, "policy.decided")
        .into_iter()
        .find(|b| b["call_id"] == echo["call_id"])
        .unwrap();
    assert_eq!(decided["policy_sha256"], second.as_str());
    assert_eq!(decided["decision"], "allow");
    let granted = wait_for_n(&w.home, "approval.granted", 1);
    assert_ne!(granted[0]["call_id"], echo["call_id"]);
    agp_ok(&w.home, Some(&w.user_home), &["verify"]);
}

/// A child killed and reaped on drop unless taken.
struct Reaped(Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls race reloads that flip the policy back and forth: every call is judged once, and its
/// decision is the one of the policy its `policy.decided` names, never a mix.
#[test]
fn calls_racing_reloads_are_each_judged_by_the_policy_they_name() {
    let w = policy_world(DENY_ECHO);
    let d = start(&w.home, &w.repo, &w.policy, &[]);
    let socket = w.home.join("run/gateway.sock");
    let (token, repo) = (d.token.clone(), w.repo.clone());
    let caller = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, PATIENCE).unwrap();
        c.hello(&token).unwrap();
        let mut verdicts = Vec::new();
        for i in 0..150 {
            let id = format!("race-{i}");
            let v = c
                .request_exec(&request(&id, "echo racing", &repo))
                .unwrap()
                .verdict;
            verdicts.push((id, v.is_allow()));
        }
        verdicts
    });
    for flip in 0..8 {
        let text = if flip % 2 == 0 { ALLOW_ECHO } else { DENY_ECHO };
        // A comment makes every version a new policy (a new SHA-256).
        replace_by_rename(&w.policy, &format!("# version {flip}\n{text}"));
        wait_for_n(&w.home, "policy.reloaded", flip + 1);
    }
    let verdicts = caller.join().unwrap();
    drop(d);

    let reloads = of_kind(&w.home, "policy.reloaded");
    assert_eq!(reloads.len(), 8);
    let allowing: Vec<&str> = reloads
        .iter()
        .step_by(2)
        .map(|b| b["new_sha256"].as_str().unwrap())
        .collect();
    // Each reload starts from the policy the one before put in force.
    for pair in reloads.windows(2) {
        assert_eq!(pair[1]["old_sha256"], pair[0]["new_sha256"]);
    }
    let decided = of_kind(&w.home, "policy.decided");
    for (id, allowed) in verdicts {
        let judged: Vec<&Value> = decided.iter().filter(|b| b["call_id"] == id).collect();
        assert_eq!(judged.len(), 1, "{id} judged once");
        let sha = judged[0]["policy_sha256"].as_str().unwrap();
        assert_eq!(
            allowed,
            allowing.contains(&sha),
            "{id}: the verdict is the named policy's ({sha})"
        );
        assert_eq!(judged[0]["decision"] == "allow", allowed, "{id}");
    }
    agp_ok(&w.home, None, &["verify"]);
}

/// A policy inside a live session's repository could be rewritten by that session's agent
/// (its sandbox mounts the repository writable): a change there is refused while the session
/// lives, and reloads once it ended.
#[test]
fn a_policy_its_agent_can_write_is_not_reloaded_while_the_session_lives() {
    let w = policy_world(DENY_ECHO);
    let policy = w.repo.join("agp-policy.toml");
    std::fs::write(&policy, DENY_ECHO).unwrap();
    let mut d = start(&w.home, &w.repo, &policy, &[]);
    assert!(!d.call("c1", "echo one").is_allow());
    let first = d.judged_by("c1");

    std::fs::write(&policy, ALLOW_ECHO).unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 1);
    let error = refused[0]["error"].as_str().unwrap();
    assert!(error.contains("of live session"), "{error}");
    assert_eq!(refused[0]["kept_sha256"], first.as_str());
    d.judged("c2", "echo two", false, &first);
    assert!(of_kind(&w.home, "policy.reloaded").is_empty());

    // The session ends. A save now is not picked up by itself: the file may hold the agent's
    // last edit, made just before its end.
    d.client.end_session(Some("completed")).unwrap();
    std::fs::write(&policy, format!("# saved again\n{ALLOW_ECHO}")).unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 2);
    assert_eq!(refused[1]["trigger"], "watch");
    let error = refused[1]["error"].as_str().unwrap();
    assert!(error.contains("ended since"), "{error}");
    assert!(of_kind(&w.home, "policy.reloaded").is_empty());
    // The operator's SIGHUP puts it in force.
    d.sighup();
    nth_reload(&w.home, 1, &first, "sighup");
    d.end_and_verify();
}
