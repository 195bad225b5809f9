//! From a raw argument vector to the commands that really run: wrappers stripped, `sh -c`,
//! `eval`, `xargs`, `find -exec` seen through, files written by common commands extracted.

use super::words::Word;
use super::{dangerous_env, is_shell, Part, SimpleCommand, Walker};
use crate::programs::{self, Effects};

/// `/bin/rm` → `rm`.
pub fn basename(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, base)) if !base.is_empty() => base,
        _ => path,
    }
}

/// How a wrapper command takes its options before the wrapped command.
struct WrapperSpec {
    /// Options that consume the next word (`-u USER`); `--opt=value` is handled generically.
    with_value: &'static [&'static str],
    /// Positional words between the options and the command (`timeout DURATION`).
    positional: usize,
    /// `NAME=VALUE` words may precede the command (`env`, `sudo`).
    assignments: bool,
}

fn wrapper_spec(name: &str) -> Option<WrapperSpec> {
    let spec = |with_value, positional, assignments| {
        Some(WrapperSpec {
            with_value,
            positional,
            assignments,
        })
    };
    match name {
        "timeout" => spec(&["-s", "--signal", "-k", "--kill-after"], 1, false),
        "nice" => spec(&["-n", "--adjustment"], 0, false),
        "nohup" | "builtin" | "unbuffer" => spec(&[], 0, false),
        "time" => spec(&["-f", "--format", "-o", "--output"], 0, false),
        "command" => spec(&[], 0, false),
        "exec" => spec(&["-a"], 0, false),
        "sudo" => spec(
            &[
                "-u",
                "--user",
                "-g",
                "--group",
                "-h",
                "--host",
                "-p",
                "--prompt",
                "-C",
                "--close-from",
                "-D",
                "--chdir",
                "-r",
                "--role",
                "-t",
                "--type",
                "-T",
                "--command-timeout",
                "-U",
                "--other-user",
                "-R",
                "--chroot",
            ],
            0,
            true,
        ),
        "doas" => spec(&["-u", "-C"], 0, false),
        "stdbuf" => spec(
            &["-i", "-o", "-e", "--input", "--output", "--error"],
            0,
            false,
        ),
        "ionice" => spec(&["-c", "--class", "-n", "--classdata"], 0, false),
        "setsid" | "busybox" => spec(&[], 0, false),
        "chroot" => spec(&["--userspec", "--groups"], 1, false),
        "taskset" => spec(&[], 1, false),
        _ => None,
    }
}

fn is_option(w: &Word) -> bool {
    w.text.len() > 1 && w.text.starts_with('-') && !w.dynamic
}

fn is_assignment(w: &Word) -> bool {
    if w.dynamic && !w.text.contains('=') {
        return false;
    }
    match w.text.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Index of the wrapped command in `argv` (which starts with the wrapper), if any.
fn wrapped_start(argv: &[Word], spec: &WrapperSpec, env: &mut Vec<String>) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let w = &argv[i];
        if w.text == "--" && !w.dynamic {
            i += 1;
            break;
        }
        if !is_option(w) {
            break;
        }
        let t = w.text.as_str();
        if t.starts_with("--") {
            if !t.contains('=') && spec.with_value.contains(&t) {
                i += 1;
            }
        } else if spec.with_value.contains(&t) {
            i += 1;
        }
        i += 1;
    }
    if spec.assignments {
        while i < argv.len() && is_assignment(&argv[i]) {
            if let Some((name, _)) = argv[i].text.split_once('=') {
                env.push(name.to_string());
            }
            i += 1;
        }
    }
    i += spec.positional;
    (i < argv.len()).then_some(i)
}

