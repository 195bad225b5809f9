//! pytest (`pytest --help`, "Command-line Flags" reference), also reached as
//! `python -m pytest`.
//!
//! Running the project's tests is what a test rule allows. Plugins (`-p NAME`) are code
//! loaded into the run, configuration files and root directories elsewhere point the run at
//! other code (foreign, as are test paths outside the project), ini overrides can add options
//! or plugins (code unless the key is known to be inert), and report/log/temp paths are
//! written (`--basetemp` is even emptied).

use super::grammar::{Arity::*, Effect::*, Grammar, OptSpec};
use super::spec::{code, f, foreign, gnu, o, ov, v, writes};
use super::Effects;
use crate::shell::Word;

const OPTS: &[OptSpec] = &[
    v('k', ""),
    v('m', ""),
    f(' ', "markers"),
    f('x', "exitfirst"),
    v(' ', "maxfail"),
    f(' ', "fixtures"),
    f(' ', "funcargs"),
    f(' ', "fixtures-per-test"),
    f(' ', "pdb"),
    code(' ', "pdbcls", "names a debugger class pytest imports"),
    f(' ', "trace"),
    v(' ', "capture"),
    f('s', ""),
    f(' ', "runxfail"),
    f(' ', "lf"),
    f(' ', "last-failed"),
    f(' ', "ff"),
    f(' ', "failed-first"),
    f(' ', "nf"),
    f(' ', "new-first"),
    ov(' ', "cache-show"),
    f(' ', "cache-clear"),
    v(' ', "lfnf"),
    v(' ', "last-failed-no-failures"),
    f(' ', "sw"),
    f(' ', "stepwise"),
    f(' ', "sw-skip"),
    f(' ', "stepwise-skip"),
    f(' ', "sw-reset"),
    f(' ', "stepwise-reset"),
    v(' ', "durations"),
    v(' ', "durations-min"),
    f('v', "verbose"),
    f(' ', "no-header"),
    f(' ', "no-summary"),
    f(' ', "no-fold-skipped"),
    f('q', "quiet"),
    v(' ', "verbosity"),
    v('r', ""),
    f(' ', "disable-warnings"),
    f(' ', "disable-pytest-warnings"),
    f('l', "showlocals"),
    f(' ', "no-showlocals"),
    v(' ', "tb"),
    f(' ', "xfail-tb"),
    v(' ', "show-capture"),
    f(' ', "full-trace"),
    v(' ', "color"),
    v(' ', "code-highlight"),
    o(
        ' ',
        "pastebin",
        Required,
        Dangerous("uploads test output to a pastebin service"),
    ),
    writes(' ', "junit-xml"),
    writes(' ', "junitxml"),
    v(' ', "junit-prefix"),
    writes(' ', "resultlog"),
    writes(' ', "result-log"),
    f(' ', "collect-only"),
    f(' ', "co"),
    f(' ', "pyargs"),
    v(' ', "ignore"),
    v(' ', "ignore-glob"),
    v(' ', "deselect"),
    foreign(' ', "confcutdir"),
    f(' ', "noconftest"),
    f(' ', "keep-duplicates"),
    f(' ', "collect-in-virtualenv"),
    f(' ', "continue-on-collection-errors"),
    v(' ', "import-mode"),
    f(' ', "doctest-modules"),
    v(' ', "doctest-report"),
    v(' ', "doctest-glob"),
    f(' ', "doctest-ignore-import-errors"),
    f(' ', "doctest-continue-on-failure"),
    writes(' ', "basetemp"),
    f('V', "version"),
    f('h', "help"),
    v('p', ""),
    f(' ', "trace-config"),
    o(' ', "debug", Optional, WritesFile),
    v('o', "override-ini"),
    v(' ', "assert"),
    f(' ', "setup-only"),
    f(' ', "setup-show"),
    f(' ', "setup-plan"),
    v(' ', "log-level"),
    v(' ', "log-format"),
    v(' ', "log-date-format"),
    v(' ', "log-cli-level"),
    v(' ', "log-cli-format"),
    v(' ', "log-cli-date-format"),
    writes(' ', "log-file"),
    v(' ', "log-file-mode"),
    v(' ', "log-file-level"),
    v(' ', "log-file-format"),
    v(' ', "log-file-date-format"),
    v(' ', "log-auto-indent"),
    v(' ', "log-disable"),
    v('W', "pythonwarnings"),
    foreign('c', "config-file"),
    foreign(' ', "rootdir"),
    f(' ', "strict-config"),
    f(' ', "strict-markers"),
    f(' ', "strict"),
    // pytest-xdist, pytest-cov, pytest-timeout: the plugins agents meet most.
    v('n', "numprocesses"),
    v(' ', "dist"),
    ov(' ', "cov"),
    v(' ', "cov-report"),
    foreign(' ', "cov-config"),
    f(' ', "no-cov"),
    v(' ', "cov-fail-under"),
    f(' ', "cov-append"),
    f(' ', "cov-branch"),
    v(' ', "timeout"),
];

