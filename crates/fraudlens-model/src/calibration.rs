//! Calibration: from a model's raw margin (log-odds, as the trees output) to a
//! fraud probability that means what it says.
//!
//! A [`Calibration`] is a fitted value: fit it on a held-out labelled set, keep
//! it in the model artifact, and [`Calibration::apply`] it unchanged at serving
//! time.
//!
//! - [`Calibration::Identity`]: the logistic function of the margin.
//! - [`Calibration::Platt`]: a logistic curve `1 / (1 + exp(a·raw + b))` fitted
//!   by Platt's method with his smoothed targets, solved by Newton's method with
//!   backtracking (Lin, Lin & Weng 2007, "A note on Platt's probabilistic
//!   outputs for support vector machines"). Same targets as scikit-learn's
//!   `CalibratedClassifierCV(method="sigmoid")`.
//! - [`Calibration::Isotonic`]: a non-decreasing piecewise-linear curve fitted
//!   by pool-adjacent-violators, as scikit-learn's
//!   `IsotonicRegression(out_of_bounds="clip")`.

use serde::{Deserialize, Serialize};

/// A fitted map from raw margin to probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibration {
    /// `logistic(raw)`: the margin is taken as calibrated log-odds.
    Identity,
    /// `1 / (1 + exp(a·raw + b))` (Platt's sign convention: `a < 0` when higher
    /// margins mean more fraud).
    Platt {
        /// Slope.
        a: f64,
        /// Intercept.
        b: f64,
    },
    /// Linear interpolation between knots, clamped outside them.
    Isotonic(IsotonicCurve),
}

/// The knots of an isotonic calibration: `x` strictly increasing raw margins,
/// `y` non-decreasing probabilities, same non-zero length, all finite.
///
/// The invariant is checked when fitting and on deserialisation, so
/// [`Calibration::apply`] cannot meet a malformed curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "IsotonicKnots")]
pub struct IsotonicCurve {
    x: Vec<f64>,
    y: Vec<f64>,
}

/// Why a calibration could not be fitted or loaded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    /// No rows to fit on.
    #[error("cannot fit a calibration without rows")]
    NoRows,
    /// `raw` and `labels` differ in length.
    #[error("raw scores and labels differ in length ({raw}, {labels})")]
    LengthMismatch {
        /// Length of the raw scores.
        raw: usize,
        /// Length of the labels.
        labels: usize,
    },
    /// A raw score is NaN or infinite.
    #[error("raw score of row {row} is not finite ({value})")]
    NonFiniteScore {
        /// Row index.
        row: usize,
        /// The value.
        value: f64,
    },
    /// Isotonic knots that break the [`IsotonicCurve`] invariant.
    #[error("invalid isotonic knots: {0}")]
    InvalidKnots(&'static str),
}

/// Numerically stable logistic function `1 / (1 + e^(−raw))`: no overflow for
/// any input, exactly 0.5 at 0, and `logistic(−x) = 1 − logistic(x)` up to
/// rounding. NaN gives NaN.
pub fn logistic(raw: f64) -> f64 {
    if raw >= 0.0 {
        1.0 / (1.0 + (-raw).exp())
    } else {
        let exp_raw = raw.exp();
        exp_raw / (1.0 + exp_raw)
    }
}

impl Calibration {
    /// The probability for a raw margin, in [0, 1]. NaN gives NaN.
    pub fn apply(&self, raw: f64) -> f64 {
        match self {
            Self::Identity => logistic(raw),
            Self::Platt { a, b } => logistic(-(a * raw + b)),
            Self::Isotonic(curve) => curve.apply(raw),
        }
    }

    /// Fits Platt scaling: the `a`, `b` minimising the cross-entropy of
    /// `1 / (1 + exp(a·raw + b))` against Platt's smoothed targets
    /// `(N₊ + 1) / (N₊ + 2)` for frauds and `1 / (N₋ + 2)` for the rest, which
    /// keep the fit finite when the classes are separable (or one is absent).
    ///
    /// Newton's method with backtracking line search, started at `a = 0`,
    /// `b = ln((N₋ + 1) / (N₊ + 1))` (Lin, Lin & Weng 2007). It stops once the
    /// loss decrease the Newton step predicts is at the loss's rounding level
    /// (taking that last full step), when the line search can no longer
    /// decrease the loss, or after 100 iterations. Serial, so the result does
    /// not depend on the thread count; O(n) per iteration (a handful of
    /// iterations in practice).
    pub fn fit_platt(raw: &[f64], labels: &[bool]) -> Result<Self, CalibrationError> {
        validate(raw, labels)?;
        let (a, b) = platt_newton(raw, labels);
        Ok(Self::Platt { a, b })
    }

