//! Programs agp has no option model of: which interpreters were given inline code, and the
//! files common commands write.

use super::words::Word;
use super::wrappers::is_option;

/// Does this interpreter invocation carry inline code? Returns the reason.
pub(super) fn inline_code(name: &str, args: &[Word]) -> Option<String> {
    let short_cluster = |flags: &[char], stop_at_positional: bool| -> bool {
        for w in args {
            let t = w.text.as_str();
            if t == "--" {
                return false;
            }
            if t.starts_with('-') && !t.starts_with("--") && t.len() > 1 {
                if t[1..].chars().any(|c| flags.contains(&c)) {
                    return true;
                }
            } else if !t.starts_with('-') && stop_at_positional {
                return false;
            }
        }
        false
    };
    let long = |names: &[&str]| {
        args.iter().any(|w| {
            let t = w.text.as_str();
            names
                .iter()
                .any(|n| t == *n || (t.starts_with(n) && t[n.len()..].starts_with('=')))
        })
    };
    let found = if name.starts_with("python") || name.starts_with("pypy") {
        // `python -m pytest -c` must not count: scan only up to the first positional/`-m`.
        let mut hit = false;
        for w in args {
            let t = w.text.as_str();
            if t == "-m" || !t.starts_with('-') || t == "--" {
                break;
            }
            if !t.starts_with("--") && t[1..].contains('c') {
                hit = true;
                break;
            }
        }
        hit
    } else {
        match name {
            "node" | "nodejs" => short_cluster(&['e', 'p'], true) || long(&["--eval", "--print"]),
            "bun" => {
                short_cluster(&['e'], true)
                    || long(&["--eval", "--print"])
                    || args.first().is_some_and(|w| w.text == "eval")
            }
            "deno" => args.first().is_some_and(|w| w.text == "eval"),
            "perl" | "ruby" => short_cluster(&['e', 'E'], true),
            "php" => short_cluster(&['r'], true),
            "lua" | "luajit" | "Rscript" | "osascript" => short_cluster(&['e'], true),
            "pwsh" | "powershell" => args.iter().any(|w| {
                let t = w.text.to_ascii_lowercase();
                matches!(
                    t.as_str(),
                    "-c" | "-command" | "-e" | "-ec" | "-encodedcommand" | "/c"
                )
            }),
            _ => false,
        }
    };
    found.then(|| format!("inline code passed to {name} cannot be judged"))
}

pub(super) fn non_options<'a>(args: &'a [Word], with_value: &[&str]) -> Vec<&'a Word> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut opts_done = false;
    while i < args.len() {
        let w = &args[i];
        if !opts_done && w.text == "--" {
            opts_done = true;
        } else if !opts_done && is_option(w) {
            if with_value.contains(&w.text.as_str()) {
                i += 1;
            }
        } else {
            out.push(w);
        }
        i += 1;
    }
    out
}

pub(super) fn option_value<'a>(args: &'a [Word], short: &[&str], long: &[&str]) -> Vec<&'a Word> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if short.contains(&t) || long.contains(&t) {
            if let Some(v) = args.get(i + 1) {
                out.push(v);
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    out
}

/// Files that common commands write, so that `cp x ~/.bashrc` is judged like a write of
/// `~/.bashrc`.
pub(super) fn derived_writes(name: &str, args: &[Word]) -> Vec<Word> {
    let own = |v: Vec<&Word>| v.into_iter().cloned().collect::<Vec<Word>>();
    let with_eq = |prefix: &str| -> Vec<Word> {
        args.iter()
            .filter_map(|w| {
                w.text.strip_prefix(prefix).map(|rest| Word {
                    text: rest.to_string(),
                    dynamic: w.dynamic,
                    substitution: w.substitution,
                })
            })
            .collect()
    };
    match name {
        "tee" => own(non_options(args, &["--output-error"])),
        "vi" | "vim" | "nvim" | "nano" | "emacs" | "ed" | "ex" | "pico" | "micro" | "joe" => {
            own(non_options(args, &["-c", "-u", "-S", "--cmd", "-e", "-i"]))
        }
        "uniq" => non_options(args, &["-f", "-s", "-w"])
            .into_iter()
            .skip(1)
            .take(1)
            .cloned()
            .collect(),
        "tree" => own(option_value(args, &["-o"], &[])),
        "scp" => {
            let rest = non_options(
                args,
                &["-S", "-o", "-F", "-i", "-c", "-l", "-P", "-J", "-D"],
            );
            match rest.last() {
                // `host:path` targets are remote, not local writes.
                Some(last) if rest.len() >= 2 && !last.text.contains(':') => vec![(*last).clone()],
                _ => Vec::new(),
            }
        }
        "touch" | "mkdir" | "rmdir" | "rm" | "shred" | "unlink" | "truncate" => own(non_options(
            args,
            &[
                "-d",
                "-t",
                "-r",
                "-m",
                "-s",
                "--reference",
                "--size",
                "--mode",
                "-n",
            ],
        )),
        "chmod" | "chown" | "chgrp" => {
            let rest = non_options(args, &[]);
            if args.iter().any(|w| w.text.starts_with("--reference")) {
                own(rest)
            } else {
                rest.into_iter().skip(1).cloned().collect()
            }
        }
        "dd" => with_eq("of="),
        "perl" => {
            let in_place = args.iter().any(|w| {
                let t = w.text.as_str();
                t.starts_with('-') && !t.starts_with("--") && t[1..].contains('i')
            });
            if !in_place {
                return Vec::new();
            }
            own(non_options(args, &["-e", "-E", "-I", "-M"]))
        }
        "curl" => {
            let mut t = own(option_value(
                args,
                &["-o", "-D", "-c"],
                &["--output", "--dump-header", "--cookie-jar"],
            ));
            t.extend(with_eq("--output="));
            t
        }
        "wget" => {
            let mut t = own(option_value(args, &["-O", "-P"], &["--output-document"]));
            t.extend(with_eq("--output-document="));
            t.extend(with_eq("--directory-prefix="));
            t
        }
        _ => Vec::new(),
    }
}
