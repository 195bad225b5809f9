//! git subcommand dispatch: each subcommand's grammar, then what its operands mean (a path
//! `git diff` reads, the directory `git clone` writes, the command `bisect run` runs).

use super::git::{config, config_pair};
use super::git_opts::concat;
use super::git_tables::*;
use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::{f, o, ov, v};
use super::{Effects, Parsed};
use crate::shell::Word;

const APPLY: Grammar = sub(&[
    f(' ', "stat"),
    f(' ', "numstat"),
    f(' ', "summary"),
    f(' ', "check"),
    f(' ', "index"),
    f(' ', "cached"),
    f('N', "intent-to-add"),
    f('3', "3way"),
    f(' ', "ours"),
    f(' ', "theirs"),
    f(' ', "union"),
    o(' ', "build-fake-ancestor", Required, WritesFile),
    f('R', "reverse"),
    f(' ', "reject"),
    f('z', ""),
    v('p', ""),
    v('C', ""),
    f(' ', "unidiff-zero"),
    f(' ', "apply"),
    f(' ', "no-add"),
    f(' ', "allow-binary-replacement"),
    f(' ', "binary"),
    v(' ', "exclude"),
    v(' ', "include"),
    f(' ', "ignore-space-change"),
    f(' ', "ignore-whitespace"),
    v(' ', "whitespace"),
    f(' ', "inaccurate-eof"),
    f('v', "verbose"),
    f('q', "quiet"),
    f(' ', "recount"),
    v(' ', "directory"),
    o(
        ' ',
        "unsafe-paths",
        Flag,
        Dangerous("lets the patch write files outside the work tree"),
    ),
    f(' ', "allow-empty"),
]);

const AM: Grammar = sub(&[
    f('s', "signoff"),
    f('k', "keep"),
    f(' ', "keep-non-patch"),
    f(' ', "keep-cr"),
    f(' ', "no-keep-cr"),
    f('c', "scissors"),
    f(' ', "no-scissors"),
    v(' ', "quoted-cr"),
    v(' ', "empty"),
    f('m', "message-id"),
    f(' ', "no-message-id"),
    f('q', "quiet"),
    f('u', "utf8"),
    f(' ', "no-utf8"),
    f('3', "3way"),
    f(' ', "no-3way"),
    f(' ', "rerere-autoupdate"),
    f(' ', "no-rerere-autoupdate"),
    f(' ', "ignore-space-change"),
    f(' ', "ignore-whitespace"),
    v(' ', "whitespace"),
    v('C', ""),
    v('p', ""),
    v(' ', "directory"),
    v(' ', "exclude"),
    v(' ', "include"),
    f(' ', "reject"),
    v(' ', "patch-format"),
    f('i', "interactive"),
    f('n', "no-verify"),
    f(' ', "verify"),
    f(' ', "committer-date-is-author-date"),
    f(' ', "ignore-date"),
    f(' ', "skip"),
    ov('S', "gpg-sign"),
    f(' ', "no-gpg-sign"),
    f(' ', "continue"),
    f('r', "resolved"),
    v(' ', "resolvemsg"),
    f(' ', "abort"),
    f(' ', "quit"),
    f(' ', "retry"),
    ov(' ', "show-current-patch"),
    f(' ', "allow-empty"),
]);

const ARCHIVE: Grammar = sub(&[
    v(' ', "format"),
    f('l', "list"),
    f('v', "verbose"),
    v(' ', "prefix"),
    o('o', "output", Required, WritesFile),
    o(' ', "add-file", Required, ReadsFile),
    v(' ', "add-virtual-file"),
    f(' ', "worktree-attributes"),
    v(' ', "mtime"),
    v(' ', "remote"),
    o(
        ' ',
        "exec",
        Required,
        RunsCode("runs this program as the archive server"),
    ),
    f('0', ""),
    f('1', ""),
    f('2', ""),
    f('3', ""),
    f('4', ""),
    f('5', ""),
    f('6', ""),
    f('7', ""),
    f('8', ""),
    f('9', ""),
]);

