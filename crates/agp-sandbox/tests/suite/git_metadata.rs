//! Repository metadata is not the agent's to change: everyday git works inside the sandbox,
//! and nothing planted in the git directory makes host git run code afterwards. Real git on
//! the host; a planted command would create a marker file on the host. The planting cases
//! run on every provider (they need only a shell inside); those that run git inside, or
//! bubblewrap's `command_guarded`, on bubblewrap (the default container image has no git).

use super::support as common;

use std::path::Path;
use std::process::Command;

use common::provider::{each_provider, Sandbox, Which};
use common::*;

each_provider!(
    planted_metadata_never_runs_on_the_host,
    a_shared_hooks_symlink_and_its_target_stay_the_users,
    hooks_in_the_work_tree_stay_the_users,
    submodule_git_dirs_and_pointers_stay_the_users,
);

/// A repository with one commit, made on the host.
fn host_repo(repo: &Path) {
    assert!(host_git(repo, &["init", "-q", "-b", "main"])
        .status
        .success());
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    assert!(host_git(repo, &["add", "a.txt"]).status.success());
    assert!(host_git(repo, &["commit", "-qm", "first"]).status.success());
}

/// A session of `p` on a [`host_repo`], after `more` ran on it on the host.
fn repo_sandbox(p: Which, more: impl FnOnce(&Path)) -> Option<Sandbox> {
    Sandbox::build(
        p,
        |repo| {
            host_repo(repo);
            more(repo);
        },
        |_| {},
        |p| p,
    )
}

fn host_git(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(["-c", "user.email=host@x", "-c", "user.name=host"])
        // A container session's repository belongs to the container's uid: without this, the
        // host's git refuses it as of dubious ownership and runs nothing at all, planted or not.
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(repo)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap()
}

fn repo_fixture() -> Fixture {
    let fx = Fixture::new();
    assert!(host_git(&fx.repo, &["init", "-q", "-b", "main"])
        .status
        .success());
    std::fs::write(fx.repo.join("a.txt"), "one\n").unwrap();
    assert!(host_git(&fx.repo, &["add", "a.txt"]).status.success());
    assert!(host_git(&fx.repo, &["commit", "-qm", "first"])
        .status
        .success());
    fx
}

const GIT: &str = "git -c user.email=a@b -c user.name=agent";

