//! The audit log as a Merkle tree, as RFC 9162 §2.1 defines it: a leaf is
//! `SHA-256(0x00 ‖ record)`, an interior node `SHA-256(0x01 ‖ left ‖
//! right)`, and a tree of `n` leaves splits at the largest power of two
//! below `n`. Pure: hashes in, hashes out.
//!
//! The service keeps only a [`Frontier`] — the roots of the complete
//! subtrees along the tree's right edge, at most one per bit of the size —
//! so the root of a log of any size is computed in O(log n) memory. Proofs
//! (§2.1.3 inclusion, §2.1.4 consistency) are built from a [`Subtrees`]
//! source that answers "the hash of leaves `[a, b)`", and verified with
//! nothing but the proof, the leaf and the signed roots.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (n ≥ 2): where a tree of `n`
/// leaves splits.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees along the right edge of a tree: enough to extend
/// it leaf by leaf and to compute its root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees, largest (leftmost) first; their
    /// sizes are the set bits of `size`, highest first.
    nodes: Vec<Hash>,
}

/// A complete subtree that a push finished: `height` (its size is
/// `2^height`), its index among subtrees of that height, and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub height: u32,
    pub index: u64,
    pub hash: Hash,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// A frontier as stored: its size and its nodes. `None` if the nodes
    /// can't be those of a tree of that size.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf (its hash); returns the subtrees it completed, of
    /// height 1 and more, smallest first.
    pub fn push(&mut self, leaf: Hash) -> Vec<Completed> {
        let mut done = Vec::new();
        let mut node = leaf;
        let mut height = 0;
        let mut size = self.size;
        // Each trailing 1 bit of the old size is a subtree of that height
        // that now gets a right sibling of equal size.
        while size & 1 == 1 {
            let left = self.nodes.pop().expect("a node per set bit");
            node = node_hash(&left, &node);
            height += 1;
            size >>= 1;
            done.push(Completed { height, index: size, hash: node });
        }
        self.nodes.push(node);
        self.size += 1;
        done
    }

    /// The tree's root (RFC 9162 MTH): the subtrees folded right to left.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(first) = nodes.next() else { return empty_root() };
        nodes.fold(*first, |right, left| node_hash(left, &right))
    }
}

/// Answers the hash of any range of leaves `[from, from + 2^k)` aligned to
/// its size, or the hash of the leaves `[from, to)` in general (RFC 9162
/// MTH of that range). Proof building asks only for ranges that are
/// complete subtrees or a tree's right edge.
pub trait Subtrees {
    type Error;
    /// `MTH(D[from:to])`, `from < to`.
    fn range(&mut self, from: u64, to: u64) -> Result<Hash, Self::Error>;
}

/// Leaves in memory: the naive source, for tests and small logs.
impl Subtrees for &[Hash] {
    type Error = std::convert::Infallible;
    fn range(&mut self, from: u64, to: u64) -> Result<Hash, Self::Error> {
        Ok(mth(&self[from as usize..to as usize]))
    }
}

/// `MTH` of leaf hashes, recursively as the RFC writes it. O(n); for tests
/// and small ranges.
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The ranges of leaves whose hashes make the inclusion proof of leaf `m`
/// in the tree of the first `n` leaves, in proof order (bottom-up).
pub fn inclusion_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    struct Ranges(Vec<(u64, u64)>);
    impl Subtrees for Ranges {
        type Error = std::convert::Infallible;
        fn range(&mut self, from: u64, to: u64) -> Result<Hash, Self::Error> {
            self.0.push((from, to));
            Ok([0; 32])
        }
    }
    let mut r = Ranges(Vec::new());
    let _ = inclusion_proof(m, n, &mut r);
    // The proof reverses what it collected top-down; the ranges were
    // collected top-down too.
    r.0.reverse();
    r.0
}

/// The ranges of leaves whose hashes make the consistency proof from the
/// first `m` to the first `n` leaves, in proof order.
pub fn consistency_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    struct Ranges(Vec<(u64, u64)>);
    impl Subtrees for Ranges {
        type Error = std::convert::Infallible;
        fn range(&mut self, from: u64, to: u64) -> Result<Hash, Self::Error> {
            self.0.push((from, to));
            Ok([0; 32])
        }
    }
    let mut r = Ranges(Vec::new());
    let _ = consistency_proof(m, n, &mut r);
    r.0
}

