//! A one-pass check that bytes are exactly the RFC 8785 (JCS) canonical form of a JSON value in
//! agp's subset (integers only), without building the value: no whitespace, members sorted by
//! UTF-16 code units and unique, minimal string escapes, canonical integers below 2^53.
//!
//! It accepts exactly the bytes `to_canonical_string(parse(bytes))` would reproduce, and is
//! several times faster than parsing and re-serializing, which is what lets the verifier stream
//! hundreds of thousands of lines a second. A test checks it against that definition.

use agp_contracts::canonical::MAX_SAFE_INTEGER;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    #[error("not JSON: {0} at byte {1}")]
    NotJson(&'static str, usize),
    #[error("member name {0:?} appears twice in one object")]
    DuplicateKey(String),
    #[error("not canonical (RFC 8785): {0} at byte {1}")]
    NotCanonical(&'static str, usize),
}

const MAX_DEPTH: usize = 128;

/// Checks that `bytes` is a canonical JSON object.
pub fn check_canonical_object(bytes: &[u8]) -> Result<(), JcsError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(JcsError::NotJson("invalid UTF-8", 0));
    }
    if bytes.first() != Some(&b'{') {
        return Err(JcsError::NotJson("not an object", 0));
    }
    let mut s = Scanner { b: bytes, i: 0 };
    let res = s.value(0).and_then(|()| {
        if s.i != bytes.len() {
            Err(s.classify_trailing())
        } else {
            Ok(())
        }
    });
    match res {
        // The scan stops at the first flaw; a repeated member name later in the line (or in an
        // object whose members are also out of order) is the more telling finding.
        Err(JcsError::NotCanonical(..)) => match duplicate_key(bytes) {
            Some(k) => Err(JcsError::DuplicateKey(k)),
            None => res,
        },
        other => other,
    }
}

