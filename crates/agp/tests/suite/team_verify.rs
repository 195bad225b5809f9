//! Team mode's published checkpoints end to end with the real binary: two agp homes (two
//! members) whose daemons share one throwaway PostgreSQL publish every checkpoint of their own
//! journals; `agp verify --team` passes while every journal extends what it published, and
//! fails naming the member once a journal is restored from an older copy (cut back), regrown
//! differently from there, or a forged note is slipped into the shared table. PostgreSQL down
//! for a while loses nothing: publication resumes when it is back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agp_testkit::postgres::PgServer;
use serde_json::{json, Value};

use super::support::looping::{claude_hook, init_home, start_daemon_with_home_policy, Daemon, AGP};

const POLICY: &str = "version = 1\ndefault = \"deny\"\n\n[guards]\ndestructive = false\n\
\"protected-paths\" = false\nsecrets = false\n\"supply-chain\" = false\n\
\"network-egress\" = false\nprivilege = false\n\n[[rule]]\nid = \"read-project\"\n\
effect = \"allow\"\nmatch = [\"Read(/**)\"]\n";

struct Member {
    name: &'static str,
    home: PathBuf,
    user_home: PathBuf,
    project: PathBuf,
}

impl Member {
    fn new(dir: &Path, name: &'static str, url: &str) -> Self {
        let home = dir.join(name).join("agp-home");
        let user_home = dir.join(name).join("user");
        let project = dir.join(name).join("proj");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(&user_home).unwrap();
        std::fs::write(project.join("notes.txt"), "n").unwrap();
        init_home(&home, Some(&user_home));
        std::fs::write(home.join("policy.toml"), POLICY).unwrap();
        let config = home.join("config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[state]\nurl = \"{url}\"\nmember = \"{name}\"\n"
        ));
        std::fs::write(&config, text).unwrap();
        Self {
            name,
            home,
            user_home,
            project: std::fs::canonicalize(project).unwrap(),
        }
    }

    fn journal(&self) -> PathBuf {
        self.home.join("journal")
    }

    /// Runs its daemon for `calls` allowed Reads (session `session`), then stops it in order
    /// (SIGTERM: the final checkpoint is written and published before it exits).
    fn serve(&self, session: &str, calls: usize) {
        let mut daemon = start_daemon_with_home_policy(&self.home);
        for i in 0..calls {
            self.call(session, &format!("{session}-{i}"));
        }
        stop(&mut daemon);
    }

    /// An allowed Read through the running daemon.
    fn call(&self, session: &str, id: &str) {
        let event = json!({"hook_event_name": "PreToolUse", "session_id": session,
            "tool_name": "Read", "tool_use_id": id,
            "tool_input": {"file_path": self.project.join("notes.txt")}});
        let answer = claude_hook(&self.home, &self.user_home, Some(&self.project), &event);
        assert_eq!(
            answer["hookSpecificOutput"]["permissionDecision"], "allow",
            "{answer}"
        );
    }

    /// The size of the journal's latest checkpoint.
    fn checkpoint_size(&self) -> u64 {
        let text = std::fs::read_to_string(self.journal().join("checkpoint")).unwrap();
        text.lines().nth(1).unwrap().parse().unwrap()
    }
}

