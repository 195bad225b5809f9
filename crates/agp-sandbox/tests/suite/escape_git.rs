//! Git metadata as a way out, on every provider: hooks and config planted from inside, and
//! the git directory swapped for symlinks that a path-based bind would follow on the host.
//! The default container image has no git: there the planting is done with the shell alone,
//! which is all an attacker needs; the everyday git work that must still go through is run
//! where git exists inside (bubblewrap: the host's).

use super::support as common;

use std::path::Path;

use common::provider::{each_provider, Sandbox, Which};
use common::*;

each_provider!(
    git_hooks_and_config_cannot_be_planted_from_inside,
    git_dir_cannot_be_swapped_to_expose_the_host,
    a_git_path_swapped_while_another_session_starts_exposes_nothing,
);

fn git_init(repo: &Path) {
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(init.success());
}

fn git_hooks_and_config_cannot_be_planted_from_inside(p: Which) {
    let Some(fx) = Sandbox::build(p, git_init, |_| {}, |p| p) else {
        return;
    };
    let repo = &fx.repo;
    let config_before = std::fs::read_to_string(repo.join(".git/config")).unwrap();
    let out = fx.sh(
        "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/post-checkout && echo HOOK; \
         printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config && echo APPENDED; \
         if command -v git >/dev/null; then \
           git config core.fsmonitor 'touch /tmp/pwned' && echo CONFIG; \
           echo ok > tracked.txt && git add tracked.txt && \
           git -c user.email=a@b -c user.name=t commit -qm x && echo COMMITTED; \
         else echo NO-GIT; fi",
    );
    let s = stdout(&out);
    assert!(
        !s.contains("HOOK") && !s.contains("CONFIG") && !s.contains("APPENDED"),
        "{out:?}"
    );
    // Ordinary git work still goes through (the default container image has no git).
    assert!(
        s.contains("COMMITTED") || (p.is_container() && s.contains("NO-GIT")),
        "{out:?}"
    );
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    assert_eq!(
        std::fs::read_to_string(repo.join(".git/config")).unwrap(),
        config_before
    );
}

fn git_dir_cannot_be_swapped_to_expose_the_host(p: Which) {
    let canary = HomeCanary::place();
    let Some(fx) = Sandbox::build(p, git_init, |_| {}, |p| p) else {
        return;
    };
    let repo = &fx.repo;
    // Try to move .git away and put symlinks where the protected paths were. A path-based
    // bind would follow them on the host for the next command: /etc is a target that exists
    // on both sides, so the host's whole /etc (shadow included) would be mounted inside.
    let first = fx.sh(
        "mv .git .git-moved && echo MOVED; rm -rf .git/hooks && echo REMOVED; \
         mkdir -p .git && ln -sfn /etc .git/hooks && ln -sfn /etc/shadow .git/config && echo PLANTED; true",
    );
    assert!(!stdout(&first).contains("MOVED"), "{first:?}");
    assert!(!stdout(&first).contains("REMOVED"), "{first:?}");
    assert!(repo.join(".git/hooks").is_dir() && !repo.join(".git-moved").exists());
    // Whatever was planted, a later command must not see the real HOME.
    let second = fx.sh(&format!(
        "cat '{c}' /etc/shadow .git/config 2>&1; ls -A /root 2>&1; true",
        c = canary.path.display(),
    ));
    let s = stdout(&second);
    assert!(!s.contains(&canary.content), "{second:?}");
    assert!(
        super::escape::says_missing(p, &s, "cat", "/etc/shadow"),
        "{second:?}"
    );
    if p == Which::Bwrap {
        assert!(!s.contains("root:"), "{second:?}");
    }
    // No passwd or shadow line ("root:x:0:0..."); busybox's `ls: /root: No such file` is not one.
    assert!(!s.lines().any(|l| l.starts_with("root:")), "{second:?}");
}

/// Two sessions on one repository. The first plants a directory at the top of the git
/// directory (so the second's guard binds it read-only) and swaps it, as fast as it can,
/// with a symlink out of the repository; the second starts again and again meanwhile. A
/// bind resolved by path when the engine mounts it (after the guard looked) would follow
/// the symlink on the host and mount the outside directory into the second session.
fn a_git_path_swapped_while_another_session_starts_exposes_nothing(p: Which) {
    let Some(first) = Sandbox::build(p, git_init, |_| {}, |p| p) else {
        return;
    };
    let first = std::sync::Arc::new(first);
    std::fs::write(first.outside.join("secret"), "outside-secret\n").unwrap();
    let racer = {
        let first = std::sync::Arc::clone(&first);
        std::thread::spawn(move || {
            first.sh_timeout(
                "mkdir .git/evil && ln -s ../../outside .git/link && echo RACING || exit 1\n\
                 while [ ! -e stop-racing ]; do\n\
                   mv .git/evil .git/dir; mv .git/link .git/evil; mv .git/evil .git/link; mv .git/dir .git/evil\n\
                 done",
                std::time::Duration::from_secs(120),
            )
        })
    };
    while !first.repo.join(".git/link").exists() {
        assert!(!racer.is_finished(), "the racer did not start");
        std::thread::yield_now();
    }
    let outside = first.outside.display().to_string();
    let look = format!(
        "cat .git/evil/secret .git/dir/secret .git/link/secret '{outside}/secret' 2>/dev/null; \
         ls -A .git/evil '{outside}' 2>/dev/null; true"
    );
    let leaked = |out: &agp_contracts::sandbox::ExecOutput| {
        stdout(out).contains("outside-secret") || stdout(out).contains("secret\n")
    };
    let (mut started, mut refusals) = (0, Vec::new());
    for i in 0..8 {
        // Bubblewrap mounts per command, by descriptor: the swap can only make one fail. The
        // container provider refuses a start during which the metadata changed.
        match first
            .beside(&format!("second-{i}"))
            .and_then(|s| s.sh(&look))
        {
            Ok(out) => {
                started += 1;
                assert!(
                    !leaked(&out),
                    "the second session reached the outside directory (attempt {i}): {}",
                    stdout(&out)
                );
            }
            Err(e) => refusals.push(e.to_string()),
        }
    }
    std::fs::write(first.repo.join("stop-racing"), "").unwrap();
    let raced = racer.join().unwrap();
    assert!(stdout(&raced).contains("RACING"), "{raced:?}");
    eprintln!(
        "{p:?}: {started} second sessions started, {} refused while racing: {:?}",
        refusals.len(),
        refusals.iter().take(3).collect::<Vec<_>>()
    );
    // Once the first session is quiet, a second one starts (the fence is not a refusal of
    // every second session), with the planted directory bound as it is.
    let second = first
        .beside("second-quiet")
        .expect("a start with nothing racing it");
    let out = second.sh(&look).unwrap();
    assert!(!leaked(&out), "{}", stdout(&out));
}
