//! GNU tar 1.35 (with the old-style first argument `tar czf x.tgz dir`): options that run
//! programs, the archive it writes or reads, the files it adds, extracts or deletes.

mod opts;

use super::grammar::{Arity, Grammar};
use super::spec::gnu;
use super::{join_dir, Effects};
use crate::shell::Word;
use opts::OPTS;

const TAR: Grammar = gnu(OPTS);

/// `tar czf x.tgz dir`: a first argument without a dash is a cluster of letters whose
/// values are the following words, in order.
fn expand_old_style(args: &[Word]) -> Option<Vec<Word>> {
    let first = args.first()?;
    if first.dynamic || first.text.starts_with('-') || first.text.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(args.len() + first.text.len());
    let mut rest = args[1..].iter();
    for c in first.text.chars() {
        out.push(Word::literal(format!("-{c}")));
        let takes = OPTS
            .iter()
            .any(|s| s.short == Some(c) && s.arity == Arity::Required);
        if takes {
            if let Some(v) = rest.next() {
                out.push(v.clone());
            }
        }
    }
    // GNU tar goes on parsing options after the old-style cluster.
    out.extend(rest.cloned());
    Some(out)
}

/// `host:path` archives are reached through rsh unless `--force-local`.
fn is_remote(archive: &str) -> bool {
    match archive.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

/// The tar model.
pub fn tar(args: &[Word]) -> Effects {
    let expanded = expand_old_style(args);
    let args = expanded.as_deref().unwrap_or(args);
    let mut fx = Effects::default();
    let parsed = fx.parse_args("tar", &TAR, args);
    let has = |l: &str| parsed.has(l);
    let create = has("create");
    let extract = has("extract") || has("get");
    let adds = create || has("append") || has("update");
    let modifies = adds || has("catenate") || has("concatenate") || has("delete");
    let compares = has("diff") || has("compare");
    // -C is cumulative (`-C / -C etc` is /etc); every directory named is a place operands
    // may be relative to, since the order of -C and operands is not kept.
    let mut dirs: Vec<Word> = Vec::new();
    for o in parsed.find("directory") {
        if let Some(v) = &o.value {
            let d = join_dir(dirs.last(), v);
            dirs.push(d);
        }
    }
    let mut bases: Vec<Option<&Word>> = vec![None];
    bases.extend(dirs.iter().map(Some));

    for o in parsed.find("file") {
        let Some(a) = &o.value else { continue };
        if a.text == "-" && !a.dynamic {
            continue;
        }
        if !a.dynamic && is_remote(&a.text) && !has("force-local") {
            fx.code(format!(
                "tar reaches the archive `{}` on another host through rsh",
                a.text
            ));
            continue;
        }
        if modifies {
            fx.writes.push(a.clone());
        }
        if !create {
            fx.reads.push(a.clone());
        }
    }
    for o in parsed.find("listed-incremental") {
        if let Some(v) = &o.value {
            fx.reads.push(v.clone());
            fx.writes.push(v.clone());
        }
    }
    for o in parsed.find("checkpoint-action") {
        let action = o.value.as_ref();
        let t = action.map_or("", |w| w.text.as_str());
        let name = t.split_once('=').map_or(t, |(n, _)| n);
        if action.is_some_and(|w| w.dynamic) || name == "exec" {
            fx.code(format!(
                "tar --checkpoint-action={t} runs a command at each checkpoint"
            ));
        } else if !matches!(
            name,
            "bell" | "dot" | "." | "echo" | "ttyout" | "wait" | "sleep" | "totals"
        ) {
            fx.unknown.push(format!(
                "tar checkpoint action `{t}` is not in agp's model of tar"
            ));
        }
    }
    if has("files-from") && (adds || compares) {
        fx.code("tar reads the names of the files to archive from a file agp cannot see");
    }
    let mut operands: Vec<Word> = parsed.operands.clone();
    for o in parsed.find("add-file") {
        operands.extend(o.value.clone());
    }
    if adds || compares {
        for w in &operands {
            for b in &bases {
                fx.reads.push(join_dir(*b, w));
            }
        }
    }
    if has("remove-files") {
        for w in &operands {
            for b in &bases {
                fx.writes.push(join_dir(*b, w));
            }
        }
    }
    if extract && !has("to-stdout") && !has("to-command") {
        let mut targets: Vec<Word> = vec![Word::literal(".")];
        targets.extend(dirs.iter().cloned());
        for o in parsed.find("one-top-level") {
            if let Some(v) = &o.value {
                let more: Vec<Word> = targets.iter().map(|t| join_dir(Some(t), v)).collect();
                targets.extend(more);
            }
        }
        if has("absolute-names") {
            fx.code("tar -P extracts members with absolute names, which may write anywhere");
        }
        let patterns = has("wildcards")
            || has("files-from")
            || operands
                .iter()
                .any(|w| w.dynamic || w.text.contains(['*', '?', '[']));
        if operands.is_empty() || patterns {
            for t in &targets {
                fx.writes.push(t.clone());
            }
            fx.code(format!(
                "tar extracts an archive whose members agp cannot see; they may overwrite any file under `{}`",
                targets.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join("`, `")
            ));
        } else {
            for w in &operands {
                for t in &targets {
                    fx.writes.push(join_dir(Some(t), w));
                }
            }
        }
    }
    fx
}

super::spec::model_cases! { "../cases/tar.cases";
    table: "tar" => Unordered(super::tar),
}