const FORMAT_PATCH_OWN: &[OptSpec] = &[
    o('o', "output-directory", Required, WritesFile),
    f(' ', "stdout"),
    f('n', "numbered"),
    f('N', "no-numbered"),
    v(' ', "start-number"),
    f(' ', "numbered-files"),
    f('k', "keep-subject"),
    f('s', "signoff"),
    ov(' ', "attach"),
    f(' ', "no-attach"),
    ov(' ', "inline"),
    ov(' ', "thread"),
    f(' ', "no-thread"),
    v(' ', "in-reply-to"),
    f(' ', "ignore-if-in-upstream"),
    f(' ', "always"),
    ov(' ', "cover-from-description"),
    o(' ', "description-file", Required, ReadsFile),
    v(' ', "subject-prefix"),
    ov(' ', "rfc"),
    v('v', "reroll-count"),
    v(' ', "to"),
    v(' ', "cc"),
    ov(' ', "from"),
    f(' ', "force-in-body-from"),
    v(' ', "add-header"),
    f(' ', "cover-letter"),
    f(' ', "no-cover-letter"),
    ov(' ', "signature"),
    f(' ', "no-signature"),
    o(' ', "signature-file", Required, ReadsFile),
    v(' ', "suffix"),
    f('q', "quiet"),
    f(' ', "no-binary"),
    f(' ', "zero-commit"),
    v(' ', "base"),
    f(' ', "progress"),
    v(' ', "interdiff"),
    v(' ', "range-diff"),
    v(' ', "creation-factor"),
    v(' ', "filename-max-length"),
    f(' ', "encode-email-headers"),
    f(' ', "no-encode-email-headers"),
];
const FORMAT_PATCH_OPTS: [OptSpec;
    FORMAT_PATCH_OWN.len() + super::git_opts::DIFF.len() + super::git_opts::LOG.len()] = concat(
    &concat::<{ FORMAT_PATCH_OWN.len() + super::git_opts::DIFF.len() }>(
        FORMAT_PATCH_OWN,
        super::git_opts::DIFF,
    ),
    super::git_opts::LOG,
);
const FORMAT_PATCH: Grammar = sub(&FORMAT_PATCH_OPTS);

const WORKTREE: Grammar = sub(&[
    f('f', "force"),
    v('b', ""),
    v('B', ""),
    f('d', "detach"),
    f(' ', "checkout"),
    f(' ', "no-checkout"),
    f(' ', "lock"),
    v(' ', "reason"),
    f(' ', "orphan"),
    f('q', "quiet"),
    f(' ', "track"),
    f(' ', "no-track"),
    f(' ', "guess-remote"),
    f(' ', "no-guess-remote"),
    f(' ', "relative-paths"),
    f(' ', "no-relative-paths"),
    f('v', "verbose"),
    f(' ', "porcelain"),
    f('z', ""),
    v(' ', "expire"),
    f('n', "dry-run"),
]);

const REBASE: Grammar = sub(&[
    v(' ', "onto"),
    f(' ', "keep-base"),
    f(' ', "no-keep-base"),
    f(' ', "continue"),
    f(' ', "skip"),
    f(' ', "abort"),
    f(' ', "quit"),
    f(' ', "edit-todo"),
    ov(' ', "show-current-patch"),
    f('m', "merge"),
    f(' ', "apply"),
    v(' ', "empty"),
    f(' ', "keep-empty"),
    f(' ', "no-keep-empty"),
    f(' ', "reapply-cherry-picks"),
    f(' ', "no-reapply-cherry-picks"),
    f(' ', "allow-empty-message"),
    v('s', "strategy"),
    v('X', "strategy-option"),
    f(' ', "rerere-autoupdate"),
    f(' ', "no-rerere-autoupdate"),
    ov('S', "gpg-sign"),
    f(' ', "no-gpg-sign"),
    f('q', "quiet"),
    f('v', "verbose"),
    f(' ', "stat"),
    f('n', "no-stat"),
    f(' ', "no-verify"),
    f(' ', "verify"),
    v('C', ""),
    f(' ', "no-ff"),
    f('f', "force-rebase"),
    f(' ', "fork-point"),
    f(' ', "no-fork-point"),
    f(' ', "ignore-whitespace"),
    v(' ', "whitespace"),
    f(' ', "committer-date-is-author-date"),
    f(' ', "ignore-date"),
    f(' ', "reset-author-date"),
    f(' ', "signoff"),
    f('i', "interactive"),
    ov('r', "rebase-merges"),
    f(' ', "no-rebase-merges"),
    o(
        'x',
        "exec",
        Required,
        RunsCode("runs this shell command after each rebased commit"),
    ),
    f(' ', "root"),
    f(' ', "autosquash"),
    f(' ', "no-autosquash"),
    f(' ', "autostash"),
    f(' ', "no-autostash"),
    f(' ', "reschedule-failed-exec"),
    f(' ', "no-reschedule-failed-exec"),
    f(' ', "update-refs"),
    f(' ', "no-update-refs"),
]);

