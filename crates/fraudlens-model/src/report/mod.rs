//! One self-contained HTML file per `train`/`evaluate` run: the pictures a
//! data scientist would otherwise draw in a notebook — precision-recall and
//! ROC curves with the thresholds on them, the reliability diagram, score
//! histograms by class, precision@k and card precision@k per day, gain
//! importance, the loss per round, and each prequential fold.
//!
//! Inline SVG and CSS only: no script, nothing fetched (the page's
//! Content-Security-Policy forbids it), so it opens offline and can be
//! attached to a ticket. Every text from the data (feature names, paths) is
//! escaped.

mod svg;

use std::fmt::Write as _;

use crate::artifact::{Manifest, ModelKind};
use crate::fit::FoldSummary;
use crate::metrics::{Curves, DailyPrecision, Evaluation, HISTOGRAM_BINS};
use crate::threshold::ThresholdChoice;
use svg::{Bars, Chart, Line, Marker, PALETTE, Rule, horizontal_bars, number};

/// One evaluated set of rows: the validation rows, a test window or a fold.
pub struct Window<'a> {
    /// Heading ("validation", "fold 2").
    pub title: String,
    /// What it covers ("2026-02-01T… .. 2026-02-07T…; trained on …").
    pub period: Option<String>,
    /// Its metrics (their `threshold` is the review threshold marked).
    pub metrics: &'a Evaluation,
    /// The decline threshold to mark, if any.
    pub decline: Option<f64>,
}

/// What a report shows.
pub struct Report<'a> {
    /// Heading of the page.
    pub title: String,
    /// The model (thresholds, importance, training summary).
    pub manifest: &'a Manifest,
    /// The evaluated windows, in the order shown.
    pub windows: Vec<Window<'a>>,
    /// Mean ± std over prequential folds.
    pub summary: Option<&'a FoldSummary>,
    /// Show the training part: loss per round, the threshold choice on the validation rows.
    pub training: bool,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#111;padding:0 16px}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}\
