//! Evaluation: one tool call → one [`Verdict`], judged part by part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use agp_contracts::{
    ApprovalSpec, Decision, EvalContext, PartFinding, PolicyEngine, Tool, ToolCall, Verdict,
};
use serde_json::Value;

use crate::expand;
use crate::file::{Policy, Rule};
use crate::guards::{destructive, egress, protected, supply, GuardHit, GuardId};
use crate::matcher::{domain_matches, file_class, url_host, FileClass, Matcher, Spec};
use crate::paths::{self, Bases};
use crate::shell::{self, basename, Part, SimpleCommand, Word};

/// Rule lookup tables built once per policy, so a 500-rule policy costs a hash lookup per
/// command rather than a scan.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    bash_by_word: HashMap<String, Vec<usize>>,
    bash_any: Vec<usize>,
    read_rules: Vec<usize>,
    write_rules: Vec<usize>,
    /// Read-class rules that deny or require (checked against paths a command mentions).
    read_restrict: Vec<usize>,
    /// Rules with a `WebFetch(domain:…)` matcher.
    domain_rules: Vec<usize>,
    /// For file tools and WebFetch: the rules with a matcher that applies to the tool.
    by_tool: HashMap<Tool, Vec<usize>>,
}

const INDEXED_TOOLS: &[Tool] = &[
    Tool::Read,
    Tool::Glob,
    Tool::Grep,
    Tool::LS,
    Tool::NotebookRead,
    Tool::Write,
    Tool::Edit,
    Tool::MultiEdit,
    Tool::NotebookEdit,
    Tool::WebFetch,
];

/// Two ascending index lists merged, without duplicates.
fn merged<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

impl RuleIndex {
    pub fn build(rules: &[Rule]) -> Self {
        let mut ix = RuleIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let mut any_bash = false;
            for m in &rule.matchers {
                if m.applies_to_tool(&Tool::Bash) {
                    match &m.spec {
                        Spec::Command(p) => match &p.first_word {
                            Some(w) => {
                                let list =
                                    ix.bash_by_word.entry(basename(w).to_string()).or_default();
                                if list.last() != Some(&i) {
                                    list.push(i);
                                }
                            }
                            None => any_bash = true,
                        },
                        _ => any_bash = true,
                    }
                }
                if m.applies_to_class(FileClass::Read) {
                    push_once(&mut ix.read_rules, i);
                    if rule.effect != Decision::Allow {
                        push_once(&mut ix.read_restrict, i);
                    }
                }
                if m.applies_to_class(FileClass::Write) {
                    push_once(&mut ix.write_rules, i);
                }
                if matches!(m.spec, Spec::Domain(_)) {
                    push_once(&mut ix.domain_rules, i);
                }
            }
            if any_bash {
                ix.bash_any.push(i);
            }
            for t in INDEXED_TOOLS {
                if rule.matchers.iter().any(|m| m.applies_to_tool(t)) {
                    ix.by_tool.entry(t.clone()).or_default().push(i);
                }
            }
        }
        ix
    }
}

fn push_once(v: &mut Vec<usize>, i: usize) {
    if v.last() != Some(&i) {
        v.push(i);
    }
}

/// Where paths are resolved from during one evaluation.
#[derive(Debug, Clone)]
pub struct Scene {
    pub bases: Bases,
    pub agp_home: PathBuf,
    /// Directories a relative path may be relative to (the call's directory and every `cd`).
    pub cwds: Vec<PathBuf>,
    /// A `cd` went somewhere only known at run time.
    pub cwd_unknown: bool,
    /// Variables the command line assigns (see [`crate::expand`]).
    pub vars: Vec<(String, Option<Word>)>,
    memo: std::cell::RefCell<Vec<(String, Vec<PathBuf>)>>,
}

/// Canonical forms of the session's fixed directories (project root, home, agp home). They are
/// set by the daemon, not by the agent, so resolving them once per policy saves a dozen
/// syscalls per call. The call's own working directory is resolved every time, unless it is
/// the project root itself.
#[derive(Debug, Clone, Default)]
pub struct BaseCache(Arc<RwLock<HashMap<PathBuf, PathBuf>>>);

impl BaseCache {
    fn get(&self, p: &Path) -> PathBuf {
        if let Some(hit) = self.0.read().ok().and_then(|m| m.get(p).cloned()) {
            return hit;
        }
        let canon = paths::canonicalize_lenient(p);
        if let Ok(mut m) = self.0.write() {
            if m.len() > 64 {
                m.clear();
            }
            m.insert(p.to_path_buf(), canon.clone());
        }
        canon
    }
}

impl Scene {
    /// Resolves the call's directories without a cache.
    pub fn new(ctx: &EvalContext, cwd: &Path) -> Self {
        Self::with_cache(ctx, cwd, &BaseCache::default())
    }

    fn with_cache(ctx: &EvalContext, cwd: &Path, cache: &BaseCache) -> Self {
        let cwd = if cwd.as_os_str().is_empty() || cwd.is_relative() {
            ctx.project_root.join(cwd)
        } else {
            cwd.to_path_buf()
        };
        let root = cache.get(&ctx.project_root);
        let cwd = if cwd == ctx.project_root {
            root.clone()
        } else {
            paths::canonicalize_lenient(&cwd)
        };
        let bases = Bases {
            cwd,
            root,
            home: cache.get(&ctx.home),
        };
        Self {
            cwds: vec![bases.cwd.clone()],
            agp_home: cache.get(&ctx.agp_home),
            bases,
            cwd_unknown: false,
            vars: Vec::new(),
            memo: Default::default(),
        }
    }

