//! git: the global options before the subcommand (git(1)), `-c` configuration, and the
//! subcommands agents use every day with their options (git-<cmd>(1)).
//!
//! Git runs programs named by its configuration (`core.pager`, `core.fsmonitor`,
//! `diff.external`, textconv and filter drivers, aliases, credential helpers, ...), so
//! configuration given on the command line is code unless its key is known to be inert, and
//! the options that run programs directly (`--ext-diff`, `--upload-pack`, `rebase --exec`,
//! `bisect run`, `grep -O`) are code. Subcommands and options the model does not know are
//! reported as unknown.

use super::git_sub;
use super::grammar::{Grammar, OptSpec};
use super::spec::{chdir, code, f, foreign, ov, v};
use super::{join_dir, Effects};
use crate::shell::Word;

const GLOBAL: &[OptSpec] = &[
    f('v', "version"),
    f('h', "help"),
    chdir('C', ""),
    v('c', ""),
    code(
        ' ',
        "config-env",
        "takes a configuration value, which can name a program, from the environment",
    ),
    ov(' ', "exec-path"),
    f(' ', "html-path"),
    f(' ', "man-path"),
    f(' ', "info-path"),
    f('p', "paginate"),
    f('P', "no-pager"),
    f(' ', "no-replace-objects"),
    f(' ', "no-lazy-fetch"),
    f(' ', "no-optional-locks"),
    f(' ', "no-advice"),
    f(' ', "bare"),
    foreign(' ', "git-dir"),
    foreign(' ', "work-tree"),
    v(' ', "namespace"),
    v(' ', "super-prefix"),
    f(' ', "literal-pathspecs"),
    f(' ', "glob-pathspecs"),
    f(' ', "noglob-pathspecs"),
    f(' ', "icase-pathspecs"),
    v(' ', "list-cmds"),
    v(' ', "attr-source"),
];

/// git.c reads its own options by hand: exact names only, no clusters, and the first
/// non-option is the subcommand.
pub(super) const GLOBAL_GRAMMAR: Grammar = Grammar {
    opts: GLOBAL,
    long_abbrev: false,
    permute: false,
    single_dash_long: false,
    clustering: false,
};

/// Configuration keys whose values are data (names, colors, booleans, formats), never a
/// program, a path git loads code from, or a switch that widens what git trusts.
fn config_key_inert(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "user.name",
        "user.email",
        "author.name",
        "author.email",
        "committer.name",
        "committer.email",
        "core.quotepath",
        "core.autocrlf",
        "core.safecrlf",
        "core.eol",
        "core.filemode",
        "core.ignorecase",
        "core.abbrev",
        "core.whitespace",
        "core.precomposeunicode",
        "init.defaultbranch",
        "diff.noprefix",
        "diff.mnemonicprefix",
        "diff.renames",
        "diff.renamelimit",
        "diff.algorithm",
        "diff.context",
        "diff.interhunkcontext",
        "diff.indentheuristic",
        "diff.colormoved",
        "diff.relative",
        "diff.statgraphwidth",
        "merge.conflictstyle",
        "merge.renames",
        "merge.ff",
        "pull.rebase",
        "pull.ff",
        "column.ui",
        "commit.verbose",
        "commit.status",
        "commit.cleanup",
        "rebase.autosquash",
        "rebase.autostash",
        "log.date",
        "log.decorate",
        "log.abbrevcommit",
        "log.follow",
        "log.showroot",
        "format.pretty",
        "grep.linenumber",
        "grep.patterntype",
        "grep.extendedregexp",
        "grep.column",
        "grep.fullname",
        "status.short",
        "status.branch",
        "status.relativepaths",
        "status.showuntrackedfiles",
        "status.showstash",
        "status.aheadbehind",
        "status.renames",
        "tag.sort",
        "branch.sort",
        "blame.date",
        "i18n.commitencoding",
        "i18n.logoutputencoding",
    ];
    let k = key.to_ascii_lowercase();
    EXACT.contains(&k.as_str()) || k.starts_with("color.") || k.starts_with("advice.")
}

