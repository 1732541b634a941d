//! Inline SVG charts for the HTML reports: lines (curves, losses), bars
//! (histograms, per-day precision, importance), markers for thresholds.
//! Text is escaped; every number is finite or left out.

use std::fmt::Write as _;

use super::escape;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 52.0;

/// Colours of the series, in order (distinguishable in colour and grey).
pub const PALETTE: [&str; 6] = ["#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#475569"];

/// A named polyline.
pub struct Line {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Stroke colour.
    pub color: &'static str,
    /// Drawn dashed (references such as the diagonal).
    pub dashed: bool,
}

/// A labelled point (a threshold on a curve).
pub struct Marker {
    /// Where, in data coordinates.
    pub at: (f64, f64),
    /// Label written beside it.
    pub label: String,
    /// Fill colour.
    pub color: &'static str,
}

/// A vertical line across the plot at `x` (a threshold on a score axis).
pub struct Rule {
    /// Where, in data coordinates.
    pub x: f64,
    /// Label at its top.
    pub label: String,
}

/// A chart with axes: lines, markers, rules and bar groups.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Axis labels.
    pub x_label: String,
    /// Axis label.
    pub y_label: String,
    /// Data range of x.
    pub x_range: (f64, f64),
    /// Data range of y.
    pub y_range: (f64, f64),
    /// Polylines.
    pub lines: Vec<Line>,
    /// Points.
    pub markers: Vec<Marker>,
    /// Vertical rules.
    pub rules: Vec<Rule>,
    /// Bars: for each category (x from 0), one value per series.
    pub bars: Option<Bars>,
    /// Legend in the lower right corner instead of the upper right (where
    /// a precision-recall curve starts).
    pub legend_below: bool,
}

/// Grouped vertical bars over categories `0..n` on the x axis.
pub struct Bars {
    /// Series names (legend) and colours.
    pub series: Vec<(String, &'static str)>,
    /// For each category, one value per series.
    pub values: Vec<Vec<f64>>,
    /// Category labels written under the axis (every n-th when crowded).
    pub labels: Vec<String>,
}

impl Chart {
    /// An empty chart with these axes.
    pub fn new(title: &str, x_label: &str, y_label: &str, x_range: (f64, f64), y_range: (f64, f64)) -> Self {
        Self {
            title: title.to_owned(),
            x_label: x_label.to_owned(),
            y_label: y_label.to_owned(),
            x_range,
            y_range,
            lines: Vec::new(),
            markers: Vec::new(),
            rules: Vec::new(),
            bars: None,
            legend_below: false,
        }
    }