impl Walker {
    /// Judges one simple command given as words. Returns the index of its [`Part::Command`].
    pub(crate) fn simple(
        &mut self,
        mut argv: Vec<Word>,
        mut env: Vec<String>,
        mut wrappers: Vec<String>,
        mut dynamic_tail: bool,
        text: &str,
        depth: u32,
    ) -> Option<usize> {
        let mut chdir: Option<Word> = None;
        // The last program looked at was a wrapper whose options were already judged.
        let mut wrapper_effects_done;
        loop {
            let first = argv.first()?;
            if first.dynamic {
                self.opaque(
                    text,
                    "the program name is only known at run time (variable or substitution)",
                );
                return None;
            }
            let name = basename(&first.text).to_string();
            if name == "env" || name == "xargs" {
                // Their own options come from their models; the command they run is judged
                // as a command of its own.
                let inv = if name == "env" {
                    programs::env::env_invocation(&argv[1..])
                } else {
                    programs::env::xargs_invocation(&argv[1..])
                };
                self.apply_effects(&name, inv.effects, &wrappers, text, depth);
                wrapper_effects_done = true;
                if let Some(split) = inv.split {
                    if split.dynamic {
                        self.opaque(text, "env -S with a run-time string");
                    } else {
                        // The split words come first, then every operand after the options.
                        let start = inv.operands + 1;
                        let mut src = split.text;
                        for w in &argv[start..] {
                            src.push(' ');
                            src.push_str(&quote(w));
                        }
                        self.analyze_source(&src, depth + 1);
                    }
                    return None;
                }
                if inv.chdir.is_some() {
                    chdir = inv.chdir;
                }
                for n in inv.assigns {
                    if dangerous_env(&n) {
                        self.opaque(
                            text,
                            format!("setting {n} changes which program runs or what it loads"),
                        );
                    }
                    env.push(n);
                }
                match inv.command {
                    Some(i) => {
                        if name == "xargs" {
                            dynamic_tail = true;
                        }
                        wrappers.push(name);
                        argv.drain(..=i);
                        continue;
                    }
                    None if name == "xargs" => {
                        // Bare `xargs` runs `echo` with the input as arguments.
                        wrappers.push(name);
                        argv = vec![Word::literal("echo")];
                        dynamic_tail = true;
                        continue;
                    }
                    None => break,
                }
            }
            wrapper_effects_done = false;
            if name == "watch" {
                let rest = skip_options(&argv, &["-n", "--interval", "-d", "-g", "-q"]);
                return self.run_joined(&argv[rest..], text, depth, "watch");
            }
            let Some(spec) = wrapper_spec(&name) else {
                break;
            };
            let before = env.len();
            if name == "sudo" {
                // `sudo -D DIR cmd` runs cmd somewhere else.
                if let Some(dir) = chdir_option(&argv, &spec) {
                    chdir = Some(dir);
                }
            }
            if let Some(start) = wrapped_start(&argv, &spec, &mut env) {
                for n in &env[before..] {
                    if dangerous_env(n) {
                        self.opaque(
                            text,
                            format!("setting {n} changes which program runs or what it loads"),
                        );
                    }
                }
                wrappers.push(name);
                argv.drain(..start);
            } else {
                if matches!(name.as_str(), "sudo" | "doas")
                    && argv.iter().any(|w| matches!(w.text.as_str(), "-s" | "-i"))
                {
                    self.opaque(text, "an interactive root shell cannot be judged");
                }
                break;
            }
        }

        let index = self.out.parts.len();
        let cmd = SimpleCommand {
            argv,
            wrappers,
            env,
            dynamic_tail,
            chdir,
        };
        let name = cmd.name().to_string();
        let args: Vec<Word> = cmd.args().to_vec();
        let wrappers_now = cmd.wrappers.clone();
        self.out.parts.push(Part::Command(cmd));

        if is_shell(&name) {
            self.shell_c(&name, &args, text, depth);
        } else if name == "eval" {
            self.opaque(text, "eval runs text as code");
            self.run_joined(&args, text, depth, "eval");
        } else if name == "trap" {
            if let Some(action) = args.iter().find(|w| !is_option(w)) {
                if action.dynamic {
                    self.opaque(text, "trap action only known at run time");
                } else {
                    self.analyze_source(&action.text.clone(), depth + 1);
                }
            }
        } else if wrapper_effects_done {
            return Some(index);
        } else if let Some(model) = programs::model_for(&name) {
            // The program's own option grammar decides what it runs, reads and writes.
            let fx = model(&run_time_args(args, &wrappers_now, dynamic_tail));
            self.apply_effects(&name, fx, &wrappers_now, text, depth);
            return Some(index);
        } else if let Some(why) = inline_code(&name, &args) {
            self.opaque(text, why);
        } else if let Some(how) = unmodeled_command_runner(&name) {
            self.opaque(
                text,
                format!(
                    "{name} can run shell commands ({how}) and agp has no model of its options \
                     and input"
                ),
            );
        }
        for path in derived_writes(&name, &args) {
            let via = format!("{name} {}", path.text);
            self.write_target(path, via);
        }
        Some(index)
    }