    /// Every path `raw` may name (one per possible working directory).
    pub fn resolve_all(&self, raw: &str) -> Vec<PathBuf> {
        // The same word is often looked at by several checks; resolve it once per evaluation
        // (the memo is cleared whenever a `cd` changes what relative paths mean).
        if let Some(hit) = self
            .memo
            .borrow()
            .iter()
            .find(|(k, _)| k == raw)
            .map(|(_, v)| v.clone())
        {
            return hit;
        }
        let out: Vec<PathBuf> = if raw.starts_with('/') {
            // Most absolute paths an agent sends are inside the project or home: walk only the
            // part below that (already canonical) directory.
            let under = [&self.bases.cwd, &self.bases.root, &self.bases.home]
                .into_iter()
                .find_map(|b| {
                    let rest = paths::relative_to(Path::new(raw), b)?;
                    paths::resolve_under(b, rest.to_str()?)
                });
            vec![under.unwrap_or_else(|| paths::resolve(raw, &self.bases.cwd, &self.bases.home))]
        } else if raw == "~" || raw.starts_with("~/") {
            vec![paths::resolve(raw, &self.bases.cwd, &self.bases.home)]
        } else {
            self.cwds
                .iter()
                .map(|c| paths::resolve(raw, c, &self.bases.home))
                .collect()
        };
        let mut memo = self.memo.borrow_mut();
        if memo.len() < 64 {
            memo.push((raw.to_string(), out.clone()));
        }
        out
    }

    /// Whether a resolved path lies outside the project root (where no project rule vouches
    /// for the code a build or test runner finds).
    pub fn outside_project(&self, path: &Path) -> bool {
        paths::relative_to(path, &self.bases.root).is_none()
    }

    /// Like [`resolve_all`](Self::resolve_all) without following symlinks.
    pub fn lexical_all(&self, raw: &str) -> Vec<PathBuf> {
        let expand = |base: &Path| {
            if raw == "~" {
                self.bases.home.clone()
            } else if let Some(rest) = raw.strip_prefix("~/") {
                paths::lexical(&self.bases.home.join(rest))
            } else {
                paths::lexical(&base.join(raw))
            }
        };
        if Self::is_relative(raw) {
            self.cwds.iter().map(|c| expand(c)).collect()
        } else {
            vec![expand(&self.bases.cwd)]
        }
    }

    fn is_relative(raw: &str) -> bool {
        !(raw.starts_with('/') || raw == "~" || raw.starts_with("~/"))
    }

    /// Every path a word may name once expanded ([`crate::expand`]), or why that is only
    /// known at run time.
    pub fn word_paths(&self, w: &Word) -> Result<Vec<String>, String> {
        if !expand::needs_expansion(w) {
            return Ok(vec![w.text.clone()]);
        }
        let env = expand::Env {
            home: &self.bases.home,
            cwds: &self.cwds,
            vars: &self.vars,
        };
        match expand::expand(w, &env) {
            expand::Expansion::Paths(p) => Ok(p),
            expand::Expansion::Unknown(why) => Err(why),
        }
    }
}

/// Commands that never open the files their arguments name: an argument only known at run
/// time is no read for them.
fn opens_no_files(name: &str) -> bool {
    matches!(
        name,
        "echo"
            | "printf"
            | "true"
            | "false"
            | ":"
            | "test"
            | "["
            | "exit"
            | "return"
            | "shift"
            | "sleep"
            | "kill"
            | "wait"
            | "unset"
            | "set"
            | "read"
            | "local"
            | "export"
            | "declare"
            | "typeset"
            | "readonly"
            | "break"
            | "continue"
    )
}

/// Build and test runners execute code they find in their working directory (a Makefile,
/// `build.rs`, `package.json` scripts, `conftest.py`): a rule allowing the project's tests
/// does not vouch for that code anywhere else.
fn is_project_runner(cmd: &SimpleCommand) -> bool {
    let name = cmd.name();
    matches!(
        name,
        "make"
            | "gmake"
            | "cmake"
            | "ctest"
            | "ninja"
            | "meson"
            | "bazel"
            | "just"
            | "cargo"
            | "npm"
            | "npx"
            | "pnpm"
            | "yarn"
            | "bun"
            | "deno"
            | "node"
            | "pytest"
            | "py.test"
            | "tox"
            | "nox"
            | "go"
            | "mvn"
            | "gradle"
            | "gradlew"
            | "ant"
            | "sbt"
            | "tsc"
            | "jest"
            | "vitest"
            | "mocha"
            | "rake"
            | "bundle"
            | "rspec"
            | "composer"
            | "phpunit"
            | "dotnet"
            | "swift"
            | "mix"
    ) || ((name.starts_with("python") || name.starts_with("pypy"))
        && cmd.args().iter().any(|w| w.text == "-m"))
}