const PICK: Grammar = sub(&[
    f(' ', "continue"),
    f(' ', "skip"),
    f(' ', "quit"),
    f(' ', "abort"),
    f('e', "edit"),
    f(' ', "no-edit"),
    v(' ', "cleanup"),
    f('x', ""),
    f('r', ""),
    v('m', "mainline"),
    f('n', "no-commit"),
    f('s', "signoff"),
    ov('S', "gpg-sign"),
    f(' ', "no-gpg-sign"),
    f(' ', "ff"),
    f(' ', "allow-empty"),
    f(' ', "allow-empty-message"),
    v(' ', "empty"),
    f(' ', "keep-redundant-commits"),
    v(' ', "strategy"),
    v('X', "strategy-option"),
    f(' ', "rerere-autoupdate"),
    f(' ', "no-rerere-autoupdate"),
    f(' ', "reference"),
]);

const RESET: Grammar = sub(&[
    f('q', "quiet"),
    f(' ', "no-refresh"),
    f(' ', "refresh"),
    f(' ', "mixed"),
    f(' ', "soft"),
    f(' ', "hard"),
    f(' ', "merge"),
    f(' ', "keep"),
    f('N', "intent-to-add"),
    f('p', "patch"),
    ov(' ', "recurse-submodules"),
    f(' ', "no-recurse-submodules"),
    o(' ', "pathspec-from-file", Required, ReadsFile),
    f(' ', "pathspec-file-nul"),
]);

const CLEAN: Grammar = sub(&[
    f('d', ""),
    f('f', "force"),
    f('i', "interactive"),
    f('n', "dry-run"),
    f('q', "quiet"),
    v('e', "exclude"),
    f('x', ""),
    f('X', ""),
]);

const RM: Grammar = sub(&[
    f('f', "force"),
    f('n', "dry-run"),
    f('r', ""),
    f(' ', "cached"),
    f(' ', "ignore-unmatch"),
    f(' ', "sparse"),
    f('q', "quiet"),
    o(' ', "pathspec-from-file", Required, ReadsFile),
    f(' ', "pathspec-file-nul"),
]);

const MV: Grammar = sub(&[
    f('f', "force"),
    f('k', ""),
    f('n', "dry-run"),
    f('v', "verbose"),
    f(' ', "sparse"),
]);

const REMOTE: Grammar = sub(&[
    f('v', "verbose"),
    v('t', ""),
    v('m', ""),
    f('f', ""),
    f(' ', "tags"),
    f(' ', "no-tags"),
    ov(' ', "mirror"),
    f(' ', "push"),
    f(' ', "add"),
    f(' ', "delete"),
    f(' ', "all"),
    f('n', ""),
    f('a', "auto"),
    f('d', ""),
    f('p', "prune"),
]);

const DESCRIBE: Grammar = sub(&[
    ov(' ', "dirty"),
    ov(' ', "broken"),
    f(' ', "all"),
    f(' ', "tags"),
    f(' ', "contains"),
    ov(' ', "abbrev"),
    v(' ', "candidates"),
    f(' ', "exact-match"),
    f(' ', "debug"),
    f(' ', "long"),
    v(' ', "match"),
    v(' ', "exclude"),
    f(' ', "always"),
    f(' ', "first-parent"),
]);

