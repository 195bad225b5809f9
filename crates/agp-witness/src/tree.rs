//! The submitter's view of the journal's Merkle tree: every aligned perfect subtree root kept
//! by level as leaves arrive, so the root at any size and a consistency proof between any two
//! sizes take O(log² n) hashes instead of rehashing the whole journal on every checkpoint.
//! Memory: about two hashes (64 bytes) per entry.

use agp_journal::merkle::{empty_root, node_hash, Hash};

#[derive(Debug, Default)]
pub struct Tree {
    /// `levels[k][i]`: root of the perfect subtree of leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

impl Tree {
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn clear(&mut self) {
        self.levels.clear();
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut k = 0;
        loop {
            if self.levels.len() == k {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[k];
            level.push(node);
            if level.len() % 2 == 1 {
                return;
            }
            node = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            k += 1;
        }
    }

    /// The RFC 6962 root of leaves `[start, start + len)`, where `start` is a multiple of the
    /// smallest power of two ≥ `len` (as every subtree RFC 6962's recursion visits is).
    fn range_root(&self, start: u64, len: u64) -> Hash {
        if len == 0 {
            return empty_root();
        }
        if len.is_power_of_two() {
            let k = len.trailing_zeros() as usize;
            // In range: callers never ask past `size()`.
            return self.levels[k][(start >> k) as usize];
        }
        let k = split(len);
        node_hash(
            &self.range_root(start, k),
            &self.range_root(start + k, len - k),
        )
    }

    /// The root at `size` (≤ `size()`).
    pub fn root(&self, size: u64) -> Hash {
        self.range_root(0, size)
    }

    /// RFC 6962 §2.1.2 PROOF(old, D[0:new]), for `old ≤ new ≤ size()`.
    pub fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out);
        }
        out
    }

    fn subproof(&self, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.range_root(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.range_root(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.range_root(start, k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_journal::merkle::{self, leaf_hash};

    #[test]
    fn roots_and_proofs_match_the_reference_implementation() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = Tree::default();
        assert_eq!(t.root(0), empty_root());
        for (n, l) in leaves.iter().enumerate() {
            t.push(*l);
            let n = n + 1;
            assert_eq!(t.root(n as u64), merkle::root_of(&leaves[..n]));
        }
        for new in 0..=70usize {
            assert_eq!(t.root(new as u64), merkle::root_of(&leaves[..new]));
            for old in 0..=new {
                assert_eq!(
                    t.consistency(old as u64, new as u64),
                    merkle::consistency_proof(&leaves[..new], old as u64).unwrap(),
                    "{old} -> {new}"
                );
            }
        }
    }
}