.meta{color:#555}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}\
svg{background:#fff;border:1px solid #eee}.chart-title{font-weight:600;font-size:13px}\
.tick,.legend,.rule-label,.marker-label{font-size:11px}.axis-label{font-size:12px}.warn{color:#9a3412}tr.chosen{background:#fef3c7}";

/// The report as one HTML document.
pub fn render(report: &Report<'_>) -> String {
    let manifest = report.manifest;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1><p class=\"meta\">model <code>{id}</code> ({kind}), created {created}, trained on <code>{source}</code>; \
         report generated {generated} by fraudlens {version}</p>",
        title = escape(&report.title),
        id = escape(&manifest.model_id),
        kind = match manifest.kind {
            ModelKind::Gbdt => "gradient-boosted trees",
            ModelKind::IsolationForest => "isolation forest",
            ModelKind::Onnx => "ONNX model",
        },
        created = escape(&manifest.created_at),
        source = escape(&manifest.training.data_source),
        generated = escape(&report.generated_at),
        version = escape(&manifest.fraudlens_version),
    );
    render_summary(&mut out, report);
    if report.training {
        render_training(&mut out, manifest);
    }
    if report.windows.len() > 1 {
        render_folds_together(&mut out, report);
    }
    for (idx, window) in report.windows.iter().enumerate() {
        render_window(&mut out, idx, window);
    }
    if !manifest.gain_importance.is_empty() {
        let rows: Vec<(String, f64)> = manifest.gain_importance.iter().take(25).cloned().collect();
        let _ = write!(
            out,
            "<section id=\"importance\"><h2>Gain importance</h2><p>Total split gain per input over every tree (the top {}).</p>{}</section>",
            rows.len(),
            horizontal_bars("Gain importance", &rows)
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn render_summary(out: &mut String, report: &Report<'_>) {
    let thresholds = &report.manifest.thresholds;
    let decline = thresholds.decline().map_or_else(|| "never".to_owned(), number);
    let whose = if report.summary.is_some() {
        "The model's thresholds (each fold's model chose its own review threshold, shown with the fold)"
    } else {
        "Thresholds"
    };
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Summary</h2><p>{whose}: review ≥ {}, decline ≥ {decline}.</p>\
         <table><tr><th>window</th><th>transactions</th><th>fraud</th><th>ROC AUC</th><th>average precision</th>\
         <th>Brier</th><th>precision</th><th>recall</th><th>precision@k</th><th>card precision@k</th></tr>",
        number(thresholds.review())
    );
    let optional = |value: Option<f64>| value.map_or_else(|| "–".to_owned(), |v| format!("{v:.4}"));
    for window in &report.windows {
        let m = window.metrics;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.5}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            escape(&window.title),
            m.n,
            m.n_fraud,
            optional(m.roc_auc),
            optional(m.average_precision),
            m.brier,
            m.precision,
            m.recall,
            optional(m.precision_at_k.as_ref().map(|p| p.mean)),
            optional(m.card_precision_at_k.as_ref().map(|p| p.mean)),
        );
    }
    if let Some(summary) = report.summary {
        let cell = |value: &crate::metrics::MeanStd| format!("{:.4} ± {:.4}", value.mean, value.std);
        let _ = write!(
            out,
            "<tr><th>mean ± std</th><td></td><td></td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td><td>{}</td><td>{}</td></tr>",
            cell(&summary.roc_auc),
            cell(&summary.average_precision),
            cell(&summary.brier),
            cell(&summary.precision_at_k),
            cell(&summary.card_precision_at_k)
        );
    }
    out.push_str("</table></section>");
}

fn render_training(out: &mut String, manifest: &Manifest) {
    let training = &manifest.training;
    let _ = write!(
        out,
        "<section id=\"training\"><h2>Training</h2><p>{}.</p>",
        escape(&training.describe())
    );
    if let Some(refit) = &training.refit {
        let _ = write!(out, "<p>{}.</p>", escape(&refit.describe()));
    }
    if let Some(choice) = &manifest.threshold_choice {
        render_threshold_choice(out, choice);
    }
    if let Some(tuning) = &manifest.tuning {
        render_tuning(out, tuning);
    }
    if !training.rounds.is_empty() {
        let rounds = &training.rounds;
        let losses = rounds
            .iter()
            .flat_map(|round| [Some(round.train_logloss), round.valid_logloss])
            .flatten()
            .filter(|loss| loss.is_finite());
        let high = losses.fold(0.0_f64, f64::max) * 1.05;
        let mut chart = Chart::new(
            "Log loss per boosting round",
            "round",
            "log loss",
            (0.0, rounds.len() as f64),
            (0.0, high.max(1e-6)),
        );
        chart.lines.push(Line {
            name: "training rows (weighted)".to_owned(),
            points: rounds.iter().map(|r| (r.round as f64, r.train_logloss)).collect(),
            color: PALETTE[0],
            dashed: false,
        });
        chart.lines.push(Line {
            name: "validation rows".to_owned(),
            points: rounds
                .iter()
                .filter_map(|r| r.valid_logloss.map(|loss| (r.round as f64, loss)))
                .collect(),
            color: PALETTE[1],
            dashed: false,
        });
        chart.rules.push(Rule {
            x: training.best_round as f64,
            label: format!("kept: {}", training.best_round),
        });
        let _ = write!(out, "<div class=\"charts\">{}</div>", chart.render());
    }
    out.push_str("</section>");
}

/// The trials of `train --tune`, the best first, at most 30.
fn render_tuning(out: &mut String, tuning: &crate::fit::Tuning) {
    let chosen = tuning.chosen();
    let _ = write!(
        out,
        "<h3 id=\"tuning\">Tuning</h3><p>{} trials in {:.0} s (budget {:.0} s) on {} prequential folds, each validating on {:.0} % of the rows{}; \
         successive halving: every trial on the latest fold, the best third on one more. Chosen: trial {} (mean average precision {:.4} over {} folds).</p>\
         <table><tr><th>trial</th><th>folds</th><th>mean AP</th><th>AP per fold</th><th>rounds</th><th>learning rate</th><th>leaves</th>\
         <th>depth</th><th>min leaf</th><th>L2</th><th>rows</th><th>features</th><th>fraud weight</th></tr>",
        tuning.trials.len(),
        tuning.seconds,
        tuning.budget_seconds,
        tuning.folds,
        tuning.fold_share * 100.0,
        if tuning.gap_share > 0.0 {
            format!(
                " and training on the rows before a gap of {:.0} % before them",
                tuning.gap_share * 100.0
            )
        } else {
            " and training on every row before them".to_owned()
        },
        chosen.id,
        chosen.mean_ap,
        chosen.fold_ap.len()
    );
    if let Some(other) = &tuning.best_other {
        let _ = write!(out, "<p>Best other {}.</p>", escape(&other.describe()));
    }
    for trial in tuning.ranked().into_iter().take(30) {
        let p = &trial.params;
        let folds: Vec<String> = trial.fold_ap.iter().map(|ap| format!("{ap:.4}")).collect();
        let rounds: Vec<String> = trial.rounds.iter().map(usize::to_string).collect();
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if trial.id == chosen.id { " class=\"chosen\"" } else { "" },
            trial.id,
            trial.fold_ap.len(),
            trial.mean_ap,
            folds.join(" "),
            rounds.join(" "),
            p.learning_rate,
            p.num_leaves,
            p.max_depth,
            p.min_data_in_leaf,
            p.lambda_l2,
            p.subsample,
            p.colsample_bytree,
            p.scale_pos_weight
        );
    }
    out.push_str("</table>");
}

fn render_threshold_choice(out: &mut String, choice: &ThresholdChoice) {
    let band = choice.review_band();
    let per_day = band
        .per_day
        .map_or_else(String::new, |per_day| format!(" ({per_day:.1} a day)"));
    let _ = write!(
        out,
        "<p>Thresholds chosen on the validation rows by <code>{}</code>: at review, precision {:.3} and recall {:.3} \
         ({} flagged); review band {} transactions{per_day}, {} fraud.</p>",
        escape(&serde_json::to_string(&choice.objective).unwrap_or_default()),
        choice.at_review.precision,
        choice.at_review.recall,
        choice.at_review.flagged,
        band.flagged,
        band.frauds
    );
    if choice.at_decline.is_some() && band.flagged == 0 {
        out.push_str(match choice.objective {
            crate::threshold::ThresholdObjective::ReviewCapacity { .. } => {
                "<p class=\"warn\">The review band is empty: the capacity does not hold even the next group of equal probabilities below the decline threshold.</p>"
            }
            _ => {
                "<p class=\"warn\">The review band is empty: everything flagged is declined. \
                 Set <code>train.review_capacity_per_day</code> to the reviews the analysts can do per day.</p>"
            }
        });
    }
}

/// The folds' curves on one pair of charts.
fn render_folds_together(out: &mut String, report: &Report<'_>) {
    let mut pr = Chart::new(
        "Precision-recall, every window",
        "recall",
        "precision",
        (0.0, 1.0),
        (0.0, 1.0),
    );
    let mut roc = Chart::new(
        "ROC, every window",
        "false-positive rate",
        "true-positive rate",
        (0.0, 1.0),
        (0.0, 1.0),
    );
    roc.legend_below = true;
    for (idx, window) in report.windows.iter().enumerate() {
        let Some(curves) = &window.metrics.curves else {
            continue;
        };
        let color = PALETTE[idx % PALETTE.len()];
        pr.lines.push(Line {
            name: window.title.clone(),
            points: curves.points.iter().map(|p| (p.recall, p.precision)).collect(),
            color,
            dashed: false,
        });
        roc.lines.push(Line {
            name: window.title.clone(),
            points: roc_points(curves),
            color,
            dashed: false,
        });
    }
    let _ = write!(
        out,
        "<section id=\"windows\"><h2>Every window</h2><div class=\"charts\">{}{}</div></section>",
        pr.render(),
        roc.render()
    );
}

fn render_window(out: &mut String, idx: usize, window: &Window<'_>) {
    let metrics = window.metrics;
    let _ = write!(
        out,
        "<section class=\"window\" id=\"window-{}\"><h2>{}</h2>",
        idx + 1,
        escape(&window.title)
    );
    if let Some(period) = &window.period {
        let _ = write!(out, "<p class=\"meta\">{}</p>", escape(period));
    }
    let c = &metrics.confusion;
    let _ = write!(
        out,
        "<p>{} transactions, {} fraud ({:.3} %). At the review threshold {}: precision {:.3}, recall {:.3}, F1 {:.3} \
         (TP {}, FP {}, FN {}, TN {}).</p><div class=\"charts\">",
        metrics.n,
        metrics.n_fraud,
        metrics.fraud_rate * 100.0,
        number(metrics.threshold),
        metrics.precision,
        metrics.recall,
        metrics.f1,
        c.tp,
        c.fp,
        c.fn_,
        c.tn
    );
    let mut marks = vec![("review", metrics.threshold, PALETTE[1])];
    if let Some(decline) = window.decline {
        marks.push(("decline", decline, PALETTE[3]));
    }
    if let Some(curves) = &metrics.curves {
        let mut pr = Chart::new("Precision-recall", "recall", "precision", (0.0, 1.0), (0.0, 1.0));
        pr.legend_below = true;
        pr.lines.push(Line {
            name: format!(
                "AP {}",
                metrics
                    .average_precision
                    .map_or_else(|| "–".to_owned(), |ap| format!("{ap:.4}"))
            ),
            points: curves.points.iter().map(|p| (p.recall, p.precision)).collect(),
            color: PALETTE[0],
            dashed: false,
        });
        pr.lines.push(Line {
            name: format!("fraud rate {:.4}", metrics.fraud_rate),
            points: vec![(0.0, metrics.fraud_rate), (1.0, metrics.fraud_rate)],
            color: PALETTE[5],
            dashed: true,
        });
        let mut roc = Chart::new(
            "ROC",
            "false-positive rate",
            "true-positive rate",
            (0.0, 1.0),
            (0.0, 1.0),
        );
        roc.legend_below = true;
        roc.lines.push(Line {
            name: format!(
                "AUC {}",
                metrics
                    .roc_auc
                    .map_or_else(|| "–".to_owned(), |auc| format!("{auc:.4}"))
            ),
            points: roc_points(curves),
            color: PALETTE[0],
            dashed: false,
        });
        roc.lines.push(Line {
            name: "chance".to_owned(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            color: PALETTE[5],
            dashed: true,
        });
        for &(name, threshold, color) in &marks {
            if let Some(point) = curves.at(threshold) {
                pr.markers.push(Marker {
                    at: (point.recall, point.precision),
                    label: format!("{name} ≥ {}", number(threshold)),
                    color,
                });
                roc.markers.push(Marker {
                    at: (point.fpr, point.recall),
                    label: format!("{name} ≥ {}", number(threshold)),
                    color,
                });
            }
        }
        out.push_str(&pr.render());
        out.push_str(&roc.render());
        out.push_str(&histogram_chart(curves, &marks));
    }
    out.push_str(&reliability_chart(metrics));
    for (name, daily) in [
        ("precision@k", &metrics.precision_at_k),
        ("card precision@k", &metrics.card_precision_at_k),
    ] {
        if let Some(daily) = daily {
            out.push_str(&daily_chart(name, daily));
        }
    }
    out.push_str("</div></section>");
}

/// ROC from the curve points, starting at the origin.
fn roc_points(curves: &Curves) -> Vec<(f64, f64)> {
    std::iter::once((0.0, 0.0))
        .chain(curves.points.iter().map(|p| (p.fpr, p.recall)))
        .collect()
}

/// Score histograms by class, each as a share of its class (so the rare class shows).
fn histogram_chart(curves: &Curves, marks: &[(&str, f64, &'static str)]) -> String {
    let share = |counts: &[u64]| -> Vec<f64> {
        let total = counts.iter().sum::<u64>().max(1) as f64;
        counts.iter().map(|&count| count as f64 / total).collect()
    };
    let (fraud, legit) = (share(&curves.fraud_histogram), share(&curves.legit_histogram));
    let high = fraud.iter().chain(&legit).fold(0.0_f64, |a, &b| a.max(b)).max(1e-6) * 1.05;
    let mut chart = Chart::new(
        "Scores by class (share of the class per bin)",
        "score",
        "share of the class",
        (0.0, 1.0),
        (0.0, high),
    );
    let width = 1.0 / HISTOGRAM_BINS as f64;
    chart.bars = Some(Bars {
        series: vec![("legitimate".to_owned(), PALETTE[0]), ("fraud".to_owned(), PALETTE[1])],
        values: legit.iter().zip(&fraud).map(|(&l, &f)| vec![l, f]).collect(),
        labels: (0..HISTOGRAM_BINS)
            .map(|bin| format!("{:.2}", bin as f64 * width))
            .collect(),
    });
    for &(name, threshold, _) in marks {
        chart.rules.push(Rule {
            x: threshold,
            label: name.to_owned(),
        });
    }
    chart.render()
}

fn reliability_chart(metrics: &Evaluation) -> String {
    let mut chart = Chart::new(
        "Reliability (calibration)",
        "mean predicted probability",
        "observed fraud rate",
        (0.0, 1.0),
        (0.0, 1.0),
    );
    chart.legend_below = true;
    chart.lines.push(Line {
        name: "perfect calibration".to_owned(),
        points: vec![(0.0, 0.0), (1.0, 1.0)],
        color: PALETTE[5],
        dashed: true,
    });
    chart.lines.push(Line {
        name: "model".to_owned(),
        points: metrics
            .reliability
            .iter()
            .map(|bin| (bin.mean_predicted, bin.observed_rate))
            .collect(),
        color: PALETTE[0],
        dashed: false,
    });
    for bin in &metrics.reliability {
        chart.markers.push(Marker {
            at: (bin.mean_predicted, bin.observed_rate),
            label: format!("n={}", bin.n),
            color: PALETTE[0],
        });
    }
    chart.render()
}

fn daily_chart(name: &str, daily: &DailyPrecision) -> String {
    let mut chart = Chart::new(
        &format!("{name} per day (k = {}, mean {:.4})", daily.k, daily.mean),
        "day",
        name,
        (0.0, daily.per_day.len().max(1) as f64),
        (0.0, 1.0),
    );
    chart.bars = Some(Bars {
        series: vec![(name.to_owned(), PALETTE[2])],
        values: daily.per_day.iter().map(|day| vec![day.precision]).collect(),
        labels: daily.per_day.iter().map(|day| day_label(day.day)).collect(),
    });
    chart.render()
}

/// A day index (days since 1970-01-01) as `MM-DD`.
fn day_label(day: i64) -> String {
    fraudlens_core::Timestamp::from_millis(day * 86_400_000)
        .to_string()
        .get(5..10)
        .map_or_else(|| day.to_string(), str::to_owned)
}

/// Text for HTML and SVG: `& < > " '` escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            ch => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use fraudlens_core::Timestamp;
    use fraudlens_core::rng::Rng;

    use super::*;
    use crate::artifact::Artifact;
    use crate::fit::{FitParams, Provenance, Table, gbdt};
    use crate::inputs::InputSpec;

    const HOSTILE: &str = "<script>alert('x')</script>&\"";

    /// A small model whose feature name and data source are hostile text.
    fn model() -> Artifact {
        let mut rng = Rng::new(3, 0);
        let mut table = Table::new(2);
        for row in 0..3_000 {
            let fraud = row % 12 == 0;
            table.values.push(rng.range(-1.0, 1.0) + if fraud { 1.5 } else { 0.0 });
            table.values.push(rng.range(-1.0, 1.0));
            table.push_meta(fraud, Some(row as i64 * 600_000), Some(row as u64 % 50), 10.0);
        }
        let inputs = InputSpec::numeric(&[HOSTILE, "y"]);
        let params = FitParams {
            gbdt: crate::train::GbdtParams {
                n_trees: 30,
                ..Default::default()
            },
            ..FitParams::default()
        }
        .check()
        .unwrap();
        let provenance = Provenance {
            data_source: HOSTILE.to_owned(),
            created_at: Timestamp::from_millis(0),
        };
        gbdt(&params, inputs, &table, false, &provenance, &mut |_| {}).unwrap()
    }

    fn training_report(artifact: &Artifact) -> String {
        let manifest = &artifact.manifest;
        let validation = manifest.validation.as_ref().unwrap();
        render(&Report {
            title: format!("train {HOSTILE}"),
            manifest,
            windows: vec![Window {
                title: "validation".to_owned(),
                period: Some(HOSTILE.to_owned()),
                metrics: validation,
                decline: manifest.thresholds.decline(),
            }],
            summary: None,
            training: true,
            generated_at: "2026-12-06T00:00:00Z".to_owned(),
        })
    }

    /// Sections and charts, in order: what the page is made of.
    fn outline(html: &str) -> Vec<String> {
        let mut outline = Vec::new();
        for (idx, _) in html.match_indices('<') {
            let rest = &html[idx + 1..];
            let tag: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            match tag.as_str() {
                "h1" | "h2" | "h3" => {
                    let text = &rest[tag.len() + 1..rest.find("</").unwrap()];
                    outline.push(format!("{tag}: {text}"));
                }
                "svg" => {
                    let title = &rest[rest.find("<title>").unwrap() + 7..rest.find("</title>").unwrap()];
                    outline.push(format!("  svg: {title}"));
                }
                _ => {}
            }
        }
        outline
    }

    #[test]
    fn the_training_report_has_every_picture() {
        let html = training_report(&model());
        assert_eq!(
            outline(&html),
            [
                "h1: train &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;",
                "h2: Summary",
                "h2: Training",
                "  svg: Log loss per boosting round",
                "h2: validation",
                "  svg: Precision-recall",
                "  svg: ROC",
                "  svg: Scores by class (share of the class per bin)",
                "  svg: Reliability (calibration)",
                "  svg: precision@k per day (k = 100, mean 0.1000)",
                "  svg: card precision@k per day (k = 100, mean 0.0500)",
                "h2: Gain importance",
                "  svg: Gain importance",
            ]
        );
        // the review threshold sits on both curves
        assert!(html.matches("<circle class=\"marker\"").count() >= 2);
        assert!(html.contains("review ≥ "), "the threshold is labelled");
    }

    #[test]
    fn nothing_from_the_data_reaches_the_page_unescaped_and_nothing_is_fetched() {
        let html = training_report(&model());
        assert!(!html.contains("<script"), "a feature name or path became markup");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(
            html.contains("default-src 'none'"),
            "the page forbids fetching anything"
        );
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in the report");
        }
        // every svg is closed, every element opened is closed or self-closed
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
        assert_eq!(html.matches("<section").count(), html.matches("</section>").count());
    }

    #[test]
    fn several_windows_share_one_pair_of_curves_and_each_has_its_own() {
        let artifact = model();
        let validation = artifact.manifest.validation.as_ref().unwrap();
        let window = |fold: usize| Window {
            title: format!("fold {fold}"),
            period: None,
            metrics: validation,
            decline: None,
        };
        let html = render(&Report {
            title: "folds".to_owned(),
            manifest: &artifact.manifest,
            windows: vec![window(1), window(2)],
            summary: None,
            training: false,
            generated_at: String::new(),
        });
        let outline = outline(&html);
        assert_eq!(
            outline[2..5],
            [
                "h2: Every window",
                "  svg: Precision-recall, every window",
                "  svg: ROC, every window"
            ]
        );
        assert_eq!(outline.iter().filter(|line| line.starts_with("h2: fold")).count(), 2);
        assert!(
            !outline.iter().any(|line| line.contains("Log loss")),
            "no training part asked"
        );
        assert_eq!(html.matches("class=\"window\"").count(), 2);
    }

    #[test]
    fn numbers_are_short_and_never_nan() {
        assert_eq!(number(0.123456), "0.123");
        assert_eq!(number(12.3456), "12.35");
        assert_eq!(number(1234.56), "1234.6");
        assert_eq!(number(123_456.7), "123457");
        assert_eq!(number(f64::NAN), "–");
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&#39;&quot;");
    }
}
