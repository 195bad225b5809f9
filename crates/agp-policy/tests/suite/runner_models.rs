//! Build/test runners, git and interpreters under a permissive policy (the kind issue 9's
//! review used: allow rules for the programs themselves) and under the default policy: the
//! everyday invocations stay allowed, and the option-level ways to run code, read secrets,
//! write outside the project or point tooling elsewhere never are.

use super::support as common;

use agp_contracts::Decision;
use agp_policy::Policy;

const PERMISSIVE: &str = r#"
version = 1
default = "require"

[[rule]]
id = "read"
effect = "allow"
match = ["Read(/**)", "Edit(/**)"]

[[rule]]
id = "programs"
effect = "allow"
match = [
  "Bash(make *)", "Bash(gmake *)", "Bash(git *)", "Bash(cargo *)", "Bash(npm *)",
  "Bash(pnpm *)", "Bash(yarn *)", "Bash(npx *)", "Bash(pytest *)", "Bash(python *)",
  "Bash(python3 *)", "Bash(perl *)", "Bash(ruby *)", "Bash(node *)",
]
"#;

/// Commands that must stay allowed by both policies.
const EVERYDAY: &[&str] = &[
    "git status",
    "git status --short",
    "git diff",
    "git diff HEAD~1 -- src/",
    "git log --oneline -n 10",
    "git log -5 --stat",
    "git show HEAD",
    "git add -A",
    "git add src/main.rs",
    "git commit -m 'fix: x'",
    "cargo build",
    "cargo build --release",
    "cargo test --workspace",
    "cargo test -p agp-policy -- --nocapture",
    "cargo clippy --all-targets -- -D warnings",
    "cargo fmt --all",
    "cargo fmt --all -- --check",
    "npm test",
    "npm run build",
    "npm run lint -- --fix",
    "pnpm test",
    "yarn test",
    "pytest",
    "pytest -q",
    "pytest -x -k 'not slow' src",
    "python3 -m pytest -q src",
    "make",
    "make test",
    "make -j4 all",
    "make -C src",
    r"git stash show -p stash@{0}",
    r"git diff HEAD@{1}",
    r"git log @{u}..",
    r"git diff --stat main...HEAD",
    r"git log --pretty=format:'%h %s' --graph",
    r"git status -uno",
    r"git branch -vv",
    r"git log -S foo --oneline",
    r"git diff --name-only HEAD~3",
    r"git show HEAD:src/main.rs",
    r#"git log --since="2 weeks ago" --author=me"#,
    r"git blame -w -C -C src/main.rs",
    r"git diff --word-diff=color",
    r"git log -p -- src/",
    r"git checkout -b x origin/main",
    r"git rev-parse --short HEAD",
    r"git ls-files --others --exclude-standard",
    r"git commit --no-verify -m x",
    r"git tag -l",
    r"git merge --abort",
    r"cargo check --all-targets --all-features",
    r"cargo doc --no-deps",
    r"cargo run --bin x -- --help",
    r"cargo test --doc",
    r"cargo build -vv",
    r"npm test -- --coverage",
    r"npm run test:unit",
    r"pnpm run build --filter web",
    r"yarn build",
    r"pytest -n auto --timeout=60",
    r"pytest --cov=src --cov-report=term-missing",
    r"python -m pytest -x -vv tests/test_a.py::test_b",
    r"make -k test",
    r"make V=1",
    r"make -C src test",
];

