//! Histograms: per node, per feature, per bin, the sums of the rows'
//! gradients and hessians and their count. A cell is a pair of fixed-point
//! integers ([`Cell`], scaled per round by [`Scale`]), so sums are exact in
//! any order: threads split a node's rows freely, the larger child's
//! histogram is the parent's minus the smaller's, and the model does not
//! depend on the thread count. Every feature owns [`HIST_STRIDE`] cells, so
//! a `u8` bin indexes its cells directly; scattered rows are copied in
//! blocks of [`GATHER_ROWS`] before they are added, so their cache misses
//! overlap.

use rayon::prelude::*;

use super::MIN_HESSIAN;
use super::trainer::Trainer;

/// Nodes with fewer rows get their histogram from one thread.
pub(super) const PARALLEL_HIST_ROWS: usize = 4096;
/// Scattered rows copied together before they are added to a histogram.
pub(super) const GATHER_ROWS: usize = 64;
/// Histogram cells per feature: every bin of a feature (≤ 255 values + missing).
pub(super) const HIST_STRIDE: usize = 260;

/// Histogram cell: the gradient sum, and the hessian sum with the row
/// count in its low bits, of the rows whose value falls in a bin — both
/// fixed-point integers (see [`Scale`]). Integer sums are exact, so they do
/// not depend on the order rows are added in (any split of the work between
/// threads gives the same model), a subtraction of histograms is exact, and
/// a row adds to a cell with one 16-byte integer add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Cell([u64; 2]);

impl Cell {
    pub(super) fn add(&mut self, other: &Cell) {
        let [g, hn] = &mut self.0;
        *g = g.wrapping_add(other.0[0]);
        *hn = hn.wrapping_add(other.0[1]);
    }

    pub(super) fn minus(&self, other: &Cell) -> Cell {
        Cell([self.0[0].wrapping_sub(other.0[0]), self.0[1].wrapping_sub(other.0[1])])
    }
}

/// Sums in real numbers: what split gains and leaf values are computed from.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    pub(super) g: f64,
    pub(super) h: f64,
    pub(super) n: u32,
}

/// The fixed-point scales of one round's gradients: powers of two chosen so
/// no sum over the training rows can overflow. The hessian shares its word
/// with the count (`count_bits` low bits, enough for every training row), so
/// its resolution is the round's total hessian over 2^(61 − count_bits):
/// about 5e-7 of the mean row hessian with a million rows (rounded to
/// nearest, so sums stay unbiased), 3e-2 with 2^28 rows. A decoded hessian
/// is never below `n · MIN_HESSIAN`, as a float sum would not be. Leaf
/// values are summed in `f64` from the gradients themselves, not from cells.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scale {
    pub(super) g: f64,
    pub(super) h: f64,
    pub(super) count_bits: u32,
}

impl Scale {
    pub(super) fn new(gradients: &[[f64; 2]]) -> Self {
        let n_rows = gradients.len().max(1);
        let count_bits = usize::BITS - n_rows.leading_zeros();
        // the largest |g| and the total hessian, summed in fixed chunks so
        // the scale (and the model) does not depend on the thread count
        let max_g = gradients.par_iter().map(|gh| gh[0].abs()).reduce(|| 0.0, f64::max);
        let partial: Vec<f64> = gradients
            .par_chunks(4096)
            .map(|chunk| chunk.iter().map(|gh| gh[1]).sum())
            .collect();
        let total_h: f64 = partial.iter().sum();
        // |sum of g| ≤ 2^62 and sum of h ≤ 2^(61 - count_bits), plus < 1 of
        // rounding per row; in logarithms, so huge or tiny totals (extreme
        // weights) still get a finite, non-zero power of two
        let power = |limit_log2: f64, total_log2: f64| {
            let exponent = limit_log2 - total_log2;
            if exponent.is_finite() {
                exponent.floor().clamp(-1022.0, 1023.0).exp2()
            } else {
                1.0
            }
        };
        let rows_log2 = (n_rows as f64).log2();
        Self {
            g: power(62.0, rows_log2 + max_g.log2()),
            h: power(f64::from(61 - count_bits), total_h.log2()),
            count_bits,
        }
    }