const SHOW_REF: Grammar = sub(&[
    f(' ', "head"),
    f(' ', "branches"),
    f(' ', "tags"),
    f(' ', "verify"),
    f(' ', "exists"),
    f('d', "dereference"),
    ov('s', "hash"),
    ov(' ', "abbrev"),
    f('q', "quiet"),
    ov(' ', "exclude-existing"),
]);

const FOR_EACH_REF: Grammar = sub(&[
    v(' ', "count"),
    v(' ', "sort"),
    v(' ', "format"),
    ov(' ', "color"),
    f('s', "shell"),
    f('p', "perl"),
    f(' ', "python"),
    f(' ', "tcl"),
    v(' ', "points-at"),
    v(' ', "merged"),
    v(' ', "no-merged"),
    v(' ', "contains"),
    v(' ', "no-contains"),
    f(' ', "ignore-case"),
    f(' ', "omit-empty"),
    v(' ', "exclude"),
    f(' ', "include-root-refs"),
    f(' ', "stdin"),
]);

const LS_TREE: Grammar = sub(&[
    f('d', ""),
    f('r', ""),
    f('t', ""),
    f('l', "long"),
    f('z', ""),
    f(' ', "name-only"),
    f(' ', "name-status"),
    f(' ', "object-only"),
    ov(' ', "abbrev"),
    f(' ', "full-name"),
    f(' ', "full-tree"),
    v(' ', "format"),
]);

const CAT_FILE: Grammar = sub(&[
    f('t', ""),
    f('s', ""),
    f('e', ""),
    f('p', ""),
    o(
        ' ',
        "textconv",
        Flag,
        Dangerous("runs the textconv filter program configured for the file"),
    ),
    o(
        ' ',
        "filters",
        Flag,
        Dangerous("runs the clean/smudge filter programs configured for the file"),
    ),
    v(' ', "path"),
    ov(' ', "batch"),
    ov(' ', "batch-check"),
    ov(' ', "batch-command"),
    f(' ', "batch-all-objects"),
    f(' ', "buffer"),
    f(' ', "unordered"),
    f(' ', "follow-symlinks"),
    f('Z', ""),
    f(' ', "allow-unknown-type"),
    f(' ', "mailmap"),
    f(' ', "use-mailmap"),
    f(' ', "no-mailmap"),
]);

const MERGE_BASE: Grammar = sub(&[
    f('a', "all"),
    f(' ', "octopus"),
    f(' ', "independent"),
    f(' ', "is-ancestor"),
    f(' ', "fork-point"),
]);

const HASH_OBJECT: Grammar = sub(&[
    v('t', ""),
    f('w', ""),
    f(' ', "stdin"),
    f(' ', "stdin-paths"),
    f(' ', "literally"),
    f(' ', "no-filters"),
    v(' ', "path"),
]);

const CHECK_IGNORE: Grammar = sub(&[
    f('q', "quiet"),
    f('v', "verbose"),
    f(' ', "stdin"),
    f('z', ""),
    f('n', "non-matching"),
    f(' ', "no-index"),
]);

const LS_REMOTE: Grammar = sub(&[
    f('h', "heads"),
    f('b', "branches"),
    f('t', "tags"),
    f(' ', "refs"),
    f('q', "quiet"),
    f(' ', "exit-code"),
    f(' ', "get-url"),
    v(' ', "sort"),
    f(' ', "symref"),
    v('o', "server-option"),
    o(
        ' ',
        "upload-pack",
        Required,
        RunsCode("runs this program as the other side of the transfer"),
    ),
]);

const HELP: Grammar = sub(&[
    f('a', "all"),
    f(' ', "external-commands"),
    f(' ', "no-external-commands"),
    f(' ', "aliases"),
    f(' ', "no-aliases"),
    f(' ', "verbose"),
    f('c', "config"),
    f('g', "guides"),
    f(' ', "user-interfaces"),
    f(' ', "developer-interfaces"),
    f('i', "info"),
    f('m', "man"),
    f('w', "web"),
]);

const QUIET: Grammar = sub(&[f('q', "quiet"), f(' ', "index"), f('v', "verbose")]);

