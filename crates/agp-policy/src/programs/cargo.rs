//! cargo: global options (cargo(1)), `+toolchain`, `--config`, and the build/test family
//! (build, check, test, bench, run, clippy, doc, rustc, rustdoc, fix, fmt, nextest, clean,
//! new/init, metadata, tree).
//!
//! Building and testing the project runs the project's own code (build scripts, tests,
//! `cargo run`): that is what a `Bash(cargo test *)` rule allows. Pointing cargo at another
//! manifest or directory is tooling on code outside the project (foreign); configuration
//! given on the command line can name a runner, linker or wrapper (code) unless its key is
//! known to be inert; flags passed through to the compiler can load plugins and linkers.

use super::grammar::{Grammar, OptSpec};
use super::spec::{chdir, exact, f, foreign, joined, ov, v, writes};
use super::{Effects, Parsed};
use crate::shell::Word;

/// Options cargo accepts before and after the subcommand.
const COMMON: &[OptSpec] = &[
    f('v', "verbose"),
    f('q', "quiet"),
    v(' ', "color"),
    v(' ', "config"),
    v('Z', ""),
    f(' ', "locked"),
    f(' ', "offline"),
    f(' ', "frozen"),
    f('h', "help"),
];

const TOP_OWN: &[OptSpec] = &[
    f('V', "version"),
    f(' ', "list"),
    v(' ', "explain"),
    chdir('C', ""),
];

/// clap: no unique-prefix matching, clusters allowed, the first operand is the subcommand.
pub(super) const TOP: Grammar = Grammar {
    permute: false,
    ..exact(joined!(TOP_OWN, COMMON))
};

const MANIFEST: OptSpec = foreign(' ', "manifest-path");
const TARGET_DIR: OptSpec = writes(' ', "target-dir");

/// Which packages, targets and features a build or test covers (cargo's "Package Selection",
/// "Target Selection" and "Feature Selection" options, which cargo-nextest takes as well).
/// `--bin`, `--test`, `--example`, `--bench` and `--package` take an optional value in clap (a
/// following `--flag` is not swallowed), so they are Optional here: a separate word becomes an
/// operand, never hides an option.
const SELECTION: &[OptSpec] = &[
    f(' ', "workspace"),
    f(' ', "all"),
    ov('p', "package"),
    v(' ', "exclude"),
    f(' ', "lib"),
    ov(' ', "bin"),
    f(' ', "bins"),
    ov(' ', "example"),
    f(' ', "examples"),
    ov(' ', "test"),
    f(' ', "tests"),
    ov(' ', "bench"),
    f(' ', "benches"),
    f(' ', "all-targets"),
    v('F', "features"),
    f(' ', "all-features"),
    f(' ', "no-default-features"),
];

/// Options of the compiling subcommands.
const COMPILE: Grammar = exact(joined!(
    joined!(
        SELECTION,
        &[
            v(' ', "target"),
            TARGET_DIR,
            writes(' ', "artifact-dir"),
            writes(' ', "out-dir"),
            f('r', "release"),
            v(' ', "profile"),
            v('j', "jobs"),
            f(' ', "keep-going"),
            ov(' ', "timings"),
            v(' ', "message-format"),
            f(' ', "build-plan"),
            f(' ', "unit-graph"),
            f(' ', "future-incompat-report"),
            MANIFEST,
            foreign(' ', "lockfile-path"),
            f(' ', "ignore-rust-version"),
            f(' ', "no-run"),
            f(' ', "no-fail-fast"),
            f(' ', "doc"),
            f(' ', "open"),
            f(' ', "no-deps"),
            f(' ', "document-private-items"),
            f(' ', "fix"),
            f(' ', "allow-dirty"),
            f(' ', "allow-staged"),
            f(' ', "allow-no-vcs"),
            f(' ', "broken-code"),
            f(' ', "edition"),
            f(' ', "edition-idioms"),
            v(' ', "crate-type"),
            v(' ', "print"),
        ]
    ),
    COMMON
));

const FMT: Grammar = exact(&[
    f(' ', "all"),
    f(' ', "check"),
    ov('p', "package"),
    MANIFEST,
    v(' ', "message-format"),
    f('v', "verbose"),
    f('q', "quiet"),
    f('h', "help"),
    f(' ', "version"),
]);

const CLEAN: Grammar = exact(joined!(
    &[
        f(' ', "doc"),
        f('n', "dry-run"),
        ov('p', "package"),
        f(' ', "workspace"),
        f('r', "release"),
        v(' ', "profile"),
        v(' ', "target"),
        TARGET_DIR,
        MANIFEST,
    ],
    COMMON
));

