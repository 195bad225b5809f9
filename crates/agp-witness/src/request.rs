//! The add-checkpoint request body (c2sp.org/tlog-witness): `old <size>`, up to 63 consistency
//! proof lines, an empty line, then the signed checkpoint note.

use agp_journal::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Most consistency proof lines a client may send (the spec's bound: a tree of 2^63 leaves).
pub const MAX_PROOF_LINES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: &'a [u8],
}

/// Canonical ASCII decimal: no sign, no leading zero (except `0` itself).
pub fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses a request body; the error says what is malformed (answered with 400).
pub fn parse(body: &[u8]) -> Result<AddCheckpoint<'_>, String> {
    let split = body
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no empty line before the checkpoint")?;
    let head = std::str::from_utf8(&body[..split]).map_err(|_| "the header is not UTF-8")?;
    let note = &body[split + 2..];
    let mut lines = head.split('\n');
    let old_size = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(parse_size)
        .ok_or("the first line is not `old <size>` with a canonical decimal size")?;
    let mut proof = Vec::new();
    for l in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err(format!(
                "more than {MAX_PROOF_LINES} consistency proof lines"
            ));
        }
        let h: Hash = B64
            .decode(l)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or("a consistency proof line is not base64 of 32 bytes")?;
        proof.push(h);
    }
    Ok(AddCheckpoint {
        old_size,
        proof,
        note,
    })
}

/// Builds a request body.
pub fn build(old_size: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut out = format!("old {old_size}\n").into_bytes();
    for h in proof {
        out.extend_from_slice(B64.encode(h).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(note);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_parses() {
        let body = "old 20852014\n\
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
\n\
example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20_852_014);
        assert_eq!(r.proof.len(), 4);
        assert!(r
            .note
            .starts_with(b"example.com/behind-the-sofa\n20852163\n"));
        assert_eq!(build(r.old_size, &r.proof, r.note), body.as_bytes());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let note = "o\n1\nAA==\n\n\u{2014} o x\n";
        let h = B64.encode([0u8; 32]);
        for bad in [
            format!("old 01\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old 1\n{note}"),
            format!("new 1\n\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            format!("old 1\n{}\n{note}", format!("{h}\n").repeat(64)),
            "old 1".to_string(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let ok = format!("old 0\n\n{note}");
        assert_eq!(parse(ok.as_bytes()).unwrap().proof, Vec::<Hash>::new());
        let max = format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63));
        assert_eq!(parse(max.as_bytes()).unwrap().proof.len(), 63);
    }
}
