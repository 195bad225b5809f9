//! `env` and `xargs`: wrappers that run another command, with options of their own (GNU
//! coreutils `env`, GNU findutils `xargs`, BSD where they differ).

use super::grammar::{parse, Grammar, OptSpec};
use super::spec::{chdir, code, f, gnu_in_order, ov, reads, v};
use super::Effects;
use crate::shell::Word;

/// What a wrapper invocation does before running its command.
#[derive(Debug, Default)]
pub struct Invocation {
    /// Effects of the wrapper's own options (reads, unknown options, ...).
    pub effects: Effects,
    /// Index in `args` where the wrapped command starts.
    pub command: Option<usize>,
    /// `env -C DIR`.
    pub chdir: Option<Word>,
    /// `env -S STRING`: the string is split into the command line (followed by the remaining
    /// operands).
    pub split: Option<Word>,
    /// Names of variables the wrapper sets for the command.
    pub assigns: Vec<String>,
    /// Index in `args` of the first operand (what follows the options).
    pub operands: usize,
}

const ENV_OPTS: &[OptSpec] = &[
    v('a', "argv0"),
    f('i', "ignore-environment"),
    f('0', "null"),
    v('u', "unset"),
    chdir('C', "chdir"),
    v('S', "split-string"),
    ov(' ', "block-signal"),
    ov(' ', "default-signal"),
    ov(' ', "ignore-signal"),
    f(' ', "list-signal-handling"),
    f('v', "debug"),
    f(' ', "help"),
    f(' ', "version"),
    // BSD: look the program up in these directories instead of PATH.
    code('P', "", "chooses the directories the program is taken from"),
];

/// env stops at its first operand (`+` in its getopt string).
const ENV: Grammar = gnu_in_order(ENV_OPTS);

