//! The `protected-paths` guard: files whose change hands an attacker code execution or the
//! audit trail (deny), and credentials whose reading needs a human (require).

use std::path::Path;
use std::sync::OnceLock;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{GuardHit, GuardId};
use crate::engine::Scene;

const G: GuardId = GuardId::ProtectedPaths;
/// agp's own state: its home, keys and the policy in force.
const SELF: GuardId = GuardId::AgpSelf;

struct Sets {
    /// Relative to the user's home.
    home_writes: GlobSet,
    /// Absolute paths (without the leading `/`), including `**/…` anywhere-patterns.
    abs_writes: GlobSet,
    home_reads: GlobSet,
    abs_reads: GlobSet,
    /// Credential look-alikes that are templates, not secrets.
    read_exceptions: GlobSet,
}

// The patterns are constants; `pattern_sets_compile` builds every one of them, so these
// `expect`s cannot fire in a build whose tests passed.
#[allow(clippy::expect_used)]
fn set(patterns: &[&str]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).expect("protected path pattern"));
    }
    b.build().expect("protected path set")
}

fn sets() -> &'static Sets {
    static SETS: OnceLock<Sets> = OnceLock::new();
    SETS.get_or_init(|| Sets {
        home_writes: set(&[
            ".bashrc",
            ".bash_profile",
            ".bash_login",
            ".bash_logout",
            ".profile",
            ".zshrc",
            ".zshenv",
            ".zprofile",
            ".zlogin",
            ".zlogout",
            ".cshrc",
            ".tcshrc",
            ".kshrc",
            ".inputrc",
            ".config/fish/**",
            ".ssh",
            ".ssh/**",
            ".gitconfig",
            ".config/git/**",
            ".claude/settings.json",
            ".claude/settings.local.json",
            ".codex/config.toml",
            ".config/autostart/**",
            ".config/systemd/**",
        ]),
        abs_writes: set(&[
            "etc/profile",
            "etc/profile.d/**",
            "etc/bash.bashrc",
            "etc/bashrc",
            "etc/zsh/**",
            "etc/zshrc",
            "etc/environment",
            "etc/sudoers",
            "etc/sudoers.d/**",
            "etc/crontab",
            "etc/cron.*/**",
            "etc/ld.so.preload",
            "etc/gitconfig",
            "etc/claude-code/**",
            "etc/codex/**",
            "**/.git/hooks",
            "**/.git/hooks/**",
            "**/.git/config",
            // Everything else git reads as configuration or as a pointer to another git
            // directory (host git follows them: a planted `commondir` or `alternates` runs or
            // loads what the agent chose).
            "**/.git",
            "**/.git/commondir",
            "**/.git/gitdir",
            "**/.git/config.worktree",
            "**/.git/info/**",
            "**/.git/objects/info/**",
            "**/.git/worktrees/**",
            "**/.git/modules/**/config",
            "**/.git/modules/**/config.worktree",
            "**/.git/modules/**/commondir",
            "**/.git/modules/**/hooks/**",
            "**/.git/modules/**/info/**",
            "**/.claude/settings.json",
            "**/.claude/settings.local.json",
        ]),
        home_reads: set(&[
            // The credential directories themselves (Grep/Glob/LS over ~/.ssh reads the keys).
            ".ssh",
            ".aws",
            ".gnupg",
            ".kube",
            ".docker",
            ".config/gh",
            ".ssh/id_*",
            ".ssh/*_rsa",
            ".ssh/*_ed25519",
            ".aws/credentials",
            ".aws/config",
            ".netrc",
            ".git-credentials",
            ".docker/config.json",
            ".kube/config",
            ".config/gh/hosts.yml",
            ".npmrc",
            ".pypirc",
            ".gnupg/**",
            ".config/gcloud/**",
            ".azure/**",
        ]),
        abs_reads: set(&[
            "**/.env",
            "**/.env.*",
            "**/*.pem",
            "**/*.key",
            "**/*.p12",
            "**/*.pfx",
            "**/id_rsa",
            "**/id_ed25519",
            "**/id_ecdsa",
            "etc/shadow",
            "etc/gshadow",
            "etc/sudoers",
            // A process's environment holds its tokens.
            "proc/*/environ",
            "proc/*/task/*/environ",
        ]),
        read_exceptions: set(&[
            "**/.env.example",
            "**/.env.sample",
            "**/.env.template",
            "**/.env.dist",
            "**/*.pub",
        ]),
    })
}

fn rel_home<'a>(path: &'a Path, scene: &Scene) -> Option<&'a Path> {
    crate::paths::relative_to(path, &scene.bases.home)
}

