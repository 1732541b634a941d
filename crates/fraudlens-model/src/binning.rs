//! Feature binning for histogram training: each feature's values are mapped
//! to at most 255 bins (plus one bin for missing values), so a split search is
//! a scan over bins instead of over sorted rows.
//!
//! Numeric bins are quantiles of (a deterministic sample of) the training
//! values; a bin's upper edge is the midpoint between the largest value in it
//! and the smallest value of the next bin, and becomes the split threshold, so
//! `x <= edge` in the final tree is exactly `bin(x) <= b` in training.
//! Categorical features are integer codes; the code is the bin.

use serde::{Deserialize, Serialize};

/// Most values examined to place numeric bin edges.
const SAMPLE_ROWS: usize = 200_000;

/// The bins of one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinMapper {
    /// Numeric: upper edge of each value bin (the last is +inf). Categorical: empty.
    upper: Vec<f64>,
    /// Number of value bins; the missing bin comes after them.
    n_value_bins: usize,
    categorical: bool,
}

impl BinMapper {
    /// Numeric bins for `values` (NaN = missing).
    pub fn numeric(values: impl Iterator<Item = f64>, n_values: usize, max_bin: usize) -> Self {
        let step = n_values.div_ceil(SAMPLE_ROWS).max(1);
        let mut sample: Vec<f64> = values.step_by(step).filter(|value| !value.is_nan()).collect();
        sample.sort_by(f64::total_cmp);
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for value in sample.iter().copied() {
            match distinct.last_mut() {
                // -0.0 and 0.0 are one value
                Some((last, count)) if *last == value => *count += 1,
                _ => distinct.push((value, 1)),
            }
        }
        let mut upper = Vec::new();
        if distinct.len() <= max_bin {
            for pair in distinct.windows(2) {
                upper.push(midpoint(pair[0].0, pair[1].0));
            }
        } else {
            // greedy equal-frequency bins over distinct values: a bin closes once it
            // holds its share of the remaining values
            let mut remaining = sample.len();
            let mut bins_left = max_bin;
            let mut in_bin = 0usize;
            for (idx, &(value, count)) in distinct.iter().enumerate() {
                in_bin += count;
                let Some(&(next, _)) = distinct.get(idx + 1) else { break };
                let target = remaining.div_ceil(bins_left);
                if in_bin >= target && bins_left > 1 {
                    upper.push(midpoint(value, next));
                    remaining -= in_bin;
                    bins_left -= 1;
                    in_bin = 0;
                }
            }
        }
        upper.push(f64::INFINITY);
        Self {
            n_value_bins: upper.len(),
            upper,
            categorical: false,
        }
    }

    /// Bins for a categorical feature with codes `0..n_codes`: one bin per code
    /// (up to `max_bin - 1` codes), then an overflow bin for every other value
    /// (higher codes, negative values), which never goes left.
    pub fn categorical(n_codes: usize, max_bin: usize) -> Self {
        Self {
            upper: Vec::new(),
            n_value_bins: n_codes.min(max_bin.saturating_sub(1)) + 1,
            categorical: true,
        }
    }

    /// Whether the feature is categorical.
    pub fn is_categorical(&self) -> bool {
        self.categorical
    }

    /// Value bins plus the missing bin.
    pub fn n_bins(&self) -> usize {
        self.n_value_bins + 1
    }

    /// The missing-value bin.
    pub fn missing_bin(&self) -> usize {
        self.n_value_bins
    }

    /// The bin of a value.
    #[inline]
    pub fn bin(&self, value: f64) -> u8 {
        if value.is_nan() {
            return self.n_value_bins as u8;
        }
        if self.categorical {
            let overflow = self.n_value_bins - 1;
            let code = crate::tree::category_code(value).map_or(overflow, |code| code as usize);
            return code.min(overflow) as u8;
        }
        self.upper.partition_point(|&edge| edge < value) as u8
    }

    /// Threshold of a numeric split that sends bins `<= bin` left.
    pub fn threshold(&self, bin: usize) -> f64 {
        self.upper[bin]
    }

    /// Whether a categorical bin may be put in a split's left set (the
    /// overflow bin may not: it stands for many values).
    pub fn is_splittable_category(&self, bin: usize) -> bool {
        bin + 1 < self.n_value_bins
    }
}

/// A threshold strictly between `low` and `high` (`low < high`), not equal to `high`.
fn midpoint(low: f64, high: f64) -> f64 {
    let mid = low + (high - low) / 2.0;
    if mid.is_finite() && mid >= low && mid < high {
        mid
    } else {
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let values = [3.0, 1.0, f64::NAN, 2.0, 1.0, -0.0, 0.0];
        let mapper = BinMapper::numeric(values.iter().copied(), values.len(), 255);
        assert_eq!(mapper.n_bins(), 5); // 0, 1, 2, 3, missing
        let bins: Vec<u8> = values.iter().map(|&v| mapper.bin(v)).collect();
        assert_eq!(bins, [3, 1, 4, 2, 1, 0, 0]);
        // thresholds reproduce the bins
        for &value in &values[..] {
            for bin in 0..mapper.n_bins() - 1 {
                if !value.is_nan() {
                    assert_eq!(value <= mapper.threshold(bin), usize::from(mapper.bin(value)) <= bin);
                }
            }
        }
    }

    #[test]
    fn many_values_are_quantile_binned() {
        let values: Vec<f64> = (0..100_000).map(|idx| f64::from(idx).sqrt()).collect();
        let mapper = BinMapper::numeric(values.iter().copied(), values.len(), 255);
        assert!(mapper.n_bins() <= 256, "{}", mapper.n_bins());
        assert!(mapper.n_bins() >= 250, "{}", mapper.n_bins());
        let mut counts = vec![0usize; mapper.n_bins()];
        for &value in &values {
            counts[usize::from(mapper.bin(value))] += 1;
        }
        let (min, max) = (counts[..counts.len() - 1].iter().min(), counts.iter().max());
        assert!(min >= Some(&300) && max <= Some(&500), "{min:?} {max:?}");
    }

    #[test]
    fn adjacent_floats_stay_apart() {
        let low = 1.0f64;
        let high = f64::from_bits(low.to_bits() + 1);
        let mapper = BinMapper::numeric([low, high].into_iter(), 2, 255);
        assert_ne!(mapper.bin(low), mapper.bin(high));
    }

    #[test]
    fn categorical_codes_are_bins() {
        let mapper = BinMapper::categorical(4, 255);
        assert_eq!([0.0, 3.0, 7.0, -1.0, f64::NAN].map(|v| mapper.bin(v)), [0, 3, 4, 4, 5]);
        assert!(mapper.is_splittable_category(3) && !mapper.is_splittable_category(4));
    }
}