fn judge_runner_outside(cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
    if !is_project_runner(cmd) {
        return;
    }
    let outside = scene.cwds.iter().find(|c| scene.outside_project(c));
    if let Some(dir) = outside {
        acc.builtin(
            "shell",
            Decision::Require,
            format!(
                "{} may run in {}, outside the project: the code it runs there is not the \
                 project's",
                cmd.name(),
                dir.display()
            ),
        );
    }
}

/// Commands that print only sizes, types or digests of the files they read, never content: a
/// file name only known at run time reveals nothing through them.
fn prints_no_content(name: &str) -> bool {
    matches!(
        name,
        "wc" | "ls"
            | "stat"
            | "file"
            | "du"
            | "md5sum"
            | "sha1sum"
            | "sha224sum"
            | "sha256sum"
            | "sha384sum"
            | "sha512sum"
            | "b2sum"
            | "cksum"
    )
}

/// The directory a partly known word certainly lies in: its text up to the last `/` before
/// the first expansion or glob (`.git/hooks/$x` → `.git/hooks`).
fn static_dir(pattern: &str) -> Option<String> {
    let mut prefix = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => prefix.push(chars.next()?),
            '$' | '`' | '*' | '?' | '[' | '{' | '~' if !(c == '~' && prefix.is_empty()) => break,
            _ => prefix.push(c),
        }
    }
    let (dir, _) = prefix.rsplit_once('/')?;
    (!dir.is_empty() && !dir.contains("..")).then(|| dir.to_string())
}

/// Could a word whose value is only partly known name agp's signing keys? Its static prefix
/// (the text before the first expansion or glob) is compared with the keys directory: `~/.ag$X`
/// or `~/.agp/keys/$f` could; `$X/y` is unknown everywhere and stays a plain `require`.
fn may_name_agp_keys(pattern: &str, scene: &Scene) -> bool {
    let mut prefix = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => prefix.push(n),
                None => break,
            },
            '$' | '`' | '*' | '?' | '[' | '{' => break,
            _ => prefix.push(c),
        }
    }
    if prefix.is_empty() || prefix.len() == pattern.len() {
        return false;
    }
    let full = if let Some(rest) = prefix.strip_prefix("~/") {
        format!("{}/{rest}", scene.bases.home.display())
    } else if prefix.starts_with('/') {
        prefix
    } else {
        return false;
    };
    let keys = scene.agp_home.join("keys").display().to_string();
    // The prefix must reach past the directory holding agp's home (`~/.a…`, not just `~/`).
    let parent = scene.agp_home.parent().map_or(0, |p| p.as_os_str().len());
    keys.starts_with(&full) && full.len() > parent + 1 || full.starts_with(&keys)
}

/// Reason an argument only known at run time keeps a command from being allowed.
fn unknown_word(w: &str, why: &str) -> String {
    format!(
        "`{w}` is only known at run time ({why}); it could name a credential or a protected \
         file, so no rule can allow it"
    )
}

/// One part's judgment.
#[derive(Debug, Clone)]
struct Judgment {
    decision: Decision,
    rule_id: Option<String>,
    reason: String,
    approval: Option<ApprovalSpec>,
}

/// Keeps the strictest judgment; on a tie the first one pushed stays.
#[derive(Default)]
struct Strictest(Option<Judgment>);

impl Strictest {
    fn push(&mut self, j: Judgment) {
        if self.0.as_ref().is_none_or(|b| j.decision > b.decision) {
            self.0 = Some(j);
        }
    }
    /// [`push`](Self::push) of a judgment with this `decision`, built only when it would be
    /// kept: most judgments lose to an earlier one, and building their reason costs allocations.
    fn push_with(&mut self, decision: Decision, make: impl FnOnce() -> Judgment) {
        if self.0.as_ref().is_none_or(|b| decision > b.decision) {
            let j = make();
            debug_assert_eq!(j.decision, decision);
            self.0 = Some(j);
        }
    }
    fn push_rule(&mut self, rule: &Rule, matcher: &Matcher, what: impl FnOnce() -> String) {
        self.push_with(rule.effect, || rule_judgment(rule, matcher, &what()));
    }
    fn guard(&mut self, policy: &Policy, hit: GuardHit) {
        if policy.guard_enabled(hit.guard) {
            self.push(Judgment {
                decision: hit.decision,
                rule_id: Some(hit.guard.as_str().to_string()),
                reason: hit.reason,
                approval: None,
            });
        }
    }
    fn builtin(&mut self, id: &str, decision: Decision, reason: impl Into<String>) {
        self.push(Judgment {
            decision,
            rule_id: Some(id.to_string()),
            reason: reason.into(),
            approval: None,
        });
    }
}

fn rule_judgment(rule: &Rule, matcher: &Matcher, what: &str) -> Judgment {
    Judgment {
        decision: rule.effect,
        rule_id: Some(rule.id.clone()),
        reason: rule.reason.clone().unwrap_or_else(|| {
            format!(
                "rule `{}` ({}) {}s {what}",
                rule.id, matcher.source, rule.effect
            )
        }),
        approval: rule.approval.clone(),
    }
}

