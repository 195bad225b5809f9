//! The `supply-chain` guard: package installs need approval showing what gets installed;
//! names close to popular packages are flagged as likely typosquats; URL and git installs are
//! called out.

mod typosquat;

pub use typosquat::typosquat_of;

use super::{GuardHit, GuardId};
use crate::shell::{SimpleCommand, Word};

const G: GuardId = GuardId::SupplyChain;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    Npm,
    PyPi,
    Crates,
    Gems,
    Go,
}

impl Ecosystem {
    fn label(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::PyPi => "PyPI",
            Ecosystem::Crates => "crates.io",
            Ecosystem::Gems => "RubyGems",
            Ecosystem::Go => "Go",
        }
    }
}

/// One package an install command would fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    /// Installed from a URL, a git repository or a local archive rather than the registry.
    pub remote_source: bool,
}

fn strip_version(eco: Ecosystem, spec: &str) -> String {
    match eco {
        Ecosystem::Npm => {
            // `@scope/name@1.2` keeps its leading `@`.
            let (scope, rest) = match spec.strip_prefix('@') {
                Some(r) => ("@", r),
                None => ("", spec),
            };
            format!("{scope}{}", rest.split('@').next().unwrap_or(rest))
        }
        Ecosystem::PyPi => spec
            .split(['=', '<', '>', '!', '~', '[', ';', ' ', '@'])
            .next()
            .unwrap_or(spec)
            .to_string(),
        Ecosystem::Crates | Ecosystem::Go => spec.split('@').next().unwrap_or(spec).to_string(),
        Ecosystem::Gems => spec.split(':').next().unwrap_or(spec).to_string(),
    }
}

fn is_remote_source(spec: &str) -> bool {
    spec.contains("://")
        || spec.starts_with("git+")
        || spec.starts_with("git@")
        || spec.starts_with("github:")
        || spec.starts_with("gitlab:")
        || spec.starts_with("bitbucket:")
        || [".tgz", ".tar.gz", ".whl", ".gem"]
            .iter()
            .any(|ext| crate::paths::ends_with_ignore_case(spec, ext))
        || spec.contains(" @ ")
}

/// Option words that take a value, per installer, so the value is not taken for a package.
fn value_options(eco: Ecosystem) -> &'static [&'static str] {
    match eco {
        Ecosystem::Npm => &[
            "--registry",
            "--prefix",
            "--tag",
            "-w",
            "--workspace",
            "--filter",
            "-C",
            "--dir",
        ],
        Ecosystem::PyPi => &[
            "-i",
            "--index-url",
            "--extra-index-url",
            "-f",
            "--find-links",
            "-t",
            "--target",
            "--prefix",
            "--root",
            "-c",
            "--constraint",
            "--python",
            "-p",
            "--platform",
            "--python-version",
            "--group",
            "--optional",
            "--source",
        ],
        Ecosystem::Crates => &[
            "--version",
            "--vers",
            "--root",
            "--features",
            "-F",
            "--git",
            "--branch",
            "--tag",
            "--rev",
            "--path",
            "--registry",
            "--index",
            "-p",
            "--package",
            "--rename",
            "--target",
            "--profile",
            "-j",
            "--jobs",
            "--manifest-path",
        ],
        Ecosystem::Gems => &["-v", "--version", "-s", "--source", "-i", "--install-dir"],
        Ecosystem::Go => &["-C", "-modfile", "-tags"],
    }
}