fn rel_abs(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// A write to `path` (canonical).
pub fn check_write(path: &Path, scene: &Scene) -> Option<GuardHit> {
    // Wherever it lies: a running daemon reloads the file, so writing it is choosing the rules.
    if scene.policy_files.iter().any(|f| f == path) {
        return Some(GuardHit::deny(
            SELF,
            format!("{} is the policy in force", path.display()),
        ));
    }
    if crate::paths::relative_to(path, &scene.agp_home).is_some() {
        return Some(GuardHit::deny(
            SELF,
            format!("{} is inside agp's own home", path.display()),
        ));
    }
    let s = sets();
    let hit = rel_home(path, scene).is_some_and(|r| s.home_writes.is_match(r))
        || s.abs_writes.is_match(rel_abs(path));
    hit.then(|| {
        GuardHit::deny(
            G,
            format!(
                "{} is protected (shell start-up files, git hooks and config, ssh keys, agent hook settings)",
                path.display()
            ),
        )
    })
}

/// A read of `path` (canonical).
pub fn check_read(path: &Path, scene: &Scene) -> Option<GuardHit> {
    if crate::paths::relative_to(path, &scene.agp_home.join("keys")).is_some() {
        return Some(GuardHit::deny(
            SELF,
            format!("{} holds agp's signing keys", path.display()),
        ));
    }
    if crate::paths::relative_to(path, &scene.agp_home).is_some() {
        // Its configuration holds channel tokens, its journal the session's history.
        return Some(GuardHit::require(
            SELF,
            format!(
                "{} is inside agp's own home; reading it needs approval",
                path.display()
            ),
        ));
    }
    let s = sets();
    // One candidate for both absolute sets: building it allocates.
    let abs = globset::Candidate::new(rel_abs(path));
    if s.read_exceptions.is_match_candidate(&abs) {
        return None;
    }
    let hit = rel_home(path, scene).is_some_and(|r| s.home_reads.is_match(r))
        || s.abs_reads.is_match_candidate(&abs);
    hit.then(|| {
        GuardHit::require(
            G,
            format!(
                "{} looks like a credential; reading it needs approval",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::Decision;
    use std::path::PathBuf;

    fn scene() -> Scene {
        Scene::new(
            &agp_contracts::EvalContext {
                project_root: PathBuf::from("/nonexistent-p"),
                home: PathBuf::from("/nonexistent-h"),
                agp_home: PathBuf::from("/nonexistent-h/.agp"),
            },
            Path::new("/nonexistent-p"),
        )
    }

    /// Asserts the decision `check` reaches on each path (`None`: not protected).
    fn assert_decisions(
        check: fn(&Path, &Scene) -> Option<GuardHit>,
        want: Option<Decision>,
        paths: &[&str],
    ) {
        let s = scene();
        for p in paths {
            assert_eq!(check(Path::new(p), &s).map(|h| h.decision), want, "{p}");
        }
    }

    #[test]
    fn pattern_sets_compile() {
        let s = sets();
        for set in [
            &s.home_writes,
            &s.abs_writes,
            &s.home_reads,
            &s.abs_reads,
            &s.read_exceptions,
        ] {
            assert!(!set.is_empty());
        }
    }

    #[test]
    fn writes() {
        assert_decisions(
            check_write,
            Some(Decision::Deny),
            &[
                "/nonexistent-h/.bashrc",
                "/nonexistent-h/.zshrc",
                "/nonexistent-h/.ssh/authorized_keys",
                "/nonexistent-h/.ssh",
                "/nonexistent-h/.config/fish/config.fish",
                "/nonexistent-h/.gitconfig",
                "/nonexistent-h/.claude/settings.json",
                "/nonexistent-h/.agp/policy.toml",
                "/nonexistent-h/.agp",
                "/nonexistent-p/.git/hooks/pre-commit",
                "/nonexistent-p/sub/.git/config",
                "/nonexistent-p/.claude/settings.local.json",
                "/nonexistent-p/.git/commondir",
                "/nonexistent-p/.git/info/attributes",
                "/nonexistent-p/.git/objects/info/alternates",
                "/nonexistent-p/sub/.git",
                "/etc/profile.d/x.sh",
                "/etc/claude-code/managed-settings.json",
            ],
        );
        assert_decisions(
            check_write,
            None,
            &[
                "/nonexistent-p/src/main.rs",
                "/nonexistent-h/notes.txt",
                "/nonexistent-p/.gitignore",
                "/nonexistent-h/.agpx",
            ],
        );
    }

    #[test]
    fn reads() {
        assert_decisions(
            check_read,
            Some(Decision::Require),
            &[
                "/nonexistent-h/.ssh/id_ed25519",
                "/nonexistent-h/.ssh",
                "/nonexistent-h/.aws/credentials",
                "/nonexistent-h/.netrc",
                "/nonexistent-p/.env",
                "/nonexistent-p/app/.env.production",
                "/nonexistent-p/tls/server.key",
                "/nonexistent-p/tls/server.pem",
                "/etc/shadow",
                "/proc/1/environ",
                "/nonexistent-h/.agp/config.toml",
            ],
        );
        assert_decisions(
            check_read,
            Some(Decision::Deny),
            &["/nonexistent-h/.agp/keys/journal.key"],
        );
        assert_decisions(
            check_read,
            None,
            &[
                "/nonexistent-h/.ssh/id_ed25519.pub",
                "/nonexistent-p/.env.example",
                "/nonexistent-p/src/key.rs",
                "/nonexistent-p/README.md",
            ],
        );
    }
}