/// Best rule among `candidates` (ascending rule order): deny > require > allow, then order.
fn best_rule(
    policy: &Policy,
    candidates: impl Iterator<Item = usize>,
    mut matches: impl FnMut(&Rule, &Matcher) -> bool,
) -> Option<(&Rule, &Matcher)> {
    let mut best: Option<(&Rule, &Matcher)> = None;
    for i in candidates {
        let rule = &policy.rules[i];
        if best.is_some_and(|(b, _)| rule.effect <= b.effect) {
            continue;
        }
        if let Some(m) = rule.matchers.iter().find(|m| matches(rule, m)) {
            best = Some((rule, m));
            if rule.effect == Decision::Deny {
                break;
            }
        }
    }
    best
}

/// Programs living in the standard binary directories may be named by full path in allow rules'
/// place; anything else keeps its path (so `/tmp/evil/git` is not `git` for an allow rule).
fn std_bin(argv0: &str) -> bool {
    match argv0.rsplit_once('/') {
        None => true,
        Some((dir, _)) => matches!(
            dir,
            "/bin" | "/usr/bin" | "/usr/local/bin" | "/sbin" | "/usr/sbin" | "/usr/local/sbin"
        ),
    }
}

impl Policy {
    /// Candidate rules for a tool call (indexed for file tools and WebFetch).
    fn tool_rules(&self, tool: &Tool) -> Box<dyn Iterator<Item = usize> + '_> {
        if INDEXED_TOOLS.contains(tool) {
            Box::new(self.index.by_tool.get(tool).into_iter().flatten().copied())
        } else {
            Box::new(0..self.rules.len())
        }
    }

    fn default_judgment(&self, what: &str) -> Judgment {
        Judgment {
            decision: self.default,
            rule_id: None,
            reason: format!(
                "no rule matches {what}; the policy default is {}",
                self.default
            ),
            approval: None,
        }
    }

    fn command_rule(&self, cmd: &SimpleCommand) -> Option<(&Rule, &Matcher)> {
        let typed = cmd.line();
        // The program was typed without a directory: both forms are the same line, so the
        // second one is only built when it differs.
        let plain_owned = cmd
            .argv
            .first()
            .is_some_and(|w| w.text.contains('/'))
            .then(|| cmd.line_with_basename())
            .filter(|plain| *plain != typed);
        let same_line = plain_owned.is_none();
        let plain = plain_owned.as_deref().unwrap_or(&typed);
        let allow_line = if cmd.argv.first().is_some_and(|w| std_bin(&w.text)) {
            plain
        } else {
            &typed
        };
        // xargs-style commands: the line with an argument appended, built once, on demand.
        let tail_line = std::cell::OnceCell::new();
        let by_word = self
            .index
            .bash_by_word
            .get(cmd.name())
            .map_or(&[][..], |v| v.as_slice());
        best_rule(self, merged(&self.index.bash_any, by_word), |rule, m| {
            if !m.applies_to_tool(&Tool::Bash) {
                return false;
            }
            match &m.spec {
                Spec::All => true,
                Spec::Command(p) => {
                    if rule.effect == Decision::Allow {
                        // An allow pattern must cover arguments xargs appends at run time.
                        p.matches(allow_line)
                            && (!cmd.dynamic_tail
                                || p.matches(tail_line.get_or_init(|| format!("{allow_line} x"))))
                    } else {
                        p.matches(&typed) || (!same_line && p.matches(plain))
                    }
                }
                _ => false,
            }
        })
    }

    fn judge_command(&self, cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
        if scene.cwd_unknown {
            acc.builtin(
                "shell",
                Decision::Require,
                "runs in a directory only known at run time (an earlier cd to a variable)",
            );
        }
        let rule = self.command_rule(cmd);
        let explicitly_allowed = rule.is_some_and(|(r, _)| r.effect == Decision::Allow);
        if let Some((r, m)) = rule {
            let mut j = rule_judgment(r, m, "this command");
            if j.decision == Decision::Allow {
                if let Some(w) = cmd.args().iter().find(|w| w.substitution) {
                    j = Judgment {
                            decision: Decision::Require,
                            rule_id: Some("shell".into()),
                            reason: format!(
                                "argument `{}` is computed by a command substitution, so no allow rule can vouch for it",
                                w.text
                            ),
                            approval: None,
                        };
                }
            }
            acc.push(j);
        }
        for hit in destructive::check_command(cmd, scene) {
            acc.guard(self, hit);
        }
        if let Some(hit) = supply::check_command(cmd) {
            acc.guard(self, hit);
        }
        if let Some(eg) = egress::check_command(cmd) {
            let domains_allow = eg.hosts_complete
                && eg
                    .hosts
                    .iter()
                    .all(|h| self.domain_decision(h) == Some(Decision::Allow));
            if !explicitly_allowed && !domains_allow {
                acc.guard(self, eg.hit);
            }
            for h in &eg.hosts {
                if let Some(d) = self.domain_decision(h) {
                    if d > Decision::Allow {
                        if let Some((r, m)) = self.domain_rule(h) {
                            acc.push_rule(r, m, || format!("the host {h}"));
                        }
                    }
                }
            }
        }
        let name = cmd.name();
        if cmd.wrappers.iter().any(|w| w == "sudo" || w == "doas")
            || matches!(name, "sudo" | "doas" | "su" | "pkexec" | "runuser")
        {
            acc.guard(
                self,
                GuardHit::require(GuardId::Privilege, "runs with elevated privileges"),
            );
        }
        if let Some(what) = shell::prints_environment(cmd) {
            acc.guard(
                self,
                GuardHit::require(
                    GuardId::ProtectedPaths,
                    format!("{what}; reading credentials needs approval"),
                ),
            );
        }
        if matches!(name, "cd" | "pushd") {
            return;
        }
        judge_runner_outside(cmd, scene, acc);
        self.judge_mentions(cmd, scene, acc);
        self.judge_file_readers(cmd, scene, acc);
        if rule.is_none() {
            acc.push_with(self.default, || self.default_judgment("this command"));
        }
    }

    /// Paths a command names are checked against credential guards and read restrictions, so
    /// `cat .env` is judged like `Read(.env)`.
    fn judge_mentions(&self, cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
        let name = cmd.name();
        if matches!(name, "echo" | "printf" | "true" | "false" | ":") {
            return;
        }
        // Names appended or substituted at run time (`xargs cat`, `find -exec cat {} +`).
        let from_stdin = cmd.dynamic_tail
            || cmd
                .wrappers
                .iter()
                .any(|w| w == "xargs" || w == "find -exec");
        if from_stdin && !opens_no_files(name) && !prints_no_content(name) {
            acc.builtin(
                "shell",
                Decision::Require,
                format!(
                    "{name} is given file names read at run time ({}), which could name a \
                     credential; no rule can allow that",
                    cmd.wrappers.join(", ")
                ),
            );
        }
        for w in cmd.args() {
            if w.text.is_empty() || w.text.len() > 4096 || w.text.contains("://") {
                continue;
            }
            let t = w.text.as_str();
            let candidate = if let Some(v) = t.strip_prefix('@') {
                v
            } else if t.starts_with('-') {
                match t.split_once('=') {
                    Some((_, v)) if v.contains('/') || v.starts_with('.') || w.dynamic => v,
                    _ if w.dynamic => t,
                    _ => continue,
                }
            } else if let Some((_, v)) = t.split_once('=').filter(|(k, _)| !k.contains('/')) {
                // `dd if=…`, `--file=…`-like key=value operands.
                if v.is_empty() {
                    continue;
                }
                v
            } else {
                t
            };
            let word = Word {
                text: candidate.to_string(),
                ..w.clone()
            };
            let paths = match scene.word_paths(&word) {
                Ok(p) => p,
                Err(why) => {
                    if !opens_no_files(name) && !prints_no_content(name) {
                        acc.builtin("shell", Decision::Require, unknown_word(&w.text, &why));
                        if may_name_agp_keys(candidate, scene) {
                            acc.guard(
                                self,
                                GuardHit::deny(
                                    GuardId::ProtectedPaths,
                                    format!(
                                        "`{}` may name agp's signing keys once expanded",
                                        w.text
                                    ),
                                ),
                            );
                        }
                    }
                    continue;
                }
            };
            for raw in paths {
                for p in scene.resolve_all(&raw) {
                    if let Some(hit) = protected::check_read(&p, scene) {
                        acc.guard(self, hit);
                    }
                    if !self.index.read_restrict.is_empty() {
                        if let Some((r, m)) =
                            best_rule(self, self.index.read_restrict.iter().copied(), |_, m| {
                                m.applies_to_class(FileClass::Read)
                                    && path_spec_matches(m, &p, scene)
                            })
                        {
                            acc.push_rule(r, m, || format!("reading {}", p.display()));
                        }
                    }
                }
            }
        }
    }

    /// Commands whose job is to read the files they are given: their files are judged as
    /// reads under the `Read` rules, so `cat /etc/hosts` needs what `Read(//etc/hosts)` needs.
    fn judge_file_readers(&self, cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
        let name = cmd.name();
        let pattern_first = matches!(name, "grep" | "egrep" | "fgrep" | "rg" | "ag" | "jq" | "yq");
        let reader = pattern_first
            || matches!(
                name,
                "cat"
                    | "tac"
                    | "head"
                    | "tail"
                    | "less"
                    | "more"
                    | "nl"
                    | "wc"
                    | "od"
                    | "xxd"
                    | "hexdump"
                    | "strings"
                    | "base64"
                    | "md5sum"
                    | "sha1sum"
                    | "sha256sum"
                    | "sha512sum"
                    | "cksum"
                    | "diff"
                    | "cmp"
                    | "sort"
                    | "uniq"
                    | "bat"
                    | "view"
            );
        if !reader {
            return;
        }
        let args = cmd.args();
        let explicit_pattern = args
            .iter()
            .any(|w| matches!(w.text.as_str(), "-e" | "-f" | "--regexp" | "--file"));
        let mut ops = crate::guards::operands(args).into_iter();
        if pattern_first && !explicit_pattern {
            ops.next();
        }
        for w in ops {
            if w.text == "-" || w.text.is_empty() {
                continue;
            }
            // Unknown words were already required by `judge_mentions`.
            for raw in scene.word_paths(w).unwrap_or_default() {
                self.judge_path(FileClass::Read, None, &raw, scene, acc);
            }
        }
    }

    fn domain_rule(&self, host: &str) -> Option<(&Rule, &Matcher)> {
        best_rule(
            self,
            self.index.domain_rules.iter().copied(),
            |_, m| matches!(&m.spec, Spec::Domain(d) if domain_matches(d, host)),
        )
    }

    fn domain_decision(&self, host: &str) -> Option<Decision> {
        self.domain_rule(host).map(|(r, _)| r.effect)
    }

    /// A file read or write at a (raw) path, by a shell command or a file tool.
    fn judge_path(
        &self,
        class: FileClass,
        tool: Option<&Tool>,
        raw: &str,
        scene: &Scene,
        acc: &mut Strictest,
    ) {
        // `~user/…`, `~+/…`, `~-/…` are not relative paths, whoever hands them over.
        let tilde = Word::literal(raw);
        if expand::needs_expansion(&tilde) {
            match scene.word_paths(&tilde) {
                Ok(paths) if !paths.iter().any(|p| p == raw) => {
                    for p in paths {
                        self.judge_path(class, tool, &p, scene, acc);
                    }
                    return;
                }
                // An unknown `~user` stays literal in bash: a relative path.
                Ok(_) => {}
                Err(why) => {
                    acc.builtin(
                        "shell",
                        Decision::Require,
                        format!("`{raw}` is only known at run time ({why})"),
                    );
                    return;
                }
            }
        }
        if Scene::is_relative(raw) && scene.cwd_unknown {
            acc.builtin(
                "shell",
                Decision::Require,
                format!("`{raw}` is relative to a directory only known at run time (cd)"),
            );
        }
        let verb = match class {
            FileClass::Read => "reading",
            FileClass::Write => "writing",
        };
        for p in scene.resolve_all(raw) {
            let what = || format!("{verb} {}", p.display());
            let list = match class {
                FileClass::Read => &self.index.read_rules,
                FileClass::Write => &self.index.write_rules,
            };
            let rule = match tool {
                Some(t) => best_rule(self, self.tool_rules(t), |_, m| {
                    m.applies_to_tool(t) && path_spec_matches(m, &p, scene)
                }),
                None => best_rule(self, list.iter().copied(), |_, m| {
                    m.applies_to_class(class) && path_spec_matches(m, &p, scene)
                }),
            };
            if let Some((r, m)) = rule {
                acc.push_rule(r, m, what);
            }
            let hit = match class {
                FileClass::Read => protected::check_read(&p, scene),
                FileClass::Write => {
                    protected::check_write(&p, scene).or_else(|| destructive::check_write(&p))
                }
            };
            if let Some(hit) = hit {
                acc.guard(self, hit);
            }
            if rule.is_none() {
                acc.push_with(self.default, || self.default_judgment(&what()));
            }
        }
    }

    fn judge_bash(&self, command: &str, scene: &mut Scene) -> Vec<(String, Judgment)> {
        let analysis = shell::analyze(command);
        scene.vars.clone_from(&analysis.bindings);
        let mut whole: HashMap<usize, Vec<GuardHit>> = HashMap::new();
        for (i, hit) in destructive::check_analysis(&analysis) {
            whole.entry(i).or_default().push(hit);
        }
        let mut out = Vec::with_capacity(analysis.parts.len());
        for (i, part) in analysis.parts.iter().enumerate() {
            let mut acc = Strictest::default();
            for hit in whole.remove(&i).unwrap_or_default() {
                acc.guard(self, hit);
            }
            let label = part.label();
            // Quote removal and `$'\x..'` decoding can assemble a secret the raw input scan
            // could not see (`'AKIA''…'`), so the normalized parts are scanned as well.
            if self.guard_enabled(GuardId::Secrets) {
                let kinds: Vec<&str> = crate::redact::find_secrets(&label)
                    .iter()
                    .map(|m| m.kind)
                    .collect();
                if !kinds.is_empty() {
                    acc.guard(
                        self,
                        GuardHit::deny(GuardId::Secrets, secrets_reason(&kinds)),
                    );
                }
            }
            match part {
                Part::Command(cmd) => {
                    if let Some(dir) = &cmd.chdir {
                        enter_dir(dir, scene);
                    }
                    self.judge_command(cmd, scene, &mut acc);
                    track_cd(cmd, scene);
                }
                Part::Write { path, via } => {
                    self.judge_file_word(FileClass::Write, path, via, scene, &mut acc);
                }
                Part::Read { path, via } => {
                    self.judge_file_word(FileClass::Read, path, via, scene, &mut acc);
                }
                Part::Foreign { path, via } => {
                    // Tooling pointed inside the project adds nothing to judge: the part only
                    // counts when it points elsewhere (or a guard had something to say).
                    if !judge_foreign(path, via, scene, &mut acc) && acc.0.is_none() {
                        continue;
                    }
                }
                Part::Opaque { reason, .. } => {
                    acc.builtin("shell", Decision::Require, reason.clone());
                    if self.default == Decision::Deny {
                        acc.push(self.default_judgment("what cannot be judged statically"));
                    }
                }
            }
            let j = acc.0.unwrap_or_else(|| self.default_judgment("this part"));
            out.push((label, j));
        }
        if out.is_empty() {
            out.push((
                command.trim().to_string(),
                self.default_judgment("an empty command"),
            ));
        }
        out
    }

    fn judge_file_word(
        &self,
        class: FileClass,
        path: &Word,
        via: &str,
        scene: &Scene,
        acc: &mut Strictest,
    ) {
        match scene.word_paths(path) {
            Ok(paths) => {
                for raw in paths {
                    self.judge_path(class, None, &raw, scene, acc);
                }
            }
            Err(why) => {
                acc.builtin(
                    "shell",
                    Decision::Require,
                    format!("`{via}` names a file only known at run time ({why})"),
                );
                // Whatever the unknown part is, a write below a protected directory
                // (`.git/hooks/$x`, `~/.ssh/$f`) is a write to it.
                if class == FileClass::Write {
                    if let Some(dir) = static_dir(&path.text) {
                        for p in scene.resolve_all(&format!("{dir}/x")) {
                            if let Some(hit) = protected::check_write(&p, scene) {
                                acc.guard(self, hit);
                            }
                        }
                    }
                }
            }
        }
    }

    fn judge_tool(&self, call: &ToolCall, scene: &mut Scene) -> Vec<(String, Judgment)> {
        let input = &call.input;
        let s = |k: &str| input.get(k).and_then(Value::as_str);
        let tool = &call.tool;
        match tool {
            Tool::Bash => self.judge_bash(s("command").unwrap_or(""), scene),
            _ if file_class(tool).is_some() => {
                let class = file_class(tool).unwrap_or(FileClass::Read);
                let raw = match tool {
                    Tool::NotebookEdit | Tool::NotebookRead => s("notebook_path"),
                    Tool::Glob | Tool::Grep | Tool::LS => s("path"),
                    _ => s("file_path"),
                };
                let mut targets = vec![raw.unwrap_or(".").to_string()];
                if *tool == Tool::Glob {
                    if let Some(pattern) = s("pattern") {
                        let literal: String = pattern
                            .split(['*', '?', '[', '{'])
                            .next()
                            .unwrap_or("")
                            .to_string();
                        // The directory the pattern itself reaches into (`/etc/*`, `../x/*`).
                        let dir = match literal.rsplit_once('/') {
                            Some(("", _)) => "/",
                            Some((d, _)) => d,
                            None => "",
                        };
                        if !dir.is_empty() {
                            let base = raw.unwrap_or(".");
                            targets.push(if dir.starts_with('/') || dir.starts_with('~') {
                                dir.to_string()
                            } else {
                                format!("{}/{dir}", base.trim_end_matches('/'))
                            });
                        }
                    }
                }
                targets
                    .into_iter()
                    .map(|t| {
                        let mut acc = Strictest::default();
                        self.judge_path(class, Some(tool), &t, scene, &mut acc);
                        let j = acc.0.unwrap_or_else(|| self.default_judgment("this call"));
                        (format!("{tool}:{t}"), j)
                    })
                    .collect()
            }
            Tool::WebFetch => {
                let url = s("url").unwrap_or("");
                let mut acc = Strictest::default();
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                match url_host(url).filter(|_| scheme_ok) {
                    Some(host) => {
                        match best_rule(self, self.tool_rules(&Tool::WebFetch), |_, m| {
                            m.applies_to_tool(&Tool::WebFetch)
                                && match &m.spec {
                                    Spec::All => true,
                                    Spec::Domain(d) => domain_matches(d, &host),
                                    _ => false,
                                }
                        }) {
                            Some((r, m)) => {
                                acc.push(rule_judgment(r, m, &format!("fetching from {host}")));
                            }
                            None => {
                                acc.push(self.default_judgment(&format!("fetching from {host}")));
                            }
                        }
                    }
                    None => acc.builtin(
                        "schema",
                        Decision::Require,
                        "cannot tell which http(s) host this URL fetches from",
                    ),
                }
                vec![(
                    format!("WebFetch:{url}"),
                    acc.0.unwrap_or_else(|| self.default_judgment("this call")),
                )]
            }
            _ => {
                let mut acc = Strictest::default();
                match best_rule(self, 0..self.rules.len(), |_, m| {
                    m.applies_to_tool(tool) && matches!(m.spec, Spec::All)
                }) {
                    Some((r, m)) => acc.push(rule_judgment(r, m, "this tool")),
                    None => acc.push(self.default_judgment(&format!("the tool {tool}"))),
                }
                vec![(
                    tool.to_string(),
                    acc.0.unwrap_or_else(|| self.default_judgment("this call")),
                )]
            }
        }
    }

    /// Judges a call. Never fails: what cannot be judged is required or denied.
    pub fn evaluate_call(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict {
        if let Err(reason) = crate::schema::check(&call.tool, &call.input) {
            return self.single(Decision::Deny, "schema", &call.tool.name(), reason);
        }
        if self.guard_enabled(GuardId::Secrets) {
            let kinds = crate::redact::find_secrets_in_value(&call.input);
            if !kinds.is_empty() {
                return self.single(
                    Decision::Deny,
                    GuardId::Secrets.as_str(),
                    "input",
                    secrets_reason(&kinds),
                );
            }
        }
        let mut scene = Scene::with_cache(ctx, &call.cwd, &self.base_cache);
        let judged = self.judge_tool(call, &mut scene);
        let mut deciding = 0;
        for (i, (_, j)) in judged.iter().enumerate() {
            if j.decision > judged[deciding].1.decision {
                deciding = i;
            }
        }
        let (label, j) = &judged[deciding];
        let decision = j.decision;
        let approval = (decision == Decision::Require).then(|| {
            let mut spec = j.approval.clone().unwrap_or(ApprovalSpec {
                approvers: Vec::new(),
                quorum: 1,
                remember_secs: None,
            });
            for (_, other) in &judged {
                if other.decision == Decision::Require {
                    if let Some(a) = &other.approval {
                        spec.quorum = spec.quorum.max(a.quorum);
                    }
                }
            }
            spec
        });
        let reason = if judged.len() > 1 {
            format!("{} (part: {label})", j.reason)
        } else {
            j.reason.clone()
        };
        Verdict {
            decision,
            reason: crate::redact::redact_str(&reason),
            rule_id: j.rule_id.clone(),
            deciding_part: (judged.len() > 1).then(|| crate::redact::redact_str(label)),
            policy_sha256: self.sha256.clone(),
            approval,
            parts: judged
                .iter()
                .map(|(label, j)| PartFinding {
                    part: crate::redact::redact_str(label),
                    decision: j.decision,
                    rule_id: j.rule_id.clone(),
                    reason: crate::redact::redact_str(&j.reason),
                })
                .collect(),
        }
    }

    fn single(&self, decision: Decision, id: &str, part: &str, reason: String) -> Verdict {
        Verdict {
            decision,
            reason: reason.clone(),
            rule_id: Some(id.to_string()),
            deciding_part: None,
            policy_sha256: self.sha256.clone(),
            approval: (decision == Decision::Require).then(|| ApprovalSpec {
                approvers: Vec::new(),
                quorum: 1,
                remember_secs: None,
            }),
            parts: vec![PartFinding {
                part: part.to_string(),
                decision,
                rule_id: Some(id.to_string()),
                reason,
            }],
        }
    }
}

