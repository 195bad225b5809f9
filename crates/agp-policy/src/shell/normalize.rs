//! From a raw argument vector to the commands that really run: wrappers stripped, `sh -c`,
//! `eval`, `xargs`, `find -exec` seen through, files written by common commands extracted.

use super::unmodeled::{derived_writes, inline_code};
use super::words::Word;
use super::wrappers::{chdir_option, is_option, skip_options, wrapped_start, wrapper_spec};
use super::{dangerous_env, is_shell, Part, SimpleCommand, Walker};
use crate::programs::{self, Effects};

/// `/bin/rm` → `rm`.
pub fn basename(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, base)) if !base.is_empty() => base,
        _ => path,
    }
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
        } else if let Some(how) = programs::runs_commands_unmodeled(&name) {
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

/// A word quoted for the shell, so it stays one word when a command line is rebuilt.
fn quote(w: &Word) -> String {
    if w.dynamic {
        // Its source text already carries its own quoting and expansions.
        return w.text.clone();
    }
    format!("'{}'", w.text.replace('\'', "'\\''"))
}
