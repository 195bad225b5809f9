//! `agp sandbox image build`: the container provider's image, built locally (no registry).

use std::path::PathBuf;

use agp_sandbox::docker::{image, Engine};
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};

use crate::app::config::Config;
use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Images for `[sandbox] provider = "docker"`.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Relay a command created in a session container (run by `agp run`, not by hand).
    #[command(hide = true)]
    Attach(crate::cmd::sandbox_attach::AttachArgs),
    /// Connect to each Unix socket and say which cannot be reached (run inside the session
    /// container by `agp run`, before the agent starts).
    #[command(hide = true)]
    Reach {
        #[arg(required = true, value_name = "SOCKET")]
        sockets: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a root filesystem into the container engine and print the pinned reference for
    /// config.toml. By default a minimal root made of the host's static busybox
    /// (`apt-get install busybox-static`) with a non-root account. For `agp run` of Claude Code
    /// or Codex, agp binds itself, the agent, their ELF loader and libraries (and, for Claude
    /// Code, the host's bash) read-only from the host; a root given with --from-rootfs needs
    /// `sleep` and a shell at /bin/sh, and its HOME directory world-writable and sticky.
    #[command(after_help = EXIT_CODES_HELP)]
    Build {
        /// A root filesystem as a tar archive to import instead of the busybox root.
        #[arg(long, value_name = "TAR")]
        from_rootfs: Option<PathBuf>,
        /// Name and tag to give the image.
        #[arg(long, value_name = "NAME:TAG", default_value = image::DEFAULT_TAG)]
        tag: String,
        /// The engine's API socket [default: config.toml [sandbox.docker] socket, else
        /// DOCKER_HOST, else /var/run/docker.sock].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}

/// Whether every socket accepts a connection (closed at once); each one that does not is named.
pub fn reach(sockets: &[PathBuf]) -> Exit {
    let mut all = true;
    for socket in sockets {
        if let Err(e) = std::os::unix::net::UnixStream::connect(socket) {
            eprintln!("agp: cannot connect to {}: {e}", socket.display());
            all = false;
        }
    }
    if all {
        Exit::Ok
    } else {
        Exit::Bad
    }
}

pub fn run(home: &Home, args: SandboxArgs) -> Result<Exit> {
    let (from_rootfs, tag, socket) = match args.command {
        SandboxCommand::Image(ImageCommand::Build {
            from_rootfs,
            tag,
            socket,
        }) => (from_rootfs, tag, socket),
        SandboxCommand::Attach(a) => return crate::cmd::sandbox_attach::run(&a),
        SandboxCommand::Reach { sockets } => return Ok(reach(&sockets)),
    };
    let engine = match socket {
        Some(socket) => Engine::at(socket).map_err(|e| anyhow!("{e}"))?,
        // A home without a config.toml (not initialized yet) still builds an image.
        None if home.config().is_file() => Config::load(home)?.docker_engine()?,
        None => Engine::from_env().map_err(|e| anyhow!("{e}"))?,
    };
    let pinned = match from_rootfs {
        Some(tar) => {
            let file = std::fs::File::open(&tar)
                .with_context(|| format!("cannot open root filesystem {}", tar.display()))?;
            image::import(&engine, &tag, file)
        }
        None => image::busybox_rootfs(std::path::Path::new("/bin/busybox"))
            .and_then(|rootfs| image::import(&engine, &tag, rootfs.as_slice())),
    }
    .map_err(|e| anyhow!("{e}"))?;
    println!("built {pinned}");
    println!("put in {}:", home.config().display());
    println!("[sandbox]\nprovider = \"docker\"\n[sandbox.docker]\nimage = \"{pinned}\"");
    Ok(Exit::Ok)
}
