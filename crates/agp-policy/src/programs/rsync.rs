//! rsync 3.3 (popt: clusters, glued values, `--opt=value`, `--no-OPT`, no abbreviations): the
//! remote shell and remote program it runs, files it reads lists and passwords from, logs and
//! batches it writes, local sources (read, removed with `--remove-source-files`) and the local
//! destination (written).

use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::{code, exact, f, o, reads, v, writes};
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    f('v', "verbose"),
    v(' ', "info"),
    v(' ', "debug"),
    v(' ', "stderr"),
    f('q', "quiet"),
    f(' ', "motd"),
    f('c', "checksum"),
    f('a', "archive"),
    f('r', "recursive"),
    f('R', "relative"),
    f(' ', "implied-dirs"),
    f('b', "backup"),
    writes(' ', "backup-dir"),
    v(' ', "suffix"),
    f('u', "update"),
    f(' ', "inplace"),
    f(' ', "append"),
    f(' ', "append-verify"),
    f('d', "dirs"),
    f(' ', "old-dirs"),
    f(' ', "mkpath"),
    f('l', "links"),
    f('L', "copy-links"),
    f(' ', "copy-unsafe-links"),
    f(' ', "safe-links"),
    f(' ', "munge-links"),
    f('k', "copy-dirlinks"),
    f('K', "keep-dirlinks"),
    f('H', "hard-links"),
    f('p', "perms"),
    f('E', "executability"),
    v(' ', "chmod"),
    f('A', "acls"),
    f('X', "xattrs"),
    f('o', "owner"),
    f('g', "group"),
    f(' ', "devices"),
    f(' ', "copy-devices"),
    f(' ', "write-devices"),
    f(' ', "specials"),
    f('D', "D"),
    f('t', "times"),
    f('U', "atimes"),
    f(' ', "open-noatime"),
    f('N', "crtimes"),
    f('O', "omit-dir-times"),
    f('J', "omit-link-times"),
    f(' ', "super"),
    f(' ', "fake-super"),
    f('S', "sparse"),
    f(' ', "preallocate"),
    f('n', "dry-run"),
    f('W', "whole-file"),
    v(' ', "checksum-choice"),
    v(' ', "cc"),
    f('x', "one-file-system"),
    v('B', "block-size"),
    code('e', "rsh", "runs this command as the remote shell"),
    code(
        ' ',
        "rsync-path",
        "runs this command as the other side's rsync",
    ),
    f(' ', "existing"),
    f(' ', "ignore-existing"),
    f(' ', "remove-source-files"),
    f(' ', "del"),
    f(' ', "delete"),
    f(' ', "delete-before"),
    f(' ', "delete-during"),
    f(' ', "delete-delay"),
    f(' ', "delete-after"),
    f(' ', "delete-excluded"),
    f(' ', "ignore-missing-args"),
    f(' ', "delete-missing-args"),
    f(' ', "ignore-errors"),
    f(' ', "force"),
    v(' ', "max-delete"),
    v(' ', "max-size"),
    v(' ', "min-size"),
    v(' ', "max-alloc"),
    f(' ', "partial"),
    writes(' ', "partial-dir"),
    f(' ', "delay-updates"),
    f('m', "prune-empty-dirs"),
    f(' ', "numeric-ids"),
    v(' ', "usermap"),
    v(' ', "groupmap"),
    v(' ', "chown"),
    v(' ', "timeout"),
    v(' ', "contimeout"),
    f('I', "ignore-times"),
    f(' ', "size-only"),
    v('@', "modify-window"),
    writes('T', "temp-dir"),
    f('y', "fuzzy"),
    reads(' ', "compare-dest"),
    reads(' ', "copy-dest"),
    reads(' ', "link-dest"),
    f('z', "compress"),
    v(' ', "compress-choice"),
    v(' ', "zc"),
    v(' ', "compress-level"),
    v(' ', "zl"),
    v(' ', "skip-compress"),
    f('C', "cvs-exclude"),
    v('f', "filter"),
    f('F', "F"),
    v(' ', "exclude"),
    reads(' ', "exclude-from"),
    v(' ', "include"),
    reads(' ', "include-from"),
    reads(' ', "files-from"),
    f('0', "from0"),
    f('s', "secluded-args"),
    f(' ', "protect-args"),
    f(' ', "old-args"),
    f(' ', "trust-sender"),
    o(
        ' ',
        "copy-as",
        Required,
        Dangerous("switches to another user for the copy"),
    ),
    v(' ', "address"),
    v(' ', "port"),
    v(' ', "sockopts"),
    f(' ', "blocking-io"),
    v(' ', "outbuf"),
    f(' ', "stats"),
    f('8', "8-bit-output"),
    f('h', "human-readable"),
    f(' ', "progress"),
    f('P', "P"),
    f('i', "itemize-changes"),
    code(
        'M',
        "remote-option",
        "passes this option to the other side's rsync",
    ),
    v(' ', "out-format"),
    writes(' ', "log-file"),
    v(' ', "log-file-format"),
    reads(' ', "password-file"),
    reads(' ', "early-input"),
    f(' ', "list-only"),
    v(' ', "bwlimit"),
    v(' ', "stop-after"),
    v(' ', "stop-at"),
    f(' ', "fsync"),
    writes(' ', "write-batch"),
    writes(' ', "only-write-batch"),
    reads(' ', "read-batch"),
    v(' ', "protocol"),
    v(' ', "iconv"),
    v(' ', "checksum-seed"),
    f('4', "ipv4"),
    f('6', "ipv6"),
    f('V', "version"),
    f(' ', "help"),
];

