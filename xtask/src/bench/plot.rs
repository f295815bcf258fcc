//! Grouped bar charts as hand-written SVG, for the benchmark pages: one group of
//! bars per workload (a document size), one bar per series (a contender) in
//! each group, a legend under the chart. No dependency: plain string building.

use std::fmt::Write as _;

/// What one chart shows. `values[s][g]` is series `s` in group `g`; `None`
/// draws no bar (the contender did not run there) and says so in the legend.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub title: &'a str,
    /// The unit of the values, written beside the axis (`docs/s`).
    pub unit: &'a str,
    pub groups: &'a [String],
    pub series: &'a [String],
    pub values: &'a [Vec<Option<f64>>],
}

/// Colours of the series, in order (repeated past the end).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: f64 = 900.0;
const PLOT_TOP: f64 = 50.0;
const PLOT_HEIGHT: f64 = 300.0;
const PLOT_LEFT: f64 = 80.0;
const PLOT_RIGHT: f64 = 20.0;
const LEGEND_LINE: f64 = 18.0;

/// The chart as an SVG document.
pub fn grouped_bars(chart: &Chart<'_>) -> String {
    let max = chart
        .values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT;
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    let height = bottom + 40.0 + LEGEND_LINE * chart.series.len() as f64 + 10.0;
    let y = |v: f64| bottom - v / top * PLOT_HEIGHT;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(chart.title)
    );
    // Horizontal grid lines with their values, five steps up to the top.
    for step in 0..=5 {
        let v = top * f64::from(step) / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{PLOT_LEFT}" y1="{yv:.1}" x2="{x2}" y2="{yv:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            yv = y(v),
            x2 = WIDTH - PLOT_RIGHT,
            tx = PLOT_LEFT - 6.0,
            ty = y(v) + 4.0,
            label = short_number(v),
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        PLOT_TOP + PLOT_HEIGHT / 2.0,
        PLOT_TOP + PLOT_HEIGHT / 2.0,
        escape(chart.unit)
    );

    let groups = chart.groups.len().max(1) as f64;
    let group_width = plot_width / groups;
    let bars = chart.series.len().max(1) as f64;
    let bar_width = group_width * 0.8 / bars;
    for (g, group) in chart.groups.iter().enumerate() {
        let left = PLOT_LEFT + group_width * g as f64 + group_width * 0.1;
        for (s, series) in chart.series.iter().enumerate() {
            let Some(v) = chart
                .values
                .get(s)
                .and_then(|row| row.get(g))
                .copied()
                .flatten()
            else {
                continue;
            };
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let x = left + bar_width * s as f64;
            let _ = writeln!(
                svg,
                r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}, {}: {} {}</title></rect>"#,
                y(v),
                (bar_width - 2.0).max(1.0),
                bottom - y(v),
                PALETTE[s % PALETTE.len()],
                escape(series),
                escape(group),
                short_number(v),
                escape(chart.unit)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                x + bar_width / 2.0 - 1.0,
                y(v) - 3.0,
                short_number(v)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            PLOT_LEFT + group_width * (g as f64 + 0.5),
            bottom + 20.0,
            escape(group)
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{PLOT_LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="black"/>"#,
        WIDTH - PLOT_RIGHT
    );
    for (s, series) in chart.series.iter().enumerate() {
        let ly = bottom + 40.0 + LEGEND_LINE * s as f64;
        let missing = chart
            .values
            .get(s)
            .is_none_or(|row| row.iter().all(Option::is_none));
        let _ = writeln!(
            svg,
            r#"<rect x="{PLOT_LEFT}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}">{}{}</text>"#,
            ly - 10.0,
            PALETTE[s % PALETTE.len()],
            PLOT_LEFT + 18.0,
            ly,
            escape(series),
            if missing { " (not run)" } else { "" }
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `v` (1 for nothing to show).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * power)
}

/// 950, 12.3k, 3.22M.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        let m = format!("{:.3}", v / 1e6);
        format!("{}M", m.trim_end_matches('0').trim_end_matches('.'))
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that every tag opened is closed in order (XML's nesting, roughly),
    /// and returns the element names in document order.
    fn elements(svg: &str) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').map(|e| start + e);
            let Some(end) = end else {
                panic!("unclosed tag at {start}");
            };
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "misnested </{name}>");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                names.push(name.clone());
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "left open: {open:?}");
        names
    }

    #[test]
    fn one_bar_per_value_and_well_formed() {
        let groups = vec!["200 B".to_string(), "2 KiB".to_string()];
        let series = vec![
            "ours <fast>".to_string(),
            "peer & co".to_string(),
            "absent".to_string(),
        ];
        let values = vec![
            vec![Some(3_000_000.0), Some(600_000.0)],
            vec![Some(190_000.0), None],
            vec![None, None],
        ];
        let svg = grouped_bars(&Chart {
            title: "null server",
            unit: "docs/s",
            groups: &groups,
            series: &series,
            values: &values,
        });
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let names = elements(&svg);
        assert_eq!(names.first().map(String::as_str), Some("svg"));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 3, "{svg}");
        assert!(svg.contains("ours &lt;fast&gt;") && svg.contains("peer &amp; co"));
        assert!(svg.contains("absent (not run)"));
        assert!(svg.contains("3M"), "{svg}");
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3_222_705.0), 5_000_000.0);
        assert_eq!(nice_ceiling(150.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(short_number(909_664.0), "910k");
        assert_eq!(short_number(3_222_705.0), "3.223M");
        assert_eq!(short_number(4101.0), "4.1k");
    }
}
