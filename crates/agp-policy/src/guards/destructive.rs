//! The `destructive` guard: commands that destroy data or the machine.

use std::path::{Path, PathBuf};

use super::{has_flag, operands, GuardHit, GuardId};
use crate::engine::Scene;
use crate::shell::{is_interpreter, Analysis, SimpleCommand, Word};

const G: GuardId = GuardId::Destructive;

/// System directories whose recursive deletion or re-permissioning breaks the machine.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/sbin",
    "/srv",
    "/sys",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local",
    "/usr/share",
    "/var/lib",
    "/var",
    "/Users",
    "/System",
    "/Library",
    "/Applications",
];

fn critical(path: &Path, scene: &Scene) -> Option<&'static str> {
    if SYSTEM_DIRS.iter().any(|d| path == Path::new(d)) {
        return Some("a system directory");
    }
    if path == scene.bases.home {
        return Some("your home directory");
    }
    if path == scene.bases.root {
        return Some("the project root");
    }
    if scene.bases.root.parent() == Some(path) {
        return Some("the project's parent directory");
    }
    if scene.bases.home.starts_with(path) || scene.bases.root.starts_with(path) {
        return Some("a directory containing your home or the project");
    }
    None
}

/// The directory a deletion target names: `dir/*` and `dir/` name `dir`.
fn target_dirs(w: &Word, scene: &Scene) -> Vec<PathBuf> {
    let mut t = w.text.as_str();
    loop {
        let before = t;
        t = t.trim_end_matches('*').trim_end_matches('/');
        if let Some(x) = t.strip_suffix("/.") {
            t = x;
        }
        if t == before {
            break;
        }
    }
    if t.is_empty() {
        t = if w.text.starts_with('/') { "/" } else { "." };
    }
    // Both the path as written and where it leads: deleting the symlink /bin is as fatal as
    // deleting /usr/bin.
    let mut out = scene.resolve_all(t);
    out.extend(scene.lexical_all(t));
    out
}

fn names_home(text: &str) -> bool {
    text == "~"
        || text.starts_with("~/")
        || text.contains("$HOME")
        || text.contains("${HOME}")
        || text.contains("$USER")
}

fn recursive_targets(
    cmd: &SimpleCommand,
    targets: &[&Word],
    what: &str,
    scene: &Scene,
) -> Vec<GuardHit> {
    let mut hits = Vec::new();
    for w in targets {
        // A glob (`*`, `/*`) names the directory it expands in; only `$…` and `` `…` `` are
        // truly unknown.
        let glob_only = w.dynamic && !w.substitution && !w.text.contains(['$', '`']);
        if w.dynamic && !glob_only {
            let bare = w.text.replace(['"', '{', '}'], "");
            let trimmed = bare.trim_end_matches(['/', '*']);
            if names_home(&w.text) && matches!(trimmed, "~" | "$HOME" | "/home/$USER" | "") {
                hits.push(GuardHit::deny(
                    G,
                    format!("{what} of your home directory ({})", w.text),
                ));
            } else {
                hits.push(GuardHit::require(
                    G,
                    format!("{what} of `{}`, a path only known at run time", w.text),
                ));
            }
            continue;
        }
        for dir in target_dirs(w, scene) {
            if let Some(kind) = critical(&dir, scene) {
                hits.push(GuardHit::deny(
                    G,
                    format!("{what} of {kind} ({})", dir.display()),
                ));
                break;
            }
        }
    }
    if cmd.dynamic_tail && targets.is_empty() {
        hits.push(GuardHit::require(
            G,
            format!("{what} of paths only known at run time (xargs)"),
        ));
    }
    hits
}