fn secrets_reason(kinds: &[&str]) -> String {
    format!(
        "the input contains a secret value ({}); never put secrets in tool inputs — refer to \
         them instead (e.g. an environment variable such as \"$API_TOKEN\", or a secret \
         reference your tooling resolves)",
        kinds.join(", ")
    )
}

fn path_spec_matches(m: &Matcher, p: &Path, scene: &Scene) -> bool {
    match &m.spec {
        Spec::All => true,
        Spec::Path(pat) => pat.matches(p, &scene.bases),
        _ => false,
    }
}

/// Project tooling pointed at code or configuration: fine inside the project root, otherwise
/// (or when the path is only known at run time) a human decides, since no project build or
/// test rule vouches for code elsewhere.
/// Returns whether the path is (or may be) outside the project.
fn judge_foreign(path: &Word, via: &str, scene: &Scene, acc: &mut Strictest) -> bool {
    let outside = path.dynamic
        || (Scene::is_relative(&path.text) && scene.cwd_unknown)
        || scene
            .resolve_all(&path.text)
            .iter()
            .any(|p| scene.outside_project(p));
    if outside {
        acc.builtin(
            "shell",
            Decision::Require,
            format!(
                "runs project tooling on code outside the project: `{via}` points at `{}`",
                path.text
            ),
        );
    }
    outside
}