    fn x(&self, value: f64) -> f64 {
        let (low, high) = self.x_range;
        LEFT + (value - low) / (high - low).max(f64::MIN_POSITIVE) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let (low, high) = self.y_range;
        HEIGHT - BOTTOM - (value - low) / (high - low).max(f64::MIN_POSITIVE) * (HEIGHT - TOP - BOTTOM)
    }

    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#,
            title = escape(&self.title)
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="20" class="chart-title">{}</text>"#,
            LEFT,
            escape(&self.title)
        );
        self.render_axes(&mut out);
        if let Some(bars) = &self.bars {
            self.render_bars(&mut out, bars);
        }
        for line in &self.lines {
            let points: Vec<String> = line
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", self.x(x), self.y(y)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let dash = if line.dashed { r#" stroke-dasharray="5 4""# } else { "" };
            let _ = write!(
                out,
                r#"<polyline class="series" fill="none" stroke="{}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                line.color,
                points.join(" "),
                escape(&line.name)
            );
        }
        for rule in self.rules.iter().filter(|rule| rule.x.is_finite()) {
            let x = self.x(rule.x);
            let _ = write!(
                out,
                r##"<line class="rule" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#111" stroke-dasharray="3 3"/><text x="{:.1}" y="{:.1}" class="rule-label">{}</text>"##,
                TOP,
                HEIGHT - BOTTOM,
                x + 3.0,
                TOP + 10.0,
                escape(&rule.label)
            );
        }
        for marker in self
            .markers
            .iter()
            .filter(|marker| marker.at.0.is_finite() && marker.at.1.is_finite())
        {
            let (x, y) = (self.x(marker.at.0), self.y(marker.at.1));
            // labels of points in the right half go to their left, inside the plot
            let (label_x, anchor) = if x > (LEFT + WIDTH - RIGHT) / 2.0 {
                (x - 8.0, "end")
            } else {
                (x + 8.0, "start")
            };
            let _ = write!(
                out,
                r##"<circle class="marker" cx="{x:.1}" cy="{y:.1}" r="5" fill="{}" stroke="#fff"><title>{label}</title></circle><text x="{label_x:.1}" y="{:.1}" class="marker-label" text-anchor="{anchor}">{label}</text>"##,
                marker.color,
                (y - 7.0).max(TOP + 8.0),
                label = escape(&marker.label)
            );
        }
        self.render_legend(&mut out);
        out.push_str("</svg>");
        out
    }

    fn render_axes(&self, out: &mut String) {
        let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        for tick in 0..=4 {
            let share = f64::from(tick) / 4.0;
            let value = self.y_range.0 + share * (self.y_range.1 - self.y_range.0);
            let y = self.y(value);
            let _ = write!(
                out,
                r##"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                number(value)
            );
            if self.bars.is_none() {
                let value = self.x_range.0 + share * (self.x_range.1 - self.x_range.0);
                let x = self.x(value);
                let _ = write!(
                    out,
                    r#"<text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
                    y1 + 16.0,
                    number(value)
                );
            }
        }
        let _ = write!(
            out,
            r##"<path d="M{x0},{y0} V{y1} H{x1}" fill="none" stroke="#111"/><text x="{:.1}" y="{:.1}" class="axis-label" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" class="axis-label" text-anchor="middle">{}</text>"##,
            (x0 + x1) / 2.0,
            HEIGHT - 10.0,
            escape(&self.x_label),
            (y0 + y1) / 2.0,
            escape(&self.y_label)
        );
    }

    fn render_bars(&self, out: &mut String, bars: &Bars) {
        let n = bars.values.len().max(1) as f64;
        let slot = (WIDTH - LEFT - RIGHT) / n;
        let n_series = bars.series.len().max(1) as f64;
        let width = (slot * 0.8 / n_series).max(0.5);
        let every = (bars.values.len() / 12).max(1);
        for (idx, values) in bars.values.iter().enumerate() {
            let start = LEFT + slot * idx as f64 + slot * 0.1;
            for (series, value) in values.iter().enumerate() {
                if !value.is_finite() {
                    continue;
                }
                let (top, base) = (self.y(*value), self.y(self.y_range.0));
                let _ = write!(
                    out,
                    r#"<rect class="bar" x="{:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    start + width * series as f64,
                    (base - top).max(0.0),
                    bars.series.get(series).map_or("#888", |s| s.1),
                    escape(bars.labels.get(idx).map_or("", String::as_str)),
                    number(*value)
                );
            }
            if idx % every == 0
                && let Some(label) = bars.labels.get(idx)
            {
                let _ = write!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
                    LEFT + slot * (idx as f64 + 0.5),
                    HEIGHT - BOTTOM + 16.0,
                    escape(label)
                );
            }
        }
    }

    fn render_legend(&self, out: &mut String) {
        let mut entries: Vec<(&str, &str)> = self.lines.iter().map(|line| (line.name.as_str(), line.color)).collect();
        if let Some(bars) = &self.bars {
            entries.extend(bars.series.iter().map(|(name, color)| (name.as_str(), *color)));
        }
        let first = if self.legend_below {
            HEIGHT - BOTTOM - 8.0 - 15.0 * entries.len().saturating_sub(1) as f64
        } else {
            TOP + 8.0
        };
        for (idx, (name, color)) in entries.iter().enumerate() {
            let y = first + 15.0 * idx as f64;
            let x = WIDTH - RIGHT - 170.0;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
                y - 9.0,
                x + 14.0,
                y,
                escape(name)
            );
        }
    }
}

/// Horizontal bars, largest first: `(label, value)` (gain importance).
pub fn horizontal_bars(title: &str, rows: &[(String, f64)]) -> String {
    let row_height = 18.0;
    let label_width = 210.0;
    let height = TOP + row_height * rows.len() as f64 + 12.0;
    let max = rows
        .iter()
        .map(|row| row.1)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{title}"><title>{title}</title><text x="{LEFT}" y="20" class="chart-title">{title}</text>"#,
        title = escape(title)
    );
    for (idx, (label, value)) in rows.iter().enumerate() {
        let y = TOP + row_height * idx as f64;
        let width = if value.is_finite() {
            (value / max).max(0.0) * (WIDTH - label_width - 70.0)
        } else {
            0.0
        };
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text><rect class="bar" x="{label_width}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            label_width - 6.0,
            y + 12.0,
            escape(label),
            y + 2.0,
            row_height - 5.0,
            PALETTE[0],
            escape(label),
            number(*value),
            label_width + width + 4.0,
            y + 12.0,
            number(*value)
        );
    }
    out.push_str("</svg>");
    out
}

/// A tick or value label: few digits, no exponent for everyday magnitudes.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        "–".to_owned()
    } else if magnitude >= 10_000.0 {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 || magnitude == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
