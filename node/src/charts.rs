//! Charts people can trust, as inline SVG rendered here: each model's value as a
//! point with its 95% interval on an axis whose ends are labelled (the words say
//! where it starts, so a zoomed axis never passes for one from zero), and the
//! model x site heatmap with every value written in its cell. Styled by their own
//! attributes, so they look the same on the node's pages and in `medmesh ui`.

use maud::{Markup, html};
use protocol::fold::Leaderboard;

/// Width of the model-name column, in SVG units.
const LABEL_W: i64 = 230;
/// Width of the plotting area.
const PLOT_W: i64 = 440;
/// Height of one model's row.
const ROW_H: i64 = 30;
/// Ticks on the axis (both ends included).
const TICKS: i64 = 5;
/// Values beyond this (in millionths) are drawn at it: a release is signed by
/// the committee, not checked for sense, and the arithmetic must not overflow.
pub const VALUE_ABS_MAX: i64 = 1_000_000_000_000_000;

fn clamp(v: i64) -> i64 {
    v.clamp(-VALUE_ABS_MAX, VALUE_ABS_MAX)
}

/// Points and intervals (contrast 10:1 on white).
const INK: &str = "#0b3d91";
/// Text and the axis.
const TEXT: &str = "#10151f";
/// Row guide lines.
const GRID: &str = "#dde3ec";

/// A value with four decimals (as the leaderboard table shows it).
fn fixed(millionths: i64) -> String {
    format!("{:.4}", millionths as f64 / 1e6)
}

/// A tick label with enough decimals that ticks `step` millionths apart differ.
fn tick(millionths: i64, step: i64) -> String {
    let mut decimals = 3usize;
    let mut unit = 1_000i64;
    while decimals < 6 && step < unit {
        decimals += 1;
        unit /= 10;
    }
    format!("{:.*}", decimals, millionths as f64 / 1e6)
}

/// The axis range: every value and interval end, padded, on round thousandths.
pub fn axis(lb: &Leaderboard) -> (i64, i64) {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for r in &lb.rows {
        if let Some(v) = r.value.millionths().map(clamp) {
            lo = lo.min(clamp(r.ci_low.unwrap_or(v))).min(v);
            hi = hi.max(clamp(r.ci_high.unwrap_or(v))).max(v);
        }
    }
    if lo > hi {
        return (0, 1_000_000);
    }
    let pad = ((hi - lo) / 10).max(1_000);
    let lo = ((lo - pad) / 1_000) * 1_000;
    let hi = ((hi + pad + 999) / 1_000) * 1_000;
    (lo, hi.max(lo + 1_000))
}

/// The point-and-interval chart of the ranking metric.
pub fn interval_chart(lb: &Leaderboard) -> Markup {
    let (lo, hi) = axis(lb);
    let span = (hi - lo).max(1);
    let x = |v: i64| {
        LABEL_W + ((clamp(v) - lo).clamp(0, span) as i128 * PLOT_W as i128 / span as i128) as i64
    };
    let height = ROW_H * lb.rows.len() as i64 + 60;
    let width = LABEL_W + PLOT_W + 120;
    let axis_y = ROW_H * lb.rows.len() as i64 + 12;
    let desc = format!(
        "{} per model with its 95% interval; the axis runs from {} to {}{}",
        lb.metric,
        tick(lo, span / (TICKS - 1)),
        tick(hi, span / (TICKS - 1)),
        if lo > 0 { ", not from zero" } else { "" }
    );
    html! {
        figure.chart {
            svg #chart xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(desc)
                font-family="system-ui, sans-serif" font-size="12" fill=(TEXT) {
                title { (desc) }
                @for (i, r) in lb.rows.iter().enumerate() {
                    @let y = 20 + ROW_H * i as i64;
                    text x=(LABEL_W - 10) y=(y + 4) text-anchor="end" { (r.rank) ". " (r.model_name) }
                    line.grid x1=(LABEL_W) x2=(LABEL_W + PLOT_W) y1=(y) y2=(y) stroke=(GRID) {}
                    @match r.value.millionths() {
                        Some(v) => {
                            @if let (Some(l), Some(h)) = (r.ci_low, r.ci_high) {
                                line.interval x1=(x(l)) x2=(x(h)) y1=(y) y2=(y) stroke=(INK) stroke-width="2" {}
                                line.whisker x1=(x(l)) x2=(x(l)) y1=(y - 6) y2=(y + 6) stroke=(INK) stroke-width="2" {}
                                line.whisker x1=(x(h)) x2=(x(h)) y1=(y - 6) y2=(y + 6) stroke=(INK) stroke-width="2" {}
                            }
                            circle.point cx=(x(v)) cy=(y) r="5" fill=(INK) {
                                title {
                                    (r.model_name) ": " (fixed(v))
                                    @if let (Some(l), Some(h)) = (r.ci_low, r.ci_high) {
                                        " (95% interval " (fixed(l)) " to " (fixed(h)) ")"
                                    }
                                }
                            }
                            text x=(LABEL_W + PLOT_W + 10) y=(y + 4) { (fixed(v)) }
                        }
                        None => {
                            text x=(LABEL_W + 4) y=(y + 4) { "NaN (ranked last)" }
                        }
                    }
                }
                line.axis x1=(LABEL_W) x2=(LABEL_W + PLOT_W) y1=(axis_y) y2=(axis_y) stroke=(TEXT) {}
                @for t in 0..TICKS {
                    @let v = lo + span * t / (TICKS - 1);
                    line.axis x1=(x(v)) x2=(x(v)) y1=(axis_y) y2=(axis_y + 5) stroke=(TEXT) {}
                    text.tick x=(x(v)) y=(axis_y + 18) text-anchor="middle" { (tick(v, span / (TICKS - 1))) }
                }
                text.axis-note x=(LABEL_W) y=(axis_y + 36) font-weight="bold" {
                    (lb.metric) " · axis starts at " (tick(lo, span / (TICKS - 1)))
                    @if lo > 0 { " (not zero)" }
                }
            }
            figcaption {
                (desc) ". "
                @if lb.rows.iter().all(|r| r.ci_low.is_none()) {
                    "No intervals: the release gives one value per model (an aggregate, or a single site)."
                }
            }
        }
    }
}

