//! git subcommand dispatch: each subcommand's grammar, then what its operands mean (a path
//! `git diff` reads, the directory `git clone` writes, the command `bisect run` runs).

use super::git::{config, config_pair};
use super::git_misc::*;
use super::git_tables::*;
use super::git_xfer::*;
use super::grammar::Grammar;
use super::{Effects, Parsed};
use crate::shell::Word;

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

/// Parses `rest` with `g` as the options of `git NAME`, applying their generic effects.
fn run(name: &str, g: &Grammar, rest: &[Word], fx: &mut Effects) -> Parsed {
    fx.parse_args(&format!("git {name}"), g, rest)
}

/// Subcommands whose model is their option table alone: what their options do is judged
/// (`Effects::apply_generic`), their operands are not.
const PLAIN: &[(&str, &Grammar)] = &[
    ("status", &STATUS),
    ("add", &ADD),
    ("commit", &COMMIT),
    ("branch", &BRANCH),
    ("checkout", &CHECKOUT),
    ("switch", &SWITCH),
    ("restore", &RESTORE),
    ("tag", &TAG),
    ("rev-parse", &REV_PARSE),
    ("ls-files", &LS_FILES),
    ("blame", &BLAME),
    ("annotate", &BLAME),
    ("reset", &RESET),
    ("clean", &CLEAN),
    ("rm", &RM),
    ("mv", &MV),
    ("describe", &DESCRIBE),
    ("show-ref", &SHOW_REF),
    ("for-each-ref", &FOR_EACH_REF),
    ("ls-tree", &LS_TREE),
    ("cat-file", &CAT_FILE),
    ("merge-base", &MERGE_BASE),
    ("check-ignore", &CHECK_IGNORE),
    ("count-objects", &COUNT_OBJECTS),
    ("help", &HELP),
    ("version", &VERSION),
    ("var", &VAR),
    ("write-tree", &VAR),
    ("ls-remote", &LS_REMOTE),
    ("fetch", &FETCH),
    ("push", &PUSH),
    ("format-patch", &FORMAT_PATCH),
    ("log", &DIFF_LOG),
    ("show", &DIFF_LOG),
    ("whatchanged", &DIFF_LOG),
    ("rev-list", &DIFF_LOG),
    ("diff-tree", &DIFF_LOG),
    ("diff-index", &DIFF_LOG),
    ("diff-files", &DIFF_LOG),
];

/// Subcommands whose operands are all files they read. (`git diff A B` compares two files on
/// disk when either is outside the work tree, with or without --no-index.)
const READS_OPERANDS: &[(&str, &Grammar)] = &[
    ("diff", &DIFF_ONLY),
    ("apply", &APPLY),
    ("am", &AM),
    ("hash-object", &HASH_OBJECT),
];

pub(super) fn subcommand(name: &str, rest: &[Word], fx: &mut Effects) {
    let grammar = |table: &[(&str, &'static Grammar)]| {
        table.iter().find(|(n, _)| *n == name).map(|(_, g)| *g)
    };
    if let Some(g) = grammar(PLAIN) {
        drop(run(name, g, rest, fx));
    } else if let Some(g) = grammar(READS_OPERANDS) {
        let p = run(name, g, rest, fx);
        fx.reads.extend(p.operands);
    } else {
        with_operands(name, rest, fx);
    }
    drop_streams(fx);
}

/// The subcommands whose operands (or sub-verbs) mean something of their own.
fn with_operands(name: &str, rest: &[Word], fx: &mut Effects) {
    let unknown = |fx: &mut Effects, why: String| fx.unknown.push(why);
    match name {
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
                    drop(run(name, &REFLOG_WRITE, &rest[1..], fx));
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
                None | Some("status" | "summary") => {}
                Some("foreach") => {
                    fx.code("git submodule foreach runs a shell command in every submodule");
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
        Some("show" | "list") => &DIFF_LOG,
        Some("pop" | "apply" | "drop") => &QUIET,
        Some("clear") => &NONE,
        None | Some("push" | "save" | "branch" | "create" | "store") => &STASH,
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
