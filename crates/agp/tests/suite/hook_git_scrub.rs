//! Hook mode: git metadata planted between two hook events of a gate-mode session is scrubbed
//! by the daemon at the next event (quarantined in the git directory and journaled), so the
//! user's `git status` on the host never runs the `core.fsmonitor` it names. Real binary, real
//! daemon, real git.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use support_loop::{init_home, journal, open_gate_session, start_daemon_with_home_policy};

use super::support::looping as support_loop;

const POLICY: &str = "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"read-project\"\n\
effect = \"allow\"\nmatch = [\"Read(/**)\"]\n";

fn git(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.email=a@b", "-c", "user.name=t"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo.parent().unwrap())
        .output()
        .unwrap()
}

/// Plants what the hostile review used: a doctored copy of the git directory whose config runs
/// a command on every `git status`, and `.git/commondir` pointing at it.
fn plant(repo: &Path, marker: &Path) {
    let evil = repo.join("evilgit");
    std::fs::create_dir(&evil).unwrap();
    let cp = Command::new("cp")
        .arg("-r")
        .arg(repo.join(".git/objects"))
        .arg(repo.join(".git/refs"))
        .arg(&evil)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::write(
        evil.join("config"),
        format!(
            "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = \"touch {} #\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::write(repo.join(".git/commondir"), "../evilgit\n").unwrap();
}

/// `DIR/proj` (canonical): a git repository with one commit of `notes.txt`.
fn committed_project(dir: &Path) -> PathBuf {
    let project = dir.join("proj");
    std::fs::create_dir(&project).unwrap();
    let project = std::fs::canonicalize(project).unwrap();
    std::fs::write(project.join("notes.txt"), "n\n").unwrap();
    assert!(git(&project, &["init", "-q"]).status.success());
    assert!(git(&project, &["add", "notes.txt"]).status.success());
    assert!(git(&project, &["commit", "-qm", "first"]).status.success());
    project
}

/// `DIR/agp-home`, initialized for the user home `DIR/user`, with [`POLICY`] as its
/// `policy.toml`; (home, user home).
fn policy_home(dir: &Path) -> (PathBuf, PathBuf) {
    let home = dir.join("agp-home");
    let user_home = dir.join("user");
    std::fs::create_dir_all(&user_home).unwrap();
    init_home(&home, Some(&user_home));
    std::fs::write(home.join("policy.toml"), POLICY).unwrap();
    (home, user_home)
}

fn hook(home: &Path, user_home: &Path, project: &Path, event: &Value) -> Value {
    support_loop::claude_hook(home, user_home, Some(project), event)
}

#[test]
fn metadata_planted_between_hook_events_is_quarantined_before_host_git_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (home, user_home) = policy_home(dir.path());
    let project = committed_project(dir.path());

    // The plant works: in a copy of the repository, host git runs the planted command.
    let copy = dir.path().join("copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&project)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let proof = dir.path().join("proof-marker");
    plant(&copy, &proof);
    git(&copy, &["status", "--porcelain"]);
    assert!(
        proof.exists(),
        "the planted fsmonitor did not run: the test proves nothing"
    );

    let _daemon = start_daemon_with_home_policy(&home);
    let notes = project.join("notes.txt");
    let pre = |id: &str| {
        json!({"hook_event_name": "PreToolUse", "session_id": "scrub", "tool_name": "Read",
               "tool_use_id": id, "cwd": project, "tool_input": {"file_path": notes}})
    };
    let answer = hook(&home, &user_home, &project, &pre("t1"));
    assert_eq!(
        answer["hookSpecificOutput"]["permissionDecision"], "allow",
        "{answer}"
    );

    // Between two hook events, the agent plants.
    let marker = dir.path().join("host-marker");
    plant(&project, &marker);
    let post = json!({"hook_event_name": "PostToolUse", "session_id": "scrub",
        "tool_name": "Read", "tool_use_id": "t1", "cwd": project,
        "tool_input": {"file_path": notes}, "tool_response": {"content": "n\n"}});
    hook(&home, &user_home, &project, &post);

    // The next event removed it: gone from the git directory, kept in its quarantine.
    assert!(!project.join(".git/commondir").exists());
    let quarantined: Vec<_> = std::fs::read_dir(project.join(".git/agp-quarantine"))
        .unwrap()
        .map(|e| e.unwrap().path().join("commondir"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        std::fs::read_to_string(&quarantined[0]).unwrap(),
        "../evilgit\n"
    );
    let entries = journal(&home);
    let removed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "sandbox.git_metadata_removed")
        .collect();
    assert!(!removed.is_empty(), "{entries:#?}");
    let body = &removed[0]["body"];
    assert_eq!(body["scrubbed_by"], "daemon");
    let what = body["removed"].to_string();
    assert!(
        what.contains(".git/commondir") && what.contains("agp-quarantine"),
        "{body}"
    );

    // The user's git on the host runs nothing planted, and the repository is intact.
    let status = git(&project, &["status", "--porcelain"]);
    assert!(status.status.success());
    assert!(!marker.exists(), "host git ran the planted fsmonitor");
    let log = git(&project, &["log", "--oneline"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("first"));

    // Planted again just before a PreToolUse: removed before that call is judged.
    std::fs::write(project.join(".git/commondir"), "../evilgit\n").unwrap();
    hook(&home, &user_home, &project, &pre("t2"));
    assert!(!project.join(".git/commondir").exists());
    git(&project, &["status", "--porcelain"]);
    assert!(!marker.exists(), "host git ran the planted fsmonitor");
    let entries = journal(&home);
    let whens: Vec<String> = entries
        .iter()
        .filter(|e| e["kind"] == "sandbox.git_metadata_removed")
        .map(|e| e["body"]["when"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(whens.len() >= 2, "{whens:?}");
    assert!(
        whens
            .iter()
            .all(|w| ["before_call", "after_call", "periodic"].contains(&w.as_str())),
        "{whens:?}"
    );
}

#[test]
fn metadata_planted_with_no_hook_event_after_it_is_scrubbed_by_the_backstop() {
    let dir = tempfile::tempdir().unwrap();
    let (home, user_home) = policy_home(dir.path());
    let project = committed_project(dir.path());

    let _daemon = start_daemon_with_home_policy(&home);
    let notes = project.join("notes.txt");
    let pre = json!({"hook_event_name": "PreToolUse", "session_id": "idle", "tool_name": "Read",
        "tool_use_id": "t1", "cwd": project, "tool_input": {"file_path": notes}});
    hook(&home, &user_home, &project, &pre);

    // A background process of the agent plants once the agent has gone quiet.
    let marker = dir.path().join("host-marker");
    plant(&project, &marker);
    std::fs::write(project.join(".git/objects/info/alternates"), "/elsewhere\n").unwrap();
    // Waits for the periodic scrub (every few seconds) to have removed and journaled both;
    // the bound only keeps a broken build from hanging the suite.
    let gone = |p: &str| !project.join(p).exists();
    let periodic = || -> String {
        journal(&home)
            .iter()
            .filter(|e| {
                e["kind"] == "sandbox.git_metadata_removed" && e["body"]["when"] == "periodic"
            })
            .map(|e| e["body"]["removed"].to_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let what = periodic();
        if what.contains(".git/commondir") && what.contains("objects/info/alternates") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "planted metadata not scrubbed with no hook event: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(gone(".git/commondir") && gone(".git/objects/info/alternates"));
    git(&project, &["status", "--porcelain"]);
    assert!(!marker.exists(), "host git ran the planted fsmonitor");
}

#[test]
fn metadata_planted_just_before_the_session_ends_is_scrubbed_before_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    init_home(&home, None);
    std::fs::write(home.join("policy.toml"), POLICY).unwrap();
    let project = committed_project(dir.path());
    let _daemon = start_daemon_with_home_policy(&home);
    let token = open_gate_session(&home, &project);
    let mut agent = agp_gateway::Client::connect(
        &home.join("run/gateway.sock"),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    agent.hello(&token).unwrap();

    let marker = dir.path().join("host-marker");
    plant(&project, &marker);
    agent.end_session(Some("completed")).unwrap();

    assert!(!project.join(".git/commondir").exists());
    git(&project, &["status", "--porcelain"]);
    assert!(!marker.exists(), "host git ran the planted fsmonitor");
    let entries = journal(&home);
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["kind"].as_str()).collect();
    let scrubbed = entries
        .iter()
        .position(|e| {
            e["kind"] == "sandbox.git_metadata_removed"
                && e["body"]["removed"].to_string().contains(".git/commondir")
        })
        .unwrap_or_else(|| panic!("not journaled: {kinds:?}"));
    let integrity = kinds
        .iter()
        .position(|k| *k == "session.integrity")
        .unwrap();
    assert!(scrubbed < integrity, "{kinds:?}");
    assert!(
        ["session_end", "periodic"].contains(&entries[scrubbed]["body"]["when"].as_str().unwrap()),
        "{}",
        entries[scrubbed]
    );
}