/// One `-c KEY[=VALUE]` (or `clone --config`) pair.
pub(super) fn config_pair(fx: &mut Effects, how: &str, pair: Option<&Word>) {
    match pair {
        Some(w) if !w.dynamic => {
            let key = w.text.split_once('=').map_or(w.text.as_str(), |(k, _)| k);
            if !config_key_inert(key) {
                fx.code(format!(
                    "git {how} {key}: configuration given on the command line can make git run \
                     programs (pagers, hooks, filters, aliases, helpers); only known-inert keys are allowed"
                ));
            }
        }
        Some(w) => fx.code(format!(
            "git {how} `{}`: configuration only known at run time can make git run programs",
            w.text
        )),
        None => fx.unknown.push(format!("git {how} without a value")),
    }
}

pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let p = fx.parse_args("git", &GLOBAL_GRAMMAR, args);
    let mut dir: Option<Word> = None;
    for o in &p.opts {
        match (o.spec.short, o.spec.long) {
            (Some('c'), _) => config_pair(&mut fx, "-c", o.value.as_ref()),
            (Some('C'), _) => {
                if let Some(d) = &o.value {
                    let d = join_dir(dir.as_ref(), d);
                    fx.foreign.push(d.clone());
                    dir = Some(d);
                }
            }
            (_, Some("exec-path")) if o.value.is_some() => {
                fx.code("git --exec-path=DIR runs git's subcommands from that directory");
            }
            (_, Some("git-dir")) => {
                // A git directory carries a config that can name programs (core.fsmonitor,
                // hooks); only the project's own is trusted.
                if let Some(d) = &o.value {
                    let t = d.text.trim_end_matches('/');
                    if d.dynamic || !(t == ".git" || t == "./.git") {
                        fx.code(format!(
                            "git --git-dir={}: a git directory's config and hooks can run programs",
                            d.text
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let Some(sub) = fx.subcommand("git", &p.operands) else {
        return fx;
    };
    let mut sfx = Effects::default();
    git_sub::subcommand(&sub.text, &p.operands[1..], &mut sfx);
    // Paths of the subcommand are relative to `-C DIR`.
    let rebase = |v: Vec<Word>| {
        v.iter()
            .map(|w| join_dir(dir.as_ref(), w))
            .collect::<Vec<_>>()
    };
    fx.reads.extend(rebase(sfx.reads));
    fx.writes.extend(rebase(sfx.writes));
    fx.foreign.extend(rebase(sfx.foreign));
    fx.code.extend(sfx.code);
    fx.unknown.extend(sfx.unknown);
    fx.runs.extend(sfx.runs);
    fx
}

/// `git config …`: what it reads and writes. Setting, unsetting or editing writes a config
/// file (`.git/config` unless `--global`, `--system` or `--file` says otherwise); `--file`
/// and `--blob` read one.
pub(super) fn config(p: &super::Parsed, fx: &mut Effects) {
    let words: Vec<&str> = p.operands.iter().map(|w| w.text.as_str()).collect();
    let verb = words.first().copied().unwrap_or("");
    let new_style = matches!(
        verb,
        "get" | "list" | "set" | "unset" | "edit" | "rename-section" | "remove-section"
    );
    let reading_opt = [
        "get",
        "get-all",
        "get-regexp",
        "get-urlmatch",
        "list",
        "get-color",
        "get-colorbool",
    ]
    .iter()
    .any(|n| p.has(n));
    let writing_opt = [
        "unset",
        "unset-all",
        "rename-section",
        "remove-section",
        "edit",
        "add",
        "replace-all",
    ]
    .iter()
    .any(|n| p.has(n));
    let writes = if new_style {
        matches!(
            verb,
            "set" | "unset" | "edit" | "rename-section" | "remove-section"
        )
    } else {
        writing_opt || (!reading_opt && p.operands.len() >= 2)
    };
    let file = p.find("file").last().and_then(|o| o.value.clone());
    if let Some(f) = &file {
        fx.reads.push(f.clone());
    }
    if !writes {
        return;
    }
    let target = if let Some(f) = file {
        f
    } else if p.has("global") {
        Word::literal("~/.gitconfig")
    } else if p.has("system") {
        Word::literal("/etc/gitconfig")
    } else {
        Word::literal(".git/config")
    };
    fx.writes.push(target);
}

super::spec::model_cases! { "cases/git.cases";
    global_options: "global options" => Model(super::model),
    everyday_commands_are_clean: "everyday commands are clean" => Model(super::model),
    code_reads_writes_and_unknown: "code, reads, writes and unknown" => Model(super::model),
}