const REFLOG_WRITE: Grammar = sub(&[
    f('n', "dry-run"),
    v(' ', "expire"),
    v(' ', "expire-unreachable"),
    f(' ', "rewrite"),
    f(' ', "updateref"),
    f(' ', "stale-fix"),
    f(' ', "all"),
    f(' ', "single-worktree"),
    f(' ', "verbose"),
]);

const COUNT_OBJECTS: Grammar = sub(&[f('v', "verbose"), f('H', "human-readable")]);
const VERSION: Grammar = sub(&[f(' ', "build-options")]);
const NONE: Grammar = sub(&[]);
const VAR: Grammar = sub(&[f('l', "")]);
const SUBMODULE: Grammar = sub(&[f('q', "quiet"), f(' ', "cached"), f(' ', "recursive")]);

/// Merge strategies git ships; any other name runs `git-merge-NAME` found on `PATH`.
fn strategy_check(p: &Parsed, fx: &mut Effects) {
    for o in p.find("strategy") {
        if let Some(s) = &o.value {
            if s.dynamic
                || !matches!(
                    s.text.as_str(),
                    "ort" | "recursive" | "resolve" | "octopus" | "ours" | "subtree"
                )
            {
                fx.code(format!(
                    "git merge strategy `{}` runs the program git-merge-{} found on PATH",
                    s.text, s.text
                ));
            }
        }
    }
}

/// A `clone` source that is a local path (not `host:path` or `scheme://`): it is read.
fn local_source(w: &Word) -> bool {
    w.dynamic || !(w.text.contains("://") || w.text.contains(':'))
}

/// Parses `rest` with `g` and applies the generic effects.
fn run(name: &str, g: &Grammar, rest: &[Word], fx: &mut Effects) -> Parsed {
    let p = parse(g, rest);
    fx.apply_generic(&format!("git {name}"), &p);
    p
}

