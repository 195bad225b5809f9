//! The kill switch under every provider: `interrupt` while a command runs kills it (its
//! background children too), and every later command of the session is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{ExecRequest, SandboxError};

use super::support::provider::{each_provider, sh_in, Sandbox, Which};

each_provider!(an_interrupt_kills_the_running_command_and_refuses_later_ones);

fn an_interrupt_kills_the_running_command_and_refuses_later_ones(p: Which) {
    let Some(sb) = Sandbox::new(p) else { return };
    let sb = Arc::new(sb);
    let running = {
        let sb = sb.clone();
        std::thread::spawn(move || {
            let request = ExecRequest {
                timeout: Duration::from_secs(600),
                ..sh_in(
                    &sb.repo,
                    "sleep 3017 & touch started; sleep 300; touch finished",
                )
            };
            sb.exec(&request)
        })
    };
    let start = Instant::now();
    while !sb.repo.join("started").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The background process is seen on the host (not under gVisor, whose processes live in
    // its own kernel), so its absence later means something.
    if !p.is_runsc() {
        while host_process_running("sleep\x003017").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no background process"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(sb.interrupt().unwrap(), "a running command was not noticed");
    // Returns long before the command's 300 s (the thread would hang otherwise).
    match running.join().unwrap() {
        Ok(out) => assert!(out.exit_code.is_none() && !out.timed_out, "{out:?}"),
        // The container provider reports its killed container as gone.
        Err(SandboxError::Refused(why)) => assert!(why.contains("stopped"), "{why}"),
        Err(e) => panic!("{e}"),
    }
    assert!(!sb.repo.join("finished").exists());
    let later = sb.exec(&sh_in(&sb.repo, "touch later"));
    assert!(
        matches!(&later, Err(SandboxError::Refused(why)) if why.contains("stopped")),
        "{later:?}"
    );
    assert!(!sb.repo.join("later").exists());
    // Nothing the command started in the background outlives it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(pid) = host_process_running("sleep\x003017") {
        assert!(Instant::now() < deadline, "{pid} outlived the interrupt");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process on the host whose command line starts with `cmdline` (NUL-separated).
fn host_process_running(cmdline: &str) -> Option<String> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .find(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.starts_with(cmdline.as_bytes()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}
