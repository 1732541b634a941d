//! The training rows in bin space, row-major: what histograms read.

use rayon::prelude::*;

use crate::binning::BinMapper;

/// Row-major bins, each row padded to a power of two (≥ 16) or a multiple
/// of 64 bytes and the first row aligned to 64 bytes, so a row never
/// straddles more cache lines than it must and copies in whole 16-byte pieces.
pub(super) struct RowBins {
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) stride: usize,
}

impl RowBins {
    pub(super) fn new(values: &[f64], n_features: usize, mappers: &[BinMapper]) -> Self {
        let stride = if n_features <= 64 {
            n_features.next_power_of_two().max(16)
        } else {
            n_features.next_multiple_of(64)
        };
        let n_rows = values.len() / n_features.max(1);
        let mut data = vec![0u8; n_rows * stride + 63];
        let start = data.as_ptr().align_offset(64).min(63);
        data[start..start + n_rows * stride]
            .par_chunks_mut(stride * 4096)
            .zip(values.par_chunks(n_features.max(1) * 4096))
            .for_each(|(rows, values)| {
                for (row, values) in rows
                    .chunks_exact_mut(stride)
                    .zip(values.chunks_exact(n_features.max(1)))
                {
                    for ((bin, value), mapper) in row.iter_mut().zip(values).zip(mappers) {
                        *bin = mapper.bin(*value);
                    }
                }
            });
        Self { data, start, stride }
    }

    /// The padded bins of one row (its features first).
    pub(super) fn row(&self, row: usize) -> &[u8] {
        let at = self.start + row * self.stride;
        &self.data[at..at + self.stride]
    }

    /// Consecutive rows, padded.
    pub(super) fn rows(&self, rows: std::ops::Range<usize>) -> std::slice::ChunksExact<'_, u8> {
        self.data[self.start + rows.start * self.stride..self.start + rows.end * self.stride].chunks_exact(self.stride)
    }
}
