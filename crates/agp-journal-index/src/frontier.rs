//! The Merkle frontier of the indexed lines, kept in the index between catch-ups so a
//! checkpoint's root can be compared without re-reading the journal. (agp-journal's own
//! `Frontier` keeps its nodes private; this is the same RFC 6962 right border, storable.)

use agp_journal::merkle::{empty_root, node_hash, Hash};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first.
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let merged = self.size.trailing_ones() as usize;
        let keep = self.nodes.len().saturating_sub(merged);
        for left in self.nodes.drain(keep..).rev() {
            node = node_hash(&left, &node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Size (8 bytes, big-endian) then the nodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.size.to_be_bytes().to_vec();
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// `None` when the bytes are not a frontier (then the index is rebuilt).
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

#[cfg(test)]
mod tests {
    use super::*;
    use agp_journal::merkle::{leaf_hash, root_of};

    #[test]
    fn matches_agp_journal_roots_and_round_trips() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::default();
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&leaves[..=i]));
            assert_eq!(Frontier::from_bytes(&f.to_bytes()).unwrap(), f);
        }
        assert!(Frontier::from_bytes(&[0, 0, 0, 0, 0, 0, 0, 3]).is_none());
    }
}