    /// Fits isotonic regression of the labels on the raw margins: sort once,
    /// pool tied margins into their mean label, then pool adjacent violators
    /// (O(n log n)). Knots inside a flat run are dropped (only its ends are
    /// kept), as scikit-learn does, so the curve stays small.
    ///
    /// Ties are exact (`==`); scikit-learn also merges margins closer than
    /// 1e-15, which only matters for margins that differ in the last bits.
    pub fn fit_isotonic(raw: &[f64], labels: &[bool]) -> Result<Self, CalibrationError> {
        validate(raw, labels)?;
        Ok(Self::Isotonic(IsotonicCurve::fit(raw, labels)))
    }
}

impl IsotonicCurve {
    /// Checked knots (see the type's invariant).
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Result<Self, CalibrationError> {
        if x.is_empty() {
            return Err(CalibrationError::InvalidKnots("no knots"));
        }
        if x.len() != y.len() {
            return Err(CalibrationError::InvalidKnots("x and y differ in length"));
        }
        if !x.iter().chain(&y).all(|value| value.is_finite()) {
            return Err(CalibrationError::InvalidKnots("knots must be finite"));
        }
        if !x.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(CalibrationError::InvalidKnots("x must be strictly increasing"));
        }
        if !y.windows(2).all(|pair| pair[0] <= pair[1]) {
            return Err(CalibrationError::InvalidKnots("y must be non-decreasing"));
        }
        if !y.iter().all(|value| (0.0..=1.0).contains(value)) {
            return Err(CalibrationError::InvalidKnots("y must be probabilities in [0, 1]"));
        }
        Ok(Self { x, y })
    }

    /// Raw margins of the knots, strictly increasing.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// Probabilities at the knots, non-decreasing.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Linear interpolation between the knots; the first (last) knot's value
    /// below (above) them. O(log knots).
    pub fn apply(&self, raw: f64) -> f64 {
        if raw.is_nan() {
            return f64::NAN;
        }
        // `hi_idx` = first knot strictly above `raw`.
        let hi_idx = self.x.partition_point(|&knot| knot <= raw);
        if hi_idx == 0 {
            return self.y[0];
        }
        if hi_idx == self.x.len() {
            return self.y[hi_idx - 1];
        }
        let lo_idx = hi_idx - 1;
        // numpy's `interp` formula, so values agree with scikit-learn to the ulp.
        let slope = (self.y[hi_idx] - self.y[lo_idx]) / (self.x[hi_idx] - self.x[lo_idx]);
        slope * (raw - self.x[lo_idx]) + self.y[lo_idx]
    }

    /// Pool-adjacent-violators on validated input.
    fn fit(raw: &[f64], labels: &[bool]) -> Self {
        let mut pairs: Vec<(f64, bool)> = raw.iter().copied().zip(labels.iter().copied()).collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        // One block per distinct margin, then merge blocks while the means
        // decrease. Sums are integer counts, so every mean is one correctly
        // rounded division.
        let mut blocks: Vec<Block> = Vec::new();
        let mut tie_blocks: Vec<Block> = Vec::new();
        for (score, label) in pairs {
            match tie_blocks.last_mut() {
                Some(block) if block.x_last == score => {
                    block.n += 1;
                    block.n_pos += u64::from(label);
                }
                _ => tie_blocks.push(Block {
                    x_first: score,
                    x_last: score,
                    n: 1,
                    n_pos: u64::from(label),
                    n_distinct: 1,
                }),
            }
        }
        let mut knot_x: Vec<f64> = Vec::with_capacity(tie_blocks.len());
        for block in tie_blocks {
            knot_x.push(block.x_first);
            blocks.push(block);
            while blocks.len() >= 2 {
                let last = blocks[blocks.len() - 1];
                let previous = blocks[blocks.len() - 2];
                // previous mean >= last mean, compared exactly in integers.
                let violates =
                    u128::from(previous.n_pos) * u128::from(last.n) >= u128::from(last.n_pos) * u128::from(previous.n);
                if !violates {
                    break;
                }
                blocks.pop();
                let merged = blocks.len() - 1;
                blocks[merged] = Block {
                    x_first: previous.x_first,
                    x_last: last.x_last,
                    n: previous.n + last.n,
                    n_pos: previous.n_pos + last.n_pos,
                    n_distinct: previous.n_distinct + last.n_distinct,
                };
            }
        }
        // Every distinct margin is a knot valued at its block's mean; keep only
        // the ends of each flat run (interpolation is unchanged).
        let mut knot_y: Vec<f64> = Vec::with_capacity(knot_x.len());
        for block in &blocks {
            let mean = block.n_pos as f64 / block.n as f64;
            knot_y.extend(std::iter::repeat_n(mean, block.n_distinct));
        }
        let n_knots = knot_x.len();
        let keep = |knot_idx: usize| {
            knot_idx == 0
                || knot_idx + 1 == n_knots
                || knot_y[knot_idx] != knot_y[knot_idx - 1]
                || knot_y[knot_idx] != knot_y[knot_idx + 1]
        };
        let kept: Vec<usize> = (0..n_knots).filter(|&knot_idx| keep(knot_idx)).collect();
        Self {
            x: kept.iter().map(|&knot_idx| knot_x[knot_idx]).collect(),
            y: kept.iter().map(|&knot_idx| knot_y[knot_idx]).collect(),
        }
    }
}