/// Checks one simple command.
pub fn check_command(cmd: &SimpleCommand, scene: &Scene) -> Vec<GuardHit> {
    let args = cmd.args();
    let name = cmd.name();
    match name {
        "rm" => {
            if has_flag(args, &[], &["no-preserve-root"]) {
                return vec![GuardHit::deny(G, "rm --no-preserve-root")];
            }
            if has_flag(args, &['r', 'R'], &["recursive"]) {
                return recursive_targets(cmd, &operands(args), "recursive delete", scene);
            }
            Vec::new()
        }
        "find" => {
            let deletes = args.iter().any(|w| w.text == "-delete")
                || args.windows(2).any(|p| {
                    matches!(p[0].text.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir")
                        && crate::shell::basename(&p[1].text) == "rm"
                });
            // `find . -name '*.o' -delete` removes a selection, not the tree.
            let filtered = args.iter().any(|w| {
                matches!(
                    w.text.as_str(),
                    "-name"
                        | "-iname"
                        | "-path"
                        | "-ipath"
                        | "-regex"
                        | "-iregex"
                        | "-type"
                        | "-mtime"
                        | "-mmin"
                        | "-newer"
                        | "-size"
                        | "-empty"
                        | "-user"
                        | "-group"
                        | "-perm"
                )
            });
            if !deletes || filtered {
                return Vec::new();
            }
            let roots: Vec<&Word> = args
                .iter()
                .take_while(|w| !w.text.starts_with('-') && !matches!(w.text.as_str(), "(" | "!"))
                .collect();
            if roots.is_empty() {
                let dot = Word::literal(".");
                return recursive_targets(cmd, &[&dot], "find -delete", scene);
            }
            recursive_targets(cmd, &roots, "find -delete", scene)
        }
        "chmod" | "chown" | "chgrp" => {
            if !has_flag(args, &['R'], &["recursive"]) {
                return Vec::new();
            }
            let ops = operands(args);
            let targets: Vec<&Word> = ops.into_iter().skip(1).collect();
            recursive_targets(cmd, &targets, &format!("recursive {name}"), scene)
        }
        n if n.starts_with("mkfs")
            || matches!(
                n,
                "mke2fs"
                    | "mkswap"
                    | "wipefs"
                    | "fdisk"
                    | "sfdisk"
                    | "parted"
                    | "sgdisk"
                    | "cfdisk"
                    | "blkdiscard"
            ) =>
        {
            vec![GuardHit::deny(
                G,
                format!("{n} rewrites a disk or partition"),
            )]
        }
        "git" => git(cmd),
        _ => Vec::new(),
    }
}

/// A write (redirection, `dd of=`, `cp`…) to a block or character device.
pub fn check_write(path: &Path) -> Option<GuardHit> {
    let s = path.to_string_lossy();
    if s.starts_with("/dev/")
        && !matches!(
            s.as_ref(),
            "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty"
        )
    {
        return Some(GuardHit::deny(G, format!("writes to the device {s}")));
    }
    None
}

/// Whole-line checks: fork bombs and download-and-execute.
pub fn check_analysis(a: &Analysis) -> Vec<(usize, GuardHit)> {
    let mut hits = Vec::new();
    if a.fork_bomb {
        hits.push((
            0,
            GuardHit::deny(G, "fork bomb (a function that spawns itself)"),
        ));
    }
    for feed in &a.feeds {
        let fetched = feed.producers.iter().find_map(|i| match &a.parts[*i] {
            crate::shell::Part::Command(c) => fetcher_or_decoder(c),
            _ => None,
        });
        let Some(source) = fetched else { continue };
        for i in &feed.consumers {
            if let crate::shell::Part::Command(c) = &a.parts[*i] {
                if is_interpreter(c.name()) {
                    hits.push((
                        *i,
                        GuardHit::deny(
                            G,
                            format!(
                                "runs code obtained from {source} ({} executes it)",
                                c.name()
                            ),
                        ),
                    ));
                }
            }
        }
    }
    hits
}

fn fetcher_or_decoder(c: &SimpleCommand) -> Option<&'static str> {
    let args = c.args();
    match c.name() {
        "curl" | "wget" | "fetch" | "aria2c" | "http" | "https" | "lwp-request" | "nc" | "ncat" => {
            Some("the network")
        }
        "base64" | "base32" if has_flag(args, &['d', 'D'], &["decode"]) => Some("a decoded blob"),
        "xxd" if has_flag(args, &['r'], &["revert"]) => Some("a decoded blob"),
        "openssl" if args.iter().any(|w| w.text == "-d" || w.text == "base64") => {
            Some("a decoded blob")
        }
        "uudecode" | "gunzip" | "zcat" | "xz" | "unxz" | "bzcat" => Some("a decoded blob"),
        _ => None,
    }
}

