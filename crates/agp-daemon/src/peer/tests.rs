//! Placement over process chains as the harness builds them (and as a hostile tool would).
//! The chains are what /proc shows; `chain()` itself is tested against real processes in
//! `proc.rs` and end to end in the agp binary's tests.

use super::*;

const AGP: FileId = FileId { dev: 1, ino: 10 };
const CLAUDE: FileId = FileId { dev: 1, ino: 20 };
const SH: FileId = FileId { dev: 1, ino: 30 };
const HOOK: &str = "/run/agp/bin/agp hook --harness claude-code || { echo 'agp: x' >&2; exit 2; }";

fn guard() -> PeerGuard {
    PeerGuard {
        agp: AGP,
        harness: CLAUDE,
        hook_commands: vec![HOOK.into()],
    }
}

/// Builds a chain from (pid, exe, argv) nearest first; parents are the next entry.
fn chain(procs: &[(u32, FileId, &[&str])]) -> Vec<Proc> {
    procs
        .iter()
        .enumerate()
        .map(|(i, (pid, exe, argv))| Proc {
            pid: *pid,
            ppid: procs.get(i + 1).map_or(1, |p| p.0),
            start: 1000 - i as u64,
            exe: Some(*exe),
            argv: argv.iter().map(ToString::to_string).collect(),
        })
        .collect()
}

const WRAP_SHELL: &[&str] = &["/bin/sh", "-c", "'/run/agp/bin/agp' --tool-shell '...'"];

