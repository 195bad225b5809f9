//! Models of programs whose options can run code, write or delete files, read files or point
//! project tooling elsewhere.
//!
//! An allow rule such as `Bash(sed *)` says "sed is fine", not "sed may run `id`, rewrite
//! `~/.bashrc` and read `/etc/shadow`". Each model parses the program's command line with the
//! program's own option grammar (written from its manual) and reports what the invocation
//! does as [`Effects`]; the shell walker turns them into parts the engine judges like any
//! other read, write or piece of inline code. An option a model does not know is reported as
//! unknown, so it is never auto-allowed.

pub mod awk;
pub mod copy;
pub mod env;
pub mod find;
pub mod grammar;
pub mod patch;
pub mod rsync;
pub mod sed;
pub mod sort;
pub mod tar;
pub mod zip;

mod cargo;
mod git;
mod git_misc;
mod git_opts;
mod git_sub;
mod git_tables;
mod git_xfer;
mod interp;
mod make;
mod node;
mod npm;
mod pytest;
mod python;
mod spec;
mod subcommand;

pub use grammar::{parse, Arity, Effect, Grammar, OptSpec, Parsed, ParsedOpt};
pub use subcommand::{subcommand, Subcommand};

use crate::shell::Word;

/// What one invocation of a modeled program does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Reasons "the program runs code given in …": never auto-allowed.
    pub code: Vec<String>,
    /// Files read (judged by Read rules and the secret guards).
    pub reads: Vec<Word>,
    /// Files written, created or deleted (judged by Edit rules and the write guards).
    pub writes: Vec<Word>,
    /// Reasons naming options the model does not know: never auto-allowed.
    pub unknown: Vec<String>,
    /// Project tooling pointed at code or configuration at this path.
    pub foreign: Vec<Word>,
    /// Commands it runs (`find -exec`, `xargs CMD`), judged as commands of their own.
    pub runs: Vec<Vec<Word>>,
}

/// A program model: `args` is argv[1..] after wrapper stripping.
pub type Model = fn(&[Word]) -> Effects;

/// What agp knows about a program, by its base name.
#[derive(Clone, Copy)]
struct Known {
    /// Its option model, if agp has one.
    model: Option<Model>,
    /// A build or test runner: it executes code it finds in its working directory (a
    /// Makefile, `build.rs`, `package.json` scripts, `conftest.py`).
    project_runner: bool,
    /// How a program without a model runs arbitrary commands or writes arbitrary files from
    /// its arguments or input (an editor's `!cmd`, m4's `syscmd`, an archiver's members).
    runs_commands: Option<&'static str>,
}

const fn runner(model: Model) -> Known {
    Known {
        model: Some(model),
        project_runner: true,
        runs_commands: None,
    }
}

const fn modeled(model: Model) -> Known {
    Known {
        model: Some(model),
        project_runner: false,
        runs_commands: None,
    }
}

const UNMODELED_RUNNER: Known = Known {
    model: None,
    project_runner: true,
    runs_commands: None,
};

const fn runs_commands(how: &'static str) -> Known {
    Known {
        model: None,
        project_runner: false,
        runs_commands: Some(how),
    }
}