/// Adds a directory relative paths may be relative to from now on (never removes one: judging
/// against every candidate is the strict choice).
fn enter_dir(dir: &Word, scene: &mut Scene) {
    if dir.text == "-" && !dir.dynamic {
        scene.cwd_unknown = true;
        return;
    }
    // `cd "$HOME/x"`, `cd ~+/src`: expanded like any other word, or unknown.
    let Ok(raws) = scene.word_paths(dir) else {
        scene.cwd_unknown = true;
        return;
    };
    for raw in raws {
        for p in scene.resolve_all(&raw) {
            if !scene.cwds.contains(&p) {
                scene.cwds.push(p);
                scene.memo.borrow_mut().clear();
            }
        }
    }
}

/// Follows `cd` so later relative paths are judged against every directory they may be in.
fn track_cd(cmd: &SimpleCommand, scene: &mut Scene) {
    if !matches!(cmd.name(), "cd" | "pushd" | "popd") {
        return;
    }
    let target = crate::guards::operands(cmd.args()).into_iter().next();
    match target {
        Some(w) if (w.dynamic || w.text != "-") && cmd.name() != "popd" => enter_dir(w, scene),
        None if cmd.name() == "cd" => {
            let home = scene.bases.home.clone();
            if !scene.cwds.contains(&home) {
                scene.cwds.push(home);
                scene.memo.borrow_mut().clear();
            }
        }
        _ => scene.cwd_unknown = true,
    }
}

impl PolicyEngine for Policy {
    fn evaluate(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict {
        // A bug in the engine must not take the gate down or let the call through.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate_call(call, ctx)
        }))
        .unwrap_or_else(|_| {
            self.single(
                Decision::Deny,
                "internal",
                &call.tool.name(),
                "the policy engine failed while judging this call".into(),
            )
        })
    }
    fn policy_sha256(&self) -> String {
        self.sha256.clone()
    }
}
