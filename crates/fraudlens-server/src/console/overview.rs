//! The overview: volume, decision mix, fraud and review rates, the score
//! distribution and decision latency over a time range (from the store),
//! and this process's requests and errors per minute (its own metrics).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use fraudlens_core::Timestamp;
use fraudlens_store::{DecisionBucket, DecisionStats};
use maud::{Markup, html};
use serde::Deserialize;

use super::format::{self, query};
use super::layout::{PageError, Section, page, respond};
use super::session::Session;
use crate::AppState;
use crate::ops::{MinuteStats, recent_minutes};

const HOUR: i64 = 3_600_000;
/// The longest custom range (each overview reads every decision of its range).
const MAX_DAYS: i64 = 92;
const DAY: i64 = 24 * HOUR;

/// The ranges offered, with the bucket each is drawn in.
const RANGES: [(&str, &str, i64, i64); 4] = [
    ("24h", "24 hours", DAY, HOUR),
    ("7d", "7 days", 7 * DAY, 6 * HOUR),
    ("30d", "30 days", 30 * DAY, DAY),
    ("90d", "90 days", 90 * DAY, DAY),
];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeQuery {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The window shown: `[from, to)` in buckets of `bucket` milliseconds.
#[derive(Debug, PartialEq)]
pub(super) struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
    pub bucket: i64,
    pub preset: Option<&'static str>,
}

/// A preset ending at the latest stored event (so replayed history shows as
/// it happened), or a custom `from`/`to`.
pub(super) fn window(query: &RangeQuery, latest: Timestamp) -> Result<Window, String> {
    let custom = [&query.from, &query.to]
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| !t.trim().is_empty()));
    if custom {
        let parse = |text: &Option<String>, what: &str| {
            let text = text.as_deref().unwrap_or("").trim();
            format::parse_time(text).ok_or_else(|| format!("{what} {text:?} is not a date and time"))
        };
        let (from, to) = (parse(&query.from, "from")?, parse(&query.to, "to")?);
        let span = to.as_millis() - from.as_millis();
        if span <= 0 {
            return Err("the range must end after it starts".to_owned());
        }
        if span > MAX_DAYS * DAY {
            return Err(format!("a range spans at most {MAX_DAYS} days"));
        }
        // about 30 to 60 buckets, in whole hours or days
        let bucket = if span <= 2 * DAY {
            HOUR
        } else if span <= 15 * DAY {
            6 * HOUR
        } else {
            DAY
        };
        let bucket = bucket * (span / bucket / 60 + 1);
        return Ok(Window {
            from,
            to,
            bucket,
            preset: None,
        });
    }
    let name = query.range.as_deref().unwrap_or("7d");
    let (preset, _, span, bucket) = RANGES
        .iter()
        .find(|(key, ..)| *key == name)
        .ok_or_else(|| format!("unknown range {name:?}"))?;
    // end at the end of the bucket holding the latest event
    let to = (latest.as_millis().div_euclid(*bucket) + 1) * bucket;
    Ok(Window {
        from: Timestamp::from_millis(to - span),
        to: Timestamp::from_millis(to),
        bucket: *bucket,
        preset: Some(preset),
    })
}

/// `GET /ui/overview`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Query(range): Query<RangeQuery>,
) -> Result<Response, PageError> {
    let store = state.pipeline.store();
    let latest = store.latest_event_time().await?.unwrap_or_else(crate::now);
    let (window, error) = match window(&range, latest) {
        Ok(window) => (window, None),
        Err(error) => (
            window(&RangeQuery::default(), latest).map_err(PageError::invalid)?,
            Some(error),
        ),
    };
    let stats = store.decision_stats(window.from, window.to, window.bucket).await?;
    let pending = store.queue_counts(0).await?.pending_review;
    let minutes = recent_minutes(60);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        h1 { "Overview" }
        (range_picker(&window, &range))
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        p.muted { "From " (format::time(window.from)) " to " (format::time(window.to)) " (UTC, event time)"
            @if window.preset.is_some() { ", ending at the latest stored transaction" } "." }
        (tiles(&stats, pending))
        div.charts {
            (volume_chart(&stats, &window))
            (rates_chart(&stats, &window))
            (score_histogram(&stats))
            (latency_chart(&stats, &window))
        }
        section aria-labelledby="h-process" {
            h2 #h-process { "This process, the last hour" }
            (process_chart(&minutes))
        }
    };
    Ok(respond(
        status,
        page("Overview", Some(&session), Section::Overview, body),
    ))
}

