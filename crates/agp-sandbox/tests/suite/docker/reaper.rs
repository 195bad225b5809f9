//! The check that a command left nothing running, as a hostile command sees it: the watcher
//! (gVisor's sessions) it would silence or fool, and a process that hides from a `/proc`
//! scan as a zombie while its threads run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agp_contracts::sandbox::{SandboxProvider, SandboxSpec};
use agp_sandbox::docker::Runtime;

use super::{run, setup_on, text, Kind, ENGINES, UID};

#[test]
fn the_watcher_cannot_be_signalled_traced_or_spoken_to_by_a_command() {
    for (kind, runtime) in ENGINES {
        let Some(t) = setup_on(kind, runtime) else {
            return;
        };
        let what = format!("{kind:?} {}", runtime.name());
        let s = t
            .provider
            .spawn(&SandboxSpec::new("watcher", &t.repo))
            .unwrap();
        // One of the two checks that spare a second exec, whichever this engine allows; on
        // Docker: the host cgroup under runc, the watcher under gVisor.
        assert!(s.host_checked() != s.watched(), "{what}");
        if kind == Kind::Docker {
            assert_eq!(s.watched(), runtime == Runtime::Runsc, "{what}");
        }
        if !s.watched() {
            t.provider.teardown(s).unwrap();
            continue;
        }
        let out = run(
            &t.provider,
            &s,
            "w=; for d in /proc/[0-9]*; do \
               case \"$(tr '\\0' '\\n' < $d/cmdline | tail -n 1)\" in \
                 agp-watch) w=${d#/proc/} ;; \
               esac; \
             done; echo \"watcher $w\"; \
             kill -STOP $w 2>/dev/null && echo stopped; kill -9 $w 2>/dev/null && echo killed; \
             (echo x > /proc/$w/fd/0) 2>/dev/null && echo wrote; \
             (cat /proc/$w/fd/1 > /dev/null) 2>/dev/null && echo read; \
             (exec 3</proc/$w/mem) 2>/dev/null && echo traced; \
             (sleep 2; touch late) </dev/null >/dev/null 2>&1 & true",
        );
        let seen = text(&out.stdout);
        assert!(
            seen.starts_with("watcher ") && !seen.starts_with("watcher \n"),
            "{what}: {seen}"
        );
        assert_eq!(seen.lines().count(), 1, "{what}: {seen}");
        std::thread::sleep(Duration::from_secs(3));
        assert!(!t.repo.join("late").exists(), "{what}: a leftover ran on");
        // The watcher still answers: it was neither killed nor stopped.
        assert_eq!(run(&t.provider, &s, "true").exit_code, Some(0));
        assert!(s.watched(), "{what}");
        t.provider.teardown(s).unwrap();
    }
}

/// A static program that forks, and in the child starts a thread that creates `late-thread`
/// after 5 s and ends its main thread with `pthread_exit`: the process then shows as a
/// zombie in `/proc/PID/stat` while its thread runs.
fn zombie_leader(dir: &Path) -> Option<std::path::PathBuf> {
    let src = dir.join("zl.c");
    std::fs::write(
        &src,
        "#include <pthread.h>\n#include <unistd.h>\n#include <fcntl.h>\n\
         static void *late(void *a) { (void)a; sleep(5); \
           int fd = open(\"late-thread\", O_CREAT | O_WRONLY, 0644); \
           if (fd >= 0) close(fd); return 0; }\n\
         int main(void) { pthread_t t; if (fork() != 0) return 0; setsid(); \
           pthread_create(&t, 0, late, 0); pthread_exit(0); }\n",
    )
    .unwrap();
    let bin = dir.join("zl");
    let built = Command::new("cc")
        .args(["-static", "-pthread", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output();
    match built {
        Ok(out) if out.status.success() => Some(bin),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no static C build for the zombie-leader test: {other:?}"
            );
            eprintln!("SKIPPED (not CI): cannot build a static C program: {other:?}");
            None
        }
    }
}

#[test]
fn a_process_whose_threads_outlive_its_main_thread_does_not_outlive_the_command() {
    for (kind, runtime) in ENGINES {
        let Some(t) = setup_on(kind, runtime) else {
            return;
        };
        let Some(bin) = zombie_leader(t.dir.path()) else {
            return;
        };
        let what = format!("{kind:?} {}", runtime.name());
        let dest = t.repo.join("zl");
        std::fs::copy(&bin, &dest).unwrap();
        std::os::unix::fs::chown(&dest, Some(UID), Some(UID)).unwrap();
        let s = t
            .provider
            .spawn(&SandboxSpec::new("zombie-leader", &t.repo))
            .unwrap();
        let out = run(
            &t.provider,
            &s,
            "./zl && sleep 1 && for d in /proc/[0-9]*; do \
               read -r st < $d/stat; case $st in *'(zl) Z'*) echo zombie-leader ;; esac; \
             done",
        );
        assert_eq!(text(&out.stdout), "zombie-leader\n", "{what}: {out:?}");
        std::thread::sleep(Duration::from_secs(6));
        assert!(
            !t.repo.join("late-thread").exists(),
            "{what}: the thread of a zombie-looking process ran on"
        );
        t.provider.teardown(s).unwrap();
    }
}