    /// Turns a program model's findings into parts: code and unknown options cannot be
    /// judged, reads and writes are judged like redirections, commands it runs like commands.
    pub(crate) fn apply_effects(
        &mut self,
        name: &str,
        fx: Effects,
        wrappers: &[String],
        text: &str,
        depth: u32,
    ) {
        let Effects {
            code,
            reads,
            writes,
            unknown,
            foreign,
            runs,
        } = fx;
        for why in code.into_iter().chain(unknown) {
            self.opaque(text, why);
        }
        for path in reads {
            let via = format!("{name} {}", path.text);
            self.read_target(path, via);
        }
        for path in writes {
            let via = format!("{name} {}", path.text);
            self.write_target(path, via);
        }
        for path in foreign {
            let via = format!("{name} {}", path.text);
            self.out.parts.push(Part::Foreign { path, via });
        }
        for argv in runs {
            if argv.is_empty() {
                continue;
            }
            let mut w = wrappers.to_vec();
            w.push(if name == "find" {
                "find -exec".to_string()
            } else {
                name.to_string()
            });
            self.simple(argv, Vec::new(), w, false, text, depth);
        }
    }

    /// `sh -c 'STRING'`: the string is parsed as shell in its own right.
    fn shell_c(&mut self, name: &str, args: &[Word], text: &str, depth: u32) {
        let mut i = 0;
        let mut c_flag = false;
        while i < args.len() {
            let w = &args[i];
            let t = w.text.as_str();
            if w.dynamic {
                break;
            }
            if t == "--" {
                i += 1;
                break;
            }
            if t == "-o" || t == "+o" || t == "--rcfile" || t == "--init-file" || t == "-O" {
                i += 2;
                continue;
            }
            if t.len() > 1 && (t.starts_with('-') || t.starts_with('+')) {
                if !t.starts_with("--") && t[1..].contains('c') {
                    c_flag = true;
                }
                i += 1;
                continue;
            }
            break;
        }
        if name == "busybox" {
            return;
        }
        if c_flag {
            match args.get(i) {
                Some(code) if !code.dynamic => {
                    let code = code.text.clone();
                    self.analyze_source(&code, depth + 1);
                }
                Some(_) => self.opaque(text, format!("{name} -c with code only known at run time")),
                None => self.opaque(text, format!("{name} -c without code")),
            }
        }
    }

    /// Words joined by spaces and parsed as shell (`eval`, `watch`).
    fn run_joined(&mut self, args: &[Word], text: &str, depth: u32, what: &str) -> Option<usize> {
        if args.iter().any(|w| w.dynamic) {
            self.opaque(text, format!("{what} with code only known at run time"));
            return None;
        }
        let joined = args
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if !joined.trim().is_empty() {
            self.analyze_source(&joined, depth + 1);
        }
        None
    }
}

