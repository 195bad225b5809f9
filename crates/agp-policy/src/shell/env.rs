//! Environment variables: which assignments change what a program runs or reads, and which
//! commands print the environment (a secrets read: tokens live there).

use super::SimpleCommand;

/// Names a program reads to decide what code to run, which files to load, where its
/// configuration or home is, or how the shell itself evaluates text. Setting one (prefix
/// assignment, `env NAME=…`, `export`, `declare -x`, plain assignment) is judged, never ignored.
///
/// Three layers, checked in order:
/// 1. a short list of names known to be harmless (log levels, colours, locale);
/// 2. exact names and prefixes known to redirect programs (loader, shells, git, language
///    runtimes, build tools, package managers, pagers and editors);
/// 3. name patterns that usually mean the same thing for tools we do not know (`*_OPTIONS`,
///    `*OPT*`, `*PATH`, `*_HOME`, `*WRAPPER*`, `*_COMMAND`, `*_CMD`, `*EDITOR*`, `*PAGER*`,
///    `*SHELL*`, `*CONFIG*`, `*FLAGS`, `*_DIR`, `*_FILE`, `*PROXY*`, ...).
///
/// Lower-case names are shell-local by convention and only judged when a tool is known to read
/// them (`npm_config_*`, `http_proxy`, ...).
pub fn dangerous_env(name: &str) -> bool {
    if harmless(name) {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return LOWER_PREFIXES.iter().any(|p| upper.starts_with(p))
            || upper.ends_with("_PROXY")
            || upper == "PROXY";
    }
    EXACT.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || SUFFIXES.iter().any(|s| name.ends_with(s))
        || INFIXES.iter().any(|s| name.contains(s))
}

fn harmless(name: &str) -> bool {
    matches!(
        name,
        "RUST_LOG"
            | "RUST_BACKTRACE"
            | "RUST_LIB_BACKTRACE"
            | "RUST_TEST_THREADS"
            | "RUST_TEST_NOCAPTURE"
            | "RUST_MIN_STACK"
            | "CARGO_TERM_COLOR"
            | "CARGO_TERM_VERBOSE"
            | "CARGO_TERM_QUIET"
            | "CARGO_TERM_PROGRESS_WHEN"
            | "CARGO_INCREMENTAL"
            | "CARGO_BUILD_JOBS"
            | "CI"
            | "DEBUG"
            | "VERBOSE"
            | "QUIET"
            | "NODE_ENV"
            | "NODE_DEBUG"
            | "NODE_NO_WARNINGS"
            | "NO_COLOR"
            | "FORCE_COLOR"
            | "CLICOLOR"
            | "CLICOLOR_FORCE"
            | "COLUMNS"
            | "LINES"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "TERM"
            | "PYTHONUNBUFFERED"
            | "PYTHONDONTWRITEBYTECODE"
            | "PYTHONHASHSEED"
            | "PYTHONIOENCODING"
            | "PYTHONUTF8"
            | "PYTHONFAULTHANDLER"
            | "GOOS"
            | "GOARCH"
            | "CGO_ENABLED"
            | "TEST_THREADS"
    ) || name.starts_with("LC_")
}

const EXACT: &[&str] = &[
    // The shell and every program it starts.
    "PATH",
    "HOME",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "EXECIGNORE",
    "FIGNORE",
    "HISTFILE",
    "INPUTRC",
    "ZDOTDIR",
    "TMPDIR",
    "POSIXLY_CORRECT",
    "SHELL",
    // Loader and libc.
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "TERMINFO",
    "TERMINFO_DIRS",
    "MALLOC_CHECK_",
    // Programs named by the environment.
    "EDITOR",
    "VISUAL",
    "FCEDIT",
    "PAGER",
    "MANPAGER",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "LESSKEY",
    "VIMINIT",
    "EXINIT",
    "MYVIMRC",
    "VIMRUNTIME",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "AS",
    "NM",
    "RANLIB",
    "STRIP",
    "OBJCOPY",
    "OBJDUMP",
    "FC",
    "F77",
    "YACC",
    "LEX",
    "M4",
    "MAKE",
    "MAKEFILES",
    "MAKEFLAGS",
    "MFLAGS",
    "GNUMAKEFLAGS",
    "TAR_OPTIONS",
    "GZIP",
    "BZIP2",
    "XZ_OPT",
    "ZIPOPT",
    "UNZIP",
    "CLASSPATH",
    "VIRTUAL_ENV",
    "KUBECONFIG",
    "DOCKER_HOST",
];

const PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_FUNC_",
    "BASH_",
    "GIT_",
    "XDG_",
    "SSH_",
    "GPG",
    "GNUPG",
    "PYTHON",
    "PYTEST_",
    "PIP_",
    "PIPX_",
    "UV_",
    "POETRY_",
    "CONDA",
    "NODE_",
    "NPM_CONFIG_",
    "YARN_",
    "PNPM_",
    "COREPACK_",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "JAVA_",
    "_JAVA_",
    "JDK_JAVA_",
    "MAVEN_",
    "GRADLE_",
    "RUSTC",
    "RUSTDOC",
    "RUSTUP_",
    "CARGO_",
    "GO",
    "CMAKE_",
    "PKG_CONFIG",
    "CCACHE_",
    "DISTCC_",
    "LESS",
    "TAR_",
    "ZIP",
];

const SUFFIXES: &[&str] = &[
    "PATH", "_HOME", "HOME", "_DIR", "_DIRS", "FILE", "LIB", "RC", "INIT", "FLAGS", "_CMD",
];