const RSYNC: Grammar = exact(OPTS);

/// `host:path`, `user@host:path`, `host::module`, `rsync://…`.
fn is_remote(w: &Word) -> bool {
    let t = w.text.as_str();
    if t.starts_with("rsync://") {
        return true;
    }
    match t.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

/// The rsync model.
pub fn rsync(args: &[Word]) -> Effects {
    let mut parsed = parse(&RSYNC, args);
    // popt accepts `--no-OPT` (and `--no-O`) for every option.
    parsed.unknown.retain(|u| {
        let Some(rest) = u.strip_prefix("--no-") else {
            return true;
        };
        !OPTS
            .iter()
            .any(|o| o.long == Some(rest) || (rest.len() == 1 && o.short == rest.chars().next()))
    });
    let mut fx = Effects::default();
    fx.apply_generic("rsync", &parsed);
    if parsed.has("files-from") {
        fx.code("rsync reads the names of the files to copy from a file agp cannot see");
    }
    for o in parsed.find("filter") {
        // `merge FILE`, `. FILE`, `dir-merge FILE`, `: FILE` read rules from a file.
        let Some(rule) = &o.value else { continue };
        let mut it = rule.text.split_whitespace();
        let head = it.next().unwrap_or("");
        let kind = head.split(',').next().unwrap_or("");
        if matches!(kind, "merge" | "." | "dir-merge" | ":") {
            if let Some(file) = it.last() {
                fx.reads.push(Word {
                    text: file.to_string(),
                    ..rule.clone()
                });
            }
        }
    }
    let ops = &parsed.operands;
    let (sources, dest) = match ops.split_last() {
        Some((d, s)) if !s.is_empty() => (s, Some(d)),
        _ => (ops.as_slice(), None),
    };
    let remove = parsed.has("remove-source-files");
    for s in sources.iter().filter(|w| !is_remote(w)) {
        fx.reads.push(s.clone());
        if remove {
            fx.writes.push(s.clone());
        }
    }
    if let Some(d) = dest.filter(|w| !is_remote(w)) {
        if !parsed.has("dry-run") && !parsed.has("list-only") {
            fx.writes.push(d.clone());
        }
    }
    fx
}

super::spec::model_cases! { "cases/rsync.cases";
    table: "rsync" => Model(super::rsync),
}