const NEW: Grammar = exact(joined!(
    &[
        f(' ', "bin"),
        f(' ', "lib"),
        v(' ', "name"),
        v(' ', "edition"),
        v(' ', "vcs"),
        v(' ', "registry"),
    ],
    COMMON
));

const INFO: Grammar = exact(joined!(
    &[
        ov('p', "package"),
        f(' ', "workspace"),
        v(' ', "exclude"),
        f(' ', "no-deps"),
        v(' ', "format-version"),
        v(' ', "filter-platform"),
        v('F', "features"),
        f(' ', "all-features"),
        f(' ', "no-default-features"),
        f(' ', "all-targets"),
        v('e', "edges"),
        v('i', "invert"),
        v(' ', "prune"),
        v(' ', "depth"),
        v(' ', "prefix"),
        f(' ', "no-dedupe"),
        f('d', "duplicates"),
        v(' ', "charset"),
        v('f', "format"),
        v(' ', "target"),
        v(' ', "message-format"),
        MANIFEST,
    ],
    COMMON
));

const NEXTEST: Grammar = exact(joined!(
    SELECTION,
    &[
        f('r', "release"),
        v(' ', "cargo-profile"),
        v('P', "profile"),
        v('j', "jobs"),
        v(' ', "test-threads"),
        v(' ', "retries"),
        f(' ', "no-fail-fast"),
        f(' ', "no-capture"),
        f(' ', "nocapture"),
        v(' ', "failure-output"),
        v(' ', "success-output"),
        v(' ', "status-level"),
        v(' ', "final-status-level"),
        f(' ', "hide-progress-bar"),
        v(' ', "message-format"),
        v('E', "filterset"),
        v(' ', "filter-expr"),
        v(' ', "run-ignored"),
        v(' ', "no-tests"),
        v(' ', "partition"),
        v(' ', "target"),
        TARGET_DIR,
        MANIFEST,
        foreign(' ', "config-file"),
        foreign(' ', "tool-config-file"),
        v(' ', "color"),
        f('v', "verbose"),
        f(' ', "locked"),
        f(' ', "offline"),
        f(' ', "frozen"),
        f('h', "help"),
    ]
));

/// `--config` keys whose values are numbers, booleans or names cargo never runs.
fn config_key_inert(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "build.jobs",
        "build.incremental",
        "net.offline",
        "net.retry",
        "cargo-new.vcs",
    ];
    const PROFILE: &[&str] = &[
        "opt-level",
        "debug",
        "lto",
        "codegen-units",
        "incremental",
        "debug-assertions",
        "overflow-checks",
        "panic",
        "strip",
        "split-debuginfo",
    ];
    if EXACT.contains(&key) || key.starts_with("term.") {
        return true;
    }
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 3 && parts[0] == "profile" && PROFILE.contains(&parts[2])
}

/// `--config KEY=VALUE` (TOML) or `--config PATH` (a config file).
fn config_option(fx: &mut Effects, p: &Parsed) {
    for o in p.find("config") {
        let Some(val) = &o.value else { continue };
        let inert = !val.dynamic
            && val
                .text
                .split_once('=')
                .is_some_and(|(k, v)| config_key_inert(k.trim()) && !v.contains(['[', '{', '\n']));
        if !inert {
            fx.code(format!(
                "cargo --config {}: configuration can name a runner, linker or wrapper cargo \
                 executes; only known-inert keys are allowed",
                val.text
            ));
        }
    }
    for o in &p.opts {
        if o.spec.short == Some('Z') {
            fx.unknown.push(format!(
                "cargo -Z {}: unstable features are not in agp's model of cargo",
                o.value.as_ref().map_or("", |v| v.text.as_str())
            ));
        }
        if o.spec.long == Some("target") {
            if let Some(t) = &o.value {
                // A target given as a path is a JSON target spec (it can name a linker).
                if t.dynamic
                    || t.text.contains('/')
                    || crate::paths::ends_with_ignore_case(&t.text, ".json")
                {
                    fx.foreign.push(t.clone());
                }
            }
        }
    }
}

/// Compiler flags after `--` (`cargo clippy -- -D warnings`): lint levels are fine, anything
/// else reaches the compiler, which can load plugins, linkers and other code.
fn compiler_flags(sub: &str, tail: &[Word], fx: &mut Effects) {
    let mut i = 0;
    while i < tail.len() {
        let t = tail[i].text.as_str();
        let lint_level = matches!(
            t,
            "-D" | "-W"
                | "-A"
                | "-F"
                | "--deny"
                | "--warn"
                | "--allow"
                | "--forbid"
                | "--cap-lints"
        );
        let glued = !tail[i].dynamic
            && [
                "-D",
                "-W",
                "-A",
                "-F",
                "--deny=",
                "--warn=",
                "--allow=",
                "--forbid=",
                "--cap-lints=",
            ]
            .iter()
            .any(|p| t.len() > p.len() && t.starts_with(p))
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:=".contains(c));
        if lint_level && tail.get(i + 1).is_some_and(|w| !w.dynamic) {
            i += 2;
        } else if glued {
            i += 1;
        } else {
            fx.code(format!(
                "cargo {sub} passes `{t}` to the compiler, which can load plugins and run linkers"
            ));
            return;
        }
    }
}

