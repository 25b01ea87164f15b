//! RFC 6962 / RFC 9162 Merkle tree over SHA-256.
//!
//! The audit log commits to its records with this tree so that a single signed
//! root (see `super::note::Checkpoint`) covers every record, and so that
//! clients can check inclusion and append-only growth with logarithmic proofs.
//! Proofs arrive from untrusted parties: verification never panics and reports
//! why a proof was rejected.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof could not be produced or was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeLargerThanNew { old_size: u64, new_size: u64 },
    #[error("consistency with an empty old tree cannot be proven")]
    EmptyOldTree,
    #[error("wrong proof length: expected {expected} hashes, got {got}")]
    WrongProofLength { expected: usize, got: usize },
    #[error("computed root does not match the expected root")]
    RootMismatch,
    #[error("computed old root does not match the expected old root")]
    OldRootMismatch,
    #[error("computed new root does not match the expected new root")]
    NewRootMismatch,
}

/// Hash of a leaf; the 0x00 prefix separates leaves from interior nodes so a
/// node can never be passed off as a record (second-preimage resistance).
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(record);
    h.finalize().into()
}

/// Hash of an interior node, domain-separated from leaves by the 0x01 prefix.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Incremental tree that keeps only the roots of the perfect subtrees making
/// up the current size, so appending needs O(log n) memory, not every leaf.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// Perfect subtree roots, largest (leftmost) first; one per set bit of `size`.
    nodes: Vec<Hash>,
    size: u64,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, merging equal-height subtrees like a binary carry.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut carry = self.size;
        while carry & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                None => break, // unreachable: one node per set bit of `size`
            }
            carry >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// Number of leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MTH of all leaves pushed so far; right-to-left folding of the subtree
    /// roots reproduces the RFC's "largest power of two" split.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Merkle Tree Hash over already-hashed leaves (RFC 9162 §2.1.1).
pub fn root(leaves: &[Hash]) -> Hash {
    mth(leaves)
}

/// Recursive MTH; depth is log2(n) and nothing is allocated.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&mth(left), &mth(right))
        }
    }
}

/// Largest power of two strictly smaller than `n` (the RFC's k; needs n >= 2).
fn split_point(n: usize) -> usize {
    n.next_power_of_two() / 2
}

