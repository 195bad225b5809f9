//! The host's environment does not reach the sandbox. The secrets are put in the environment of
//! a child run of this test binary, from its start: setting them here with `set_var` would race
//! the other tests of the suite, which run on other threads of this process.

use super::support as common;

use common::*;

const TEST: &str = "suite::env_leak::host_environment_does_not_leak_into_the_sandbox";

#[test]
fn host_environment_does_not_leak_into_the_sandbox() {
    let Ok(secret) = std::env::var("AGP_TEST_LEAK_SECRET") else {
        let secret = format!("agp-secret-{}", token());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env("AGP_TEST_LEAK_SECRET", &secret)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("ANTHROPIC_API_KEY", &secret)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child run failed: {report}");
        // Guard against a filter that matched nothing: the child must have run the check.
        assert!(
            report.contains("1 passed"),
            "the check did not run: {report}"
        );
        return;
    };
    let fx = Fixture::with_spec(|spec| spec.env.push(("EXPLICIT_VAR".into(), "given".into())));
    let out = fx.sh("env; cat /proc/self/environ; cat /proc/1/environ; ps -eo args 2>/dev/null");
    let s = stdout(&out);
    assert!(!s.contains(&secret), "host secret leaked: {s}");
    assert!(s.contains("EXPLICIT_VAR=given"), "{s}");
    assert!(s.contains("HOME=/home/agent"), "{s}");
    let names: Vec<&str> = s
        .lines()
        .take_while(|l| l.contains('='))
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "SHELL",
                "LANG",
                "LANGUAGE",
                "LC_ALL",
                "LC_CTYPE",
                "LC_MESSAGES",
                "LC_COLLATE",
                "LC_NUMERIC",
                "LC_TIME",
                "TERM",
                "COLORTERM",
                "TZ",
                "EXPLICIT_VAR",
                "PWD",
                "SHLVL",
                "_",
            ]
            .contains(name),
            "unexpected variable {name} inside: {s}"
        );
    }
}