#[test]
fn everyday_git_works_inside() {
    let fx = repo_fixture();
    let out = fx.sh(&format!(
        "set -e; export LC_ALL=C; g() {{ {GIT} \"$@\"; }}\n\
         echo two >> a.txt; g add a.txt; g commit -qm second; echo COMMIT\n\
         g checkout -qb feature; echo f > f.txt; g add f.txt; g commit -qm feat; echo BRANCH\n\
         echo dirty >> a.txt; g stash -q; g stash pop -q; g checkout -q a.txt; echo STASH\n\
         g checkout -q main; echo m > m.txt; g add m.txt; g commit -qm onmain\n\
         g merge -q --no-edit feature; echo MERGE\n\
         g tag -a v1 -m v1; g tag light; echo TAG\n\
         g checkout -qb topic HEAD~1; echo t > t.txt; g add t.txt; g commit -qm topic\n\
         g rebase -q main; echo REBASE\n\
         g checkout -qb pickme main; echo p > p.txt; g add p.txt; g commit -qm pick\n\
         g checkout -q topic; g cherry-pick -x pickme >/dev/null; echo PICK\n\
         g commit -q --amend -m topic2; g reset -q --hard HEAD; echo AMEND\n\
         g gc -q; echo GC\n\
         g pack-refs --all; g reflog expire --all; echo REFS\n\
         g status --porcelain; g log --oneline | wc -l",
    ));
    let s = stdout(&out);
    assert_eq!(out.exit_code, Some(0), "{s}\n{}", stderr(&out));
    for step in [
        "COMMIT", "BRANCH", "STASH", "MERGE", "TAG", "REBASE", "PICK", "AMEND", "GC", "REFS",
    ] {
        assert!(s.contains(step), "{step} missing: {s}\n{}", stderr(&out));
    }
    assert!(
        out.git_metadata_removed.is_empty(),
        "{:?}",
        out.git_metadata_removed
    );
    // The host sees a sound repository with the agent's history.
    let fsck = host_git(&fx.repo, &["fsck", "--no-progress"]);
    assert!(fsck.status.success(), "{fsck:?}");
    let log = host_git(&fx.repo, &["log", "--oneline", "main"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("onmain") && log.contains("feat"), "{log}");
    let tags = host_git(&fx.repo, &["tag"]);
    assert_eq!(String::from_utf8_lossy(&tags.stdout), "light\nv1\n");
}

fn planted_metadata_never_runs_on_the_host(p: Which) {
    let Some(fx) = repo_sandbox(p, |_| {}) else {
        return;
    };
    let marker = fx.outside.join("pwned");
    let m = marker.display();
    let planted_hook = format!("#!/bin/sh\ntouch {m}\n");
    std::fs::write(fx.outside.join("hook"), &planted_hook).unwrap();
    let out = fx.sh(&format!(
        "export LC_ALL=C\n\
         # commondir to a doctored copy whose config runs a command (the reported attack)\n\
         cp -r .git evilgit && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {m}\\n' > evilgit/config && echo COPIED\n\
         echo ../evilgit > .git/commondir && echo COMMONDIR\n\
         printf '[core]\\n\\tfsmonitor = touch {m}\\n' > .git/config.worktree && echo CONFIG-WORKTREE\n\
         printf '[core]\\n\\tfsmonitor = touch {m}\\n' >> .git/config && echo CONFIG\n\
         mv .git/config .git/config.old && echo CONFIG-MOVED\n\
         printf '#!/bin/sh\\ntouch {m}\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo HOOK\n\
         mv .git/hooks .git/hooks.old && echo HOOKS-MOVED\n\
         mkdir -p .git/info && echo '* filter=evil' >> .git/info/attributes && echo ATTRIBUTES\n\
         echo \"$PWD/evilgit/objects\" > .git/objects/info/alternates && echo ALTERNATES\n\
         mkdir -p .git/worktrees/x && echo ../evilgit > .git/worktrees/x/commondir && echo WORKTREES\n\
         mkdir -p .git/modules/sub && echo MODULES\n\
         mkdir -p .git/rebase-merge && echo 'exec touch {m}' > .git/rebase-merge/git-rebase-todo && echo REBASE-STATE\n\
         rm -f .git/ORIG_HEAD; ln -s /etc/passwd .git/ORIG_HEAD && echo SYMLINK\n\
         rm -f .git/description && echo DESCRIPTION-GONE\n\
         true",
    ));
    let s = stdout(&out);
    let dump = format!(
        "stdout:\n{s}\nstderr:\n{}\nremoved: {:#?}",
        stderr(&out),
        out.git_metadata_removed
    );
    // Existing metadata cannot even be changed inside.
    for held in [
        "CONFIG\n",
        "CONFIG-MOVED",
        "HOOK\n",
        "HOOKS-MOVED",
        "ATTRIBUTES",
        "DESCRIPTION-GONE",
    ] {
        assert!(!s.contains(held), "{held} went through: {dump}");
    }
    // New metadata could be written inside, but was removed on the way out.
    for name in [
        "commondir",
        "config.worktree",
        "objects/info/alternates",
        "worktrees",
        "modules",
        "rebase-merge",
        "ORIG_HEAD",
    ] {
        let path = fx.repo.join(".git").join(name);
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{name} survived: {dump}"
        );
        assert!(
            out.git_metadata_removed
                .iter()
                .any(|r| r.starts_with(&path.display().to_string())),
            "{name} not reported: {dump}"
        );
    }
    // Kept for the user to inspect, where git never looks, and read-only from now on.
    let quarantine = fx.repo.join(".git/agp-quarantine");
    let folders: Vec<_> = std::fs::read_dir(&quarantine).unwrap().flatten().collect();
    assert_eq!(folders.len(), 1, "{dump}");
    let kept = folders[0].path();
    assert_eq!(
        std::fs::read_to_string(kept.join("commondir")).unwrap(),
        "../evilgit\n"
    );
    assert!(kept.join("objects-info-alternates").is_file(), "{dump}");
    // agp runs as the repository's owner, and so do a container's commands: the quarantine
    // being theirs must not make it removable (here agp runs as root, so give it to them).
    common::provider::give_to_sandbox_user(p, &quarantine);
    let again = fx.sh("rm -rf .git/agp-quarantine/* && echo WIPED; true");
    assert!(!stdout(&again).contains("WIPED"), "{again:?}");
    assert!(kept.join("commondir").exists());
    // Host git, everyday commands: nothing planted runs.
    std::fs::write(fx.repo.join("a.txt"), "host edit\n").unwrap();
    for args in [
        &["status"][..],
        &["diff"],
        &["add", "a.txt"],
        &["commit", "-qm", "host commit"],
        &["log", "-p", "-1"],
        &["checkout", "-q", "-b", "other"],
        &["rebase", "--continue"],
    ] {
        let _ = host_git(&fx.repo, args);
        assert!(
            !marker.exists(),
            "host `git {args:?}` ran planted code: {dump}"
        );
    }
    let log = host_git(&fx.repo, &["log", "--oneline"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("host commit"));
}

fn a_shared_hooks_symlink_and_its_target_stay_the_users(p: Which) {
    let Some(fx) = repo_sandbox(p, |repo| {
        std::fs::create_dir(repo.join("githooks")).unwrap();
        std::fs::write(repo.join("githooks/README"), "team hooks\n").unwrap();
        std::fs::remove_dir_all(repo.join(".git/hooks")).unwrap();
        std::os::unix::fs::symlink("../githooks", repo.join(".git/hooks")).unwrap();
    }) else {
        return;
    };
    let marker = fx.outside.join("pwned");
    let m = marker.display();
    let out = fx.sh(&format!(
        "printf '#!/bin/sh\\ntouch {m}\\n' > githooks/pre-commit && chmod +x githooks/pre-commit && echo VIA-TARGET\n\
         rm .git/hooks && mkdir .git/hooks && printf '#!/bin/sh\\ntouch {m}\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo REPLACED\n\
         true"
    ));
    let s = stdout(&out);
    assert!(!s.contains("VIA-TARGET"), "{s}");
    assert_eq!(
        std::fs::read_link(fx.repo.join(".git/hooks")).unwrap(),
        Path::new("../githooks"),
        "{:?}",
        out.git_metadata_removed
    );
    std::fs::write(fx.repo.join("a.txt"), "host edit\n").unwrap();
    let _ = host_git(&fx.repo, &["commit", "-qam", "host"]);
    assert!(!marker.exists(), "a planted hook ran: {s}");
}

#[test]
fn a_gitdir_file_cannot_be_repointed() {
    // A linked worktree: `.git` is a file naming the git directory outside the repository.
    let fx = Fixture::new();
    let main = fx.outside.join("main");
    std::fs::create_dir(&main).unwrap();
    assert!(host_git(&main, &["init", "-q", "-b", "main"])
        .status
        .success());
    assert!(
        host_git(&main, &["commit", "-q", "--allow-empty", "-m", "x"])
            .status
            .success()
    );
    let wt = fx.repo.join("wt");
    // The fixture's repo is the sandbox root; make the worktree the repo itself.
    std::fs::remove_dir(&fx.repo).unwrap();
    let added = host_git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            fx.repo.to_str().unwrap(),
            "-b",
            "wt",
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let _ = wt;
    let before = std::fs::read_to_string(fx.repo.join(".git")).unwrap();
    let marker = fx.outside.join("pwned");
    let out = fx.sh(&format!(
        "mkdir evil && cd evil && git init -q && git config core.fsmonitor 'touch {}' && cd .. && \
         echo 'gitdir: evil/.git' > .git && echo REPOINTED; rm -f .git && echo REMOVED; true",
        marker.display()
    ));
    let s = stdout(&out);
    assert!(!s.contains("REPOINTED") && !s.contains("REMOVED"), "{s}");
    assert_eq!(
        std::fs::read_to_string(fx.repo.join(".git")).unwrap(),
        before
    );
    let _ = host_git(&fx.repo, &["status"]);
    assert!(!marker.exists());
}

#[test]
fn a_repository_made_inside_keeps_its_history_but_not_its_config_or_hooks() {
    let fx = Fixture::new();
    let marker = fx.outside.join("pwned");
    let m = marker.display();
    let out = fx.sh(&format!(
        "set -e; git init -q -b main; git config core.fsmonitor 'touch {m}'; \
         printf '#!/bin/sh\\ntouch {m}\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; \
         echo x > x.txt; {GIT} add x.txt; {GIT} commit -q --no-verify -m made-inside; echo MADE"
    ));
    assert!(stdout(&out).contains("MADE"), "{out:?}");
    for gone in ["config", "hooks"] {
        assert!(
            !fx.repo.join(".git").join(gone).exists(),
            "{gone} kept: {:?}",
            out.git_metadata_removed
        );
    }
    // The next command still has a working repository.
    let next = fx.sh(&format!(
        "{GIT} log --oneline | wc -l; echo y > y.txt; {GIT} add y.txt; {GIT} commit -qm second && echo OK"
    ));
    assert!(stdout(&next).contains("OK"), "{next:?}");
    std::fs::write(fx.repo.join("x.txt"), "host\n").unwrap();
    let _ = host_git(&fx.repo, &["status"]);
    let _ = host_git(&fx.repo, &["commit", "-qam", "host"]);
    assert!(!marker.exists(), "planted code ran on the host");
    let log = host_git(&fx.repo, &["log", "--oneline"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("made-inside") && log.contains("host"), "{log}");
}

#[test]
fn a_gitdir_file_planted_where_there_was_no_repository_is_removed() {
    let fx = Fixture::new();
    let marker = fx.outside.join("pwned");
    let out = fx.sh(&format!(
        "mkdir -p /tmp/e && cd /tmp/e && git init -q; cd {r}; mkdir evil && git init -q evil && \
         git -C evil config core.fsmonitor 'touch {m}' && echo 'gitdir: evil/.git' > .git && echo PLANTED",
        r = fx.repo.display(),
        m = marker.display()
    ));
    assert!(stdout(&out).contains("PLANTED"), "{out:?}");
    assert!(
        !fx.repo.join(".git").exists(),
        "{:?}",
        out.git_metadata_removed
    );
    let _ = host_git(&fx.repo, &["status"]);
    assert!(!marker.exists());
}

fn hooks_in_the_work_tree_stay_the_users(p: Which) {
    // core.hooksPath into the work tree (husky and friends) and a hook symlinked to a script.
    let Some(fx) = repo_sandbox(p, |repo| {
        for f in [".husky/pre-commit", "scripts/post-commit.sh"] {
            use std::os::unix::fs::PermissionsExt;
            let path = repo.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink("../scripts/post-commit.sh", repo.join(".husky/post-commit"))
            .unwrap();
        assert!(host_git(repo, &["config", "core.hooksPath", ".husky"])
            .status
            .success());
    }) else {
        return;
    };
    let marker = fx.outside.join("pwned");
    let m = marker.display();
    let out = fx.sh(&format!(
        "printf '#!/bin/sh\\ntouch {m}\\n' > .husky/pre-commit && echo HUSKY; \
         printf '#!/bin/sh\\ntouch {m}\\n' > .husky/pre-push && echo NEW-HOOK; \
         printf '#!/bin/sh\\ntouch {m}\\n' > scripts/post-commit.sh && echo LINKED; \
         if command -v git >/dev/null; then \
           echo ok > b.txt && {GIT} add b.txt && {GIT} commit -qm inside && echo COMMITTED; \
         else echo NO-GIT; fi"
    ));
    let s = stdout(&out);
    assert!(
        !s.contains("HUSKY") && !s.contains("NEW-HOOK") && !s.contains("LINKED"),
        "{s}"
    );
    // Committing still works (the default container image has no git).
    assert!(
        s.contains("COMMITTED") || (p.is_container() && s.contains("NO-GIT")),
        "{out:?}"
    );
    std::fs::write(fx.repo.join("a.txt"), "host\n").unwrap();
    let _ = host_git(&fx.repo, &["commit", "-qam", "host"]);
    assert!(!marker.exists(), "a planted hook ran on the host");
}

#[test]
fn a_long_running_command_is_scrubbed_when_it_ends() {
    let fx = repo_fixture();
    let (mut cmd, guard) = fx
        .provider
        .command_guarded(
            &fx.session,
            &[
                "bash".into(),
                "-c".into(),
                "echo ../evil > .git/commondir; echo x > .git/config && echo CONFIG".into(),
            ],
            &fx.repo,
        )
        .unwrap();
    let out = cmd.output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("CONFIG"));
    assert!(fx.repo.join(".git/commondir").exists());
    let removed = guard.scrub();
    assert!(!fx.repo.join(".git/commondir").exists(), "{removed:?}");
    assert_eq!(removed.len(), 1, "{removed:?}");
}

fn submodule_git_dirs_and_pointers_stay_the_users(p: Which) {
    let Some(fx) = repo_sandbox(p, |repo| {
        // An absorbed submodule (`sub/.git` is a file naming `.git/modules/sub`) ...
        let upstream = repo.parent().unwrap().join("outside/upstream");
        std::fs::create_dir(&upstream).unwrap();
        assert!(host_git(&upstream, &["init", "-q"]).status.success());
        assert!(
            host_git(&upstream, &["commit", "-q", "--allow-empty", "-m", "u"])
                .status
                .success()
        );
        let added = host_git(
            repo,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                upstream.to_str().unwrap(),
                "sub",
            ],
        );
        assert!(added.status.success(), "{added:?}");
        assert!(repo.join("sub/.git").is_file());
        // ... and one whose `.git` is a directory of its own.
        let vend = repo.join("vend");
        std::fs::create_dir(&vend).unwrap();
        assert!(host_git(&vend, &["init", "-q"]).status.success());
        let mut gitmodules = std::fs::read_to_string(repo.join(".gitmodules")).unwrap();
        gitmodules.push_str("[submodule \"vend\"]\n\tpath = vend\n\turl = ./vend\n");
        std::fs::write(repo.join(".gitmodules"), gitmodules).unwrap();
    }) else {
        return;
    };
    let marker = fx.outside.join("pwned");
    let m = marker.display();
    let vend = fx.repo.join("vend");
    let sub_pointer = std::fs::read_to_string(fx.repo.join("sub/.git")).unwrap();
    let out = fx.sh(&format!(
        "cp -r .git/modules/sub evil && printf '[core]\\n\\tfsmonitor = touch {m}\\n' >> evil/config; \
         echo 'gitdir: ../evil' > sub/.git && echo REPOINTED; \
         printf '[core]\\n\\tfsmonitor = touch {m}\\n' >> .git/modules/sub/config && echo MODULE-CONFIG; \
         printf '[core]\\n\\tfsmonitor = touch {m}\\n' >> vend/.git/config && echo VEND-CONFIG; \
         echo ../../evil > vend/.git/commondir && echo VEND-COMMONDIR; true"
    ));
    let s = stdout(&out);
    for held in ["REPOINTED", "MODULE-CONFIG", "VEND-CONFIG"] {
        assert!(
            !s.contains(held),
            "{held} went through: {s}\n{}",
            stderr(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string(fx.repo.join("sub/.git")).unwrap(),
        sub_pointer
    );
    assert!(
        !vend.join(".git/commondir").exists(),
        "{:?}",
        out.git_metadata_removed
    );
    for args in [&["status"][..], &["submodule", "status"], &["diff"]] {
        let _ = host_git(&fx.repo, args);
        let _ = host_git(&vend, args);
        assert!(!marker.exists(), "host `git {args:?}` ran planted code");
    }
}