/// The one registry of programs agp knows by name; names are matched exactly so that `sedx`
/// is not mistaken for `sed`. Models are added per program family (one file each).
fn known(name: &str) -> Option<Known> {
    Some(match name {
        "make" | "gmake" => runner(make::model),
        "cargo" => runner(cargo::model),
        "npm" => runner(npm::npm),
        "pnpm" => runner(npm::pnpm),
        "yarn" => runner(npm::yarn),
        "npx" | "pnpx" => runner(npm::npx),
        "pytest" | "py.test" => runner(pytest::model),
        "node" | "nodejs" => runner(node::model),
        "git" => modeled(git::model),
        "perl" => modeled(interp::perl),
        "ruby" => modeled(interp::ruby),
        n if python::is_python(n) => modeled(python::model),
        "env" => modeled(env::env),
        "xargs" => modeled(env::xargs),
        "sed" | "gsed" => modeled(sed::sed),
        "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk" => modeled(awk::awk),
        "tar" | "gtar" | "bsdtar" => modeled(tar::tar),
        "sort" => modeled(sort::sort),
        "find" | "gfind" => modeled(find::find),
        "cp" => modeled(copy::cp),
        "mv" => modeled(copy::mv),
        "install" => modeled(copy::install),
        "ln" => modeled(copy::ln),
        "link" => modeled(copy::link),
        "rsync" => modeled(rsync::rsync),
        "zip" => modeled(zip::zip),
        "unzip" => modeled(zip::unzip),
        "patch" => modeled(patch::patch),
        "cmake" | "ctest" | "ninja" | "meson" | "bazel" | "just" | "bun" | "deno" | "tox"
        | "nox" | "go" | "mvn" | "gradle" | "gradlew" | "ant" | "sbt" | "tsc" | "jest"
        | "vitest" | "mocha" | "rake" | "bundle" | "rspec" | "composer" | "phpunit" | "dotnet"
        | "swift" | "mix" => UNMODELED_RUNNER,
        "ed" | "red" | "ex" | "vi" | "vim" | "nvim" | "view" | "vimdiff" | "gvim" | "rvim"
        | "emacs" | "emacsclient" | "nano" | "pico" | "micro" | "joe" | "mcedit" => {
            runs_commands("an editor's `!cmd`, `:!`, scripts and -c/+ commands")
        }
        "less" | "more" | "most" | "pg" | "man" | "info" => runs_commands(
            "a pager's `!cmd`, LESSOPEN-style preprocessors, man's -P/-H/--html programs",
        ),
        "m4" | "dc" | "sqlite3" | "psql" | "mysql" | "gdb" | "lldb" | "expect" => {
            runs_commands("commands in the input it reads (syscmd, `!`, .shell, shell escapes)")
        }
        "cpio" | "pax" | "ar" | "7z" | "7za" | "7zr" | "rar" | "unrar" | "arj" | "lha" => {
            runs_commands(
                "an archiver: extraction writes members whose names and content are unknown",
            )
        }
        "parallel" | "script" | "screen" | "tmux" | "strace" | "ltrace" | "entr" | "watchexec"
        | "run-parts" | "at" | "batch" | "crontab" | "systemd-run" => {
            runs_commands("it runs the commands it is given or scheduled")
        }
        _ => return None,
    })
}

/// The model for a program's base name, if agp has one.
pub fn model_for(name: &str) -> Option<Model> {
    known(name)?.model
}

/// How a program agp has no model of runs arbitrary commands or writes arbitrary files, if it
/// can: an allow rule cannot vouch for what it does, so it is judged as code.
pub fn runs_commands_unmodeled(name: &str) -> Option<&'static str> {
    known(name)?.runs_commands
}

/// Whether `name args…` runs code the project provides from its working directory: a build or
/// test runner, or a Python interpreter told to run a module (`python -m pytest`), which it
/// looks up in that directory first. A rule allowing the project's tests does not vouch for
/// that code anywhere else.
pub fn runs_project_code(name: &str, args: &[Word]) -> bool {
    known(name).is_some_and(|k| k.project_runner)
        || ((name.starts_with("python") || name.starts_with("pypy"))
            && args.iter().any(|w| w.text == "-m"))
}

impl Effects {
    /// Records every option `unknown` in `parsed` with a reason naming it.
    pub fn unknown_options(&mut self, program: &str, parsed: &Parsed) {
        for raw in &parsed.unknown {
            self.unknown.push(unknown_reason(program, raw));
        }
    }

    /// Parses `args` with `grammar` and applies the generic meaning of the options found
    /// ([`Effects::apply_generic`]): the first step of every model, so that none of them can
    /// parse without recording what the options do and which ones it does not know.
    pub fn parse_args(&mut self, program: &str, grammar: &Grammar, args: &[Word]) -> Parsed {
        let parsed = parse(grammar, args);
        self.apply_generic(program, &parsed);
        parsed
    }

    /// Applies the generic meaning of each parsed option's [`Effect`] (reads, writes, code,
    /// foreign, dangerous flags) and records unknown options. `ChangesDir` values are not
    /// applied here: what they change depends on the program.
    pub fn apply_generic(&mut self, program: &str, parsed: &Parsed) {
        self.unknown_options(program, parsed);
        for o in &parsed.opts {
            self.apply_opt(program, o);
        }
    }

