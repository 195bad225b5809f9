//! The daemon enforces the sandbox's session bounds from config.toml and journals what the
//! sandbox did: a repository grown past `repo_growth_bytes` gives a `sandbox.limit_exceeded`
//! entry and refuses the next call; git metadata planted by an allowed call is removed and
//! journaled as `sandbox.git_metadata_removed`. Real binary, real bubblewrap, real git.

use std::path::Path;

use serde_json::Value;

use super::support::looping as support_loop;

fn git(repo: &Path, args: &[&str]) {
    assert!(
        support_loop::git(repo, args).status.success(),
        "git {args:?}"
    );
}

#[test]
fn bounds_and_git_guard_are_journaled() {
    let w = support_loop::git_world();
    git(&w.repo, &["commit", "-q", "--allow-empty", "-m", "x"]);
    let config = w.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[sandbox.limits]\n",
        "[sandbox.limits]\nrepo_growth_bytes = \"1MiB\"\ntmpfs_bytes = \"16MiB\"\n",
    );
    assert!(text.contains("repo_growth_bytes = \"1MiB\""), "{text}");
    std::fs::write(&config, text).unwrap();
    let policy = support_loop::write_allow_everything(w.dir.path());
    let calls = [
        "echo ../evil > .git/commondir",
        "head -c 700K /dev/urandom > a.bin; head -c 700K /dev/urandom > b.bin",
        "echo never",
    ];
    let yaml = support_loop::bash_calls_yaml(&calls);
    let script = w.dir.path().join("calls.yaml");
    std::fs::write(&script, yaml).unwrap();
    let out =
        support_loop::run_scripted_auto_approve(&w.home, &w.user_home, &script, &w.repo, &policy);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let dump = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("✓ journal verified"), "{dump}");
    assert!(!w.repo.join(".git/commondir").exists());

    let journal = support_loop::journal(&w.home);
    let of = |kind: &str| -> Vec<&Value> {
        journal
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| &e["body"])
            .collect()
    };
    let removed = of("sandbox.git_metadata_removed");
    assert_eq!(removed.len(), 1, "{dump}");
    assert!(
        removed[0]["removed"][0]
            .as_str()
            .unwrap()
            .contains(".git/commondir"),
        "{}",
        removed[0]
    );
    let hits = of("sandbox.limit_exceeded");
    assert_eq!(hits.len(), 2, "{hits:?}\n{dump}");
    for (hit, refused) in hits.iter().zip([false, true]) {
        assert_eq!(hit["limit"], "repo_growth", "{hit}");
        assert_eq!(hit["bound"], 1 << 20, "{hit}");
        assert_eq!(hit["refused"], refused, "{hit}");
        assert!(hit["observed"].as_u64().unwrap() > 1 << 20, "{hit}");
    }
    let results = of("tool_call.result");
    assert_eq!(results.len(), 3, "{dump}");
    let last = &results[2];
    assert_eq!(last["ok"], false, "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("repo_growth_bytes"),
        "{last}"
    );
    assert!(
        results[1]["output"]
            .as_str()
            .unwrap()
            .contains("further commands are refused"),
        "{}",
        results[1]
    );
}
