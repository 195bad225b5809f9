//! npm, pnpm, yarn and npx: the package managers' options (npm-config(7), pnpm and yarn CLI
//! references) and the subcommands that run the project's scripts.
//!
//! Running the project's scripts (`npm test`, `npm run build`, `pnpm lint`, `yarn test`) is
//! what a build/test rule allows. Options that name the shell or node flags scripts run with
//! (`--script-shell`, `--node-options`, another npmrc) are code, `--prefix`/`--dir`/`--cwd`
//! point the tooling at another project (foreign), and `exec`/`dlx`/`npx` run an arbitrary
//! package's program (code). Installs stay with the supply-chain guard, which names the
//! packages; this model only adds what their options do.

use super::grammar::{Grammar, OptSpec};
use super::spec::{code, exact, f, foreign, joined, v, writes};
use super::{Effects, Parsed};
use crate::shell::Word;

const SHELL: &str = "is the shell the package scripts run in";
const NODE_OPTS: &str = "are node options (`--require` loads code) for every script";
const RC: &str = "loads an npmrc, which can set the script shell and node options";

/// The npm configuration that names what package scripts run with; pnpm reads it too.
const SCRIPT_RUNTIME: &[OptSpec] = &[
    code(' ', "script-shell", SHELL),
    code(' ', "node-options", NODE_OPTS),
];

/// npm's configuration options (npm-config(7)) that agents use, by their CLI spelling.
const NPM: &[OptSpec] = joined!(
    SCRIPT_RUNTIME,
    &[
        f('s', "silent"),
        f('q', "quiet"),
        f('d', "dd"),
        f(' ', "ddd"),
        f(' ', "verbose"),
        v(' ', "loglevel"),
        v('w', "workspace"),
        f(' ', "workspaces"),
        f(' ', "ws"),
        f(' ', "include-workspace-root"),
        f(' ', "if-present"),
        f(' ', "ignore-scripts"),
        code(' ', "userconfig", RC),
        code(' ', "globalconfig", RC),
        code(' ', "shell", "is the shell npm runs commands in"),
        code(' ', "editor", "is the editor program npm runs"),
        code(' ', "git", "is the git program npm runs"),
        code(' ', "browser", "is the browser program npm runs"),
        code(' ', "init-module", "is a module npm init runs"),
        code(' ', "node-gyp", "is the node-gyp program npm runs"),
        code('c', "call", "is a command npm exec runs"),
        foreign('C', "prefix"),
        writes(' ', "cache"),
        writes(' ', "logs-dir"),
        v(' ', "registry"),
        v(' ', "color"),
        f(' ', "no-color"),
        f(' ', "json"),
        f('p', "parseable"),
        f('l', "long"),
        f('a', "all"),
        f('y', "yes"),
        f(' ', "no"),
        f(' ', "offline"),
        f(' ', "prefer-offline"),
        f(' ', "prefer-online"),
        f(' ', "foreground-scripts"),
        f(' ', "no-audit"),
        f(' ', "no-fund"),
        f(' ', "no-progress"),
        f(' ', "progress"),
        f(' ', "timing"),
        v(' ', "omit"),
        v(' ', "include"),
        f(' ', "dry-run"),
        f('f', "force"),
        f(' ', "legacy-peer-deps"),
        f('D', "save-dev"),
        f('S', "save"),
        f(' ', "no-save"),
        f('O', "save-optional"),
        f('E', "save-exact"),
        f('P', "save-prod"),
        f('g', "global"),
        v(' ', "location"),
        f(' ', "production"),
        v(' ', "tag"),
        v(' ', "depth"),
        f(' ', "package-lock-only"),
        f(' ', "no-package-lock"),
        f('v', "version"),
        f('h', "help"),
        f(' ', "usage"),
    ]
);

/// nopt: exact names, `-ws`/`-dd` single-dash names, options anywhere before `--`.
pub(super) const NPM_G: Grammar = Grammar {
    single_dash_long: true,
    ..exact(NPM)
};

