//! The host's environment does not reach the sandbox. Alone in its test binary because it sets
//! a variable in the test process (no other thread may read the environment meanwhile).

mod common;

use common::*;

#[test]
fn host_environment_does_not_leak_into_the_sandbox() {
    let secret = format!("agp-secret-{}", token());
    // SAFETY (edition 2021: safe fn): the only test in this binary, set before any other
    // thread starts.
    std::env::set_var("AGP_TEST_LEAK_SECRET", &secret);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &secret);
    std::env::set_var("ANTHROPIC_API_KEY", &secret);
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