/// The arguments a modeled program really gets: `find -exec` replaces `{}` with every path
/// found and `xargs` appends words read from its input, so those are only known at run time
/// (a file name may even be an option such as `-i`).
fn run_time_args(mut args: Vec<Word>, wrappers: &[String], dynamic_tail: bool) -> Vec<Word> {
    if wrappers.last().is_some_and(|w| w == "find -exec") {
        for w in args.iter_mut().filter(|w| w.text.contains("{}")) {
            w.dynamic = true;
        }
    }
    let replaces =
        wrappers.last().is_some_and(|w| w == "xargs") && args.iter().any(|w| w.text.contains("{}"));
    if replaces {
        for w in args.iter_mut().filter(|w| w.text.contains("{}")) {
            w.dynamic = true;
        }
    }
    if dynamic_tail {
        args.push(Word {
            text: "{xargs input}".into(),
            dynamic: true,
            substitution: false,
        });
    }
    args
}

/// The directory `env -C DIR` / `--chdir=DIR` / `sudo -D DIR` switches to.
fn chdir_option(argv: &[Word], spec: &WrapperSpec) -> Option<Word> {
    let end = wrapped_start(argv, spec, &mut Vec::new()).unwrap_or(argv.len());
    let mut i = 1;
    while i < end {
        let t = argv[i].text.as_str();
        if matches!(t, "-C" | "--chdir" | "-D") {
            return argv.get(i + 1).cloned();
        }
        if let Some(v) = t.strip_prefix("--chdir=") {
            return Some(Word {
                text: v.to_string(),
                ..argv[i].clone()
            });
        }
        i += 1;
    }
    None
}

/// A word quoted for the shell, so it stays one word when a command line is rebuilt.
fn quote(w: &Word) -> String {
    if w.dynamic {
        // Its source text already carries its own quoting and expansions.
        return w.text.clone();
    }
    format!("'{}'", w.text.replace('\'', "'\\''"))
}

fn skip_options(argv: &[Word], with_value: &[&str]) -> usize {
    let mut i = 1;
    while i < argv.len() && is_option(&argv[i]) {
        if argv[i].text == "--" {
            return i + 1;
        }
        if with_value.contains(&argv[i].text.as_str()) {
            i += 1;
        }
        i += 1;
    }
    i.min(argv.len())
}

/// Programs without an option model whose arguments or input can run arbitrary commands or
/// write arbitrary files (editors' `!cmd`, pagers' `!`, m4's `syscmd`, archivers extracting
/// unknown members, debuggers and multiplexers): an allow rule cannot vouch for what they do,
/// so they are judged as code. Returns how the program runs commands.
fn unmodeled_command_runner(name: &str) -> Option<&'static str> {
    Some(match name {
        "ed" | "red" | "ex" | "vi" | "vim" | "nvim" | "view" | "vimdiff" | "gvim" | "rvim"
        | "emacs" | "emacsclient" | "nano" | "pico" | "micro" | "joe" | "mcedit" => {
            "an editor's `!cmd`, `:!`, scripts and -c/+ commands"
        }
        "less" | "more" | "most" | "pg" | "man" | "info" => {
            "a pager's `!cmd`, LESSOPEN-style preprocessors, man's -P/-H/--html programs"
        }
        "m4" | "dc" | "sqlite3" | "psql" | "mysql" | "gdb" | "lldb" | "expect" => {
            "commands in the input it reads (syscmd, `!`, .shell, shell escapes)"
        }
        "cpio" | "pax" | "ar" | "7z" | "7za" | "7zr" | "rar" | "unrar" | "arj" | "lha" => {
            "an archiver: extraction writes members whose names and content are unknown"
        }
        "parallel" | "script" | "screen" | "tmux" | "strace" | "ltrace" | "entr" | "watchexec"
        | "run-parts" | "at" | "batch" | "crontab" | "systemd-run" => {
            "it runs the commands it is given or scheduled"
        }
        _ => return None,
    })
}

/// Does this interpreter invocation carry inline code? Returns the reason.
fn inline_code(name: &str, args: &[Word]) -> Option<String> {
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

fn non_options<'a>(args: &'a [Word], with_value: &[&str]) -> Vec<&'a Word> {
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

fn option_value<'a>(args: &'a [Word], short: &[&str], long: &[&str]) -> Vec<&'a Word> {
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
pub fn derived_writes(name: &str, args: &[Word]) -> Vec<Word> {
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