/// The first member name some object in `bytes` repeats (slow path: failing lines only).
fn duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    struct Walk;
    impl<'de> Deserialize<'de> for Walk {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(WalkVisitor)
        }
    }
    struct WalkVisitor;
    impl<'de> Visitor<'de> for WalkVisitor {
        type Value = Walk;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_unit<E>(self) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
            while seq.next_element::<Walk>()?.is_some() {}
            Ok(Walk)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if seen.contains(&k) {
                    return Err(A::Error::custom(format!("\u{0}dup\u{0}{k}")));
                }
                map.next_value::<Walk>()?;
                seen.insert(k);
            }
            Ok(Walk)
        }
    }
    let err = serde_json::from_slice::<Walk>(bytes).err()?.to_string();
    let rest = err.split_once("\u{0}dup\u{0}")?.1;
    // serde_json appends " at line L column C" to custom errors.
    Some(
        rest.rsplit_once(" at line ")
            .map_or(rest, |(k, _)| k)
            .to_string(),
    )
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn not_json(&self, m: &'static str) -> JcsError {
        JcsError::NotJson(m, self.i)
    }

    fn not_canonical(&self, m: &'static str) -> JcsError {
        JcsError::NotCanonical(m, self.i)
    }

    /// Whitespace where a token should be: valid JSON, not canonical.
    fn at_whitespace(&self) -> bool {
        matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r'))
    }

    fn classify_trailing(&self) -> JcsError {
        if self.b[self.i..]
            .iter()
            .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.not_canonical("whitespace")
        } else {
            self.not_json("trailing characters")
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JcsError> {
        if depth > MAX_DEPTH {
            return Err(self.not_json("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b' ' | b'\t' | b'\n' | b'\r') => Err(self.not_canonical("whitespace")),
            Some(_) => Err(self.not_json("unexpected character")),
            None => Err(self.not_json("unexpected end")),
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<(), JcsError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.not_json("invalid literal"))
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), JcsError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else if self.at_whitespace() {
            Err(self.not_canonical("whitespace"))
        } else {
            Err(self.not_json(what))
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), JcsError> {
        self.i += 1; // '{'
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<Key<'a>> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(if self.at_whitespace() {
                    self.not_canonical("whitespace")
                } else {
                    self.not_json("expected a member name")
                });
            }
            let key_start = self.i;
            let key = self.string()?;
            if let Some(p) = &prev {
                match p.cmp_utf16(&key) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(JcsError::DuplicateKey(key.decoded().into_owned()))
                    }
                    std::cmp::Ordering::Greater => {
                        return Err(JcsError::NotCanonical("members out of order", key_start))
                    }
                }
            }
            prev = Some(key);
            self.expect(b':', "expected ':'")?;
            self.value(depth + 1)?;
            if self.comma_or_close(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// After a member or element: a `,` (more follow: `false`) or `close` (the end: `true`),
    /// either consumed; canonical JSON has no whitespace between them.
    fn comma_or_close(&mut self, close: u8, expected: &'static str) -> Result<bool, JcsError> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            _ if self.at_whitespace() => Err(self.not_canonical("whitespace")),
            _ => Err(self.not_json(expected)),
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JcsError> {
        self.i += 1; // '['
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            if self.comma_or_close(b']', "expected ',' or ']'")? {
                return Ok(());
            }
        }
    }

    /// A string at `self.i` (opening quote). Returns its raw content.
    fn string(&mut self) -> Result<Key<'a>, JcsError> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.not_json("unterminated string"));
            };
            match c {
                b'"' => {
                    let raw = &self.b[start..self.i];
                    self.i += 1;
                    return Ok(Key { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    let Some(e) = self.b.get(self.i + 1).copied() else {
                        return Err(self.not_json("unterminated string"));
                    };
                    match e {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 2,
                        b'/' => return Err(self.not_canonical("escaped '/'")),
                        b'u' => {
                            let hex = self
                                .b
                                .get(self.i + 2..self.i + 6)
                                .ok_or_else(|| self.not_json("short \\u escape"))?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(self.not_json("invalid \\u escape"));
                            }
                            // Canonical \u escapes are lowercase 00XX for control characters
                            // that have no short form.
                            let ok = hex[0] == b'0'
                                && hex[1] == b'0'
                                && matches!(hex[2], b'0' | b'1')
                                && !hex[3].is_ascii_uppercase()
                                && !matches!(
                                    (hex[2], hex[3]),
                                    (b'0', b'8' | b'9' | b'a' | b'c' | b'd')
                                );
                            if !ok {
                                return Err(self.not_canonical("unnecessary \\u escape"));
                            }
                            self.i += 6;
                        }
                        _ => return Err(self.not_json("invalid escape")),
                    }
                }
                0x00..=0x1f => return Err(self.not_json("control character in string")),
                _ => {
                    // Skip the plain run up to the next quote, backslash or control byte.
                    self.i += 1;
                    while let Some(&c) = self.b.get(self.i) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.i += 1;
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Result<(), JcsError> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let digits_start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let digits = &self.b[digits_start..self.i];
        if digits.is_empty() {
            return Err(self.not_json("invalid number"));
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(JcsError::NotCanonical(
                "not an integer (agp journals carry integers only)",
                start,
            ));
        }
        if digits.len() > 1 && digits[0] == b'0' {
            return Err(JcsError::NotCanonical("leading zero", start));
        }
        if neg && digits == b"0" {
            return Err(JcsError::NotCanonical("negative zero", start));
        }
        if digits.len() > 16 {
            return Err(JcsError::NotCanonical("integer beyond 2^53", start));
        }
        let n = digits
            .iter()
            .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
        if n > MAX_SAFE_INTEGER {
            return Err(JcsError::NotCanonical("integer beyond 2^53", start));
        }
        Ok(())
    }
}

/// A member name as it appears between the quotes.
struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl Key<'_> {
    fn decoded(&self) -> std::borrow::Cow<'_, str> {
        // The scanner checked the whole line is UTF-8 and cut names at quotes, so this never
        // replaces anything; it borrows.
        let raw = String::from_utf8_lossy(self.raw);
        if !self.escaped {
            return raw;
        }
        // Canonical escapes only: short forms and \u00XX.
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('f') => out.push('\u{c}'),
                Some('r') => out.push('\r'),
                Some('u') => {
                    let h: String = chars.by_ref().take(4).collect();
                    let v = u32::from_str_radix(&h, 16).unwrap_or(0xfffd);
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
        out.into()
    }

    fn cmp_utf16(&self, other: &Key<'_>) -> std::cmp::Ordering {
        // Below U+E000 (UTF-8 lead bytes under 0xEE) UTF-8 byte order is UTF-16 order.
        let simple = |k: &Key<'_>| !k.escaped && k.raw.iter().all(|&b| b < 0xee);
        if simple(self) && simple(other) {
            return self.raw.cmp(other.raw);
        }
        let (a, b) = (self.decoded(), other.decoded());
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::canonical::to_canonical_string;
    use serde_json::{json, Value};

    /// The definition: canonical iff re-serializing the parsed value gives the same bytes.
    fn by_definition(bytes: &[u8]) -> bool {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => v.is_object() && to_canonical_string(&v).is_ok_and(|c| c.as_bytes() == bytes),
            Err(_) => false,
        }
    }

    #[test]
    fn agrees_with_parse_and_reserialize() {
        let cases: &[&str] = &[
            r"{}",
            r#"{"a":1}"#,
            r#"{"a":1,"b":[true,false,null,"x",{"c":-3}],"d":{}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":9007199254740991}"#,
            r#"{"a":9007199254740992}"#,
            r#"{"a":-9007199254740991}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001f"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\n\t\"\\\b\f\r"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"é😀"}"#,
            "{\"a\":\"\u{7f}\u{2028}\"}",
            "{\"\u{ff61}\":1,\"\u{1f600}\":2}",
            "{\"\u{1f600}\":2,\"\u{ff61}\":1}",
            r#"{"a":[1,2,]}"#,
            r#"{"a":tru}"#,
            r"[1]",
            r#"{"a":1"#,
            r#"{"a\n":1,"a":2}"#,
            r#"{"a":1,"a\n":2}"#,
        ];
        for c in cases {
            let ours = check_canonical_object(c.as_bytes()).is_ok();
            assert_eq!(
                ours,
                by_definition(c.as_bytes()),
                "{c}: {:?}",
                check_canonical_object(c.as_bytes())
            );
        }
    }

    #[test]
    fn agrees_with_the_definition_on_mutated_lines() {
        // Deterministic xorshift so failures reproduce.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let seeds = [
            r#"{"body":{"input":{"command":"ls -la\n"},"n":-12,"ok":true,"t":null},"kind":"a.b","seq":3}"#,
            "{\"a\":[1,{\"b\":\"\\u0001\\\\\"}],\"\u{e9}\":\"\u{1f600}\",\"\u{ff61}\":0}",
        ];
        let alphabet = b" \t\n{}[]:,\"\\/0123456789-+.eEabfnrtu\x01\x7f";
        for seed in seeds {
            assert!(check_canonical_object(seed.as_bytes()).is_ok(), "{seed}");
            for _ in 0..4000 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..=rand(2) {
                    let i = rand(b.len());
                    match rand(3) {
                        0 => b[i] = alphabet[rand(alphabet.len())],
                        1 => b.insert(i, alphabet[rand(alphabet.len())]),
                        _ => {
                            b.remove(i);
                        }
                    }
                }
                let ours = check_canonical_object(&b).is_ok();
                assert_eq!(ours, by_definition(&b), "{:?}", String::from_utf8_lossy(&b));
            }
        }
    }

    #[test]
    fn canonical_output_of_random_values_is_accepted() {
        let v = json!({"z": [1, -2, "a\u{1}b", {"y": null, "x": "\u{ff61}", "\u{1f600}": true}], "a": "q\"\\/"});
        let c = to_canonical_string(&v).unwrap();
        check_canonical_object(c.as_bytes()).unwrap();
    }

    #[test]
    fn classifies_duplicates_and_whitespace() {
        assert!(matches!(
            check_canonical_object(br#"{"a":1,"a":2}"#),
            Err(JcsError::DuplicateKey(k)) if k == "a"
        ));
        assert!(matches!(
            check_canonical_object(br#"{"a":{"b":1,"b":1}}"#),
            Err(JcsError::DuplicateKey(_))
        ));
        assert!(matches!(
            check_canonical_object(br#"{"a":1, "b":2}"#),
            Err(JcsError::NotCanonical(..))
        ));
        assert!(matches!(
            check_canonical_object(b"{\"a\":"),
            Err(JcsError::NotJson(..))
        ));
        let deep = "[".repeat(200);
        assert!(check_canonical_object(format!("{{\"a\":{deep}").as_bytes()).is_err());
    }
}
