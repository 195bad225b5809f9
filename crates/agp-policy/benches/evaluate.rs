//! Policy evaluation latency (shell parsing included) with a generated 500-rule policy.
//! `agp bench policy` reports p50/p99; this gives criterion's statistics for the same calls.
// Test and bench code panics on a broken fixture by design: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agp_contracts::{EvalContext, PolicyEngine, ToolCall};
use agp_policy::bench_support::synthetic_policy;
use agp_policy::Policy;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;

/// The same policy `agp bench policy` measures by default: agp's default policy topped up with
/// generated rules.
fn generated_policy(rules: usize) -> String {
    synthetic_policy(include_str!("../../agp/assets/policy.toml"), rules)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    std::fs::write(project.join("src/main.rs"), "x").expect("write");
    let policy = Policy::from_str(&generated_policy(500), "generated").expect("policy");
    let ctx = EvalContext {
        project_root: project.clone(),
        home: dir.path().join("home"),
        agp_home: dir.path().join("home/.agp"),
    };
    let calls = [
        ("Bash", json!({"command": "git status"})),
        (
            "Bash",
            json!({"command": "cargo test --workspace 2>&1 | tail -n 50"}),
        ),
        ("Bash", json!({"command": "ls -la src && cat README.md"})),
        ("Bash", json!({"command": "npm run build > build.log"})),
        (
            "Bash",
            json!({"command": "curl -s https://api.github.com/repos/a/b | jq .name"}),
        ),
        ("Read", json!({"file_path": "src/main.rs"})),
    ];
    let mut group = c.benchmark_group("evaluate_500_rules");
    for (tool, input) in calls {
        let call = ToolCall {
            id: "b".into(),
            session: "b".into(),
            tool_use_id: None,
            tool: tool.into(),
            input: input.clone(),
            cwd: project.clone(),
        };
        let label = input
            .get("command")
            .or(input.get("file_path"))
            .and_then(|v| v.as_str())
            .unwrap_or(tool)
            .to_string();
        group.bench_with_input(BenchmarkId::from_parameter(label), &call, |b, call| {
            b.iter(|| policy.evaluate(call, &ctx));
        });
    }
    group.finish();
    let mut parse = c.benchmark_group("shell_parse");
    parse.bench_function("cargo test pipeline", |b| {
        b.iter(|| agp_policy::shell::analyze("cargo test --workspace 2>&1 | tail -n 50"));
    });
    parse.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