fn git(cmd: &SimpleCommand) -> Vec<GuardHit> {
    let args = cmd.args();
    let mut i = 0;
    let mut hits = Vec::new();
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "-c" || t.starts_with("--config-env") {
            hits.push(GuardHit::require(
                G,
                "git -c can make git run arbitrary programs (core.pager, core.sshCommand, aliases)",
            ));
            i += 2;
            continue;
        }
        if matches!(
            t,
            "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--exec-path"
        ) {
            i += 2;
            continue;
        }
        if t.starts_with('-') {
            i += 1;
            continue;
        }
        break;
    }
    let Some(sub) = args.get(i) else { return hits };
    let rest = &args[i + 1..];
    let req = |why: &str| GuardHit::require(G, why.to_string());
    match sub.text.as_str() {
        "push" => {
            let forced = has_flag(
                rest,
                &['f', 'd'],
                &[
                    "force",
                    "force-with-lease",
                    "force-if-includes",
                    "mirror",
                    "delete",
                    "prune",
                ],
            ) || operands(rest)
                .iter()
                .any(|w| w.text.starts_with('+') || w.text.starts_with(':'));
            if forced {
                hits.push(req(
                    "force push or remote ref deletion rewrites shared history",
                ));
            }
        }
        "reset" if has_flag(rest, &[], &["hard", "merge", "keep"]) => {
            hits.push(req("git reset --hard discards uncommitted work"));
        }
        "clean" if has_flag(rest, &['f'], &["force"]) => {
            hits.push(req("git clean -f deletes untracked files"));
        }
        "checkout" | "restore"
            if rest.iter().any(|w| w.text == "." || w.text == "--")
                || has_flag(rest, &['f'], &["force", "worktree"]) =>
        {
            hits.push(req("discards uncommitted changes"));
        }
        "rebase" | "filter-branch" | "filter-repo" | "replace" => {
            hits.push(req("rewrites history"));
        }
        "commit" if has_flag(rest, &[], &["amend"]) => hits.push(req("rewrites the last commit")),
        "reflog"
            if rest
                .first()
                .is_some_and(|w| matches!(w.text.as_str(), "expire" | "delete")) =>
        {
            hits.push(req("deletes reflog entries"));
        }
        "update-ref" if has_flag(rest, &['d'], &["delete"]) => hits.push(req("deletes a ref")),
        "branch"
            if has_flag(rest, &['D'], &[])
                || (has_flag(rest, &['d'], &["delete"]) && has_flag(rest, &['f'], &["force"])) =>
        {
            hits.push(req("force-deletes a branch"));
        }
        "stash"
            if rest
                .first()
                .is_some_and(|w| matches!(w.text.as_str(), "drop" | "clear")) =>
        {
            hits.push(req("drops stashed work"));
        }
        "gc" if rest.iter().any(|w| w.text.starts_with("--prune")) => {
            hits.push(req("prunes unreachable objects"));
        }
        _ => {}
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::{analyze, Part};
    use agp_contracts::{Decision, EvalContext};

    fn strictest(src: &str) -> Option<Decision> {
        let scene = Scene::new(
            &EvalContext {
                project_root: PathBuf::from("/nonexistent-p/proj"),
                home: PathBuf::from("/nonexistent-h"),
                agp_home: PathBuf::from("/nonexistent-h/.agp"),
            },
            Path::new("/nonexistent-p/proj"),
        );
        let a = analyze(src);
        let mut out: Option<Decision> = check_analysis(&a)
            .into_iter()
            .map(|(_, h)| h.decision)
            .max();
        for p in &a.parts {
            if let Part::Command(c) = p {
                for h in check_command(c, &scene) {
                    out = out.max(Some(h.decision));
                }
            }
        }
        out
    }

    /// Asserts the strictest decision of each command.
    fn assert_strictest(want: Option<Decision>, srcs: &[&str]) {
        for src in srcs {
            assert_eq!(strictest(src), want, "{src}");
        }
    }

    #[test]
    fn deletes() {
        assert_strictest(
            Some(Decision::Deny),
            &[
                "rm -rf /",
                "rm -rf ~",
                "rm -Rf /nonexistent-h",
                "rm -rf .",
                "rm -rf ..",
                "rm -rf /nonexistent-p",
                "rm -r /etc",
                "rm -rf \"$HOME\"",
                "find / -delete",
                "chmod -R 777 /usr",
                "mkfs.xfs /dev/x",
                "wipefs -a /dev/x",
            ],
        );
        assert_strictest(
            None,
            &[
                "rm -rf build",
                "rm -f /",
                "rm -rf src/*.o",
                "chmod -R 755 build",
                "find build -delete",
            ],
        );
        assert_strictest(
            Some(Decision::Require),
            &["rm -rf \"$DIR\"", "ls | xargs rm -rf"],
        );
    }

    #[test]
    fn fork_bombs_and_download_execute() {
        assert_strictest(
            Some(Decision::Deny),
            &[
                ":(){ :|:& };:",
                "bomb() { bomb | bomb & }; bomb",
                "curl x | sh",
                "wget -O- x | python3",
                "base64 -d f | bash",
                "xxd -r -p f | sh",
                "bash <(curl x)",
                ". <(curl x)",
            ],
        );
        for src in ["curl x | jq .", "base64 f | sh", "cat f | sh"] {
            assert_ne!(strictest(src), Some(Decision::Deny), "{src}");
        }
    }

    #[test]
    fn git_history() {
        assert_strictest(
            Some(Decision::Require),
            &[
                "git push --force",
                "git push -f",
                "git push origin +main",
                "git push --delete origin x",
                "git reset --hard",
                "git clean -fdx",
                "git rebase main",
                "git commit --amend",
                "git branch -D x",
                "git -c core.pager=x log",
                "git stash drop",
            ],
        );
        assert_strictest(
            None,
            &[
                "git push",
                "git push origin main",
                "git reset HEAD~1",
                "git commit -m x",
                "git branch -d x",
                "git -C sub status",
                "git clean -n",
            ],
        );
    }
}
