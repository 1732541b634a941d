//! Row partition: a split sends a leaf's rows left or right. Rules are in
//! bin space ([`BinRule`]); the partition reads one column of bins through a
//! 256-entry table of directions, branch-free, in parallel chunks for large
//! leaves, and keeps the rows' order on each side.

use rayon::prelude::*;

use super::split::Candidate;
use super::trainer::Trainer;

/// Ranges larger than this are partitioned in parallel chunks.
pub(super) const PARTITION_CHUNK_ROWS: usize = 64 * 1024;

/// Bitset over the (at most 256) bins of a categorical feature.
pub(super) type BinSet = [u64; 4];

pub(super) fn set_contains(set: &BinSet, bin: usize) -> bool {
    set[bin / 64] & (1 << (bin % 64)) != 0
}

/// How a split sends binned rows.
#[derive(Clone, Debug)]
pub(super) enum BinRule {
    /// Bins `<= bin` go left; the missing bin follows `default_left`.
    Numeric { bin: usize, default_left: bool },
    /// Bins in the set go left; everything else (missing too) goes right.
    Categorical { left: BinSet },
}

pub(super) fn bin_goes_left(rule: &BinRule, bin: usize, missing: usize) -> bool {
    match rule {
        BinRule::Numeric {
            bin: threshold,
            default_left,
        } => {
            if bin == missing {
                *default_left
            } else {
                bin <= *threshold
            }
        }
        BinRule::Categorical { left } => bin != missing && set_contains(left, bin),
    }
}

impl Trainer<'_> {
    /// Stable partition of a leaf's rows: left rows first. Returns the number of left rows.
    pub(super) fn partition(&self, indices: &mut [u32], candidate: &Candidate) -> usize {
        let feature = candidate.feature;
        let missing = self.mappers[feature].missing_bin();
        let n_rows = self.labels.len();
        let column = &self.column_bins[feature * n_rows..(feature + 1) * n_rows];
        let mut goes_left = [false; 256];
        for (bin, left) in goes_left.iter_mut().enumerate() {
            *left = bin_goes_left(&candidate.rule, bin, missing);
        }
        // branch-free: each row is written to both sides, and one side's
        // length grows (the direction of a row is not predictable)
        let split = |chunk: &[u32]| {
            let (mut left, mut right) = (vec![0; chunk.len()], vec![0; chunk.len()]);
            let (mut n_left, mut n_right) = (0, 0);
            for &row in chunk {
                let is_left = goes_left[usize::from(column[row as usize])];
                left[n_left] = row;
                right[n_right] = row;
                n_left += usize::from(is_left);
                n_right += usize::from(!is_left);
            }
            left.truncate(n_left);
            right.truncate(n_right);
            (left, right)
        };
        let parts: Vec<(Vec<u32>, Vec<u32>)> = if indices.len() > PARTITION_CHUNK_ROWS {
            indices.par_chunks(PARTITION_CHUNK_ROWS).map(split).collect()
        } else {
            vec![split(indices)]
        };
        let mut pos = 0;
        for (left, _) in &parts {
            indices[pos..pos + left.len()].copy_from_slice(left);
            pos += left.len();
        }
        let n_left = pos;
        for (_, right) in &parts {
            indices[pos..pos + right.len()].copy_from_slice(right);
            pos += right.len();
        }
        n_left
    }
}
