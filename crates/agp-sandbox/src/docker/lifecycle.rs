//! A session container's life at the engine: create and start it (fenced, see `fence`), start
//! it again after a timeout, check that what the engine made is what was asked (Docker's and
//! Podman's reports read in their own terms), note the processes the per-call reaper must
//! spare and how a command is shown to have left nothing, remove it, and remove what a
//! crashed agp left behind.

use serde_json::json;

use agp_contracts::sandbox::SandboxError;

use super::{
    api, cgroup, engine_kind, libpod, oom, reap, watch, DockerSession, Engine, EngineKind, Runtime,
    MANAGED_LABEL, OWNER_LABEL, SESSION_LABEL,
};

/// How many times a session start is tried when the git metadata changed during it.
const FENCED_STARTS: u32 = 3;

/// Create and start the session's container. Fenced (see `fence`): the engine mounts the git
/// metadata by path, and another session's command may swap one meanwhile; a start that saw
/// a change is undone.
pub(super) fn create_and_start(
    engine: &Engine,
    session: &mut DockerSession,
) -> Result<(), SandboxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = session.fence.look()?;
        session.container = create(engine, session)?;
        // From here on, dropping the session removes the container.
        session.removed = false;
        start_and_verify(engine, session)?;
        match session.fence.unchanged_since(&before) {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= FENCED_STARTS => return Err(e),
            Err(_) => {
                remove(engine, &session.container)?;
                session.removed = true;
            }
        }
    }
}

/// Create the session's container; its id.
fn create(engine: &Engine, session: &DockerSession) -> Result<String, SandboxError> {
    // Podman's compatible create rejects the address-space ulimit; its own API takes it.
    let created = match session.engine_kind {
        EngineKind::Docker => engine.call(
            "POST",
            "/containers/create",
            Some(&session.plan().create_body()),
        )?,
        EngineKind::Podman => engine.call(
            "POST",
            "/libpod/containers/create",
            Some(
                &session
                    .plan()
                    .libpod_body(libpod::Inherited::of_engine(engine.socket())),
            ),
        )?,
    };
    created.refuse_unless_ok(|| {
        "container engine could not create the session container".to_owned()
    })?;
    created.string_field("Id", "container id")
}

/// After a timeout, or when what a command left cannot be killed: everything in the
/// container is killed, then the container is started again; the repository persists,
/// `/tmp` and HOME start empty.
pub(super) fn restart(engine: &Engine, session: &DockerSession) -> Result<(), SandboxError> {
    let c = &session.container;
    let _ = engine.call("POST", &format!("/containers/{c}/kill?signal=KILL"), None)?;
    let waited = engine.call(
        "POST",
        &format!("/containers/{c}/wait?condition=not-running"),
        None,
    )?;
    waited.refuse_unless_ok(|| "container did not stop after a timeout".to_owned())?;
    // The engine mounts the binds anew: fenced as at the first start (see `fence`).
    let before = session.fence.look()?;
    start_and_verify(engine, session)?;
    if let Err(e) = session.fence.unchanged_since(&before) {
        let _ = engine.call("POST", &format!("/containers/{c}/kill?signal=KILL"), None);
        return Err(e);
    }
    Ok(())
}

/// Start the container, check it is what was asked, and note its waiting process.
fn start_and_verify(engine: &Engine, session: &DockerSession) -> Result<(), SandboxError> {
    start_only(engine, session)?;
    let poisoned = || SandboxError::Refused("session state poisoned".into());
    // Under runc the waiting process is listed first (by then the init has started it), so
    // the cgroup holds exactly the container's own two processes when the probe is set up.
    let (init, host) = match session.runtime {
        Runtime::Runc => {
            let sleeper = reap::sleeper(engine, &session.container, &session.user)?;
            let init = init_pid(engine, &session.container)?;
            let host = init
                .and_then(|pid| cgroup::Probe::new(&session.container, pid))
                .map(|probe| (reap::Check::HostCgroup(probe), sleeper));
            (init, host)
        }
        Runtime::Runsc => (None, None),
    };
    let (check, spared) = if let Some(host) = host {
        host
    } else {
        let user = session.plan().init_user_spec();
        let (watcher, spared) = watch::Watcher::start(engine, &session.container, &user)?;
        (reap::Check::Watcher(watcher), spared)
    };
    let memory = init
        .zip(session.limits.session_memory_bytes)
        .and_then(|(pid, bound)| oom::MemoryWatch::new(&session.container, pid, bound));
    *session.spared.lock().map_err(|_| poisoned())? = spared;
    *session.check.lock().map_err(|_| poisoned())? = check;
    *session.memory.lock().map_err(|_| poisoned())? = memory;
    Ok(())
}

