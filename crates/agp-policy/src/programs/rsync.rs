//! rsync 3.3 (popt: clusters, glued values, `--opt=value`, `--no-OPT`, no abbreviations): the
//! remote shell and remote program it runs, files it reads lists and passwords from, logs and
//! batches it writes, local sources (read, removed with `--remove-source-files`) and the local
//! destination (written).

use super::grammar::{parse, Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::exact;
use super::Effects;
use crate::shell::Word;

const fn f(short: Option<char>, long: &'static str) -> OptSpec {
    OptSpec::new(short, Some(long), Flag, Plain)
}
const fn v(short: Option<char>, long: &'static str) -> OptSpec {
    OptSpec::new(short, Some(long), Required, Plain)
}

const OPTS: &[OptSpec] = &[
    f(Some('v'), "verbose"),
    v(None, "info"),
    v(None, "debug"),
    v(None, "stderr"),
    f(Some('q'), "quiet"),
    f(None, "motd"),
    f(Some('c'), "checksum"),
    f(Some('a'), "archive"),
    f(Some('r'), "recursive"),
    f(Some('R'), "relative"),
    f(None, "implied-dirs"),
    f(Some('b'), "backup"),
    OptSpec::new(None, Some("backup-dir"), Required, WritesFile),
    v(None, "suffix"),
    f(Some('u'), "update"),
    f(None, "inplace"),
    f(None, "append"),
    f(None, "append-verify"),
    f(Some('d'), "dirs"),
    f(None, "old-dirs"),
    f(None, "mkpath"),
    f(Some('l'), "links"),
    f(Some('L'), "copy-links"),
    f(None, "copy-unsafe-links"),
    f(None, "safe-links"),
    f(None, "munge-links"),
    f(Some('k'), "copy-dirlinks"),
    f(Some('K'), "keep-dirlinks"),
    f(Some('H'), "hard-links"),
    f(Some('p'), "perms"),
    f(Some('E'), "executability"),
    v(None, "chmod"),
    f(Some('A'), "acls"),
    f(Some('X'), "xattrs"),
    f(Some('o'), "owner"),
    f(Some('g'), "group"),
    f(None, "devices"),
    f(None, "copy-devices"),
    f(None, "write-devices"),
    f(None, "specials"),
    f(Some('D'), "D"),
    f(Some('t'), "times"),
    f(Some('U'), "atimes"),
    f(None, "open-noatime"),
    f(Some('N'), "crtimes"),
    f(Some('O'), "omit-dir-times"),
    f(Some('J'), "omit-link-times"),
    f(None, "super"),
    f(None, "fake-super"),
    f(Some('S'), "sparse"),
    f(None, "preallocate"),
    f(Some('n'), "dry-run"),
    f(Some('W'), "whole-file"),
    v(None, "checksum-choice"),
    v(None, "cc"),
    f(Some('x'), "one-file-system"),
    v(Some('B'), "block-size"),
    OptSpec::new(
        Some('e'),
        Some("rsh"),
        Required,
        RunsCode("runs this command as the remote shell"),
    ),
    OptSpec::new(
        None,
        Some("rsync-path"),
        Required,
        RunsCode("runs this command as the other side's rsync"),
    ),
    f(None, "existing"),
    f(None, "ignore-existing"),
    f(None, "remove-source-files"),
    f(None, "del"),
    f(None, "delete"),
    f(None, "delete-before"),
    f(None, "delete-during"),
    f(None, "delete-delay"),
    f(None, "delete-after"),
    f(None, "delete-excluded"),
    f(None, "ignore-missing-args"),
    f(None, "delete-missing-args"),
    f(None, "ignore-errors"),
    f(None, "force"),
    v(None, "max-delete"),
    v(None, "max-size"),
    v(None, "min-size"),
    v(None, "max-alloc"),
    f(None, "partial"),
    OptSpec::new(None, Some("partial-dir"), Required, WritesFile),
    f(None, "delay-updates"),
    f(Some('m'), "prune-empty-dirs"),
    f(None, "numeric-ids"),
    v(None, "usermap"),
    v(None, "groupmap"),
    v(None, "chown"),
    v(None, "timeout"),
    v(None, "contimeout"),
    f(Some('I'), "ignore-times"),
    f(None, "size-only"),
    v(Some('@'), "modify-window"),
    OptSpec::new(Some('T'), Some("temp-dir"), Required, WritesFile),
    f(Some('y'), "fuzzy"),
    OptSpec::new(None, Some("compare-dest"), Required, ReadsFile),
    OptSpec::new(None, Some("copy-dest"), Required, ReadsFile),
    OptSpec::new(None, Some("link-dest"), Required, ReadsFile),
    f(Some('z'), "compress"),
    v(None, "compress-choice"),
    v(None, "zc"),
    v(None, "compress-level"),
    v(None, "zl"),
    v(None, "skip-compress"),
    f(Some('C'), "cvs-exclude"),
    v(Some('f'), "filter"),
    f(Some('F'), "F"),
    v(None, "exclude"),
    OptSpec::new(None, Some("exclude-from"), Required, ReadsFile),
    v(None, "include"),
    OptSpec::new(None, Some("include-from"), Required, ReadsFile),
    OptSpec::new(None, Some("files-from"), Required, ReadsFile),
    f(Some('0'), "from0"),
    f(Some('s'), "secluded-args"),
    f(None, "protect-args"),
    f(None, "old-args"),
    f(None, "trust-sender"),
    OptSpec::new(
        None,
        Some("copy-as"),
        Required,
        Dangerous("switches to another user for the copy"),
    ),
    v(None, "address"),
    v(None, "port"),
    v(None, "sockopts"),
    f(None, "blocking-io"),
    v(None, "outbuf"),
    f(None, "stats"),
    f(Some('8'), "8-bit-output"),
    f(Some('h'), "human-readable"),
    f(None, "progress"),
    f(Some('P'), "P"),
    f(Some('i'), "itemize-changes"),
    OptSpec::new(
        Some('M'),
        Some("remote-option"),
        Required,
        RunsCode("passes this option to the other side's rsync"),
    ),
    v(None, "out-format"),
    OptSpec::new(None, Some("log-file"), Required, WritesFile),
    v(None, "log-file-format"),
    OptSpec::new(None, Some("password-file"), Required, ReadsFile),
    OptSpec::new(None, Some("early-input"), Required, ReadsFile),
    f(None, "list-only"),
    v(None, "bwlimit"),
    v(None, "stop-after"),
    v(None, "stop-at"),
    f(None, "fsync"),
    OptSpec::new(None, Some("write-batch"), Required, WritesFile),
    OptSpec::new(None, Some("only-write-batch"), Required, WritesFile),
    OptSpec::new(None, Some("read-batch"), Required, ReadsFile),
    v(None, "protocol"),
    v(None, "iconv"),
    v(None, "checksum-seed"),
    f(Some('4'), "ipv4"),
    f(Some('6'), "ipv6"),
    f(Some('V'), "version"),
    f(None, "help"),
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