/// Inclusion proof for leaf `index` (RFC 9162 §2.1.3.1 PATH), leaf side first.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    let m = usize::try_from(index)
        .ok()
        .filter(|&m| m < leaves.len())
        .ok_or(ProofError::IndexOutOfRange { index, size })?;
    // Walk down from the root, collecting the sibling subtree at each split;
    // the walk yields root-side hashes first, so reverse at the end.
    let (mut lo, mut hi) = (0usize, leaves.len());
    let mut proof = Vec::new();
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m - lo < k {
            proof.push(mth(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(mth(&leaves[lo..lo + k]));
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Consistency proof from the first `old_size` leaves to all of `leaves`
/// (RFC 9162 §2.1.4.1 SUBPROOF with b = true), leaf side first.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new_size = leaves.len() as u64;
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let mut m = usize::try_from(old_size)
        .ok()
        .filter(|&m| m <= leaves.len())
        .ok_or(ProofError::OldSizeLargerThanNew { old_size, new_size })?;
    let (mut lo, mut hi) = (0usize, leaves.len());
    // `whole_old_subtree` is the RFC's b: the old tree is a complete subtree
    // the verifier already knows, so its hash need not be sent.
    let mut whole_old_subtree = true;
    let mut proof = Vec::new();
    loop {
        let n = hi - lo;
        if m == n {
            if !whole_old_subtree {
                proof.push(mth(&leaves[lo..hi]));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(mth(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(mth(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
            whole_old_subtree = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2 describes.
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
    let (_, r) =
        fold_path(index, size - 1, None, *leaf, proof).ok_or(ProofError::WrongProofLength {
            expected: path_len(index, size - 1),
            got: proof.len(),
        })?;
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof exactly as RFC 9162 §2.1.4.2 describes, plus
/// the edge cases: equal sizes need an empty proof and equal roots, and an
/// empty old tree is refused because the RFC defines no proof for it (callers
/// that trust any log's first checkpoint must decide that explicitly).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeLargerThanNew { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let wrong_length = |expected| ProofError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(wrong_length(0));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // Step 3, then step 4: skip the levels where the old tree's right edge is
    // a left child, as those nodes are shared by both trees.
    let (f, s) = (old_size - 1, new_size - 1);
    let skip = f.trailing_ones();
    let (f, s) = (f >> skip, s >> skip);
    let old_is_pow2 = old_size.is_power_of_two();
    let expected = path_len(f, s) + usize::from(!old_is_pow2);
    // Step 2: a power-of-two old tree is itself a node of the new tree, so its
    // root stands in for the first proof element.
    let mut path = old_is_pow2.then_some(old_root).into_iter().chain(proof);
    // Steps 1 and 5: an empty proof fails; otherwise seed fr and sr.
    let first = match path.next() {
        Some(first) if !proof.is_empty() => *first,
        _ => return Err(wrong_length(expected)),
    };
    let (fr, sr) = fold_path(f, s, Some(first), first, path).ok_or(wrong_length(expected))?;
    if fr != Some(*old_root) {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// The hashing loop shared by RFC 9162 §2.1.3.2 step 4 and §2.1.4.2 step 6.
/// `sr` accumulates the root being proven; `fr`, if given, the old root, which
/// only absorbs left siblings. `None` if the path length does not fit (f, s).
fn fold_path<'a>(
    mut f: u64,
    mut s: u64,
    mut fr: Option<Hash>,
    mut sr: Hash,
    path: impl IntoIterator<Item = &'a Hash>,
) -> Option<(Option<Hash>, Hash)> {
    for c in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            fr = fr.map(|fr| node_hash(c, &fr));
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some((fr, sr))
}

/// Number of hashes the RFC 9162 loop consumes from (`f`, `s`): one per level
/// below the point where the paths to `f` and `s` meet, plus one per left
/// sibling above it. Only used to make length errors informative.
fn path_len(f: u64, s: u64) -> usize {
    let inner = u64::BITS - (f ^ s).leading_zeros();
    (inner + f.checked_shr(inner).unwrap_or(0).count_ones()) as usize
}

#[cfg(test)]
mod tests {
    use super::ProofError::*;
    use super::*;

    fn unhex(hex: &str) -> Vec<u8> {
        let digit = |i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
        (0..hex.len()).step_by(2).map(digit).collect()
    }

    fn h(hex: &str) -> Hash {
        unhex(hex).try_into().unwrap()
    }

    /// Whitespace-separated hex hashes.
    fn hs(list: &str) -> Vec<Hash> {
        list.split_whitespace().map(h).collect()
    }

    // RFC 6962 reference tree, from transparency-dev/merkle proof/verify_test.go
    // (also google/certificate-transparency merkle_tree_test.cc).
    const RECORDS: &str = "- 00 10 2021 3031 40414243 5051525354555657 \
                           606162636465666768696a6b6c6d6e6f";
    const ROOTS: &str = "\
        6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d \
        fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125 \
        aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77 \
        d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7 \
        4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4 \
        76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef \
        ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c \
        5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";
    const H96: &str = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7";
    const H5F: &str = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e";
    const H6B: &str = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4";
    const HBC: &str = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b";
    const HCA: &str = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0";
    const HD3: &str = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7";
    const H0E: &str = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a";
    const HB0: &str = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f";
    const HFA: &str = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125";
    const H6E: &str = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";

    fn reference_leaves() -> Vec<Hash> {
        let record = |r: &str| leaf_hash(&unhex(r.trim_start_matches('-')));
        RECORDS.split_whitespace().map(record).collect()
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn len_err(expected: usize, got: usize) -> Result<(), ProofError> {
        Err(WrongProofLength { expected, got })
    }

    fn too_big(old_size: u64, new_size: u64) -> ProofError {
        OldSizeLargerThanNew { old_size, new_size }
    }

    #[test]
    fn known_answers() {
        let empty = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let empties = [empty_root(), root(&[]), Frontier::new().root()];
        assert_eq!(empties, [empty; 3]);
        let l = h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56");
        assert_eq!(leaf_hash(b"L123456"), l);
        let (leaves, roots, mut frontier) = (reference_leaves(), hs(ROOTS), Frontier::new());
        for i in 0..8 {
            frontier.push(leaves[i]);
            assert_eq!([root(&leaves[..=i]), frontier.root()], [roots[i]; 2]);
        }
        let inclusion = [
            (0, 8, vec![H96, H5F, H6B]),
            (5, 8, vec![HBC, HCA, HD3]),
            (2, 3, vec![HFA]),
            (1, 5, vec![H6E, H5F, HBC]),
        ];
        for (i, n, want) in inclusion {
            let want: Vec<Hash> = want.into_iter().map(h).collect();
            assert_eq!(inclusion_proof(&leaves[..n], i as u64).as_ref(), Ok(&want));
            let res = verify_inclusion(&leaves[i], i as u64, n as u64, &want, &roots[n - 1]);
            assert_eq!(res, Ok(()));
        }
        let consistency = [
            (1, 8, vec![H96, H5F, H6B]),
            (6, 8, vec![H0E, HCA, HD3]),
            (2, 5, vec![H5F, HBC]),
            (6, 7, vec![H0E, HB0, HD3]),
        ];
        for (m, n, want) in consistency {
            let want: Vec<Hash> = want.into_iter().map(h).collect();
            let (r1, r2, m) = (&roots[m - 1], &roots[n - 1], m as u64);
            assert_eq!(consistency_proof(&leaves[..n], m).as_ref(), Ok(&want));
            assert_eq!(verify_consistency(m, n as u64, r1, r2, &want), Ok(()));
        }
    }

    #[test]
    fn frontier_matches_root() {
        let (all, mut f) = (leaves(70), Frontier::new());
        for n in 0..=70 {
            assert_eq!((f.size(), f.root()), (n as u64, root(&all[..n])));
            if let Some(leaf) = all.get(n) {
                f.push(*leaf);
            }
        }
    }

    /// Tampered variants of a proof: each element bit-flipped, dropped at
    /// either end, and with an extra element at either end.
    fn tampered(proof: &[Hash], extras: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = Vec::new();
        for k in 0..proof.len() {
            out.push(proof.to_vec());
            out[k][k][0] ^= 0x10;
        }
        if let Some(((_, tail), (_, head))) = proof.split_first().zip(proof.split_last()) {
            out.extend([tail.to_vec(), head.to_vec()]);
        }
        for e in extras {
            out.push([proof, &[*e]].concat());
            out.push([&[*e], proof].concat());
        }
        out
    }

    #[test]
    fn all_inclusion_proofs_verify_and_tampering_fails() {
        let (all, junk) = (leaves(40), leaf_hash(b"junk"));
        for n in 1..=40u64 {
            let tree = &all[..n as usize];
            let r = root(tree);
            for (i, leaf) in (0..n).zip(tree) {
                let proof = inclusion_proof(tree, i).unwrap();
                assert_eq!(proof.len(), path_len(i, n - 1));
                assert_eq!(verify_inclusion(leaf, i, n, &proof, &r), Ok(()));
                let bad = |l: &Hash, idx: u64, sz: u64, p: &[Hash], rt: &Hash| {
                    verify_inclusion(l, idx, sz, p, rt).is_err()
                };
                assert!(bad(&junk, i, n, &proof, &r) && bad(leaf, i, n, &proof, &junk));
                for idx in [i.wrapping_sub(1), i + 1, i ^ 2, i + n] {
                    assert!(bad(leaf, idx, n, &proof, &r), "n={n} i={i} idx={idx}");
                }
                assert!(bad(leaf, i, n * 2, &proof, &r) && bad(leaf, i, n / 2, &proof, &r));
                for p in tampered(&proof, &[junk, r]) {
                    assert!(bad(leaf, i, n, &p, &r), "n={n} i={i} {p:?}");
                }
            }
            let oob = IndexOutOfRange { index: n, size: n };
            assert_eq!(inclusion_proof(tree, n), Err(oob));
        }
        let (l0, r2, e) = (all[0], root(&all[..2]), empty_root());
        let oob = IndexOutOfRange { index: 0, size: 0 };
        assert_eq!(verify_inclusion(&junk, 0, 0, &[], &e), Err(oob));
        assert_eq!(verify_inclusion(&l0, 0, 2, &[], &r2), len_err(1, 0));
        assert_eq!(verify_inclusion(&l0, 0, 1, &[junk], &l0), len_err(0, 1));
        assert_eq!(verify_inclusion(&l0, 0, 1, &[], &junk), Err(RootMismatch));
    }

    #[test]
    fn all_consistency_proofs_verify_and_tampering_fails() {
        let (all, junk) = (leaves(40), leaf_hash(b"junk"));
        let r: Vec<Hash> = (0..=40).map(|n| root(&all[..n])).collect();
        let bad = |a: u64, b: u64, p: &[Hash], ra: &Hash, rb: &Hash| {
            verify_consistency(a, b, ra, rb, p).is_err()
        };
        for n in 1..=40u64 {
            let (tree, r2) = (&all[..n as usize], r[n as usize]);
            for m in 1..=n {
                let (r1, proof) = (r[m as usize], consistency_proof(tree, m).unwrap());
                assert_eq!(verify_consistency(m, n, &r1, &r2, &proof), Ok(()));
                assert!(bad(m, n, &proof, &junk, &r2) && bad(m, n, &proof, &r1, &junk));
                if m == n {
                    assert!(proof.is_empty() && bad(m, n, &[junk], &r1, &r2));
                    continue;
                }
                let empty = verify_consistency(m, n, &r1, &r2, &[]);
                assert_eq!(empty, len_err(proof.len(), 0));
                assert!(bad(m, n, &proof, &r2, &r1) && bad(m, n * 2, &proof, &r1, &r2));
                assert!(bad(m, n / 2, &proof, &r1, &r2));
                for old in [m - 1, m + 1, m ^ 2] {
                    assert!(old == m || bad(old, n, &proof, &r1, &r2), "{m}->{n} {old}");
                }
                for p in tampered(&proof, &[junk, r1, r2, proof[0]]) {
                    assert!(bad(m, n, &p, &r1, &r2), "{m}->{n} {p:?}");
                }
            }
            assert_eq!(consistency_proof(tree, 0), Err(EmptyOldTree));
            assert_eq!(consistency_proof(tree, n + 1), Err(too_big(n + 1, n)));
        }
        let (e, p) = (empty_root(), consistency_proof(&all[..4], 3).unwrap());
        let cases = [
            (0, 0, e, e, vec![], Err(EmptyOldTree)),
            (0, 5, e, r[5], vec![], Err(EmptyOldTree)),
            (3, 2, r[3], r[2], vec![], Err(too_big(3, 2))),
            (4, 4, r[4], r[5], vec![], Err(RootMismatch)),
            (3, 4, r[3], r[4], vec![], len_err(3, 0)),
            (3, 4, junk, r[4], p.clone(), Err(OldRootMismatch)),
            (3, 4, r[3], junk, p, Err(NewRootMismatch)),
        ];
        for (a, b, ra, rb, p, want) in cases {
            assert_eq!(verify_consistency(a, b, &ra, &rb, &p), want);
        }
    }

    #[test]
    fn large_tree_proofs() {
        let all = leaves((1 << 15) + 3);
        let (n, r) = (all.len() as u64, root(&all));
        for i in [0, 1, n / 2, n - 1] {
            let proof = inclusion_proof(&all, i).unwrap();
            assert_eq!(verify_inclusion(&all[i as usize], i, n, &proof, &r), Ok(()));
        }
        for m in [1, 3, 1 << 14, (1 << 15) + 1, n - 1] {
            let proof = consistency_proof(&all, m).unwrap();
            let r1 = root(&all[..m as usize]);
            assert_eq!(verify_consistency(m, n, &r1, &r, &proof), Ok(()));
        }
    }
}
