//! Option tables of git's history-editing, housekeeping and plumbing subcommands (worktree,
//! rebase, cherry-pick/revert, reset, clean, rm, mv, remote, describe, refs, objects, help),
//! from their manuals.

use super::git_opts::{FROM_FILE, NUL};
use super::git_tables::sub;
use super::grammar::Grammar;
use super::spec::{code, dangerous, f, ov, v};

pub(super) const WORKTREE: Grammar = sub(&[
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

pub(super) const REBASE: Grammar = sub(&[
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
    code(
        'x',
        "exec",
        "runs this shell command after each rebased commit",
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

pub(super) const PICK: Grammar = sub(&[
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

pub(super) const RESET: Grammar = sub(&[
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
    FROM_FILE,
    NUL,
]);

pub(super) const CLEAN: Grammar = sub(&[
    f('d', ""),
    f('f', "force"),
    f('i', "interactive"),
    f('n', "dry-run"),
    f('q', "quiet"),
    v('e', "exclude"),
    f('x', ""),
    f('X', ""),
]);

pub(super) const RM: Grammar = sub(&[
    f('f', "force"),
    f('n', "dry-run"),
    f('r', ""),
    f(' ', "cached"),
    f(' ', "ignore-unmatch"),
    f(' ', "sparse"),
    f('q', "quiet"),
    FROM_FILE,
    NUL,
]);

pub(super) const MV: Grammar = sub(&[
    f('f', "force"),
    f('k', ""),
    f('n', "dry-run"),
    f('v', "verbose"),
    f(' ', "sparse"),
]);

pub(super) const REMOTE: Grammar = sub(&[
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

pub(super) const DESCRIBE: Grammar = sub(&[
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

pub(super) const SHOW_REF: Grammar = sub(&[
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

pub(super) const FOR_EACH_REF: Grammar = sub(&[
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

pub(super) const LS_TREE: Grammar = sub(&[
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

pub(super) const CAT_FILE: Grammar = sub(&[
    f('t', ""),
    f('s', ""),
    f('e', ""),
    f('p', ""),
    dangerous(
        ' ',
        "textconv",
        "runs the textconv filter program configured for the file",
    ),
    dangerous(
        ' ',
        "filters",
        "runs the clean/smudge filter programs configured for the file",
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

pub(super) const MERGE_BASE: Grammar = sub(&[
    f('a', "all"),
    f(' ', "octopus"),
    f(' ', "independent"),
    f(' ', "is-ancestor"),
    f(' ', "fork-point"),
]);

pub(super) const HASH_OBJECT: Grammar = sub(&[
    v('t', ""),
    f('w', ""),
    f(' ', "stdin"),
    f(' ', "stdin-paths"),
    f(' ', "literally"),
    f(' ', "no-filters"),
    v(' ', "path"),
]);

pub(super) const CHECK_IGNORE: Grammar = sub(&[
    f('q', "quiet"),
    f('v', "verbose"),
    f(' ', "stdin"),
    f('z', ""),
    f('n', "non-matching"),
    f(' ', "no-index"),
]);

pub(super) const HELP: Grammar = sub(&[
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

pub(super) const QUIET: Grammar = sub(&[f('q', "quiet"), f(' ', "index"), f('v', "verbose")]);

pub(super) const REFLOG_WRITE: Grammar = sub(&[
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

pub(super) const COUNT_OBJECTS: Grammar = sub(&[f('v', "verbose"), f('H', "human-readable")]);

pub(super) const VERSION: Grammar = sub(&[f(' ', "build-options")]);

pub(super) const NONE: Grammar = sub(&[]);

pub(super) const VAR: Grammar = sub(&[f('l', "")]);

pub(super) const SUBMODULE: Grammar =
    sub(&[f('q', "quiet"), f(' ', "cached"), f(' ', "recursive")]);