fn is_assignment(w: &Word) -> bool {
    match w.text.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.contains(['$', '`'])
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Parses `env`'s arguments (argv[1..]).
pub fn env_invocation(args: &[Word]) -> Invocation {
    let parsed = parse(&ENV, args);
    let mut inv = Invocation::default();
    inv.effects.unknown_options("env", &parsed);
    for o in &parsed.opts {
        match o.spec.long {
            Some("chdir") => inv.chdir = o.value.clone(),
            Some("split-string") => {
                inv.split = Some(o.value.clone().unwrap_or_else(|| Word::literal("")));
            }
            _ => inv.effects.apply_opt("env", o),
        }
    }
    let mut i = args.len() - parsed.operands.len();
    inv.operands = i;
    // A lone `-` first is the old spelling of `-i`.
    if args.get(i).is_some_and(|w| w.text == "-" && !w.dynamic) {
        i += 1;
    }
    while i < args.len() && is_assignment(&args[i]) {
        if let Some((name, _)) = args[i].text.split_once('=') {
            inv.assigns.push(name.to_string());
        }
        i += 1;
    }
    inv.command = (i < args.len()).then_some(i);
    inv
}

/// The `env` model: its options, and the command it runs.
pub fn env(args: &[Word]) -> Effects {
    let mut inv = env_invocation(args);
    if let Some(s) = &inv.split {
        inv.effects.code.push(format!(
            "env -S `{}` splits a string into a command",
            s.text
        ));
    }
    if let Some(i) = inv.command {
        inv.effects.runs.push(args[i..].to_vec());
    }
    inv.effects
}

const XARGS_OPTS: &[OptSpec] = &[
    f('0', "null"),
    reads('a', "arg-file"),
    v('d', "delimiter"),
    v('E', ""),
    ov('e', "eof"),
    v('I', ""),
    ov('i', "replace"),
    v('L', ""),
    ov('l', "max-lines"),
    v('n', "max-args"),
    v('P', "max-procs"),
    f('p', "interactive"),
    v(' ', "process-slot-var"),
    f('r', "no-run-if-empty"),
    v('s', "max-chars"),
    f(' ', "show-limits"),
    f('t', "verbose"),
    f('x', "exit"),
    f('o', "open-tty"),
    f(' ', "help"),
    f(' ', "version"),
];

/// xargs stops at its first operand: the command.
const XARGS: Grammar = gnu_in_order(XARGS_OPTS);

/// Parses `xargs`'s arguments (argv[1..]); no command means `echo`.
pub fn xargs_invocation(args: &[Word]) -> Invocation {
    let mut inv = Invocation::default();
    let parsed = inv.effects.parse_args("xargs", &XARGS, args);
    for o in parsed.find("process-slot-var") {
        // The variable is set in the command's environment (`--process-slot-var=BASH_ENV`).
        match &o.value {
            Some(v) if !v.dynamic => inv.assigns.push(v.text.clone()),
            _ => inv
                .effects
                .unknown
                .push("xargs --process-slot-var names a variable only known at run time".into()),
        }
    }
    let start = args.len() - parsed.operands.len();
    inv.operands = start;
    inv.command = (start < args.len()).then_some(start);
    inv
}

/// The `xargs` model: its options, and the command it runs (with arguments appended at run
/// time).
pub fn xargs(args: &[Word]) -> Effects {
    let mut inv = xargs_invocation(args);
    let argv = match inv.command {
        Some(i) => args[i..].to_vec(),
        None => vec![Word::literal("echo")],
    };
    inv.effects.runs.push(argv);
    inv.effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Word> {
        line.split_whitespace().map(Word::literal).collect()
    }

    #[test]
    fn env_table() {
        // line, command start word, chdir, split, assigns, unknown count
        type Row = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            &'static [&'static str],
            usize,
        );
        let rows: &[Row] = &[
            ("-i FOO=1 rm -rf x", Some("rm"), None, None, &["FOO"], 0),
            ("- FOO=1 rm", Some("rm"), None, None, &["FOO"], 0),
            ("-iScmd", None, None, Some("cmd"), &[], 0),
            ("-vS cmd x", Some("x"), None, Some("cmd"), &[], 0),
            ("--split-str=id", None, None, Some("id"), &[], 0),
            ("-C /tmp ls", Some("ls"), Some("/tmp"), None, &[], 0),
            ("--chdir=/tmp ls", Some("ls"), Some("/tmp"), None, &[], 0),
            ("-u HOME -a name ls", Some("ls"), None, None, &[], 0),
            ("-iu PATH ls", Some("ls"), None, None, &[], 0),
            ("--block-signal=INT ls", Some("ls"), None, None, &[], 0),
            ("--block-signal ls", Some("ls"), None, None, &[], 0),
            ("-0", None, None, None, &[], 0),
            ("-X ls", Some("ls"), None, None, &[], 1),
            ("--frobnicate ls", Some("ls"), None, None, &[], 1),
            // options after the command belong to the command
            ("ls -S x", Some("ls"), None, None, &[], 0),
        ];
        for (line, cmd, dir, split, assigns, unknown) in rows {
            let args = words(line);
            let inv = env_invocation(&args);
            assert_eq!(inv.command.map(|i| args[i].text.as_str()), *cmd, "{line}");
            assert_eq!(inv.chdir.as_ref().map(|w| w.text.as_str()), *dir, "{line}");
            assert_eq!(
                inv.split.as_ref().map(|w| w.text.as_str()),
                *split,
                "{line}"
            );
            assert_eq!(inv.assigns, *assigns, "{line}");
            assert_eq!(inv.effects.unknown.len(), *unknown, "{line}");
        }
        assert_eq!(env(&words("-P /tmp/evil ls")).code.len(), 1);
        assert_eq!(env(&words("-S id")).code.len(), 1);
        assert_eq!(env(&words("-i ls -l")).runs, vec![words("ls -l")]);
    }

    #[test]
    fn xargs_table() {
        // line, command, reads, unknown count, assigns
        type Row = (
            &'static str,
            &'static str,
            &'static [&'static str],
            usize,
            &'static [&'static str],
        );
        let rows: &[Row] = &[
            ("rm -f", "rm -f", &[], 0, &[]),
            ("", "echo", &[], 0, &[]),
            ("-0 -n1 -P4 grep x", "grep x", &[], 0, &[]),
            ("-I{} cp {} /tmp", "cp {} /tmp", &[], 0, &[]),
            ("-I {} cp {} /tmp", "cp {} /tmp", &[], 0, &[]),
            ("-i cat", "cat", &[], 0, &[]),
            ("-a /etc/shadow cat", "cat", &["/etc/shadow"], 0, &[]),
            ("--arg-file=/etc/shadow", "echo", &["/etc/shadow"], 0, &[]),
            ("-a/etc/shadow", "echo", &["/etc/shadow"], 0, &[]),
            ("-0a/etc/shadow echo", "echo", &["/etc/shadow"], 0, &[]),
            ("-d '\\n' -L 1 -E END -o ls", "ls", &[], 0, &[]),
            (
                "--process-slot-var=BASH_ENV bash x",
                "bash x",
                &[],
                0,
                &["BASH_ENV"],
            ),
            ("-Z ls", "ls", &[], 1, &[]),
        ];
        for (line, cmd, reads, unknown, assigns) in rows {
            let args = words(line);
            let inv = xargs_invocation(&args);
            let fx = xargs(&args);
            assert_eq!(fx.runs, vec![words(cmd)], "{line}");
            let r: Vec<&str> = fx.reads.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(r, *reads, "{line}");
            assert_eq!(fx.unknown.len(), *unknown, "{line}");
            assert_eq!(inv.assigns, *assigns, "{line}");
        }
    }
}
