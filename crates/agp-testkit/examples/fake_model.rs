//! Runs a fake model by hand, for trying a real client against it:
//! `cargo run -p agp-testkit --example fake_model -- anthropic|openai SECONDS 'shell:CMD' 'tool:NAME:JSON' 'text:T'...`
//! Prints the base URL, serves for SECONDS, then prints every recorded request body.
// Test and bench code panics on a broken fixture by design: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agp_testkit::{Api, FakeModel, Turn};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let api = match args.first().map(String::as_str) {
        Some("anthropic") => Api::Anthropic,
        Some("openai") => Api::OpenAiResponses,
        _ => {
            eprintln!("usage: fake_model anthropic|openai SECONDS TURN...");
            std::process::exit(2);
        }
    };
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let turns = args[2..]
        .iter()
        .map(|t| match t.split_once(':') {
            Some(("shell", c)) => Turn::Shell(c.into()),
            Some(("text", c)) => Turn::Text(c.into()),
            Some(("stdin", c)) => Turn::WriteStdin(c.replace("\\n", "\n")),
            Some(("tool", rest)) => {
                let (name, input) = rest.split_once(':').expect("tool:NAME:JSON");
                Turn::Tool {
                    name: name.into(),
                    input: serde_json::from_str(input).expect("tool input is JSON"),
                }
            }
            _ => panic!("turn must be shell:CMD, tool:NAME:JSON or text:TEXT"),
        })
        .collect();
    let model = FakeModel::start(api, turns).expect("start");
    println!("{}", model.base_url());
    std::thread::sleep(std::time::Duration::from_secs(secs));
    for r in model.requests() {
        println!("{} {} {}", r.path, r.scripted, r.body);
    }
}
