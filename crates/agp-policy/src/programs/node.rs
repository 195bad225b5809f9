//! node (node(1), "Command-line API"): its options before the script, `-e`/`-p` inline code,
//! modules preloaded into the process, `--test`, and the script itself.
//!
//! Node reads options until the script (or `-`, or `--`); what follows belongs to the
//! script. Preloads (`-r`, `--import`, `--loader`), env files (which can set NODE_OPTIONS),
//! an inspector port and inline code cannot be judged; a script or test file outside the
//! project is tooling pointed elsewhere.

use super::grammar::{Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::{code, dangerous, exact, f, foreign, o, v, writes};
use super::Effects;
use crate::shell::Word;

const INLINE: &str = "is inline code";
const LOADS: &str = "preloads a module, which runs its code";
const ENV_FILE: &str = "loads an env file, which can set NODE_OPTIONS";
const INSPECT: &str = "opens an inspector port that runs code sent to it";

const OPTS: &[OptSpec] = &[
    code('e', "eval", INLINE),
    code('p', "print", INLINE),
    f('c', "check"),
    dangerous('i', "interactive", "reads code from stdin (REPL)"),
    code('r', "require", LOADS),
    code(' ', "import", LOADS),
    code(' ', "loader", LOADS),
    code(' ', "experimental-loader", LOADS),
    code(' ', "env-file", ENV_FILE),
    code(' ', "env-file-if-exists", ENV_FILE),
    code(
        ' ',
        "openssl-config",
        "loads an OpenSSL config, which can load engines",
    ),
    o(' ', "inspect", Optional, Dangerous(INSPECT)),
    o(' ', "inspect-brk", Optional, Dangerous(INSPECT)),
    o(' ', "inspect-wait", Optional, Dangerous(INSPECT)),
    o(' ', "inspect-port", Required, Dangerous(INSPECT)),
    code(
        ' ',
        "snapshot-blob",
        "loads a startup snapshot, which is code",
    ),
    f(' ', "build-snapshot"),
    f(' ', "test"),
    f(' ', "watch"),
    v(' ', "watch-path"),
    f(' ', "watch-preserve-output"),
    v(' ', "run"),
    f(' ', "test-only"),
    v(' ', "test-name-pattern"),
    v(' ', "test-skip-pattern"),
    v(' ', "test-concurrency"),
    v(' ', "test-timeout"),
    v(' ', "test-shard"),
    f(' ', "test-update-snapshots"),
    f(' ', "experimental-test-coverage"),
    f(' ', "experimental-test-module-mocks"),
    f(' ', "experimental-test-snapshots"),
    v(' ', "test-reporter"),
    writes(' ', "test-reporter-destination"),
    v(' ', "test-coverage-include"),
    v(' ', "test-coverage-exclude"),
    v(' ', "test-coverage-lines"),
    v(' ', "test-coverage-branches"),
    v(' ', "test-coverage-functions"),
    v(' ', "input-type"),
    v(' ', "experimental-default-type"),
    f(' ', "experimental-strip-types"),
    f(' ', "no-experimental-strip-types"),
    f(' ', "experimental-transform-types"),
    f(' ', "experimental-vm-modules"),
    f(' ', "experimental-wasm-modules"),
    f(' ', "experimental-json-modules"),
    f(' ', "experimental-detect-module"),
    f(' ', "no-experimental-detect-module"),
    f(' ', "experimental-require-module"),
    f(' ', "no-experimental-require-module"),
    f(' ', "experimental-websocket"),
    f(' ', "experimental-eventsource"),
    f(' ', "experimental-fetch"),
    f(' ', "no-experimental-fetch"),
    f(' ', "experimental-global-webcrypto"),
    f(' ', "no-experimental-global-navigator"),
    f(' ', "experimental-print-required-tla"),
    f(' ', "experimental-shadow-realm"),
    f(' ', "experimental-sqlite"),
    f(' ', "experimental-webstorage"),
    f(' ', "experimental-top-level-await"),
    f(' ', "experimental-import-meta-resolve"),
    v(' ', "experimental-specifier-resolution"),
    f(' ', "experimental-permission"),
    f(' ', "permission"),
    v(' ', "allow-fs-read"),
    v(' ', "allow-fs-write"),
    f(' ', "allow-child-process"),
    f(' ', "allow-worker"),
    f(' ', "allow-addons"),
    f(' ', "allow-wasi"),
    f(' ', "no-warnings"),
    v(' ', "disable-warning"),
    f(' ', "no-deprecation"),
    f(' ', "throw-deprecation"),
    f(' ', "trace-deprecation"),
    f(' ', "trace-warnings"),
    f(' ', "trace-uncaught"),
    f(' ', "trace-exit"),
    f(' ', "trace-sigint"),
    f(' ', "pending-deprecation"),
    f(' ', "enable-source-maps"),
    v(' ', "max-old-space-size"),
    v(' ', "max-semi-space-size"),
    v(' ', "stack-size"),
    v(' ', "stack-trace-limit"),
    v(' ', "unhandled-rejections"),
    f(' ', "preserve-symlinks"),
    f(' ', "preserve-symlinks-main"),
    v('C', "conditions"),
    f(' ', "abort-on-uncaught-exception"),
    v(' ', "title"),
    v(' ', "disable-proto"),
    f(' ', "frozen-intrinsics"),
    f(' ', "no-addons"),
    f(' ', "no-global-search-paths"),
    f(' ', "jitless"),
    f(' ', "expose-gc"),
    f(' ', "zero-fill-buffers"),
    f(' ', "use-openssl-ca"),
    f(' ', "use-bundled-ca"),
    f(' ', "use-system-ca"),
    v(' ', "dns-result-order"),
    v(' ', "max-http-header-size"),
    foreign(' ', "icu-data-dir"),
    f('v', "version"),
    f('h', "help"),
    f(' ', "v8-options"),
    f(' ', "completion-bash"),
    f(' ', "prof"),
    f(' ', "cpu-prof"),
    writes(' ', "cpu-prof-dir"),
    v(' ', "cpu-prof-name"),
    f(' ', "heap-prof"),
    writes(' ', "heap-prof-dir"),
    writes(' ', "diagnostic-dir"),
    writes(' ', "report-dir"),
    writes(' ', "report-directory"),
    writes(' ', "redirect-warnings"),
    writes(' ', "localstorage-file"),
    f(' ', "report-on-signal"),
    f(' ', "report-uncaught-exception"),
    f(' ', "report-on-fatalerror"),
    v(' ', "heapsnapshot-signal"),
    v(' ', "heapsnapshot-near-heap-limit"),
    v(' ', "secure-heap"),
    v(' ', "secure-heap-min"),
];

/// node reads exact option names (no prefixes) before the script; `-pe` clusters.
const GRAMMAR: Grammar = Grammar {
    permute: false,
    ..exact(OPTS)
};

/// Reporters node ships; any other name is a module it loads.
const BUILTIN_REPORTERS: &[&str] = &["spec", "tap", "dot", "junit", "lcov"];

pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    // node treats `_` and `-` alike in option names (`--max_old_space_size`).
    let norm: Vec<Word> = args
        .iter()
        .map(|w| match w.text.strip_prefix("--") {
            Some(body) if !w.dynamic => {
                let (name, val) = body
                    .split_once('=')
                    .map_or((body, None), |(n, v)| (n, Some(v)));
                let name = name.replace('_', "-");
                Word {
                    text: match val {
                        Some(v) => format!("--{name}={v}"),
                        None => format!("--{name}"),
                    },
                    ..w.clone()
                }
            }
            _ => w.clone(),
        })
        .collect();
    let p = fx.parse_args("node", &GRAMMAR, &norm);
    for o in &p.opts {
        match o.spec.long {
            Some("test-reporter") => {
                if let Some(r) = &o.value {
                    if r.dynamic || !BUILTIN_REPORTERS.contains(&r.text.as_str()) {
                        fx.code(format!(
                            "node --test-reporter={} loads a reporter module",
                            r.text
                        ));
                    }
                }
            }
            Some("test-reporter-destination") => {
                fx.writes
                    .retain(|w| w.dynamic || !matches!(w.text.as_str(), "stdout" | "stderr"));
            }
            _ => {}
        }
    }
    let inline = p.has("eval") || p.has("print");
    let info = ["version", "help", "v8-options", "completion-bash", "run"]
        .iter()
        .any(|n| p.has(n));
    let test = p.has("test");
    // The first operand is the script (args after it are the script's), unless the code came
    // inline; with --test every operand is a test file.
    match p.operands.first() {
        _ if inline => {}
        Some(s) if s.text == "-" && !s.dynamic => {
            fx.code("node reads its program from stdin, which cannot be judged");
        }
        Some(_) if test => fx.foreign.extend(p.operands.iter().cloned()),
        Some(s) => fx.foreign.push(s.clone()),
        None if info || test => {}
        None => {
            fx.code("node reads its program from stdin (or starts a REPL), which cannot be judged");
        }
    }
    fx
}

super::spec::model_cases! { "cases/node.cases";
    table: "node" => Model(super::model),
}
