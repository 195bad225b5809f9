//! Every typed kind round-trips, its committed examples (bodies as agp journals them) read
//! back to the same JSON, and its committed JSON Schema is the one the type generates.

use super::*;
use std::path::{Path, PathBuf};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The committed example bodies of `kind`: a JSON array, one body per shape a writer makes.
fn examples(kind: &str) -> Vec<Value> {
    let path = schema_dir().join("examples").join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (every typed kind has examples)", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) if !items.is_empty() => items,
        other => panic!("{}: not a non-empty JSON array: {other:?}", path.display()),
    }
}

/// Body → type → body is the identity, and type → body → type too.
fn round_trips<T: Event + PartialEq + std::fmt::Debug>() {
    for body in examples(T::KIND) {
        let typed = T::from_body(&body)
            .unwrap_or_else(|e| panic!("{} example {body} does not parse: {e}", T::KIND));
        assert_eq!(
            typed.to_body(),
            body,
            "{} example changes on a round trip",
            T::KIND
        );
        assert_eq!(T::from_body(&typed.to_body()).unwrap(), typed);
    }
}

#[test]
fn every_typed_kind_round_trips_through_its_examples() {
    macro_rules! each {
        ($($t:ty),*) => { $(round_trips::<$t>();)* };
    }
    typed_kinds!(each);
}

#[test]
fn examples_and_schemas_are_there_for_exactly_the_typed_kinds() {
    let kinds: std::collections::BTreeSet<String> =
        schemas::kinds().into_iter().map(String::from).collect();
    assert_eq!(kinds.len(), schemas::kinds().len(), "a kind is typed twice");
    for dir in [schema_dir(), schema_dir().join("examples")] {
        let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".json").map(String::from)
            })
            .collect();
        assert_eq!(on_disk, kinds, "{}", dir.display());
    }
}

/// Regenerates each schema and compares it with the committed file; `AGP_UPDATE_SCHEMAS=1`
/// rewrites the files instead.
#[test]
fn committed_schemas_match_the_types() {
    let update = std::env::var_os("AGP_UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (kind, schema) in schemas::all() {
        let path = schema_dir().join(format!("{kind}.json"));
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "schemas differ from the types (run with AGP_UPDATE_SCHEMAS=1 and commit): {stale:?}"
    );
}

#[test]
fn a_body_missing_a_required_member_is_refused() {
    let body = serde_json::json!({"session": "s-1", "status": "completed"});
    assert!(SessionEnded::from_body(&body).is_err());
}

#[test]
fn nullable_members_keep_absent_apart_from_null() {
    let mut started = SessionStarted::new("claude-code", "/r");
    assert!(started.to_body().get("isolation").is_none());
    started.isolation = Some(None);
    assert_eq!(started.to_body()["isolation"], Value::Null);
    assert_eq!(
        SessionStarted::from_body(&started.to_body()).unwrap(),
        started
    );
}

#[test]
fn check_body_holds_bodies_to_their_kind_and_passes_unknown_kinds() {
    for (kind, _) in schemas::all() {
        for body in examples(kind) {
            assert_eq!(check_body(kind, &body), Ok(()), "{kind}");
        }
    }
    let extra = serde_json::json!({"session": "s", "status": "completed", "lease_held": true,
                                   "surprise": 1});
    assert!(
        check_body(SESSION_ENDED, &extra).is_err(),
        "a member no writer writes"
    );
    let missing = serde_json::json!({"session": "s"});
    assert!(check_body(SESSION_ENDED, &missing).is_err());
    assert_eq!(check_body("made.up_kind", &missing), Ok(()));
}

#[test]
fn a_path_that_is_not_utf8_is_journaled_as_text_not_refused() {
    use std::os::unix::ffi::OsStrExt as _;
    let repo = PathBuf::from(std::ffi::OsStr::from_bytes(b"/r/caf\xe9"));
    let body = SessionStarted::new("claude-code", repo).to_body();
    assert_eq!(body["repo"], "/r/caf\u{fffd}");
    let utf8 = SessionStarted::new("claude-code", "/r/café").to_body();
    assert_eq!(utf8["repo"], "/r/café", "a UTF-8 path is written as it is");
}