pub(super) fn subcommand(name: &str, rest: &[Word], fx: &mut Effects) {
    let unknown = |fx: &mut Effects, why: String| fx.unknown.push(why);
    match name {
        "status" => drop(run(name, &STATUS, rest, fx)),
        "add" => drop(run(name, &ADD, rest, fx)),
        "commit" => drop(run(name, &COMMIT, rest, fx)),
        "branch" => drop(run(name, &BRANCH, rest, fx)),
        "checkout" => drop(run(name, &CHECKOUT, rest, fx)),
        "switch" => drop(run(name, &SWITCH, rest, fx)),
        "restore" => drop(run(name, &RESTORE, rest, fx)),
        "tag" => drop(run(name, &TAG, rest, fx)),
        "rev-parse" => drop(run(name, &REV_PARSE, rest, fx)),
        "ls-files" => drop(run(name, &LS_FILES, rest, fx)),
        "blame" | "annotate" => drop(run(name, &BLAME, rest, fx)),
        "reset" => drop(run(name, &RESET, rest, fx)),
        "clean" => drop(run(name, &CLEAN, rest, fx)),
        "rm" => drop(run(name, &RM, rest, fx)),
        "mv" => drop(run(name, &MV, rest, fx)),
        "describe" => drop(run(name, &DESCRIBE, rest, fx)),
        "show-ref" => drop(run(name, &SHOW_REF, rest, fx)),
        "for-each-ref" => drop(run(name, &FOR_EACH_REF, rest, fx)),
        "ls-tree" => drop(run(name, &LS_TREE, rest, fx)),
        "cat-file" => drop(run(name, &CAT_FILE, rest, fx)),
        "merge-base" => drop(run(name, &MERGE_BASE, rest, fx)),
        "check-ignore" => drop(run(name, &CHECK_IGNORE, rest, fx)),
        "count-objects" => drop(run(name, &COUNT_OBJECTS, rest, fx)),
        "help" => drop(run(name, &HELP, rest, fx)),
        "version" => drop(run(name, &VERSION, rest, fx)),
        "var" | "write-tree" => drop(run(name, &VAR, rest, fx)),
        "ls-remote" => drop(run(name, &LS_REMOTE, rest, fx)),
        "fetch" => drop(run(name, &FETCH, rest, fx)),
        "push" => drop(run(name, &PUSH, rest, fx)),
        "log" | "show" | "whatchanged" | "rev-list" | "diff-tree" | "diff-index" | "diff-files" => {
            drop(run(name, &DIFF_LOG, rest, fx))
        }
        "format-patch" => drop(run(name, &FORMAT_PATCH, rest, fx)),
        "diff" => {
            // `git diff A B` compares two files on disk when either is outside the work tree
            // (with or without --no-index), so every operand may be a path it reads.
            let p = run(name, &DIFF_ONLY, rest, fx);
            fx.reads.extend(p.operands);
        }
        "grep" => {
            let p = run(name, &GREP, rest, fx);
            if p.has("no-index") {
                fx.reads.extend(p.operands);
            }
        }
        "merge" | "pull" | "rebase" | "cherry-pick" | "revert" => {
            let g = match name {
                "merge" => &MERGE,
                "pull" => &PULL,
                "rebase" => &REBASE,
                _ => &PICK,
            };
            let p = run(name, g, rest, fx);
            strategy_check(&p, fx);
        }
        "clone" => {
            let p = run(name, &CLONE, rest, fx);
            for o in p.find("config") {
                config_pair(fx, "clone --config", o.value.as_ref());
            }
            if let Some(src) = p.operands.first().filter(|w| local_source(w)) {
                fx.reads.push(src.clone());
            }
            fx.writes.extend(p.operands.get(1).cloned());
        }
        "init" => {
            let p = run(name, &INIT, rest, fx);
            fx.writes.extend(p.operands);
        }
        "config" => {
            let p = run(name, &CONFIG, rest, fx);
            config(&p, fx);
        }
        "apply" | "am" => {
            let p = run(name, if name == "apply" { &APPLY } else { &AM }, rest, fx);
            fx.reads.extend(p.operands);
        }
        "hash-object" => {
            let p = run(name, &HASH_OBJECT, rest, fx);
            fx.reads.extend(p.operands);
        }
        "archive" => {
            let p = run(name, &ARCHIVE, rest, fx);
            if p.has("remote") {
                unknown(
                    fx,
                    "git archive --remote reaches another repository over the network".into(),
                );
            }
        }
        "difftool" | "mergetool" => fx.code(format!(
            "git {name} runs an external diff or merge tool program"
        )),
        "stash" => stash(rest, fx),
        "worktree" => worktree(rest, fx),
        "remote" => {
            let p = run(name, &REMOTE, rest, fx);
            let verb = p.operands.first().map_or("", |w| w.text.as_str());
            if matches!(verb, "show" | "prune" | "update") || (verb == "add" && p.has_short('f')) {
                unknown(
                    fx,
                    format!("git remote {verb} contacts the remote over the network"),
                );
            }
        }
        "reflog" => {
            let verb = rest.first().map_or("show", |w| w.text.as_str());
            match verb {
                "expire" | "delete" | "exists" | "list" => {
                    drop(run(name, &REFLOG_WRITE, &rest[1..], fx))
                }
                "show" => drop(run(name, &DIFF_LOG, &rest[1..], fx)),
                _ => drop(run(name, &DIFF_LOG, rest, fx)),
            }
        }
        "bisect" => {
            let verb = rest.first().map_or("", |w| w.text.as_str());
            match verb {
                "run" => fx.code("git bisect run runs a command for every step of the bisection"),
                "replay" => fx.reads.extend(rest.get(1).cloned()),
                "" | "start" | "bad" | "good" | "new" | "old" | "skip" | "reset" | "terms"
                | "log" | "next" | "help" => {}
                other => unknown(
                    fx,
                    format!("git bisect {other} is not in agp's model of git"),
                ),
            }
        }
        "submodule" => {
            let p = run(name, &SUBMODULE, rest, fx);
            match p.operands.first().map(|w| w.text.as_str()) {
                None | Some("status") | Some("summary") => {}
                Some("foreach") => {
                    fx.code("git submodule foreach runs a shell command in every submodule")
                }
                Some(other) => unknown(
                    fx,
                    format!("git submodule {other} fetches or checks out other repositories"),
                ),
            }
        }
        _ => unknown(
            fx,
            format!(
                "git {name} is not in agp's model of git (an alias or an unmodeled subcommand)"
            ),
        ),
    }
    drop_streams(fx);
}