fn collect(eco: Ecosystem, args: &[Word], out: &mut Vec<Package>) -> bool {
    let opts = value_options(eco);
    let mut i = 0;
    let mut remote_flag = false;
    while i < args.len() {
        let w = &args[i];
        let t = w.text.as_str();
        if matches!(
            t,
            "--git"
                | "--index-url"
                | "-i"
                | "--extra-index-url"
                | "--registry"
                | "-f"
                | "--find-links"
                | "--source"
                | "-s"
        ) && !(eco == Ecosystem::Gems && t == "-i")
        {
            remote_flag = true;
        }
        if t.starts_with("--git=") || t.starts_with("--index-url=") || t.starts_with("--registry=")
        {
            remote_flag = true;
        }
        if matches!(t, "-r" | "--requirement" | "-e" | "--editable") && eco == Ecosystem::PyPi {
            if let Some(v) = args.get(i + 1) {
                if is_remote_source(&v.text) {
                    out.push(Package {
                        ecosystem: eco,
                        name: v.text.clone(),
                        remote_source: true,
                    });
                }
            }
            i += 2;
            continue;
        }
        if t.starts_with('-') && t.len() > 1 {
            if opts.contains(&t) {
                i += 1;
            }
            i += 1;
            continue;
        }
        let remote = is_remote_source(t)
            || (eco == Ecosystem::Npm
                && t.contains('/')
                && !t.starts_with('@')
                && !t.starts_with('.'));
        let local = t.starts_with('.') || t.starts_with('/') || t.starts_with('~');
        if !local || remote {
            out.push(Package {
                ecosystem: eco,
                name: if remote {
                    t.to_string()
                } else {
                    strip_version(eco, t)
                },
                remote_source: remote || w.dynamic,
            });
        }
        i += 1;
    }
    if remote_flag {
        for p in out.iter_mut() {
            p.remote_source = true;
        }
    }
    remote_flag
}

/// The packages a command installs, or `None` when it is not an install.
pub fn installs(cmd: &SimpleCommand) -> Option<Vec<Package>> {
    let args = cmd.args();
    let sub = |i: usize| args.get(i).map_or("", |w| w.text.as_str());
    let mut out = Vec::new();
    let (eco, rest): (Ecosystem, &[Word]) = match cmd.name() {
        "npm" | "pnpm" | "yarn" | "bun" => match sub(0) {
            "install" | "i" | "add" | "isntall" | "in" => (Ecosystem::Npm, &args[1..]),
            "exec" | "dlx" | "x" => (Ecosystem::Npm, &args[1..2.min(args.len())]),
            "global" if sub(1) == "add" => (Ecosystem::Npm, &args[2..]),
            _ => return None,
        },
        "npx" | "bunx" | "pnpx" => {
            let first = args.iter().position(|w| !w.text.starts_with('-'))?;
            (Ecosystem::Npm, &args[first..=first])
        }
        n if n.starts_with("pip") || n == "pipx" => match sub(0) {
            "install" | "run" => (Ecosystem::PyPi, &args[1..]),
            _ => return None,
        },
        "uv" => match (sub(0), sub(1)) {
            ("pip", "install") => (Ecosystem::PyPi, &args[2..]),
            ("add", _) => (Ecosystem::PyPi, &args[1..]),
            ("tool", "install" | "run") => (Ecosystem::PyPi, &args[2..]),
            _ => return None,
        },
        "uvx" => {
            let first = args.iter().position(|w| !w.text.starts_with('-'))?;
            (Ecosystem::PyPi, &args[first..=first])
        }
        "poetry" if sub(0) == "add" => (Ecosystem::PyPi, &args[1..]),
        n if n.starts_with("python")
            && sub(0) == "-m"
            && sub(1) == "pip"
            && sub(2) == "install" =>
        {
            (Ecosystem::PyPi, &args[3..])
        }
        "cargo" => match sub(0) {
            "add" | "install" => (Ecosystem::Crates, &args[1..]),
            _ => return None,
        },
        "gem" if sub(0) == "install" => (Ecosystem::Gems, &args[1..]),
        "bundle" if sub(0) == "add" => (Ecosystem::Gems, &args[1..]),
        "go" if matches!(sub(0), "get" | "install") => (Ecosystem::Go, &args[1..]),
        _ => return None,
    };
    let remote_flag = collect(eco, rest, &mut out);
    if out.is_empty() && remote_flag {
        out.push(Package {
            ecosystem: eco,
            name: "(from a custom source)".into(),
            remote_source: true,
        });
    }
    Some(out)
}