/// The host PID of the container's init as the engine reports it.
fn init_pid(engine: &Engine, container: &str) -> Result<Option<u32>, SandboxError> {
    let inspect = engine.call("GET", &format!("/containers/{container}/json"), None)?;
    if !inspect.ok() {
        return Ok(None);
    }
    Ok(inspect.json()?["State"]["Pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0))
}

fn start_only(engine: &Engine, session: &DockerSession) -> Result<(), SandboxError> {
    let c = &session.container;
    let started = engine.call("POST", &format!("/containers/{c}/start"), None)?;
    if !started.ok() && started.status != 304 {
        return Err(SandboxError::Refused(format!(
            "container engine could not start the session container: {}",
            started.message()
        )));
    }
    verify(engine, session)
}

/// The container as the engine reports it must be the container asked for.
pub(super) fn verify(engine: &Engine, session: &DockerSession) -> Result<(), SandboxError> {
    let inspect = engine.call(
        "GET",
        &format!("/containers/{}/json", session.container),
        None,
    )?;
    inspect
        .refuse_unless_ok(|| "container engine cannot inspect the session container".to_owned())?;
    let podman = match EngineKind::of(engine)? {
        EngineKind::Docker => None,
        EngineKind::Podman => Some(engine_kind::podman_facts(engine, &session.container)?),
    };
    let wrong = session.plan().verify(&inspect.json()?, podman.as_ref());
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(SandboxError::Refused(format!(
            "the container engine did not apply: {}; refusing the session",
            wrong.join(", ")
        )))
    }
}

pub(super) fn remove(engine: &Engine, container: &str) -> Result<(), SandboxError> {
    let reply = engine.call(
        "DELETE",
        &format!("/containers/{container}?force=true&v=true"),
        None,
    )?;
    if reply.ok() || reply.status == 404 {
        Ok(())
    } else {
        Err(SandboxError::Refused(format!(
            "container engine could not remove container {container}: {}",
            reply.message()
        )))
    }
}

/// Remove every agp-managed container of `owner` whose session `is_live` does not claim
/// (crash recovery): the ids removed. Containers without agp's label, or of another owner,
/// are never touched.
pub fn remove_orphans(
    engine: &Engine,
    owner: &str,
    is_live: impl Fn(&str) -> bool,
) -> Result<Vec<String>, SandboxError> {
    let filters =
        json!({"label": [format!("{MANAGED_LABEL}=1"), format!("{OWNER_LABEL}={owner}")]})
            .to_string();
    let reply = engine.call(
        "GET",
        &format!("/containers/json?all=true&filters={}", api::query(&filters)),
        None,
    )?;
    reply.refuse_unless_ok(|| "container engine cannot list containers".to_owned())?;
    let mut removed = Vec::new();
    for c in reply
        .json()?
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let session = c["Labels"][SESSION_LABEL].as_str().unwrap_or_default();
        let mine = c["Labels"][MANAGED_LABEL] == "1" && c["Labels"][OWNER_LABEL] == owner;
        if !mine || is_live(session) {
            continue;
        }
        if let Some(id) = c["Id"].as_str() {
            remove(engine, id)?;
            removed.push(id.to_string());
        }
    }
    Ok(removed)
}