/// Arguments of the test harness after `--`: harmless except the log file it writes.
fn harness_args(tail: &[Word], fx: &mut Effects) {
    for (i, w) in tail.iter().enumerate() {
        if w.text == "--logfile" {
            fx.writes.extend(tail.get(i + 1).cloned());
        } else if let Some(p) = w.text.strip_prefix("--logfile=") {
            fx.writes.push(Word {
                text: p.to_string(),
                ..w.clone()
            });
        }
    }
}

/// rustfmt arguments after `cargo fmt --`: files it formats (writes) and its own options.
fn rustfmt_args(tail: &[Word], fx: &mut Effects) {
    const RUSTFMT: Grammar = exact(&[
        f(' ', "check"),
        v(' ', "edition"),
        v(' ', "emit"),
        v(' ', "config"),
        foreign(' ', "config-path"),
        v(' ', "style-edition"),
        f('v', "verbose"),
        f('q', "quiet"),
        f('l', "files-with-diff"),
        f(' ', "unstable-features"),
        f(' ', "backup"),
        v(' ', "color"),
        f(' ', "skip-children"),
    ]);
    let p = fx.parse_args("rustfmt", &RUSTFMT, tail);
    fx.writes.extend(p.operands);
}

/// Splits at the first literal `--`.
fn split_dashdash(args: &[Word]) -> (&[Word], &[Word]) {
    match args.iter().position(|w| w.text == "--" && !w.dynamic) {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[]),
    }
}

pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    // `cargo +nightly …` selects a rustup toolchain.
    let args = match args.first() {
        Some(w) if w.text.starts_with('+') && !w.dynamic => &args[1..],
        _ => args,
    };
    let top = fx.parse_args("cargo", &TOP, args);
    config_option(&mut fx, &top);
    for o in &top.opts {
        if o.spec.short == Some('C') {
            fx.foreign.extend(o.value.clone());
        }
    }
    let Some(sub) = fx.subcommand("cargo", &top.operands) else {
        return fx;
    };
    let rest = &top.operands[1..];
    let name = match sub.text.as_str() {
        "b" => "build",
        "c" => "check",
        "t" => "test",
        "r" => "run",
        "d" => "doc",
        other => other,
    };
    let run = |fx: &mut Effects, g: &Grammar, a: &[Word]| -> Parsed {
        let p = fx.parse_args(&format!("cargo {name}"), g, a);
        config_option(fx, &p);
        p
    };
    match name {
        "build" | "check" | "test" | "bench" | "run" | "clippy" | "doc" | "rustc" | "rustdoc"
        | "fix" => {
            let (before, tail) = split_dashdash(rest);
            run(&mut fx, &COMPILE, before);
            match name {
                "test" | "bench" => harness_args(tail, &mut fx),
                // The project's own binary gets these.
                "run" => {}
                _ => compiler_flags(name, tail, &mut fx),
            }
        }
        "fmt" => {
            let (before, tail) = split_dashdash(rest);
            run(&mut fx, &FMT, before);
            rustfmt_args(tail, &mut fx);
        }
        "nextest" => {
            let verb = rest.first().map_or("", |w| w.text.as_str());
            if !matches!(verb, "run" | "list" | "r") {
                fx.unknown
                    .push(format!("cargo nextest {verb} is not in agp's model of cargo"));
                return fx;
            }
            let (before, tail) = split_dashdash(&rest[1..]);
            run(&mut fx, &NEXTEST, before);
            harness_args(tail, &mut fx);
        }
        "clean" => drop(run(&mut fx, &CLEAN, rest)),
        "new" | "init" => {
            let p = run(&mut fx, &NEW, rest);
            fx.writes.extend(p.operands);
        }
        "metadata" | "tree" | "locate-project" | "pkgid" | "verify-project"
        | "read-manifest" | "generate-lockfile" | "version" | "help" => {
            drop(run(&mut fx, &INFO, rest));
        }
        // Installs are judged by the supply-chain guard, which names the packages.
        "add" | "install" => {}
        other => fx.unknown.push(format!(
            "cargo {other} is not in agp's model of cargo (a network, publishing or external subcommand)"
        )),
    }
    fx
}

super::spec::model_cases! { "cases/cargo.cases";
    table: "cargo" => Model(super::model),
}