/// A run of consecutive distinct margins pooled to one value.
#[derive(Clone, Copy, Debug)]
struct Block {
    x_first: f64,
    x_last: f64,
    n: u64,
    n_pos: u64,
    n_distinct: usize,
}

#[derive(Clone, Debug, Deserialize)]
struct IsotonicKnots {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl TryFrom<IsotonicKnots> for IsotonicCurve {
    type Error = CalibrationError;

    fn try_from(knots: IsotonicKnots) -> Result<Self, Self::Error> {
        Self::new(knots.x, knots.y)
    }
}

fn validate(raw: &[f64], labels: &[bool]) -> Result<(), CalibrationError> {
    if raw.len() != labels.len() {
        return Err(CalibrationError::LengthMismatch {
            raw: raw.len(),
            labels: labels.len(),
        });
    }
    if raw.is_empty() {
        return Err(CalibrationError::NoRows);
    }
    if let Some(row) = raw.iter().position(|value| !value.is_finite()) {
        return Err(CalibrationError::NonFiniteScore { row, value: raw[row] });
    }
    Ok(())
}

/// Lin, Lin & Weng (2007), Algorithm 1, with a scale-aware stopping rule: their
/// absolute 1e-5 on the gradient is loose for small sets and, because the
/// gradient is a sum of n rounded terms, unreachable for millions of rows.
fn platt_newton(raw: &[f64], labels: &[bool]) -> (f64, f64) {
    const MAX_ITER: usize = 100;
    const MIN_STEP: f64 = 1e-10;
    // Added to the Hessian's diagonal so it stays positive definite.
    const SIGMA: f64 = 1e-12;
    // Relative to the loss, a few hundred times its rounding error.
    const DECREMENT_TOLERANCE: f64 = 1e-13;

    let n_pos = labels.iter().filter(|&&label| label).count() as f64;
    let n_neg = labels.len() as f64 - n_pos;
    let hi_target = (n_pos + 1.0) / (n_pos + 2.0);
    let lo_target = 1.0 / (n_neg + 2.0);
    let target = |label: bool| if label { hi_target } else { lo_target };
    let objective = |a: f64, b: f64| -> f64 {
        raw.iter()
            .zip(labels)
            .map(|(&value, &label)| {
                let f_apb = value * a + b;
                let t = target(label);
                // Cross-entropy of p = 1/(1+e^f) against t, written to avoid overflow.
                if f_apb >= 0.0 {
                    t * f_apb + (-f_apb).exp().ln_1p()
                } else {
                    (t - 1.0) * f_apb + f_apb.exp().ln_1p()
                }
            })
            .sum()
    };

    let mut a = 0.0;
    let mut b = ((n_neg + 1.0) / (n_pos + 1.0)).ln();
    let mut loss = objective(a, b);
    for _ in 0..MAX_ITER {
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (SIGMA, SIGMA, 0.0, 0.0, 0.0);
        for (&value, &label) in raw.iter().zip(labels) {
            let f_apb = value * a + b;
            // p = 1/(1+e^f) and q = 1 − p, each without overflow.
            let (p, q) = if f_apb >= 0.0 {
                let e = (-f_apb).exp();
                (e / (1.0 + e), 1.0 / (1.0 + e))
            } else {
                let e = f_apb.exp();
                (1.0 / (1.0 + e), e / (1.0 + e))
            };
            let d2 = p * q;
            h11 += value * value * d2;
            h22 += d2;
            h21 += value * d2;
            let d1 = target(label) - p;
            g1 += value * d1;
            g2 += d1;
        }
        if g1 == 0.0 && g2 == 0.0 {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let d_a = -(h22 * g1 - h21 * g2) / det;
        let d_b = -(-h21 * g1 + h11 * g2) / det;
        let gd = g1 * d_a + g2 * d_b;
        // -gd (the squared Newton decrement) predicts how much the loss can
        // still fall. Once that is below the loss's own rounding noise, the
        // line search cannot see progress any more: Newton is in its quadratic
        // phase, so take the full step and stop.
        if -gd <= DECREMENT_TOLERANCE * loss.max(1.0) {
            a += d_a;
            b += d_b;
            break;
        }
        let mut step = 1.0;
        let mut improved = false;
        while step >= MIN_STEP {
            let (new_a, new_b) = (a + step * d_a, b + step * d_b);
            let new_loss = objective(new_a, new_b);
            if new_loss < loss + 1e-4 * step * gd {
                (a, b, loss) = (new_a, new_b, new_loss);
                improved = true;
                break;
            }
            step /= 2.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    /// `tests/fixtures/calibration/sklearn_reference.json`, written by `generate.py`
    /// next to it: 300 margins with ties and four far-out values, labels, and
    /// what scikit-learn 1.9.1 fits on them.
    #[derive(Deserialize)]
    struct Reference {
        raw: Vec<f64>,
        labels: Vec<bool>,
        /// Platt's problem solved to convergence by plain Newton in numpy.
        platt_newton: PlattReference,
        /// `sklearn.calibration._sigmoid_calibration(raw, labels)` (L-BFGS, gtol 1e-6).
        platt_sklearn: PlattReference,
        /// `IsotonicRegression(out_of_bounds="clip").fit(raw, labels)`: `X_thresholds_`,
        /// `y_thresholds_`, and `predict(queries)`.
        isotonic: IsotonicReference,
    }

    #[derive(Deserialize)]
    struct PlattReference {
        a: f64,
        b: f64,
    }

    #[derive(Deserialize)]
    struct IsotonicReference {
        x: Vec<f64>,
        y: Vec<f64>,
        queries: Vec<f64>,
        predictions: Vec<f64>,
    }

    fn reference() -> Reference {
        serde_json::from_str(include_str!("../tests/fixtures/calibration/sklearn_reference.json")).unwrap()
    }

    fn labels(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|&bit| bit == 1).collect()
    }

    fn platt_params(calibration: &Calibration) -> (f64, f64) {
        match calibration {
            Calibration::Platt { a, b } => (*a, *b),
            other => panic!("expected platt, got {other:?}"),
        }
    }

    fn isotonic_curve(calibration: &Calibration) -> &IsotonicCurve {
        match calibration {
            Calibration::Isotonic(curve) => curve,
            other => panic!("expected isotonic, got {other:?}"),
        }
    }

    /// Fits Platt and checks `(a, b)` within `tolerance`.
    fn check_platt(raw: &[f64], labels: &[bool], expected: (f64, f64), tolerance: f64) {
        let (a, b) = platt_params(&Calibration::fit_platt(raw, labels).unwrap());
        assert!(
            (a - expected.0).abs() <= tolerance && (b - expected.1).abs() <= tolerance,
            "platt: got ({a}, {b}), expected {expected:?} within {tolerance}"
        );
    }

    /// Fits isotonic and checks the knots and the values at `queries` to 1e-12.
    fn check_isotonic(raw: &[f64], labels: &[bool], knots: (&[f64], &[f64]), queries: &[f64], expected: &[f64]) {
        let calibration = Calibration::fit_isotonic(raw, labels).unwrap();
        let curve = isotonic_curve(&calibration);
        assert_eq!(curve.x(), knots.0, "knot margins");
        assert_eq!(curve.y().len(), knots.1.len());
        for (actual, expected) in curve.y().iter().zip(knots.1) {
            assert!((actual - expected).abs() <= 1e-12, "knot value {actual} vs {expected}");
        }
        for (query, expected) in queries.iter().zip(expected) {
            let actual = calibration.apply(*query);
            assert!(
                (actual - expected).abs() <= 1e-12,
                "apply({query}) = {actual}, expected {expected}"
            );
        }
    }

    #[test]
    fn logistic_is_stable_and_symmetric() {
        assert_eq!(logistic(0.0), 0.5);
        assert_eq!(logistic(1000.0), 1.0);
        assert_eq!(logistic(-1000.0), 0.0);
        assert_eq!(logistic(f64::INFINITY), 1.0);
        assert_eq!(logistic(f64::NEG_INFINITY), 0.0);
        // Far in the lower tail the result is tiny but not flushed to zero.
        assert!(logistic(-700.0) > 0.0);
        assert!((logistic(2.0) - 0.8807970779778823).abs() < 1e-15);
        for raw in [0.1, 1.0, 3.7, 20.0] {
            assert!((logistic(raw) + logistic(-raw) - 1.0).abs() < 1e-15);
        }
        assert!(logistic(f64::NAN).is_nan());
        assert_eq!(Calibration::Identity.apply(2.0), logistic(2.0));
    }

    // Fourteen margins, hand-picked; shared by the small Platt tests.
    const SMALL_RAW: [f64; 14] = [
        -3.0, -2.2, -1.5, -1.1, -0.4, 0.0, 0.3, 0.9, 1.4, 2.0, 2.5, 3.3, -0.7, 1.1,
    ];
    const SMALL_LABELS: [u8; 14] = [0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0, 1];

    #[test]
    fn platt_matches_newton_reference_and_scikit_learn() {
        let labels = labels(&SMALL_LABELS);
        // numpy Newton to convergence on Platt's smoothed targets.
        check_platt(&SMALL_RAW, &labels, (-0.7686072949875236, 0.1462441595338748), 1e-9);
        // sklearn.calibration._sigmoid_calibration(raw, y): same problem, L-BFGS
        // stopped at gtol 1e-6, so only about 1e-8 close.
        check_platt(&SMALL_RAW, &labels, (-0.7686072991547052, 0.14624416498434015), 1e-6);
        let calibration = Calibration::fit_platt(&SMALL_RAW, &labels).unwrap();
        // 1 / (1 + exp(a·x + b)) with the reference a, b.
        for (raw, expected) in [
            (-2.0, 0.15663801644567493),
            (0.0, 0.4635039830457151),
            (1.7, 0.7614032532701404),
        ] {
            assert!((calibration.apply(raw) - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn platt_matches_references_on_the_fixture() {
        let reference = reference();
        let newton = (reference.platt_newton.a, reference.platt_newton.b);
        let sklearn = (reference.platt_sklearn.a, reference.platt_sklearn.b);
        check_platt(&reference.raw, &reference.labels, newton, 1e-9);
        check_platt(&reference.raw, &reference.labels, sklearn, 1e-6);
    }

    #[test]
    fn platt_stays_finite_when_the_classes_separate_or_one_is_missing() {
        // All frauds: targets are all 4/5, so a = 0 and b = ln(1/4).
        check_platt(&[0.5, 1.0, 2.0], &[true, true, true], (0.0, -1.3862943611198906), 1e-9);
        // Perfectly separated: the smoothed targets (3/4 and 1/4) keep the slope
        // finite. numpy Newton reference; sklearn's _sigmoid_calibration gives
        // (-0.673996392666092, ~0).
        check_platt(
            &[-2.0, -1.0, 1.0, 2.0],
            &labels(&[0, 0, 1, 1]),
            (-0.6739963939839232, 0.0),
            1e-9,
        );
        // A single margin value: only the intercept can move.
        let flat = Calibration::fit_platt(&[0.0, 0.0, 0.0, 0.0], &labels(&[1, 0, 0, 0])).unwrap();
        let flat_probability = flat.apply(0.0);
        // Smoothed mean target: (2/3 + 3·1/5) / 4.
        assert!(
            (flat_probability - (2.0 / 3.0 + 0.6) / 4.0).abs() < 1e-9,
            "{flat_probability}"
        );
    }

    #[test]
    fn isotonic_matches_scikit_learn_on_a_small_example() {
        // IsotonicRegression(out_of_bounds="clip").fit(x, y): X_thresholds_, y_thresholds_, predict(q).
        let raw = [0.5, -1.0, 2.0, 0.5, 3.0, 1.0, -1.0, 2.5, 4.0, 0.0, 3.0, 1.5, 2.0, -2.0];
        let labels = labels(&[1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0]);
        let third = 0.3333333333333333;
        let four_sevenths = 0.5714285714285714;
        check_isotonic(
            &raw,
            &labels,
            (
                &[-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 4.0],
                &[0.0, third, third, 0.5, four_sevenths, four_sevenths, 1.0],
            ),
            &[
                -5.0, -2.0, -1.5, -1.0, -0.2, 0.25, 0.5, 0.75, 1.2, 2.2, 2.9, 3.5, 4.0, 9.0,
            ],
            &[
                0.0,
                0.0,
                0.16666666666666666,
                third,
                third,
                0.41666666666666663,
                0.5,
                0.5357142857142857,
                four_sevenths,
                four_sevenths,
                four_sevenths,
                0.7857142857142857,
                1.0,
                1.0,
            ],
        );
    }

    #[test]
    fn isotonic_matches_scikit_learn_on_the_fixture() {
        let reference = reference();
        let isotonic = &reference.isotonic;
        check_isotonic(
            &reference.raw,
            &reference.labels,
            (&isotonic.x, &isotonic.y),
            &isotonic.queries,
            &isotonic.predictions,
        );
    }

    #[test]
    fn isotonic_pools_ties_and_decreasing_runs() {
        // One margin value: a single knot, the mean label everywhere.
        let tied = Calibration::fit_isotonic(&[1.0, 1.0, 1.0], &labels(&[0, 1, 1])).unwrap();
        assert_eq!(isotonic_curve(&tied).x(), [1.0]);
        assert_eq!([tied.apply(-5.0), tied.apply(1.0), tied.apply(7.0)], [2.0 / 3.0; 3]);
        // Labels decreasing in the margin: everything pools to the mean; only the
        // two end knots are kept.
        let decreasing = Calibration::fit_isotonic(&[1.0, 2.0, 3.0], &labels(&[1, 0, 0])).unwrap();
        assert_eq!(isotonic_curve(&decreasing).x(), [1.0, 3.0]);
        assert_eq!(isotonic_curve(&decreasing).y(), [1.0 / 3.0; 2]);
    }

    #[test]
    fn fitting_refuses_bad_input() {
        assert_eq!(Calibration::fit_platt(&[], &[]), Err(CalibrationError::NoRows));
        assert_eq!(
            Calibration::fit_isotonic(&[1.0], &[true, false]),
            Err(CalibrationError::LengthMismatch { raw: 1, labels: 2 })
        );
        let error = Calibration::fit_platt(&[0.0, f64::INFINITY], &[true, false]).unwrap_err();
        assert_eq!(
            error,
            CalibrationError::NonFiniteScore {
                row: 1,
                value: f64::INFINITY
            }
        );
        assert_eq!(error.to_string(), "raw score of row 1 is not finite (inf)");
    }

    #[test]
    fn calibrations_serialise_with_a_method_tag_and_round_trip() {
        let isotonic = Calibration::fit_isotonic(&[0.0, 1.0, 2.0], &labels(&[0, 1, 1])).unwrap();
        let cases = [
            (Calibration::Identity, r#"{"method":"identity"}"#),
            (
                Calibration::Platt { a: -1.5, b: 0.25 },
                r#"{"method":"platt","a":-1.5,"b":0.25}"#,
            ),
            // The last knot ends a flat run, so it is kept.
            (isotonic, r#"{"method":"isotonic","x":[0.0,1.0,2.0],"y":[0.0,1.0,1.0]}"#),
        ];
        for (calibration, json) in cases {
            assert_eq!(serde_json::to_string(&calibration).unwrap(), json);
            assert_eq!(serde_json::from_str::<Calibration>(json).unwrap(), calibration);
        }
        // Fitted on the fixture: bit-for-bit the same curve after a round trip.
        let reference = reference();
        let fitted = Calibration::fit_isotonic(&reference.raw, &reference.labels).unwrap();
        let back: Calibration = serde_json::from_str(&serde_json::to_string(&fitted).unwrap()).unwrap();
        assert_eq!(back, fitted);
    }

    #[test]
    fn malformed_isotonic_knots_are_refused_on_load() {
        let refused = [
            r#"{"method":"isotonic","x":[],"y":[]}"#,
            r#"{"method":"isotonic","x":[0.0,1.0],"y":[0.5]}"#,
            r#"{"method":"isotonic","x":[1.0,0.0],"y":[0.1,0.2]}"#,
            r#"{"method":"isotonic","x":[0.0,0.0],"y":[0.1,0.2]}"#,
            r#"{"method":"isotonic","x":[0.0,1.0],"y":[0.3,0.2]}"#,
            r#"{"method":"isotonic","x":[0.0,1.0],"y":[0.3,1.2]}"#,
        ];
        for json in refused {
            let error = serde_json::from_str::<Calibration>(json).unwrap_err();
            assert!(error.to_string().contains("invalid isotonic knots"), "{json}: {error}");
        }
        assert!(IsotonicCurve::new(vec![0.0, f64::NAN], vec![0.1, 0.2]).is_err());
    }

    proptest! {
        #[test]
        fn isotonic_output_is_monotone_and_a_probability(
            rows in prop::collection::vec((-30i32..30, any::<bool>()), 1..80),
            queries in prop::collection::vec(-40.0f64..40.0, 1..30),
        ) {
            let raw: Vec<f64> = rows.iter().map(|row| f64::from(row.0) / 4.0).collect();
            let labels: Vec<bool> = rows.iter().map(|row| row.1).collect();
            let calibration = Calibration::fit_isotonic(&raw, &labels).unwrap();
            let curve = isotonic_curve(&calibration);
            prop_assert!(curve.x().windows(2).all(|pair| pair[0] < pair[1]));
            prop_assert!(curve.y().windows(2).all(|pair| pair[0] <= pair[1]));
            let mut sorted_queries = queries.clone();
            sorted_queries.extend(&raw);
            sorted_queries.sort_by(f64::total_cmp);
            let outputs: Vec<f64> = sorted_queries.iter().map(|&query| calibration.apply(query)).collect();
            prop_assert!(outputs.windows(2).all(|pair| pair[0] <= pair[1]), "{:?}", outputs);
            prop_assert!(outputs.iter().all(|p| (0.0..=1.0).contains(p)));
            // Isotonic regression preserves the mean: the fitted values average to the fraud rate.
            let mean_fitted = raw.iter().map(|&value| calibration.apply(value)).sum::<f64>() / raw.len() as f64;
            let fraud_rate = labels.iter().filter(|&&label| label).count() as f64 / labels.len() as f64;
            prop_assert!((mean_fitted - fraud_rate).abs() < 1e-9);
        }

        #[test]
        fn platt_is_monotone_in_the_margin(
            rows in prop::collection::vec((-40i32..40, any::<bool>()), 2..60),
        ) {
            let raw: Vec<f64> = rows.iter().map(|row| f64::from(row.0) / 4.0).collect();
            let labels: Vec<bool> = rows.iter().map(|row| row.1).collect();
            let (a, b) = platt_params(&Calibration::fit_platt(&raw, &labels).unwrap());
            prop_assert!(a.is_finite() && b.is_finite());
            let calibration = Calibration::Platt { a, b };
            let outputs: Vec<f64> = (-50..=50).map(|step| calibration.apply(f64::from(step))).collect();
            let increasing = outputs.windows(2).all(|pair| pair[0] <= pair[1]);
            let decreasing = outputs.windows(2).all(|pair| pair[0] >= pair[1]);
            prop_assert!(increasing || decreasing);
            prop_assert!(outputs.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }
}
