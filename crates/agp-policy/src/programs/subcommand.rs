//! Which word of a command line is the program's subcommand (`git push`, `cargo test`), for
//! tools that reason about commands as "program plus subcommand": policy suggestions (a rule
//! never broader than `Bash(cargo test *)`) and replay reports grouped by command.
//!
//! Modeled programs are read with their own top-level grammar (the one their model uses), so
//! `git -C dir status` is known to have options before its subcommand; a few well-known
//! unmodeled tools whose first operand is a verb are listed by name.

use super::{cargo, git, npm, parse, Grammar};
use crate::shell::Word;

/// Where a command's subcommand is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand<'w> {
    /// The program has no subcommands agp knows of: the program alone is its command.
    None,
    /// The first argument is the subcommand, literal and with no option before it, so
    /// `Bash(PROGRAM SUB *)` matches the line.
    Leading(&'w Word),
    /// The program has subcommands, but this line's is missing, only known at run time, or
    /// preceded by options: no `PROGRAM SUB *` pattern matches it.
    Elsewhere,
}

/// Well-known tools agp has no model of whose first operand is a verb.
const UNMODELED: &[&str] = &[
    "go",
    "docker",
    "podman",
    "kubectl",
    "helm",
    "terraform",
    "gh",
    "glab",
    "pip",
    "pip3",
    "uv",
    "poetry",
    "pipenv",
    "conda",
    "rustup",
    "dotnet",
    "swift",
    "mix",
    "bundle",
    "gem",
    "composer",
    "apt",
    "apt-get",
    "dnf",
    "yum",
    "brew",
    "systemctl",
    "mvn",
    "gradle",
    "bazel",
    "deno",
    "bun",
    "nix",
    "aws",
    "gcloud",
    "az",
];

fn grammar(program: &str) -> Option<&'static Grammar> {
    Some(match program {
        "git" => &git::GLOBAL_GRAMMAR,
        "cargo" => &cargo::TOP,
        "npm" => &npm::NPM_G,
        "pnpm" => &npm::PNPM_G,
        "yarn" => &npm::YARN_G,
        _ => return None,
    })
}

/// The subcommand of `program args…` (`program` is the base name, `args` argv[1..]).
pub fn subcommand<'w>(program: &str, args: &'w [Word]) -> Subcommand<'w> {
    let first = args.first();
    // `cargo +nightly test`: a toolchain selector is not the verb.
    let literal_verb =
        |w: &Word| !w.dynamic && !w.text.is_empty() && !w.text.starts_with(['-', '+']);
    if let Some(g) = grammar(program) {
        let end = args
            .iter()
            .position(|w| w.text == "--" && !w.dynamic)
            .unwrap_or(args.len());
        let parsed = parse(g, &args[..end]);
        return match (parsed.operands.first(), first) {
            // Options after the verb (npm permutes) do not matter: the line starts with it.
            (Some(sub), Some(first)) if sub == first && literal_verb(first) => {
                Subcommand::Leading(first)
            }
            _ => Subcommand::Elsewhere,
        };
    }
    if UNMODELED.contains(&program) {
        return match first {
            Some(w) if literal_verb(w) => Subcommand::Leading(w),
            _ => Subcommand::Elsewhere,
        };
    }
    Subcommand::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Word> {
        s.split_whitespace().map(Word::literal).collect()
    }

    #[test]
    fn modeled_programs_use_their_own_grammar() {
        let a = words("test --workspace");
        assert_eq!(subcommand("cargo", &a), Subcommand::Leading(&a[0]));
        let a = words("push origin main");
        assert_eq!(subcommand("git", &a), Subcommand::Leading(&a[0]));
        // Options before the subcommand: `Bash(git status *)` would not match this line.
        assert_eq!(
            subcommand("git", &words("-C /elsewhere status")),
            Subcommand::Elsewhere
        );
        assert_eq!(
            subcommand("cargo", &words("+nightly test")),
            Subcommand::Elsewhere
        );
        let a = words("install -g left-pad");
        assert_eq!(subcommand("npm", &a), Subcommand::Leading(&a[0]));
        assert_eq!(subcommand("git", &[]), Subcommand::Elsewhere);
    }

    #[test]
    fn dynamic_verbs_are_not_subcommands() {
        let a = vec![Word {
            text: "$VERB".into(),
            dynamic: true,
            substitution: false,
        }];
        assert_eq!(subcommand("git", &a), Subcommand::Elsewhere);
        assert_eq!(subcommand("docker", &a), Subcommand::Elsewhere);
    }

    #[test]
    fn other_programs_have_none() {
        assert_eq!(subcommand("rm", &words("notes.txt")), Subcommand::None);
        assert_eq!(subcommand("ls", &words("-la")), Subcommand::None);
        let a = words("run --rm alpine");
        assert_eq!(subcommand("docker", &a), Subcommand::Leading(&a[0]));
    }
}