/// Checks one simple command.
pub fn check_command(cmd: &SimpleCommand) -> Option<GuardHit> {
    let packages = installs(cmd)?;
    if packages.is_empty() {
        // `npm install`, `pip install -r requirements.txt`: installs what the project pins.
        return None;
    }
    let eco = packages[0].ecosystem;
    let mut names = Vec::new();
    let mut flags = Vec::new();
    for p in &packages {
        names.push(p.name.clone());
        if p.remote_source {
            flags.push(format!(
                "{} comes from a URL, git or custom index, not the registry",
                p.name
            ));
        } else if let Some(real) = typosquat_of(p.ecosystem, &p.name) {
            flags.push(format!(
                "`{}` is a LIKELY TYPOSQUAT of the popular `{real}`",
                p.name
            ));
        }
    }
    let mut reason = format!(
        "installs {} package(s) from {}: {}",
        names.len(),
        eco.label(),
        names.join(", ")
    );
    if !flags.is_empty() {
        reason.push_str(" — ");
        reason.push_str(&flags.join("; "));
    }
    Some(GuardHit::require(G, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Option<Vec<(String, bool)>> {
        let a = crate::shell::analyze(src);
        let cmd = a.commands().next().map(|(_, c)| c.clone())?;
        installs(&cmd).map(|v| v.into_iter().map(|p| (p.name, p.remote_source)).collect())
    }

    #[test]
    fn extracts_packages() {
        // command, packages it installs (name, from a remote source rather than a registry)
        let rows: &[(&str, &[(&str, bool)])] = &[
            (
                "npm install --save-dev @types/node@20 lodash@^4",
                &[("@types/node", false), ("lodash", false)],
            ),
            (
                "pip install 'requests>=2' 'flask[async]'",
                &[("requests", false), ("flask", false)],
            ),
            ("pip install -r requirements.txt", &[]),
            ("cargo add serde --features derive", &[("serde", false)]),
            (
                "cargo install --git https://x.example/r.git tool",
                &[("tool", true)],
            ),
            ("npm i github:user/repo", &[("github:user/repo", true)]),
            (
                "go install golang.org/x/tools/gopls@latest",
                &[("golang.org/x/tools/gopls", false)],
            ),
            ("npx cowsay hi", &[("cowsay", false)]),
            ("python3 -m pip install numpy", &[("numpy", false)]),
        ];
        for (src, want) in rows {
            let got = names(src).unwrap_or_else(|| panic!("{src} is an install"));
            let got: Vec<(&str, bool)> = got.iter().map(|(n, r)| (n.as_str(), *r)).collect();
            assert_eq!(got, *want, "{src}");
        }
        assert!(names("npm run build").is_none());
        assert!(names("cargo build").is_none());
        let hit = check_command(
            &crate::shell::analyze("npm install crossenv")
                .commands()
                .next()
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        assert!(
            hit.reason
                .contains("LIKELY TYPOSQUAT of the popular `cross-env`"),
            "{}",
            hit.reason
        );
    }

    #[test]
    fn archive_sources_are_remote_in_any_case() {
        for spec in [
            "evil-1.0.whl",
            "evil-1.0.WHL",
            "evil.Tar.Gz",
            "evil.TGZ",
            "evil.GEM",
        ] {
            assert_eq!(
                names(&format!("pip install {spec}")),
                Some(vec![(spec.to_string(), true)]),
                "{spec}"
            );
        }
    }

    #[test]
    fn typosquats() {
        assert_eq!(typosquat_of(Ecosystem::Npm, "crossenv"), Some("cross-env"));
        assert_eq!(typosquat_of(Ecosystem::Npm, "lodahs"), Some("lodash"));
        assert_eq!(typosquat_of(Ecosystem::PyPi, "reqeusts"), Some("requests"));
        assert_eq!(
            typosquat_of(Ecosystem::PyPi, "python-dateutils"),
            Some("python-dateutil")
        );
        assert_eq!(typosquat_of(Ecosystem::PyPi, "Python_Dateutil"), None);
        assert_eq!(typosquat_of(Ecosystem::Crates, "serde-json"), None);
        assert_eq!(typosquat_of(Ecosystem::Crates, "tokoi"), Some("tokio"));
        assert_eq!(typosquat_of(Ecosystem::Npm, "left-pad"), None);
        assert_eq!(typosquat_of(Ecosystem::Npm, "react"), None);
    }
}
