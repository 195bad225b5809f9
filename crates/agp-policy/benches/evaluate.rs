//! Policy evaluation latency (shell parsing included) with a generated 500-rule policy.
//! `agp bench policy` reports p50/p99; this gives criterion's statistics for the same calls.

use agp_contracts::{EvalContext, PolicyEngine, ToolCall};
use agp_policy::Policy;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;

fn generated_policy(rules: usize) -> String {
    let mut text = include_str!("../../agp/assets/policy.toml").to_string();
    let base = Policy::from_str(&text, "default").map_or(0, |p| p.rules().len());
    for i in 0..rules.saturating_sub(base) {
        let effect = ["allow", "require", "deny"][i % 3];
        let matcher = match i % 10 {
            0..=5 => format!("Bash(tool{i} *)"),
            6 => format!("Read(/generated/dir{i}/**)"),
            7 => format!("Edit(/generated/out{i}/**)"),
            8 => format!("WebFetch(domain:host{i}.example)"),
            _ => format!("Bash(* --flag{i}*)"),
        };
        text.push_str(&format!(
            "\n[[rule]]\nid = \"gen-{i}\"\neffect = \"{effect}\"\nmatch = [\"{matcher}\"]\n"
        ));
    }
    text
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
            b.iter(|| policy.evaluate(call, &ctx))
        });
    }
    group.finish();
    let mut parse = c.benchmark_group("shell_parse");
    parse.bench_function("cargo test pipeline", |b| {
        b.iter(|| agp_policy::shell::analyze("cargo test --workspace 2>&1 | tail -n 50"))
    });
    parse.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