const INFIXES: &[&str] = &[
    "OPT", "WRAPPER", "COMMAND", "EDITOR", "PAGER", "SHELL", "CONFIG", "ASKPASS", "PROXY", "EXEC",
    "PRELOAD", "PLUGIN", "HOOK", "SCRIPT", "PROGRAM", "RUNNER", "LOADER", "INCLUDE", "LINKER",
];

/// Lower-case names tools are known to read.
const LOWER_PREFIXES: &[&str] = &["NPM_CONFIG_", "YARN_", "PNPM_", "NO_PROXY"];

/// Values that make a program-naming variable name a harmless program: `GIT_PAGER=cat`,
/// `PAGER=` (no pager) are what agents set to keep output flowing.
pub fn harmless_value(name: &str, value: &str) -> bool {
    let pager = name.ends_with("PAGER") && !name.contains("MAN");
    pager && matches!(value, "" | "cat" | "/bin/cat" | "/usr/bin/cat")
}

/// Names whose value is routine to print.
fn harmless_to_print(name: &str) -> bool {
    harmless(name)
        || matches!(
            name,
            "HOME"
                | "PATH"
                | "PWD"
                | "OLDPWD"
                | "USER"
                | "LOGNAME"
                | "SHELL"
                | "HOSTNAME"
                | "SHLVL"
                | "TMPDIR"
                | "EDITOR"
                | "VISUAL"
                | "PAGER"
                | "VIRTUAL_ENV"
                | "CARGO_TARGET_DIR"
                | "CARGO_HOME"
                | "RUSTUP_HOME"
                | "GOPATH"
                | "JAVA_HOME"
        )
        || name.starts_with("XDG_")
}

/// Does this command print environment variables (all of them, or named ones that may hold
/// secrets)? Returns what it prints.
pub fn prints_environment(cmd: &SimpleCommand) -> Option<String> {
    let args = cmd.args();
    match cmd.name() {
        // `env` with no command to run (the walker leaves `env` itself as the command then).
        "env" => {
            let mut i = 0;
            let mut cleared = false;
            while i < args.len() {
                let t = args[i].text.as_str();
                if matches!(t, "-u" | "--unset" | "-C" | "--chdir") {
                    i += 2;
                    continue;
                }
                if t == "-" || t == "-i" || t == "--ignore-environment" {
                    cleared = true;
                } else if t.starts_with("--") {
                } else if t.starts_with('-') {
                    cleared |= t.contains('i') && !t.contains('u') && !t.contains('C');
                } else if t.contains('=') {
                    // An assignment: printed along with the rest.
                } else {
                    // A command: not a print (the walker judges the command itself).
                    return None;
                }
                i += 1;
            }
            (!cleared).then(|| "env prints every environment variable (tokens included)".into())
        }
        "printenv" => {
            let names: Vec<&str> = args
                .iter()
                .filter(|w| !w.text.starts_with('-'))
                .map(|w| w.text.as_str())
                .collect();
            if names.is_empty() {
                return Some("printenv prints every environment variable (tokens included)".into());
            }
            args.iter()
                .filter(|w| !w.text.starts_with('-'))
                .find(|w| w.dynamic || !harmless_to_print(&w.text))
                .map(|n| {
                    format!(
                        "printenv {} prints a variable that may hold a secret",
                        n.text
                    )
                })
        }
        "export" | "declare" | "typeset" | "local" | "readonly" => {
            let only_functions = args
                .iter()
                .any(|w| w.text.starts_with('-') && (w.text.contains('f') || w.text.contains('F')));
            let operands = args.iter().filter(|w| !w.text.starts_with(['-', '+']));
            let prints = args
                .iter()
                .any(|w| w.text.starts_with('-') && w.text.contains('p'))
                || operands.count() == 0;
            (prints && !only_functions).then(|| {
                format!(
                    "{} prints variables and their values (tokens included)",
                    cmd.name()
                )
            })
        }
        "set" if args.is_empty() => {
            Some("set prints every shell variable and its value (tokens included)".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        for n in [
            "PATH",
            "GIT_DIR",
            "GIT_CONFIG_VALUE_0",
            "LD_PRELOAD",
            "RUSTC_WRAPPER",
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
            "RUSTFLAGS",
            "npm_config_script_shell",
            "NPM_CONFIG_PREFIX",
            "PYTEST_ADDOPTS",
            "SOME_TOOL_OPTIONS",
            "FOO_CMD",
            "MY_WRAPPER",
            "BUILD_SHELL",
            "APP_CONFIG",
            "TOOL_HOME",
            "GITOPTS",
            "XDG_CONFIG_HOME",
            "HOME",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "TAR_OPTIONS",
            "MAKEFILES",
            "PERL5OPT",
            "https_proxy",
        ] {
            assert!(dangerous_env(n), "{n}");
        }
        assert!(harmless_value("GIT_PAGER", "cat"));
        assert!(harmless_value("PAGER", ""));
        assert!(!harmless_value("PAGER", "sh -c id"));
        assert!(!harmless_value("EDITOR", "cat"));
        for n in [
            "RUST_LOG",
            "RUST_BACKTRACE",
            "CI",
            "NODE_ENV",
            "LC_ALL",
            "f",
            "x",
            "file",
            "MSG",
            "COUNT",
        ] {
            assert!(!dangerous_env(n), "{n}");
        }
    }
}
