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