    /// The generic meaning of one parsed option.
    pub fn apply_opt(&mut self, program: &str, o: &ParsedOpt) {
        match o.spec.effect {
            Effect::Plain | Effect::ChangesDir => {}
            Effect::ReadsFile => {
                if let Some(v) = &o.value {
                    self.reads.push(v.clone());
                }
            }
            Effect::WritesFile => {
                if let Some(v) = &o.value {
                    self.writes.push(v.clone());
                }
            }
            Effect::RunsCode(what) => self.code.push(format!(
                "{program} `{}` {what}; code run through it cannot be judged",
                spelled(o)
            )),
            Effect::Foreign => {
                if let Some(v) = &o.value {
                    self.foreign.push(v.clone());
                }
            }
            Effect::Dangerous(what) => {
                self.code.push(format!("{program} `{}` {what}", o.raw));
            }
        }
    }

    /// The subcommand (the first operand), unless there is none or it is only known at run
    /// time, which is recorded as unknown.
    pub fn subcommand<'w>(&mut self, program: &str, operands: &'w [Word]) -> Option<&'w Word> {
        let sub = operands.first()?;
        if sub.dynamic {
            self.unknown.push(format!(
                "{program} subcommand `{}` is only known at run time",
                sub.text
            ));
            return None;
        }
        Some(sub)
    }

    /// Adds a code reason.
    pub fn code(&mut self, reason: impl Into<String>) {
        self.code.push(reason.into());
    }
}

/// `-o VALUE` / `--long=VALUE` as typed, for reasons.
pub fn spelled(o: &ParsedOpt) -> String {
    match &o.value {
        Some(v) if o.raw.starts_with("--") => format!("{}={}", o.raw, v.text),
        Some(v) => format!("{} {}", o.raw, v.text),
        None => o.raw.clone(),
    }
}

/// The reason given for an option a model does not know.
pub fn unknown_reason(program: &str, raw: &str) -> String {
    if raw.starts_with('-') && !raw.contains(['$', '`', '*', '?', '[']) {
        format!("{program} option `{raw}` is not in agp's model of {program}")
    } else {
        format!("{program} argument `{raw}` is only known at run time and could be an option")
    }
}

/// `path` as seen from inside `dir` (`tar -C DIR`, `make -C DIR`): relative paths are joined
/// to the directory, absolute ones stay.
pub fn join_dir(dir: Option<&Word>, path: &Word) -> Word {
    let Some(dir) = dir else {
        return path.clone();
    };
    if !path.dynamic && path.text.starts_with('/') {
        return path.clone();
    }
    let sep = if dir.text.ends_with('/') { "" } else { "/" };
    Word {
        text: format!("{}{sep}{}", dir.text, path.text),
        dynamic: dir.dynamic || path.dynamic,
        substitution: dir.substitution || path.substitution,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_runners_come_from_the_registry() {
        let w = |s: &[&str]| s.iter().copied().map(Word::literal).collect::<Vec<_>>();
        for name in [
            "make", "cargo", "npm", "npx", "pytest", "node", "nodejs", "go", "tox",
        ] {
            assert!(runs_project_code(name, &[]), "{name}");
        }
        for name in ["sed", "git", "tar", "python3", "perl", "ls", "unknown-tool"] {
            assert!(!runs_project_code(name, &w(&["x"])), "{name}");
        }
        assert!(runs_project_code("python3", &w(&["-m", "pytest"])));
        assert!(runs_project_code("pypy3", &w(&["-m", "unittest"])));
        assert!(model_for("cmake").is_none() && runs_project_code("cmake", &[]));
    }

    #[test]
    fn unmodeled_command_runners_come_from_the_registry() {
        for name in ["vim", "less", "m4", "7z", "tmux"] {
            assert!(runs_commands_unmodeled(name).is_some(), "{name}");
            assert!(model_for(name).is_none() && !runs_project_code(name, &[]));
        }
        for name in ["sed", "make", "cmake", "cat"] {
            assert!(runs_commands_unmodeled(name).is_none(), "{name}");
        }
    }

    #[test]
    fn join_dir_keeps_absolute_and_joins_relative() {
        let d = Word::literal("/tmp/x");
        assert_eq!(join_dir(Some(&d), &Word::literal("a")).text, "/tmp/x/a");
        assert_eq!(join_dir(Some(&d), &Word::literal("/etc")).text, "/etc");
        assert_eq!(join_dir(None, &Word::literal("a")).text, "a");
        let dynd = Word {
            text: "$D".into(),
            dynamic: true,
            substitution: false,
        };
        assert!(join_dir(Some(&dynd), &Word::literal("a")).dynamic);
    }

    #[test]
    fn reasons_name_the_option() {
        assert!(unknown_reason("tar", "--foo").contains("tar option `--foo`"));
        assert!(unknown_reason("tar", "$x").contains("run time"));
    }
}