/// The inclusion proof of leaf `m` in the tree of the first `n` leaves
/// (RFC 9162 §2.1.3.1 PATH), bottom-up.
pub fn inclusion_proof<S: Subtrees>(m: u64, n: u64, source: &mut S) -> Result<Vec<Hash>, S::Error> {
    assert!(m < n, "leaf {m} is not in a tree of {n}");
    // Walk down from the whole tree, collecting the sibling of the side
    // that holds m; the RFC lists them from the leaf up.
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, n);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m - lo < k {
            path.push(source.range(lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(source.range(lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is leaf
/// `m` of the tree of size `n` whose root is `root`.
pub fn verify_inclusion(m: u64, n: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if m >= n {
        return false;
    }
    let (mut f_n, mut s_n) = (m, n - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
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
    s_n == 0 && &r == root
}

/// The consistency proof between the trees of the first `m` and the first
/// `n` leaves (RFC 9162 §2.1.4.1 PROOF), 0 < m ≤ n.
pub fn consistency_proof<S: Subtrees>(m: u64, n: u64, source: &mut S) -> Result<Vec<Hash>, S::Error> {
    assert!(0 < m && m <= n, "no consistency proof from {m} to {n}");
    let mut proof = Vec::new();
    subproof(m, 0, n, true, source, &mut proof)?;
    Ok(proof)
}

/// SUBPROOF(m, D[lo:hi], b), leaves offset by `lo`.
fn subproof<S: Subtrees>(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    source: &mut S,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(source.range(lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, source, out)?;
        out.push(source.range(lo + k, hi)?);
    } else {
        subproof(m - k, lo + k, hi, false, source, out)?;
        out.push(source.range(lo, lo + k)?);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of size
/// `m` with root `old` is a prefix of the tree of size `n` with root `new`.
pub fn verify_consistency(m: u64, n: u64, old: &Hash, new: &Hash, proof: &[Hash]) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    // If m is a power of two, the old root is the first node of the path.
    let owned: Vec<Hash>;
    let path: &[Hash] = if m.is_power_of_two() {
        owned = std::iter::once(*old).chain(proof.iter().copied()).collect();
        &owned
    } else {
        proof
    };
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f_n, mut s_n) = (m - 1, n - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &f_r == old && &s_r == new
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 §2.1.1 as written, independently of the code above.
    fn naive_root(entries: &[Vec<u8>]) -> Hash {
        fn sha(parts: &[&[u8]]) -> Hash {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().into()
        }
        match entries.len() {
            0 => sha(&[]),
            1 => sha(&[&[0], &entries[0]]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                sha(&[&[1], &naive_root(&entries[..k]), &naive_root(&entries[k..])])
            }
        }
    }

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    #[test]
    fn tree_heads_for_0_to_17_leaves_match_the_rfc() {
        for n in 0..=17 {
            let e = entries(n);
            let mut f = Frontier::new();
            for x in &e {
                f.push(leaf_hash(x));
            }
            assert_eq!(f.root(), naive_root(&e), "{n} leaves");
            let leaves: Vec<Hash> = e.iter().map(|x| leaf_hash(x)).collect();
            assert_eq!(mth(&leaves), naive_root(&e));
        }
    }

    #[test]
    fn a_frontier_reports_the_subtrees_it_completes() {
        let mut f = Frontier::new();
        let leaves: Vec<Hash> = entries(8).iter().map(|x| leaf_hash(x)).collect();
        let mut done = Vec::new();
        for l in &leaves {
            done.extend(f.push(*l));
        }
        let heights: Vec<(u32, u64)> = done.iter().map(|c| (c.height, c.index)).collect();
        assert_eq!(heights, [(1, 0), (1, 1), (2, 0), (1, 2), (1, 3), (2, 1), (3, 0)]);
        let last = done.last().unwrap();
        assert_eq!(last.hash, mth(&leaves));
        assert_eq!(done[2].hash, mth(&leaves[..4]));
        let again = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
        assert_eq!(again.root(), f.root());
        assert!(Frontier::from_parts(5, vec![[0; 32]]).is_none(), "5 leaves make two subtrees");
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_tampered_one_does_not() {
        for n in 1..=40u64 {
            let leaves: Vec<Hash> = entries(n as usize).iter().map(|x| leaf_hash(x)).collect();
            let root = mth(&leaves);
            for m in 0..n {
                let proof = inclusion_proof(m, n, &mut leaves.as_slice()).unwrap();
                assert!(proof.len() <= 64 - (n - 1).leading_zeros() as usize + 1);
                assert!(verify_inclusion(m, n, &leaves[m as usize], &proof, &root), "leaf {m} of {n}");
                let other = leaf_hash(b"not in the log");
                assert!(!verify_inclusion(m, n, &other, &proof, &root), "a changed record");
                let mut bad_root = root;
                bad_root[0] ^= 1;
                assert!(!verify_inclusion(m, n, &leaves[m as usize], &proof, &bad_root), "a changed root");
                if !proof.is_empty() {
                    let mut bent = proof.clone();
                    bent[0][5] ^= 1;
                    assert!(!verify_inclusion(m, n, &leaves[m as usize], &bent, &root));
                }
                assert!(!verify_inclusion(n, n, &leaves[m as usize], &proof, &root), "a leaf past the tree");
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        for n in 1..=33u64 {
            let leaves: Vec<Hash> = entries(n as usize).iter().map(|x| leaf_hash(x)).collect();
            let new = mth(&leaves);
            for m in 1..=n {
                let old = mth(&leaves[..m as usize]);
                let proof = consistency_proof(m, n, &mut leaves.as_slice()).unwrap();
                assert!(verify_consistency(m, n, &old, &new, &proof), "{m} → {n}");
                // A history rewritten at any leaf below m.
                let mut rewritten = leaves.clone();
                rewritten[(m as usize - 1) / 2] = leaf_hash(b"forged");
                let forged_new = mth(&rewritten);
                let forged_proof = consistency_proof(m, n, &mut rewritten.as_slice()).unwrap();
                assert!(!verify_consistency(m, n, &old, &forged_new, &forged_proof), "{m} → {n} rewritten");
                let mut bad_old = old;
                bad_old[1] ^= 1;
                assert!(!verify_consistency(m, n, &bad_old, &new, &proof));
            }
        }
    }

    #[test]
    fn the_ranges_of_a_proof_are_the_proofs_hashes() {
        let leaves: Vec<Hash> = entries(23).iter().map(|x| leaf_hash(x)).collect();
        for (m, n) in [(0, 1), (5, 23), (22, 23), (7, 8)] {
            let hashes: Vec<Hash> =
                inclusion_ranges(m, n).iter().map(|(a, b)| mth(&leaves[*a as usize..*b as usize])).collect();
            assert_eq!(hashes, inclusion_proof(m, n, &mut leaves.as_slice()).unwrap());
        }
        for (m, n) in [(1, 23), (8, 23), (13, 23), (23, 23)] {
            let hashes: Vec<Hash> =
                consistency_ranges(m, n).iter().map(|(a, b)| mth(&leaves[*a as usize..*b as usize])).collect();
            assert_eq!(hashes, consistency_proof(m, n, &mut leaves.as_slice()).unwrap());
        }
    }

    #[test]
    fn proofs_stay_logarithmic() {
        // A source that makes up subtree hashes: only the shape matters.
        struct Any;
        impl Subtrees for Any {
            type Error = ();
            fn range(&mut self, from: u64, to: u64) -> Result<Hash, ()> {
                Ok(leaf_hash(format!("{from}-{to}").as_bytes()))
            }
        }
        let n = 1_000_000_000u64;
        let inclusion = inclusion_proof(123_456_789, n, &mut Any).unwrap();
        let consistency = consistency_proof(999_999_937, n, &mut Any).unwrap();
        assert!(inclusion.len() <= 30, "{}", inclusion.len());
        assert!(consistency.len() <= 60, "{}", consistency.len());
    }
}