/// argparse: unique prefixes of long options, options anywhere, short clusters.
const GRAMMAR: Grammar = gnu(OPTS);

/// ini keys that only change reporting or naming, never which code or options are loaded.
fn ini_key_inert(key: &str) -> bool {
    matches!(
        key,
        "console_output_style"
            | "log_cli"
            | "log_cli_level"
            | "log_level"
            | "log_format"
            | "log_date_format"
            | "junit_family"
            | "junit_suite_name"
            | "junit_logging"
            | "junit_log_passing_tests"
            | "junit_duration_report"
            | "xfail_strict"
            | "empty_parameter_set_mark"
            | "faulthandler_timeout"
            | "timeout"
            | "verbosity_assertions"
            | "verbosity_test_cases"
            | "truncation_limit_lines"
            | "truncation_limit_chars"
            | "doctest_optionflags"
            | "python_classes"
            | "python_functions"
            | "python_files"
            | "norecursedirs"
            | "markers"
            | "minversion"
            | "tmp_path_retention_count"
            | "tmp_path_retention_policy"
    )
}

/// A `-W` warnings filter `action:message:category:module:lineno`: a dotted category is
/// imported (code); a plain one is a builtin warning class.
pub(super) fn warning_filter_runs_code(w: &Word) -> bool {
    w.dynamic || w.text.split(':').nth(2).is_some_and(|c| c.contains('.'))
}

pub fn model(args: &[Word]) -> Effects {
    let mut fx = Effects::default();
    let p = fx.parse_args("pytest", &GRAMMAR, args);
    for o in &p.opts {
        let Some(val) = &o.value else { continue };
        match (o.spec.short, o.spec.long) {
            // `-p no:NAME` switches a plugin off; anything else imports one.
            (Some('p'), _) if val.dynamic || !val.text.starts_with("no:") => {
                fx.code(format!("pytest -p {} loads a plugin (code)", val.text));
            }
            (_, Some("override-ini")) => {
                let key = val.text.split_once('=').map_or("", |(k, _)| k.trim());
                if val.dynamic || !ini_key_inert(key) {
                    fx.code(format!(
                        "pytest -o {}: ini overrides can add options or plugins",
                        val.text
                    ));
                }
            }
            (_, Some("pythonwarnings")) if warning_filter_runs_code(val) => fx.code(format!(
                "pytest -W {}: a dotted warning category is imported (code)",
                val.text
            )),
            (_, Some("cov-report")) => {
                // `html:DIR`, `xml:FILE`, `lcov:FILE` write there.
                // `term-missing:skip-covered` is a modifier, not a path.
                if let Some((kind, path)) = val.text.split_once(':') {
                    if !path.is_empty() && !kind.starts_with("term") {
                        fx.writes.push(Word {
                            text: path.to_string(),
                            ..val.clone()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if p.has("pyargs") {
        // Operands are importable names: they resolve through sys.path, which reaches
        // installed packages and anything else on it, not only the project.
        for w in &p.operands {
            fx.code(format!(
                "pytest --pyargs {} imports the named package's tests from wherever Python finds it",
                w.text
            ));
        }
    } else {
        // `tests/test_x.py::TestA::test_b`: the file part is what gets imported.
        for w in &p.operands {
            let file = w.text.split("::").next().unwrap_or("");
            fx.foreign.push(Word {
                text: file.to_string(),
                ..w.clone()
            });
        }
    }
    fx
}

super::spec::model_cases! { "cases/pytest.cases";
    table: "pytest" => Model(super::model),
}