/// WCAG 2 relative luminance of an sRGB colour.
fn luminance(r: i64, g: i64, b: i64) -> f64 {
    let ch = |v: i64| {
        let v = v as f64 / 255.0;
        if v <= 0.03928 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)
}

/// The heatmap colour of a value at `t` in 0..=1000 between the lowest and
/// highest cell, and the text colour (white or black, whichever contrasts more:
/// one of them always reaches 4.5:1).
fn shade(t: i64) -> (String, &'static str) {
    // From a pale blue to a deep blue.
    let mix = |a: i64, b: i64| a + (b - a) * t.clamp(0, 1000) / 1000;
    let (r, g, b) = (mix(0xe8, 0x0b), mix(0xf0, 0x3d), mix(0xfb, 0x91));
    let l = luminance(r, g, b);
    let fg = if 1.05 / (l + 0.05) > (l + 0.05) / 0.05 { "#ffffff" } else { "#000000" };
    (format!("#{r:02x}{g:02x}{b:02x}"), fg)
}

/// The model x site table of the ranking metric (per-dataset releases).
pub fn heatmap(lb: &Leaderboard) -> Markup {
    if lb.cells.is_empty() {
        return html! {};
    }
    const CELL_H: i64 = 28;
    // Wide enough for the longest site label (about 7 units a character at 12px).
    let longest = lb.datasets.iter().map(|d| d.chars().count()).max().unwrap_or(0) as i64;
    let cell_w: i64 = (longest * 7 + 16).clamp(90, 240);
    let values: Vec<i64> =
        lb.cells.iter().filter_map(|c| c.value.millionths()).map(clamp).collect();
    let (min, max) =
        (values.iter().copied().min().unwrap_or(0), values.iter().copied().max().unwrap_or(1));
    let width = LABEL_W + cell_w * lb.datasets.len() as i64 + 10;
    let height = CELL_H * (lb.rows.len() as i64 + 1) + 10;
    let desc = format!(
        "{} of each model at each site; darker is higher, from {} to {}",
        lb.metric,
        fixed(min),
        fixed(max)
    );
    html! {
        figure.chart {
            svg #heatmap xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(desc)
                font-family="system-ui, sans-serif" font-size="12" fill=(TEXT) {
                title { (desc) }
                @for (j, d) in lb.datasets.iter().enumerate() {
                    text x=(LABEL_W + cell_w * j as i64 + cell_w / 2) y="18" text-anchor="middle" { (d) }
                }
                @for (i, r) in lb.rows.iter().enumerate() {
                    @let y = CELL_H * (i as i64 + 1);
                    text x=(LABEL_W - 10) y=(y + 18) text-anchor="end" { (r.model_name) }
                    @for (j, d) in lb.datasets.iter().enumerate() {
                        @let cell = lb.cells.iter().find(|c| c.model == r.model && &c.dataset == d);
                        @let xx = LABEL_W + cell_w * j as i64;
                        @match cell.map(|c| c.value) {
                            Some(v) => {
                                @let t = v.millionths().map_or(0, |m| if max > min { (clamp(m) - min) * 1000 / (max - min) } else { 1000 });
                                @let (bg, fg) = shade(t);
                                rect.cell x=(xx) y=(y) width=(cell_w - 2) height=(CELL_H - 2) fill=(bg) {
                                    title { (r.model_name) " at " (d) ": " (v.to_string()) }
                                }
                                text x=(xx + cell_w / 2) y=(y + 18) text-anchor="middle" fill=(fg) {
                                    (v.millionths().map_or_else(|| "NaN".to_string(), fixed))
                                }
                            }
                            None => {
                                text x=(xx + cell_w / 2) y=(y + 18) text-anchor="middle" { "–" }
                            }
                        }
                    }
                }
            }
            figcaption { (desc) "." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::RecordId;
    use protocol::leaderboard::LeaderboardRow;
    use protocol::metric::Figure;
    use protocol::record::SharingPolicy;

    fn board(values: &[(i64, i64, i64)]) -> Leaderboard {
        Leaderboard {
            benchmark: RecordId::from_bytes([1; 32]),
            metric: "auc".into(),
            higher_is_better: true,
            policy: SharingPolicy::PerDataset,
            release_round: 1,
            seed: 0,
            rows: values
                .iter()
                .enumerate()
                .map(|(i, (v, l, h))| LeaderboardRow {
                    rank: i as u32 + 1,
                    model: RecordId::from_bytes([i as u8 + 2; 32]),
                    model_name: format!("<b>model {i}</b>"),
                    value: Figure::Millionths(*v),
                    datasets: 3,
                    metrics: Default::default(),
                    mean_rank_milli: None,
                    ci_low: Some(*l),
                    ci_high: Some(*h),
                })
                .collect(),
            datasets: Vec::new(),
            cells: Vec::new(),
        }
    }

    #[test]
    fn absurd_released_values_draw_without_overflow() {
        let lb = board(&[(i64::MAX, i64::MIN, i64::MAX), (i64::MIN, i64::MIN, i64::MAX)]);
        let svg = interval_chart(&lb).into_string();
        assert_eq!(svg.matches("class=\"point\"").count(), 2);
    }

    /// WCAG 2 contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let lum = |c: &str| {
            let ch = |i: usize| {
                let v = u8::from_str_radix(&c[i..i + 2], 16).unwrap() as f64 / 255.0;
                if v <= 0.03928 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
            };
            0.2126 * ch(1) + 0.7152 * ch(3) + 0.0722 * ch(5)
        };
        let (x, y) = (lum(a), lum(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn every_heatmap_cell_keeps_its_text_readable() {
        for t in 0..=1000 {
            let (bg, fg) = shade(t);
            let c = contrast(&bg, fg);
            assert!(c >= 4.5, "contrast {c:.2} at {t} ({fg} on {bg})");
        }
        // Points, intervals and text on the white page.
        assert!(contrast(INK, "#ffffff") >= 4.5 && contrast(TEXT, "#ffffff") >= 4.5);
    }

    #[test]
    fn ticks_close_together_get_the_decimals_that_tell_them_apart() {
        assert_eq!(tick(988_000, 750), "0.9880");
        assert_eq!(tick(990_000, 250_000), "0.990");
        let labels: Vec<String> = (0..5).map(|t| tick(988_000 + 750 * t, 750)).collect();
        let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), 5, "{labels:?}");
    }

    #[test]
    fn the_axis_covers_every_interval_and_says_where_it_starts() {
        let lb = board(&[(985_000, 975_000, 990_000), (973_000, 960_000, 980_000)]);
        let (lo, hi) = axis(&lb);
        assert!(lo <= 960_000 && hi >= 990_000, "{lo}..{hi}");
        let svg = interval_chart(&lb).into_string();
        assert!(
            svg.contains(&format!("axis starts at {} (not zero)", tick(lo, (hi - lo) / 4))),
            "{svg}"
        );
        assert!(svg.contains("&lt;b&gt;model 0&lt;/b&gt;"), "names are escaped: {svg}");
        assert!(!svg.contains("<b>"));
    }
}