/// `-` means stdin or stdout, not a file.
fn drop_streams(fx: &mut Effects) {
    fx.reads.retain(|w| w.dynamic || w.text != "-");
    fx.writes.retain(|w| w.dynamic || w.text != "-");
}

/// `git stash [push] …`, `stash show` (diff options), `stash list` (log options).
fn stash(rest: &[Word], fx: &mut Effects) {
    let verb = rest
        .first()
        .filter(|w| !w.text.starts_with('-') || w.dynamic)
        .map(|w| w.text.as_str());
    let args = if verb.is_some() { &rest[1..] } else { rest };
    let g = match verb {
        Some("show") | Some("list") => &DIFF_LOG,
        Some("pop") | Some("apply") | Some("drop") => &QUIET,
        Some("clear") => &NONE,
        None | Some("push") | Some("save") | Some("branch") | Some("create") | Some("store") => {
            &STASH
        }
        Some(other) => {
            fx.unknown
                .push(format!("git stash {other} is not in agp's model of git"));
            return;
        }
    };
    drop(run("stash", g, args, fx));
}

/// `git worktree add PATH`, `move A B`, `remove PATH`, `repair PATH…` write those paths.
fn worktree(rest: &[Word], fx: &mut Effects) {
    let p = run("worktree", &WORKTREE, rest, fx);
    let verb = p.operands.first().map_or("", |w| w.text.as_str());
    let args = p.operands.get(1..).unwrap_or(&[]);
    match verb {
        "add" => fx.writes.extend(args.first().cloned()),
        "move" | "remove" | "repair" => fx.writes.extend(args.iter().cloned()),
        "list" | "prune" | "lock" | "unlock" => {}
        other => fx
            .unknown
            .push(format!("git worktree {other} is not in agp's model of git")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::git::model;
    use super::super::spec::{check, Want::*};

    #[test]
    fn everyday_commands_are_clean() {
        check(
            model,
            &[
                ("status --short", Clean),
                ("status -sb", Clean),
                ("log --oneline -n 10", Clean),
                ("log -5 --stat", Clean),
                ("log -10 --format='%H %s'", Clean),
                ("log --graph --decorate --all", Clean),
                ("show HEAD", Clean),
                ("show --stat HEAD~2", Clean),
                ("add -A", Clean),
                ("add src/main.rs", Clean),
                ("commit -m 'feat: x'", Clean),
                ("commit -am x", Clean),
                ("checkout -b feature/x", Clean),
                ("switch -c y", Clean),
                ("restore --staged a.rs", Clean),
                ("stash", Clean),
                ("stash pop", Clean),
                ("stash list", Clean),
                ("stash show -p stash@{0}", Clean),
                ("branch -a", Clean),
                ("branch --show-current", Clean),
                ("merge --no-ff feature", Clean),
                ("tag -a v1 -m release", Clean),
                ("rev-parse --abbrev-ref HEAD", Clean),
                ("rev-parse --show-toplevel", Clean),
                ("ls-files -m", Clean),
                ("blame -L 10,20 src/main.rs", Clean),
                ("grep -n TODO", Clean),
                ("grep -3 foo -- src", Clean),
                ("reset HEAD~1", Clean),
                ("worktree list", Clean),
                ("bisect start", Clean),
                ("config --get user.name", Clean),
            ],
        );
    }

    #[test]
    fn code_reads_writes_and_unknown() {
        check(
            model,
            &[
                ("log --ext-diff", Code),
                ("log -p --ext-d", Code),
                ("diff --textconv", Code),
                ("show --textconv HEAD", Code),
                ("stash show --ext-diff", Code),
                (
                    "diff --no-index /dev/null /root/.ssh/id_rsa",
                    Reads("/root/.ssh/id_rsa"),
                ),
                ("diff /dev/null ~/.ssh/id_rsa", Reads("~/.ssh/id_rsa")),
                ("diff HEAD~1 -- src/", Reads("src/")),
                ("diff --output=/root/.bashrc", Writes("/root/.bashrc")),
                ("log --output /tmp/x", Writes("/tmp/x")),
                ("diff -O/etc/shadow", Reads("/etc/shadow")),
                ("grep -O id foo", Code),
                ("grep --open-files-in-pager=vi foo", Code),
                ("grep --no-index secret /root/.ssh", Reads("/root/.ssh")),
                ("grep -f /etc/shadow", Reads("/etc/shadow")),
                ("rebase -x id main", Code),
                ("rebase --exec=id main", Code),
                ("rebase -ix id main", Code),
                ("bisect run ./x.sh", Code),
                ("difftool --extcmd=id", Code),
                ("mergetool", Code),
                ("fetch --upload-pack='sh -c id' origin", Code),
                ("pull --upload-pack=x", Code),
                ("push --receive-pack=x origin", Code),
                ("push --exec=x origin", Code),
                ("clone -u x /tmp/r", Code),
                ("clone --template=/tmp/t https://h/r", Code),
                ("clone -c core.fsmonitor=id https://h/r", Code),
                (
                    "clone --config=color.ui=auto https://h/r dir",
                    Writes("dir"),
                ),
                ("clone /root/repo x", Reads("/root/repo")),
                ("ls-remote --upload-pack=x .", Code),
                ("archive --exec=x --remote=r HEAD", Code),
                ("archive -o /root/x.tar HEAD", Writes("/root/x.tar")),
                (
                    "archive --add-file=/root/.ssh/id_rsa HEAD",
                    Reads("/root/.ssh/id_rsa"),
                ),
                ("archive --remote=r HEAD", Unknown),
                ("format-patch -o /tmp/p HEAD~3", Writes("/tmp/p")),
                ("format-patch --ext-diff HEAD~1", Code),
                ("merge -s evil x", Code),
                ("merge --strategy=ort x", Clean),
                ("pull -s evil", Code),
                ("cherry-pick --strategy=x abc", Code),
                ("commit -F /root/.ssh/id_rsa", Reads("/root/.ssh/id_rsa")),
                ("commit --template=/etc/shadow", Reads("/etc/shadow")),
                ("tag -F /etc/shadow v1", Reads("/etc/shadow")),
                ("blame --contents /etc/shadow a.rs", Reads("/etc/shadow")),
                ("add --pathspec-from-file=/etc/shadow", Reads("/etc/shadow")),
                ("apply /tmp/x.patch", Reads("/tmp/x.patch")),
                ("apply --unsafe-paths x.patch", Code),
                ("am /tmp/mbox", Reads("/tmp/mbox")),
                ("worktree add /tmp/wt", Writes("/tmp/wt")),
                ("worktree add -b x ../wt main", Writes("../wt")),
                ("worktree remove /tmp/wt", Writes("/tmp/wt")),
                ("init /tmp/r", Writes("/tmp/r")),
                ("init --template=/tmp/t", Code),
                ("cat-file --textconv HEAD:a", Code),
                ("cat-file --filters HEAD:a", Code),
                ("hash-object /etc/shadow", Reads("/etc/shadow")),
                ("submodule foreach id", Code),
                ("submodule update --init", Unknown),
                ("config core.hooksPath /tmp/hooks", Writes(".git/config")),
                ("config --global alias.st '!id'", Writes("~/.gitconfig")),
                ("config set --system a.b c", Writes("/etc/gitconfig")),
                ("config --file /tmp/c a.b c", Writes("/tmp/c")),
                (
                    "config -f /root/.aws/credentials --list",
                    Reads("/root/.aws/credentials"),
                ),
                ("config --unset core.pager", Writes(".git/config")),
                ("config -e", Writes(".git/config")),
                ("log --frobnicate", Unknown),
                ("status --frob", Unknown),
                ("commit --bogus", Unknown),
                ("log $OPTS", Unknown),
                ("stash frob", Unknown),
                ("st", Unknown),
                ("remote update", Unknown),
                ("maintenance start", Unknown),
            ],
        );
    }
}