fn range_picker(window: &Window, range: &RangeQuery) -> Markup {
    html! {
        nav.tabs aria-label="Time range" {
            ul {
                @for (key, words, ..) in RANGES {
                    li { a href={ "/ui/overview?" (query([("range", key)])) } aria-current=[(window.preset == Some(key)).then_some("page")] { (words) } }
                }
            }
        }
        form.filters method="get" action="/ui/overview" aria-label="Custom range" {
            div {
                label for="o-from" { "From (UTC)" }
                input #o-from type="datetime-local" name="from" value=(range.from.as_deref().unwrap_or(""));
            }
            div {
                label for="o-to" { "To (UTC)" }
                input #o-to type="datetime-local" name="to" value=(range.to.as_deref().unwrap_or(""));
            }
            div.actions { button type="submit" { "Show" } }
        }
    }
}

fn totals(stats: &DecisionStats) -> DecisionBucket {
    stats.buckets.iter().fold(DecisionBucket::default(), |mut sum, b| {
        sum.approve += b.approve;
        sum.review += b.review;
        sum.decline += b.decline;
        sum.fraud += b.fraud;
        sum.legit += b.legit;
        sum.latency_sum_us += b.latency_sum_us;
        sum.latency_max_us = sum.latency_max_us.max(b.latency_max_us);
        sum
    })
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn tiles(stats: &DecisionStats, pending: u64) -> Markup {
    let t = totals(stats);
    let n = t.approve + t.review + t.decline;
    html! {
        dl.tiles {
            div { dt { "Decisions" } dd { (n) } }
            div { dt { "Sent to review" } dd { (format::percent(share(t.review, n))) } }
            div { dt { "Declined" } dd { (format::percent(share(t.decline, n))) } }
            div { dt { "Labelled fraud" } dd { (t.fraud) span.muted { " (" (format::percent(share(t.fraud, n))) ")" } } }
            div { dt { "Mean decision time" } dd { (if n > 0 { format!("{:.1} ms", t.latency_sum_us as f64 / n as f64 / 1000.0) } else { "–".to_owned() }) } }
            div { dt { "Pending review now" } dd { a href="/ui/queue" { (pending) } } }
        }
    }
}

const W: f64 = 560.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;

fn frame(window: &Window, top: f64, top_label: &str) -> Markup {
    html! {
        line x1=(LEFT) x2=(W - 8.0) y1=(H - BOTTOM) y2=(H - BOTTOM) class="axis" {}
        line x1=(LEFT) x2=(LEFT) y1="8" y2=(H - BOTTOM) class="axis" {}
        text x=(LEFT - 6.0) y="14" text-anchor="end" class="note" { (top_label) }
        text x=(LEFT - 6.0) y=(H - BOTTOM) text-anchor="end" class="note" { "0" }
        text x=(LEFT) y=(H - 6.0) class="note" { (format::time(window.from)) }
        text x=(W - 8.0) y=(H - 6.0) text-anchor="end" class="note" { (format::time(window.to)) }
        @if top <= 0.0 { text x=(W / 2.0) y=(H / 2.0) text-anchor="middle" class="note" { "no decisions in this range" } }
    }
}

/// Buckets of the window, the last one partial when the span is not a whole number of them.
fn slots(window: &Window) -> usize {
    let span = window.to.as_millis() - window.from.as_millis();
    (span + window.bucket - 1).div_euclid(window.bucket).max(1) as usize
}

fn slot_of(window: &Window, bucket: &DecisionBucket) -> usize {
    ((bucket.start.as_millis() - window.from.as_millis()) / window.bucket).max(0) as usize
}

fn volume_chart(stats: &DecisionStats, window: &Window) -> Markup {
    let n_slots = slots(window);
    let width = (W - LEFT - 8.0) / n_slots as f64;
    let top = stats
        .buckets
        .iter()
        .map(|b| b.approve + b.review + b.decline)
        .max()
        .unwrap_or(0) as f64;
    let y = |v: f64| (H - BOTTOM) - v / top.max(1.0) * (H - BOTTOM - 10.0);
    html! {
        figure.chart.small {
            figcaption { strong { "Volume and decision mix" } " — decisions per " (bucket_words(window.bucket)) }
            svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img"
                aria-label={ "Decisions per " (bucket_words(window.bucket)) ", approve, review and decline stacked" } {
                (frame(window, top, &format!("{top:.0}")))
                @for b in &stats.buckets {
                    @let x = LEFT + slot_of(window, b) as f64 * width;
                    @let a = b.approve as f64;
                    @let r = b.review as f64;
                    @let d = b.decline as f64;
                    rect x=(x) width=((width - 1.0).max(0.5)) y=(y(a)) height=((H - BOTTOM) - y(a)) class="approve" { title { (format::time(b.start)) ": " (b.approve) " approved" } }
                    rect x=(x) width=((width - 1.0).max(0.5)) y=(y(a + r)) height=(y(a) - y(a + r)) class="review" { title { (format::time(b.start)) ": " (b.review) " to review" } }
                    rect x=(x) width=((width - 1.0).max(0.5)) y=(y(a + r + d)) height=(y(a + r) - y(a + r + d)) class="decline" { title { (format::time(b.start)) ": " (b.decline) " declined" } }
                }
            }
            p.legend { span.key.approve { "approve" } " " span.key.review { "review" } " " span.key.decline { "decline" } }
        }
    }
}

fn rates_chart(stats: &DecisionStats, window: &Window) -> Markup {
    let n_slots = slots(window);
    let step = (W - LEFT - 8.0) / n_slots as f64;
    let rate = |part: fn(&DecisionBucket) -> u64| -> Vec<(f64, f64)> {
        stats
            .buckets
            .iter()
            .filter_map(|b| {
                let n = b.approve + b.review + b.decline;
                share(part(b), n).map(|r| (LEFT + (slot_of(window, b) as f64 + 0.5) * step, r))
            })
            .collect()
    };
    let flagged = rate(|b| b.review + b.decline);
    let fraud = rate(|b| b.fraud);
    let top = flagged.iter().chain(&fraud).map(|(_, r)| *r).fold(0.0, f64::max);
    let top = if top > 0.0 { (top * 1.1).min(1.0) } else { 0.0 };
    let y = |r: f64| (H - BOTTOM) - r / top.max(1e-9) * (H - BOTTOM - 10.0);
    let line = |points: &[(f64, f64)]| {
        points
            .iter()
            .map(|(x, r)| format!("{x:.1},{:.1}", y(*r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        figure.chart.small {
            figcaption { strong { "Flagged and fraud rates" } " — share of decisions per " (bucket_words(window.bucket)) }
            svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img"
                aria-label="Share of decisions flagged (review or decline) and share labelled fraud, over time" {
                (frame(window, top, &format::percent(Some(top))))
                polyline points=(line(&flagged)) class="flagged-line" {}
                polyline points=(line(&fraud)) class="fraud-line" {}
            }
            p.legend { span.key.flagged { "flagged (review + decline)" } " " span.key.fraud { "labelled fraud" } }
        }
    }
}

fn score_histogram(stats: &DecisionStats) -> Markup {
    let bins = &stats.score_bins;
    let top = bins.iter().copied().max().unwrap_or(0) as f64;
    // a log scale: the approvals near 0 would flatten everything else
    let y = |v: u64| {
        let v = (v as f64 + 1.0).ln() / (top + 1.0).ln().max(1e-9);
        (H - BOTTOM) - v * (H - BOTTOM - 10.0)
    };
    let width = (W - LEFT - 8.0) / bins.len().max(1) as f64;
    html! {
        figure.chart.small {
            figcaption { strong { "Score distribution" } " — decisions per score bin (log scale)" }
            svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img"
                aria-label={ "Decisions per score bin of width 0.05: " (bins.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) } {
                line x1=(LEFT) x2=(W - 8.0) y1=(H - BOTTOM) y2=(H - BOTTOM) class="axis" {}
                text x=(LEFT - 6.0) y="14" text-anchor="end" class="note" { (top) }
                @for (idx, n) in bins.iter().enumerate() {
                    rect x=(LEFT + idx as f64 * width) width=(width - 1.0) y=(y(*n)) height=((H - BOTTOM) - y(*n)) class="bin" {
                        title { (format!("{:.2}–{:.2}", idx as f64 / bins.len() as f64, (idx + 1) as f64 / bins.len() as f64)) ": " (n) }
                    }
                }
                text x=(LEFT) y=(H - 6.0) class="note" { "0" }
                text x=(W - 8.0) y=(H - 6.0) text-anchor="end" class="note" { "1" }
            }
        }
    }
}

fn latency_chart(stats: &DecisionStats, window: &Window) -> Markup {
    let n_slots = slots(window);
    let step = (W - LEFT - 8.0) / n_slots as f64;
    let means: Vec<(f64, f64)> = stats
        .buckets
        .iter()
        .filter_map(|b| {
            let n = b.approve + b.review + b.decline;
            (n > 0).then(|| {
                (
                    LEFT + (slot_of(window, b) as f64 + 0.5) * step,
                    b.latency_sum_us as f64 / n as f64 / 1000.0,
                )
            })
        })
        .collect();
    let maxes: Vec<(f64, f64)> = stats
        .buckets
        .iter()
        .map(|b| {
            (
                LEFT + (slot_of(window, b) as f64 + 0.5) * step,
                b.latency_max_us as f64 / 1000.0,
            )
        })
        .collect();
    let top = maxes.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let y = |v: f64| (H - BOTTOM) - v / top.max(1e-9) * (H - BOTTOM - 10.0);
    let line = |points: &[(f64, f64)]| {
        points
            .iter()
            .map(|(x, v)| format!("{x:.1},{:.1}", y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        figure.chart.small {
            figcaption { strong { "Decision time" } " — mean and slowest per " (bucket_words(window.bucket)) " (parse to decision, before the durable write)" }
            svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img" aria-label="Mean and largest decision time over time, in milliseconds" {
                (frame(window, top, &format!("{top:.1} ms")))
                polyline points=(line(&maxes)) class="max-line" {}
                polyline points=(line(&means)) class="mean-line" {}
            }
            p.legend { span.key.mean { "mean" } " " span.key.max { "slowest" } }
        }
    }
}

fn process_chart(minutes: &[MinuteStats]) -> Markup {
    let total: u64 = minutes.iter().map(|m| m.requests).sum();
    let errors: u64 = minutes.iter().map(|m| m.server_errors).sum();
    let refused: u64 = minutes.iter().map(|m| m.client_errors).sum();
    let top = minutes.iter().map(|m| m.requests).max().unwrap_or(0) as f64;
    let width = (W - LEFT - 8.0) / minutes.len().max(1) as f64;
    let y = |v: f64| (H - BOTTOM) - v / top.max(1.0) * (H - BOTTOM - 10.0);
    html! {
        dl.tiles {
            div { dt { "Requests" } dd { (total) } }
            div { dt { "Server errors (5xx)" } dd { (errors) } }
            div { dt { "Refused (4xx)" } dd { (refused) } }
            div { dt { "Slowest request" } dd { (format!("{:.1} ms", minutes.iter().map(|m| m.max_seconds).fold(0.0, f64::max) * 1000.0)) } }
        }
        figure.chart.small {
            figcaption { strong { "Requests per minute" } " — errors in red; from this process's own counters since it started" }
            svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img"
                aria-label={ (total) " requests and " (errors) " server errors in the last hour, per minute" } {
                line x1=(LEFT) x2=(W - 8.0) y1=(H - BOTTOM) y2=(H - BOTTOM) class="axis" {}
                text x=(LEFT - 6.0) y="14" text-anchor="end" class="note" { (top) }
                text x=(LEFT) y=(H - 6.0) class="note" { "60 min ago" }
                text x=(W - 8.0) y=(H - 6.0) text-anchor="end" class="note" { "now" }
                @for (idx, m) in minutes.iter().enumerate() {
                    @let x = LEFT + idx as f64 * width;
                    rect x=(x) width=((width - 1.0).max(0.5)) y=(y(m.requests as f64)) height=((H - BOTTOM) - y(m.requests as f64)) class="requests" {
                        title { (m.requests) " requests, " (m.server_errors) " server errors" }
                    }
                    @if m.server_errors > 0 {
                        rect x=(x) width=((width - 1.0).max(0.5)) y=(y(m.server_errors as f64)) height=((H - BOTTOM) - y(m.server_errors as f64)) class="errors" {}
                    }
                }
            }
        }
    }
}

fn bucket_words(bucket: i64) -> String {
    match bucket {
        b if b == HOUR => "hour".to_owned(),
        b if b == DAY => "day".to_owned(),
        b if b % DAY == 0 => format!("{} days", b / DAY),
        b => format!("{} hours", b / HOUR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_end_at_the_bucket_of_the_latest_event() {
        let latest = format::parse_time("2026-02-07T05:30").unwrap();
        let w = window(&RangeQuery::default(), latest).unwrap();
        assert_eq!(w.preset, Some("7d"));
        assert_eq!(format::time(w.to), "2026-02-07 06:00:00");
        assert_eq!(w.to.as_millis() - w.from.as_millis(), 7 * DAY);
        assert_eq!(w.bucket, 6 * HOUR);
        let day = window(
            &RangeQuery {
                range: Some("24h".into()),
                ..RangeQuery::default()
            },
            latest,
        )
        .unwrap();
        assert_eq!(
            (day.bucket, format::time(day.to)),
            (HOUR, "2026-02-07 06:00:00".to_owned())
        );
        assert!(
            window(
                &RangeQuery {
                    range: Some("1y".into()),
                    ..RangeQuery::default()
                },
                latest
            )
            .is_err()
        );
    }

    #[test]
    fn custom_ranges_are_checked_and_drawn_in_at_most_about_60_buckets() {
        let latest = Timestamp::from_millis(0);
        let q = |from: &str, to: &str| RangeQuery {
            range: None,
            from: Some(from.into()),
            to: Some(to.into()),
        };
        let w = window(&q("2026-01-01T00:00", "2026-03-01T00:00"), latest).unwrap();
        assert_eq!(w.preset, None);
        assert!((w.to.as_millis() - w.from.as_millis()) / w.bucket <= 60, "{w:?}");
        assert!(window(&q("2026-03-01T00:00", "2026-01-01T00:00"), latest).is_err());
        assert!(
            window(&q("2025-09-01T00:00", "2026-01-01T00:00"), latest).is_err(),
            "over 92 days"
        );
        let partial = window(&q("2026-01-01T00:00", "2026-01-01T01:30"), latest).unwrap();
        assert_eq!(
            (partial.bucket, slots(&partial)),
            (HOUR, 2),
            "the last half hour has a slot of its own"
        );
        assert!(window(&q("soon", "2026-01-01T00:00"), latest).is_err());
    }
}