/// Commands neither policy may allow.
const HOSTILE: &[&str] = &[
    // make
    "make --eval='all:;id'",
    "make -E 'x:;id' x",
    "make -f /dev/stdin",
    "make -f - all",
    "make -f /tmp/evil.mk",
    "make -C /tmp/other",
    "make SHELL=/tmp/sh",
    "make MAKEFILES=/tmp/evil.mk",
    "make CC='sh -c id'",
    "make .SHELLFLAGS='-c id;'",
    "make --ev=x",
    // git
    "git -c core.pager='sh -c id' log",
    "git -c core.fsmonitor=id status",
    "git -c alias.x='!id' x",
    "git --config-env=core.pager=X log",
    "git --git-dir=/tmp/evil status",
    "git --exec-path=/tmp/x status",
    "git -C /tmp/other status",
    "git log --ext-diff",
    "git log -p --ext-d",
    "git diff --textconv",
    "git diff --no-index /dev/null ~/.ssh/id_rsa",
    "git diff /dev/null ~/.aws/credentials",
    "git diff --output=~/.bashrc",
    "git log --output ~/.bashrc",
    "git grep -O id x",
    "git grep --no-index key ~/.ssh",
    "git rebase -x id main",
    "git bisect run ./x.sh",
    "git difftool --extcmd=id",
    "git fetch --upload-pack='sh -c id' origin",
    "git merge -s evil main",
    "git commit -F ~/.ssh/id_rsa",
    "git archive --add-file=~/.ssh/id_rsa HEAD",
    "git config core.hooksPath /tmp/h",
    "git config --global alias.x '!id'",
    "git worktree add /tmp/wt",
    "git frobnicate",
    "git log --frobnicate",
    // cargo
    "cargo test --config 'target.x86_64-unknown-linux-gnu.runner=\"sh -c id\"'",
    "cargo test --config build.rustc-wrapper=/tmp/w",
    "cargo --config /tmp/c.toml build",
    "cargo test --manifest-path /tmp/other/Cargo.toml",
    "cargo -C /tmp/other test",
    "cargo -Z unstable-options test",
    "cargo test -- --logfile ~/.bashrc",
    "cargo clippy -- -C linker=/tmp/ld",
    "cargo build --target-dir ~/.cache/x",
    "cargo frob",
    // npm family
    "npm test --script-shell=/tmp/sh",
    "npm run build --node-options=--require=/tmp/x.js",
    "npm test --userconfig /tmp/npmrc",
    "npm test --prefix /tmp/other",
    "npm exec -- cowsay",
    "npm config set script-shell /tmp/sh",
    "pnpm --config.script-shell=/tmp/sh test",
    "pnpm -C /tmp/other test",
    "yarn --cwd /tmp/other test",
    "npx cowsay hi",
    // python, pytest
    "pytest -p evil_plugin",
    "pytest -c /tmp/other/pytest.ini",
    "pytest --rootdir=/tmp/other",
    "pytest /tmp/other/test_x.py",
    "pytest -o addopts='-p evil'",
    "pytest --basetemp=~",
    "pytest --junitxml=~/.bashrc",
    "python3 -m pytest -p evil",
    "python3 -m pytest -c /tmp/x.ini",
    "python3 -c 'import os'",
    "python3 -Bc 'import os'",
    "python3 -m http.server",
    "python3 -m timeit 'import os'",
    "python3 /tmp/evil.py",
    "python3 -X presite=evil x.py",
    "python3 -m json.tool ~/.ssh/id_rsa",
    "python3",
    // interpreters
    "perl -e 'system(\"id\")'",
    "perl -lne 'print' x",
    "perl -Mstrict x.pl",
    "perl -pi -e 's/x/y/' ~/.bashrc",
    "perl -i.bak x.pl ~/.bashrc",
    "perl /tmp/evil.pl",
    "ruby -e 'puts 1'",
    "ruby -rjson x.rb",
    "ruby -C /tmp x.rb",
    "node -e 'require(\"child_process\")'",
    "node -pe 1",
    "node -r /tmp/hook.js index.js",
    "node --import=/tmp/x.mjs index.js",
    "node --env-file=.env index.js",
    "node --inspect=0.0.0.0:9229 index.js",
    "node /tmp/evil.js",
    "node",
];

/// Lines naming each command of `commands` that either policy judges other than `ok` wants.
fn misjudged(commands: &[&str], ok: impl Fn(Decision) -> bool) -> Vec<String> {
    let world = common::World::new();
    let mut failures = Vec::new();
    for (name, text) in [
        ("default", common::DEFAULT_POLICY),
        ("permissive", PERMISSIVE),
    ] {
        let policy = Policy::from_str(text, "policy.toml").expect("policy loads");
        for cmd in commands {
            let v = world.bash(&policy, cmd);
            if !ok(v.decision) {
                failures.push(format!("{name}: `{cmd}` → {}", common::outcome(&v)));
            }
        }
    }
    failures
}

#[test]
fn everyday_runs_stay_allowed() {
    let failures = misjudged(EVERYDAY, |d| d == Decision::Allow);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn option_level_attacks_are_never_allowed() {
    let failures = misjudged(HOSTILE, |d| d != Decision::Allow);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reasons_name_what_was_found() {
    let world = common::World::new();
    let policy = Policy::from_str(PERMISSIVE, "policy.toml").expect("policy loads");
    for (cmd, needle) in [
        ("git log --frobnicate", "--frobnicate"),
        (
            "cargo test --manifest-path /tmp/o/Cargo.toml",
            "outside the project",
        ),
        ("make --eval=x", "--eval"),
        ("pytest -p evil", "plugin"),
        ("python3 -c 'x'", "inline code"),
    ] {
        let v = world.bash(&policy, cmd);
        let (d, why) = (v.decision, v.reason);
        assert_eq!(d, Decision::Require, "`{cmd}`: {why}");
        assert!(
            why.contains(needle),
            "`{cmd}`: reason `{why}` lacks `{needle}`"
        );
    }
}

#[test]
fn tooling_pointed_inside_the_project_is_allowed_by_a_rule_for_the_program() {
    let world = common::World::new();
    let policy = Policy::from_str(PERMISSIVE, "policy.toml").expect("policy loads");
    for cmd in [
        "git -C src status",
        "cargo test --manifest-path Cargo.toml",
        "make -f Makefile -C src",
        "pytest src/main.rs",
        "python3 src/main.rs",
        "node src/main.rs",
        "perl -w src/main.rs",
    ] {
        let v = world.bash(&policy, cmd);
        assert_eq!(v.decision, Decision::Allow, "`{cmd}`: {}", v.reason);
    }
}
