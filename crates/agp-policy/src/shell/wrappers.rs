//! Wrapper commands (`env`, `timeout`, `sudo`, `nice`…): how each takes its options before the
//! command it runs.

use super::words::Word;

/// How a wrapper command takes its options before the wrapped command.
pub(super) struct WrapperSpec {
    /// Options that consume the next word (`-u USER`); `--opt=value` is handled generically.
    with_value: &'static [&'static str],
    /// Positional words between the options and the command (`timeout DURATION`).
    positional: usize,
    /// `NAME=VALUE` words may precede the command (`env`, `sudo`).
    assignments: bool,
}

pub(super) fn wrapper_spec(name: &str) -> Option<WrapperSpec> {
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

pub(super) fn is_option(w: &Word) -> bool {
    w.text.len() > 1 && w.text.starts_with('-') && !w.dynamic
}

pub(super) fn is_assignment(w: &Word) -> bool {
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
pub(super) fn wrapped_start(
    argv: &[Word],
    spec: &WrapperSpec,
    env: &mut Vec<String>,
) -> Option<usize> {
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

/// The directory `env -C DIR` / `--chdir=DIR` / `sudo -D DIR` switches to.
pub(super) fn chdir_option(argv: &[Word], spec: &WrapperSpec) -> Option<Word> {
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

pub(super) fn skip_options(argv: &[Word], with_value: &[&str]) -> usize {
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