fn genuine(harness_pid: u32) -> Vec<Proc> {
    chain(&[
        (
            50,
            AGP,
            &["/run/agp/bin/agp", "hook", "--harness", "claude-code"],
        ),
        (49, SH, &["/bin/bash", "-c", HOOK]),
        (48, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
        (47, SH, WRAP_SHELL),
        (harness_pid, CLAUDE, &["claude", "-p"]),
        (2, AGP, &["/run/agp/bin/agp", "egress-bridge"]),
    ])
}

/// What the agent's Bash tool runs under: the wrapper with Claude Code's command snippet.
fn tool_chain(below: &[(u32, FileId, &[&str])]) -> Vec<Proc> {
    let mut all: Vec<(u32, FileId, &[&str])> = below.to_vec();
    all.extend_from_slice(&[
        (60, SH, &["bash", "-c", "source snapshot && eval 'x'"]),
        (
            59,
            AGP,
            &[
                "/run/agp/bin/agp",
                TOOL_SHELL_FLAG,
                "source snapshot && eval 'x'",
            ],
        ),
        (58, SH, WRAP_SHELL),
        (7, CLAUDE, &["claude", "-p"]),
    ]);
    chain(&all)
}

#[test]
fn the_harness_hook_is_placed_and_pins_its_harness() {
    let check = PeerCheck::new(guard());
    assert_eq!(
        guard().place(&genuine(7)),
        Placement::Hook { harness: (7, 996) }
    );
    assert_eq!(check.admit(&genuine(7)), Ok(REPORTED_BY_HARNESS));
    assert_eq!(check.admit(&genuine(7)), Ok(REPORTED_BY_HARNESS));
    // A second harness (another claude the agent started) is not the session's.
    let err = check.admit(&genuine(8)).unwrap_err();
    assert!(err.contains("session's harness is process 7"), "{err}");
}

#[test]
fn anything_below_a_tool_wrapper_is_refused_even_an_exact_hook_lookalike() {
    let check = PeerCheck::new(guard());
    // `agp hook` straight from the agent's Bash.
    let direct = tool_chain(&[(70, AGP, &["/run/agp/bin/agp", "hook"])]);
    // The agent runs agp's own wrapper with the exact hook command beneath its Bash.
    let nested = tool_chain(&[
        (72, AGP, &["/run/agp/bin/agp", "hook"]),
        (71, SH, &["/bin/bash", "-c", HOOK]),
        (70, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
    ]);
    // A script of its own (python, curl…) speaking the protocol.
    let script = tool_chain(&[(70, SH, &["python3", "forge.py"])]);
    for c in [direct, nested, script] {
        assert!(matches!(guard().place(&c), Placement::Tool(_)), "{c:?}");
        let err = check.admit(&c).unwrap_err();
        assert!(err.contains("agent's tools started"), "{err}");
    }
    // Refused before and after the harness is pinned.
    assert_eq!(check.admit(&genuine(7)), Ok(REPORTED_BY_HARNESS));
    let direct = tool_chain(&[(70, AGP, &["/run/agp/bin/agp", "hook"])]);
    assert!(check.admit(&direct).is_err());
}

#[test]
fn an_orphan_that_left_the_tool_wrapper_is_refused_once_hooks_are_known_wrapped() {
    // Double-forked out of its Bash: re-parented to the sandbox's init, it builds the whole
    // hook shape itself, even a harness-looking parent that is not the harness binary.
    let orphan = chain(&[
        (90, AGP, &["/run/agp/bin/agp", "hook"]),
        (89, SH, &["/bin/bash", "-c", HOOK]),
        (88, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
        (87, SH, &["node", "fake-claude.js"]),
        (1, SH, &["bwrap"]),
    ]);
    assert!(matches!(guard().place(&orphan), Placement::Unknown(_)));
    let check = PeerCheck::new(guard());
    assert_eq!(check.admit(&genuine(7)), Ok(REPORTED_BY_HARNESS));
    let err = check.admit(&orphan).unwrap_err();
    assert!(err.contains("does not"), "{err}");
    // A bare connection re-parented to init, same.
    let bare = chain(&[(91, SH, &["python3"]), (1, SH, &["bwrap"])]);
    assert!(check.admit(&bare).is_err());
    // The orphan runs the real harness binary (against a model of its own) to start hooks.
    let second = chain(&[
        (90, AGP, &["/run/agp/bin/agp", "hook"]),
        (89, SH, &["/bin/bash", "-c", HOOK]),
        (88, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
        (87, CLAUDE, &["claude", "-p"]),
        (1, SH, &["bwrap"]),
    ]);
    let err = check.admit(&second).unwrap_err();
    assert!(err.contains("session's harness is process 7"), "{err}");
}

#[test]
fn before_any_verified_hook_the_unplaceable_is_journaled_as_the_agent() {
    // A harness that does not wrap its hooks (Codex, an older Claude Code): as before.
    let check = PeerCheck::new(guard());
    let unwrapped = chain(&[
        (50, AGP, &["/run/agp/bin/agp", "hook"]),
        (49, SH, &["/bin/sh", "-c", HOOK]),
        (7, CLAUDE, &["claude"]),
    ]);
    assert_eq!(check.admit(&unwrapped), Ok(REPORTED_BY_AGENT));
    assert_eq!(check.admit(&[]), Ok(REPORTED_BY_AGENT));
}

#[test]
fn a_hook_shape_reached_through_another_program_is_not_the_harness_hook() {
    // git (run by the harness itself, unwrapped) runs a repository-configured program that
    // starts the hook wrapper: two processes, neither the harness's wrapping shell.
    let via_git = chain(&[
        (50, AGP, &["/run/agp/bin/agp", "hook"]),
        (49, SH, &["/bin/bash", "-c", HOOK]),
        (48, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
        (47, SH, &["git", "status"]),
        (7, CLAUDE, &["claude"]),
    ]);
    assert!(matches!(guard().place(&via_git), Placement::Unknown(_)));
    // The harness's shell snapshot sourcing an agent-written ~/.bashrc.
    let via_snapshot = chain(&[
        (50, AGP, &["/run/agp/bin/agp", "hook"]),
        (49, SH, &["/bin/bash", "-c", HOOK]),
        (48, AGP, &["/run/agp/bin/agp", TOOL_SHELL_FLAG, HOOK]),
        (47, SH, &["/bin/bash", "-c", "-l", "snapshot"]),
        (7, CLAUDE, &["claude"]),
    ]);
    assert!(matches!(
        guard().place(&via_snapshot),
        Placement::Unknown(_)
    ));
    // A peer that is not agp under a genuine hook wrapper.
    let mut not_agp = genuine(7);
    not_agp[0].exe = Some(SH);
    assert!(matches!(guard().place(&not_agp), Placement::Unknown(_)));
}
