//! RFC 6962 / RFC 9162 Merkle tree hashing, a streaming frontier, and inclusion and consistency
//! proofs (generation from leaf hashes, verification per RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! Written here rather than taken from a crate: the algorithms are short, the ones crates offer
//! either are not RFC 6962 (rs_merkle) or keep the whole tree in memory, and the verifier needs a
//! frontier (one hash per set bit of the size) so its memory stays O(log n).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// A hash in standard base64, as checkpoints and tlog-proofs write it.
pub fn to_base64(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right border of a tree grown from leaf 0: the roots of the perfect subtrees whose sizes
/// are the set bits of `size`, largest first. Appending is amortised one node hash per leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first.
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Every trailing one bit of the old size is a perfect subtree that the new leaf completes;
        // the frontier holds one node per set bit, smallest last, so those are its last nodes.
        let merged = self.size.trailing_ones() as usize;
        let keep = self.nodes.len().saturating_sub(merged);
        for left in self.nodes.drain(keep..).rev() {
            node = node_hash(&left, &node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// RFC 6962 root hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Size (8 bytes, big-endian) then the nodes: what a reader keeps between runs (the
    /// console's index) to go on from here without re-reading the leaves.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.size.to_be_bytes().to_vec();
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// `None` when the bytes are not a frontier (one node per set bit of the size).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (size, rest) = b.split_first_chunk::<8>()?;
        let size = u64::from_be_bytes(*size);
        if rest.len() % 32 != 0 || rest.len() / 32 != size.count_ones() as usize {
            return None;
        }
        let nodes = rest
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        Some(Self { size, nodes })
    }
}

/// Largest power of two strictly smaller than `n` (n >= 2): RFC 6962's split point.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root hash of `leaves` (MTH in RFC 6962).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
}

/// Inclusion proof (PATH in RFC 6962 §2.1.1) for leaf `index` in the tree over `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index as usize, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n as u64) as usize;
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root_of(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Consistency proof (PROOF in RFC 6962 §2.1.2) that the first `old_size` leaves are a prefix of
/// `leaves`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new = leaves.len() as u64;
    if old_size > new {
        return Err(ProofError::SizesOutOfOrder { old: old_size, new });
    }
    let mut out = Vec::new();
    if old_size > 0 && old_size < new {
        subproof(old_size as usize, leaves, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split(n as u64) as usize;
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty tree; RFC 9162 requires an empty proof.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut items: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        items.push(*old_root);
    }
    items.extend_from_slice(proof);
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = items[0];
    let mut sr = items[0];
    for c in &items[1..] {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_bytes_round_trip_and_keep_the_root() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            let back = Frontier::from_bytes(&f.to_bytes()).unwrap();
            assert_eq!(back, f);
            assert_eq!(back.root(), root_of(&leaves[..=i]));
        }
        assert!(Frontier::from_bytes(&[0, 0, 0, 0, 0, 0, 0, 3]).is_none());
        assert!(Frontier::from_bytes(&[0, 0, 0]).is_none());
    }

    // The Certificate Transparency reference tree (RFC 6962 test data, as published by
    // transparency-dev/merkle and google/certificate-transparency).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn reference_leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_rfc6962_reference_tree_at_every_size() {
        let leaves = reference_leaves();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), h(ROOTS[0]));
        for (n, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.root(), h(ROOTS[n + 1]), "frontier size {}", n + 1);
            assert_eq!(
                root_of(&leaves[..=n]),
                h(ROOTS[n + 1]),
                "root_of size {}",
                n + 1
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_reference_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, &[&str]); 2] = [
            (
                0,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(inclusion_proof(&leaves, index).unwrap(), want);
            verify_inclusion(&leaves[index as usize], index, 8, &want, &h(ROOTS[8])).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_reference_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&leaves[..new as usize], old).unwrap();
            assert_eq!(got, want, "consistency {old}->{new}");
            verify_consistency(
                old,
                new,
                &h(ROOTS[old as usize]),
                &h(ROOTS[new as usize]),
                &want,
            )
            .unwrap();
        }
    }

    #[test]
    fn every_proof_verifies_and_mangled_ones_fail() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let roots: Vec<Hash> = (0..=leaves.len()).map(|n| root_of(&leaves[..n])).collect();
        for n in 1..=leaves.len() {
            for i in 0..n {
                let p = inclusion_proof(&leaves[..n], i as u64).unwrap();
                verify_inclusion(&leaves[i], i as u64, n as u64, &p, &roots[n]).unwrap();
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(
                        verify_inclusion(&leaves[i], i as u64, n as u64, &bad, &roots[n]).is_err()
                    );
                    assert!(
                        verify_inclusion(&leaves[i], i as u64, n as u64, &p[1..], &roots[n])
                            .is_err()
                    );
                }
                let mut long = p.clone();
                long.push([7; 32]);
                assert!(
                    verify_inclusion(&leaves[i], i as u64, n as u64, &long, &roots[n]).is_err()
                );
            }
            for m in 0..=n {
                let p = consistency_proof(&leaves[..n], m as u64).unwrap();
                verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &p).unwrap();
                if m > 0 && m < n {
                    let mut bad = p.clone();
                    bad[0][5] ^= 0x80;
                    assert!(
                        verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &bad).is_err()
                    );
                    assert!(verify_consistency(
                        m as u64,
                        n as u64,
                        &roots[m],
                        &roots[n],
                        &p[..p.len() - 1]
                    )
                    .is_err());
                    assert!(
                        verify_consistency(m as u64, n as u64, &roots[m - 1], &roots[n], &p)
                            .is_err()
                    );
                }
            }
        }
    }
}