fn stop(daemon: &mut Daemon) {
    // SAFETY: kill(2) on our own child's pid (setsid execs agp in place).
    unsafe {
        libc::kill(daemon.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "the daemon stopped with {status}");
}

fn verify_team(home: &Path, url: &str, journals: &[&Path], json_out: bool) -> Output {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home")
        .arg(home)
        .args(["verify", "--team", "--state-url", url]);
    for j in journals {
        cmd.arg("--member-journal").arg(j);
    }
    if json_out {
        cmd.arg("--json");
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `psql` of the server's installation, on `url`; its output.
fn psql(url: &str, sql: &str) -> Output {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin/psql"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| PathBuf::from("psql"));
    Command::new(bin)
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn member_report<'a>(r: &'a Value, origin_of: &Member) -> &'a Value {
    r["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["members"]
                .as_array()
                .is_some_and(|v| v.iter().any(|n| n == origin_of.name))
        })
        .unwrap_or_else(|| panic!("{} not in {r}", origin_of.name))
}

#[test]
fn verify_team_catches_a_member_journal_cut_back_or_rewritten_after_publishing() {
    let Some(server) = PgServer::start_new() else {
        return;
    };
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let a = Member::new(dir.path(), "laptop-1", &url);
    let b = Member::new(dir.path(), "ci-runner-2", &url);
    a.serve("claude-a", 2);
    b.serve("claude-b", 3);
    let old_copy = dir.path().join("laptop-1-journal-copy");
    copy_dir(&a.journal(), &old_copy);

    // PostgreSQL goes away while A's daemon runs: its calls are refused (fail closed) and
    // journaled, the checkpoints of those entries wait in the journal and are published once
    // the server is back, before the daemon stops.
    let log = dir.path().join("laptop-1-daemon.log");
    let mut daemon = Daemon(
        Command::new("setsid")
            .arg("-w")
            .arg(AGP)
            .arg("--home")
            .arg(&a.home)
            .args(["daemon", "--sandbox", "none", "--policy"])
            .arg(a.home.join("policy.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    super::support::looping::wait_for_daemon(&a.home);
    // One allowed call first: the daemon binds its socket before it reaches the database.
    a.call("claude-a2", "up-1");
    server.stop();
    let event = json!({"hook_event_name": "PreToolUse", "session_id": "claude-a2",
        "tool_name": "Read", "tool_use_id": "down-1",
        "tool_input": {"file_path": a.project.join("notes.txt")}});
    let _refused = Command::new(AGP)
        .arg("--home")
        .arg(&a.home)
        .args(["hook", "--harness", "claude-code", "--attach", "--project"])
        .arg(&a.project)
        .env("HOME", &a.user_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(event.to_string().as_bytes())?;
            c.wait()
        })
        .unwrap();
    server.start().unwrap();
    // SAFETY: kill(2) on our own child's pid (setsid execs agp in place).
    unsafe {
        libc::kill(daemon.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = daemon.0.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {said}");
    a.serve("claude-a3", 2);

    // All consistent: both journals read, every checkpoint up to each journal's last one
    // published.
    let out = verify_team(&a.home, &url, &[&a.journal(), &b.journal()], true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&out);
    assert_eq!(r["ok"], true, "{r}");
    for m in [&a, &b] {
        let s = member_report(&r, m);
        assert_eq!(s["published_size"], m.checkpoint_size(), "{r}");
        assert_eq!(s["entries"], m.checkpoint_size(), "{r}");
        assert!(s["published"].as_u64().unwrap() >= 2, "{r}");
    }
    // Only A's journal at hand: B is checked on its published series alone, and said so.
    let out = verify_team(&a.home, &url, &[&a.journal()], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("journal not readable here"),
        "{}",
        text(&out)
    );

    // The published table is insert-only, even for its owner through agp's own role.
    let refused = psql(&url, "DELETE FROM published_checkpoints");
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("insert-only"),
        "{refused:?}"
    );

    // A's machine restores an older copy of its journal: cut back after publishing.
    let published = a.checkpoint_size();
    std::fs::remove_dir_all(a.journal()).unwrap();
    copy_dir(&old_copy, &a.journal());
    let out = verify_team(&a.home, &url, &[&a.journal(), &b.journal()], false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    let lines: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("NOT CONSISTENT"))
        .collect();
    assert!(!lines.is_empty(), "{t}");
    assert!(
        lines.iter().all(|l| l.contains("member laptop-1")),
        "only A is named: {t}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cut back after publishing")
                && l.contains(&format!("size {published}"))),
        "{t}"
    );

    // It grows again from there, differently: past every size it published, but no longer
    // through the published roots.
    a.serve("claude-a4", 8);
    assert!(a.checkpoint_size() > published, "regrown past {published}");
    let out = verify_team(&a.home, &url, &[&a.journal(), &b.journal()], true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = report(&out);
    let problems = r["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["member"] == "laptop-1"), "{r}");
    assert!(
        problems
            .iter()
            .any(|p| p["size"] == published
                && p["what"].as_str().unwrap().contains("no longer extends")),
        "{r}"
    );
    assert_eq!(member_report(&r, &b)["ok"], true, "{r}");

    // A forged note under B's name: B's genuine latest note with another size, the signature
    // kept. Reported whether or not B's journal is at hand.
    let genuine = std::fs::read_to_string(b.journal().join("checkpoint")).unwrap();
    let size = b.checkpoint_size();
    let forged_size = size + 100;
    let forged = genuine.replacen(&format!("\n{size}\n"), &format!("\n{forged_size}\n"), 1);
    assert_ne!(forged, genuine);
    let origin = genuine.lines().next().unwrap();
    let column = |sql: &str| -> String {
        String::from_utf8_lossy(&psql(&url, sql).stdout)
            .trim()
            .to_owned()
    };
    // The genuine latest row's root and key (the forged note keeps the root line).
    let root_hex = column(
        "SELECT root FROM published_checkpoints WHERE member = 'ci-runner-2' ORDER BY size DESC LIMIT 1",
    );
    let key = column("SELECT key FROM published_checkpoints WHERE member = 'ci-runner-2' LIMIT 1");
    assert_eq!(root_hex.len(), 64, "{root_hex}");
    let insert = psql(
        &url,
        &format!(
            "INSERT INTO published_checkpoints (member, host, origin, size, root, note, note_sha256, key) \
             VALUES ('ci-runner-2', 'elsewhere', $o${origin}$o$, {forged_size}, '{root_hex}', $n${forged}$n$, 'x', $k${key}$k$)"
        ),
    );
    assert!(insert.status.success(), "{insert:?}");
    // An auditor's home holds no journal: only the published series is checked then.
    let auditor = dir.path().join("auditor");
    std::fs::create_dir_all(&auditor).unwrap();
    for journals in [vec![b.journal()], vec![]] {
        let refs: Vec<&Path> = journals.iter().map(PathBuf::as_path).collect();
        let out = verify_team(&auditor, &url, &refs, true);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let r = report(&out);
        assert!(
            r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["member"] == "ci-runner-2"
                    && p["size"] == forged_size
                    && p["what"].as_str().unwrap().contains("forged")),
            "{r}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