const PNPM: &[OptSpec] = joined!(
    SCRIPT_RUNTIME,
    &[
        foreign('C', "dir"),
        f('w', "workspace-root"),
        v('F', "filter"),
        v(' ', "filter-prod"),
        f('r', "recursive"),
        f(' ', "if-present"),
        f(' ', "parallel"),
        f(' ', "sequential"),
        f(' ', "stream"),
        f('s', "silent"),
        v(' ', "reporter"),
        f(' ', "aggregate-output"),
        v(' ', "workspace-concurrency"),
        v(' ', "resume-from"),
        f(' ', "report-summary"),
        f(' ', "no-bail"),
        f(' ', "bail"),
        f(' ', "sort"),
        f(' ', "no-sort"),
        f(' ', "reverse"),
        f(' ', "shell-emulator"),
        v(' ', "loglevel"),
        f(' ', "color"),
        f(' ', "no-color"),
        f(' ', "use-stderr"),
        f(' ', "offline"),
        f(' ', "prefer-offline"),
        f(' ', "frozen-lockfile"),
        f(' ', "ignore-scripts"),
        f(' ', "include-workspace-root"),
        f(' ', "fail-if-no-match"),
        v(' ', "test-pattern"),
        v(' ', "changed-files-ignore-pattern"),
        f('D', "dev"),
        f('P', "prod"),
        f(' ', "no-optional"),
        f(' ', "json"),
        f(' ', "long"),
        f(' ', "parseable"),
        f('g', "global"),
        f('v', "version"),
        f('h', "help"),
    ]
);

pub(super) const PNPM_G: Grammar = exact(PNPM);

const YARN: &[OptSpec] = &[
    foreign(' ', "cwd"),
    code(' ', "use-yarnrc", RC),
    f(' ', "no-default-rc"),
    writes(' ', "cache-folder"),
    writes(' ', "modules-folder"),
    writes(' ', "global-folder"),
    writes(' ', "link-folder"),
    writes(' ', "preferred-cache-folder"),
    f('s', "silent"),
    f(' ', "verbose"),
    f(' ', "offline"),
    f(' ', "prefer-offline"),
    f(' ', "frozen-lockfile"),
    f(' ', "immutable"),
    f(' ', "ignore-scripts"),
    f(' ', "json"),
    f(' ', "no-progress"),
    v(' ', "network-timeout"),
    v(' ', "mutex"),
    f(' ', "production"),
    f(' ', "no-lockfile"),
    f(' ', "pure-lockfile"),
    f(' ', "non-interactive"),
    f(' ', "ignore-engines"),
    f(' ', "ignore-optional"),
    f(' ', "ignore-platform"),
    f(' ', "check-files"),
    f(' ', "force"),
    f(' ', "flat"),
    f(' ', "no-bin-links"),
    f(' ', "no-node-version-check"),
    f(' ', "emoji"),
    f(' ', "no-emoji"),
    f(' ', "top-level"),
    v(' ', "registry"),
    f('D', "dev"),
    f('E', "exact"),
    f('v', "version"),
    f('h', "help"),
];

pub(super) const YARN_G: Grammar = exact(YARN);

/// Splits at the first literal `--`: what follows goes to the script.
fn before_dashdash(args: &[Word]) -> &[Word] {
    match args.iter().position(|w| w.text == "--" && !w.dynamic) {
        Some(i) => &args[..i],
        None => args,
    }
}

/// Words after the first literal `--` go to the project's script, whose options agp does not
/// know; a path among them (`--require /tmp/x.js`, `--config=../elsewhere.js`) points the
/// project's tooling at code elsewhere, so it is judged like `--prefix`: foreign.
fn script_args(fx: &mut Effects, args: &[Word]) {
    let Some(i) = args.iter().position(|w| w.text == "--" && !w.dynamic) else {
        return;
    };
    for w in &args[i + 1..] {
        let value = match w.text.split_once('=') {
            Some((k, v)) if k.starts_with('-') => v,
            _ => w.text.as_str(),
        };
        let path_like = value.contains('/') || value.starts_with('.') || value.starts_with('~');
        if w.dynamic || path_like {
            fx.foreign.push(Word {
                text: value.to_string(),
                ..w.clone()
            });
        }
    }
}

fn parse_opts(fx: &mut Effects, prog: &str, g: &Grammar, args: &[Word]) -> Parsed {
    let p = fx.parse_args(prog, g, before_dashdash(args));
    script_args(fx, args);
    // pnpm and npm read any `--config.KEY=VALUE` / `--npm_config_*` as configuration.
    p
}