    /// One row's cell.
    pub(super) fn cell(&self, [g, h]: [f64; 2]) -> Cell {
        // rounded half away from zero (`as` truncates; `round` is a libm call here)
        let g = (g * self.g + 0.5f64.copysign(g)) as i64 as u64;
        let h = (h * self.h + 0.5) as u64;
        Cell([g, (h << self.count_bits) | 1])
    }

    pub(super) fn count(&self, cell: &Cell) -> u32 {
        (cell.0[1] & ((1 << self.count_bits) - 1)) as u32
    }

    pub(super) fn sums(&self, cell: &Cell) -> Sums {
        let n = self.count(cell);
        Sums {
            g: cell.0[0] as i64 as f64 / self.g,
            h: ((cell.0[1] >> self.count_bits) as f64 / self.h).max(f64::from(n) * MIN_HESSIAN),
            n,
        }
    }
}

impl Trainer<'_> {
    /// The histogram of `indices` over `features`. Every feature owns
    /// [`HIST_STRIDE`] cells, so a `u8` bin indexes its feature's cells with
    /// no bounds check and no offset table. Large nodes are split between
    /// threads; the integer sums make the split invisible in the result.
    pub(super) fn histogram(&self, indices: &[u32], features: &[usize], row_cells: &[Cell]) -> Vec<Cell> {
        let n_features = self.n_features;
        let n_cells = n_features * HIST_STRIDE;
        let all_features = features.len() == n_features;
        let stride = self.bins.stride;
        let accumulate = |mut hist: Vec<Cell>, chunk: &[u32]| {
            let (per_feature, _) = hist.as_chunks_mut::<HIST_STRIDE>();
            let mut add_row = |bins: &[u8], row_cell: &Cell| {
                if all_features {
                    for (cells, &bin) in per_feature.iter_mut().zip(bins) {
                        cells[usize::from(bin)].add(row_cell);
                    }
                } else {
                    for &feature in features {
                        per_feature[feature][usize::from(bins[feature])].add(row_cell);
                    }
                }
            };
            // Rows of a split node are scattered: copying a block of them
            // first lets their cache misses overlap (a tight loop of
            // independent loads) instead of stalling each row of the
            // accumulation loop in turn.
            let mut block_bins = vec![0u8; GATHER_ROWS * stride];
            let mut block_cells = [Cell::default(); GATHER_ROWS];
            for block in chunk.chunks(GATHER_ROWS) {
                let (first, last) = (block[0] as usize, block[block.len() - 1] as usize);
                if last >= first && last - first + 1 == block.len() {
                    // consecutive rows (the root): read them in place
                    for (bins, row_cell) in self.bins.rows(first..last + 1).zip(&row_cells[first..=last]) {
                        add_row(bins, row_cell);
                    }
                    continue;
                }
                for ((&row, copy), cell) in block
                    .iter()
                    .zip(block_bins.chunks_exact_mut(stride))
                    .zip(&mut block_cells)
                {
                    let row = row as usize;
                    *cell = row_cells[row];
                    // whole 16-byte pieces: a few moves, not a memcpy call
                    let (to, _) = copy.as_chunks_mut::<16>();
                    let (from, _) = self.bins.row(row).as_chunks::<16>();
                    for (to, from) in to.iter_mut().zip(from) {
                        *to = *from;
                    }
                }
                for (bins, row_cell) in block_bins.chunks_exact(stride).zip(&block_cells[..block.len()]) {
                    add_row(bins, row_cell);
                }
            }
            hist
        };
        let empty = || vec![Cell::default(); n_cells];
        if indices.len() < PARALLEL_HIST_ROWS {
            return accumulate(empty(), indices);
        }
        indices
            .par_chunks(GATHER_ROWS * 16)
            .fold(empty, accumulate)
            .reduce_with(|mut hist, other| {
                for (cell, other) in hist.iter_mut().zip(&other) {
                    cell.add(other);
                }
                hist
            })
            .unwrap_or_else(empty)
    }
}