/// What a package manager's subcommand does, given the operands (subcommand first).
fn subcommand(prog: &str, ops: &[Word], fx: &mut Effects) {
    let Some(sub) = fx.subcommand(prog, ops) else {
        return;
    };
    let s = sub.text.as_str();
    let verb = ops.get(1).map_or("", |w| w.text.as_str());
    match (prog, s) {
        // The project's own scripts.
        (_, "test" | "t" | "tst" | "start" | "stop" | "restart" | "run" | "run-script" | "rum"
        | "urn" | "build" | "lint")
        | ("pnpm" | "yarn", _) if !is_special(prog, s) => {}
        (_, "exec" | "x" | "dlx" | "create" | "explore" | "edit" | "node") => fx.code(format!(
            "{prog} {s} runs an arbitrary package's program or an editor/shell"
        )),
        (_, "init" | "innit") if ops.len() > 1 => fx.code(format!(
            "{prog} {s} {verb} runs the package create-{verb}"
        )),
        (_, "config" | "c") => {
            if matches!(verb, "set" | "delete" | "edit" | "fix" | "rm" | "unset") {
                fx.code(format!(
                    "{prog} config {verb} changes configuration that names the programs and node \
                     options {prog} runs scripts with"
                ));
            }
        }
        (_, "workspace") => subcommand(prog, ops.get(2..).unwrap_or(&[]), fx),
        // Installs: judged by the supply-chain guard.
        (
            _,
            "install" | "i" | "in" | "isntall" | "add" | "ci" | "clean-install" | "update" | "up"
            | "upgrade" | "uninstall" | "un" | "remove" | "rm" | "r" | "unlink" | "link" | "ln"
            | "dedupe" | "prune" | "rebuild" | "install-test" | "it" | "install-ci-test",
        ) => {}
        (
            _,
            "ls" | "list" | "ll" | "la" | "outdated" | "view" | "info" | "show" | "explain" | "why"
            | "root" | "prefix" | "help" | "version" | "pack" | "audit" | "doctor" | "fund"
            | "query" | "sbom" | "pkg" | "init" | "innit" | "bin" | "licenses",
        ) => {}
        _ => fx.unknown.push(format!(
            "{prog} {s} is not in agp's model of {prog} (publishing, registry or an unmodeled command)"
        )),
    }
}

/// pnpm and yarn run a script for an unknown command name; these names are theirs.
fn is_special(prog: &str, s: &str) -> bool {
    prog != "npm"
        && matches!(
            s,
            "exec"
                | "dlx"
                | "create"
                | "node"
                | "config"
                | "workspace"
                | "workspaces"
                | "publish"
                | "login"
                | "logout"
                | "env"
                | "setup"
                | "server"
                | "store"
                | "patch"
                | "patch-commit"
                | "deploy"
                | "import"
                | "policies"
                | "set"
                | "plugin"
                | "npm"
                | "owner"
                | "tag"
                | "team"
                | "unpublish"
                | "global"
                | "init"
                | "innit"
        )
}

/// A package manager's command line: its own options (and, for pnpm, `--config.KEY=VALUE`
/// words), then what its subcommand does.
fn manager(prog: &str, g: &Grammar, config_words: bool, args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let p = parse_opts(&mut fx, prog, g, args);
    if config_words {
        config_dot(&mut fx, prog, args);
    }
    subcommand(prog, &p.operands, &mut fx);
    fx
}

pub fn npm(args: &[Word]) -> Effects {
    manager("npm", &NPM_G, false, args)
}

pub fn pnpm(args: &[Word]) -> Effects {
    manager("pnpm", &PNPM_G, true, args)
}

pub fn yarn(args: &[Word]) -> Effects {
    manager("yarn", &YARN_G, false, args)
}

/// `npx PKG …` / `pnpx` / `bunx`: runs a package's program, fetched if need be.
pub fn npx(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let what = args
        .iter()
        .find(|w| !w.text.starts_with('-'))
        .map_or("a package", |w| w.text.as_str());
    fx.code(format!(
        "npx runs the program of {what}, an arbitrary package"
    ));
    fx
}

/// pnpm reads `--config.KEY=VALUE` as configuration (script-shell, node-options, ...);
/// the grammar reports them unknown, this names why.
fn config_dot(fx: &mut Effects, prog: &str, args: &[Word]) {
    for w in before_dashdash(args) {
        if w.text.starts_with("--config.") {
            fx.code(format!(
                "{prog} `{}` sets configuration that can name the script shell or node options",
                w.text
            ));
        }
    }
}

super::spec::model_cases! { "cases/npm.cases";
    npm_table: "npm" => Model(super::npm),
    pnpm_table: "pnpm" => Model(super::pnpm),
    yarn_table: "yarn" => Model(super::yarn),
    npx_table: "npx" => Model(super::npx),
}
