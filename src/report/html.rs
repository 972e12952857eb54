//! The HTML report: one self-contained file an auditor can open offline and
//! attach to evidence. No scripts, no external resources (a Content Security
//! Policy forbids both), styles inline, the chart an inline SVG. Every value
//! from the data goes through [`escape`]: a Reason or an Owner can hold
//! markup, and must show as text.

use std::fmt::Write;

use super::{duration_minutes, rfc3339, Report};
use crate::dataset::record::SessionRecord;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(value: Option<&str>) -> String {
    value
        .map(escape)
        .unwrap_or_else(|| "<span class=\"none\">—</span>".into())
}

const STYLE: &str = r#"
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2430; margin: 2.5em auto; max-width: 1200px; padding: 0 1.5em; }
header { border-bottom: 3px solid #1d2430; padding-bottom: .8em; margin-bottom: 1.5em; }
h1 { font-size: 1.6em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 2em 0 .6em; border-bottom: 1px solid #ccd2da; padding-bottom: .2em; }
.meta { color: #4a5566; margin: 0; }
.meta b { color: #1d2430; }
.totals { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .8em; }
.total { border: 1px solid #ccd2da; border-radius: 4px; padding: .6em .8em; }
.total .n { font-size: 1.6em; font-weight: 600; display: block; }
.total .l { color: #4a5566; font-size: .9em; }
table { border-collapse: collapse; width: 100%; font-size: .92em; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid #e3e7ec; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.reason { max-width: 28em; overflow-wrap: anywhere; }
td.mono, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .92em; overflow-wrap: anywhere; }
.none { color: #9aa4b2; }
.empty { color: #4a5566; font-style: italic; }
.chart svg { width: 100%; height: auto; }
.chart .bar { fill: #3b6ea8; }
.chart .axis { stroke: #9aa4b2; stroke-width: 1; }
.chart text { font-size: 11px; fill: #4a5566; }
.ok { color: #1f6f3a; font-weight: 600; }
.alert { color: #a3261b; font-weight: 600; }
footer { margin-top: 3em; color: #4a5566; font-size: .85em; border-top: 1px solid #ccd2da; padding-top: .6em; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"#;

/// The evidence section: verification and coverage, stated before any
/// figure so that nobody reads "0 sessions" on a day that was not crawled.
fn render_evidence(html: &mut String, evidence: &super::EvidenceStatement) {
    html.push_str("<section id=\"evidence\"><h2>Evidence</h2>");
    let (class, verdict) = if evidence.verified {
        ("ok", "the data set is what its runs wrote")
    } else {
        (
            "alert",
            "FINDINGS: the data set is not as its runs wrote it",
        )
    };
    let _ = write!(
        html,
        "<p id=\"verification\"><b>Verification:</b> <span class=\"{class}\">{verdict}</span>. {}</p>",
        escape(&evidence.verification)
    );
    if !evidence.findings.is_empty() {
        html.push_str("<ul id=\"findings\">");
        for finding in &evidence.findings {
            let _ = write!(html, "<li class=\"mono\">{}</li>", escape(finding));
        }
        html.push_str("</ul>");
    }
    if evidence.fully_covered {
        html.push_str(
            "<p id=\"coverage\"><b>Coverage:</b> <span class=\"ok\">every day of the period was crawled by a completed run</span>.</p>",
        );
    } else {
        let _ = write!(
            html,
            "<p id=\"coverage\"><b>Coverage:</b> <span class=\"alert\">not crawled: {}</span>. Sessions of these days are missing from this report, not absent: no completed run listed them.</p><ul id=\"gaps\">",
            escape(&evidence.days_not_crawled.join(", "))
        );
        for gap in &evidence.gaps {
            let _ = write!(html, "<li>{}</li>", escape(gap));
        }
        html.push_str("</ul>");
    }
    html.push_str("<ul id=\"newest-runs\">");
    for run in &evidence.newest_runs {
        let _ = write!(html, "<li>{}</li>", escape(run));
    }
    html.push_str("</ul></section>\n");
}

pub fn render(report: &Report) -> String {
    let mut html = String::new();
    let period = match (&report.period.from, &report.period.to) {
        (Some(from), Some(to)) => format!("{from} to {to} (UTC, inclusive)"),
        (Some(from), None) => format!("from {from} (UTC)"),
        (None, Some(to)) => format!("up to {to} (UTC)"),
        (None, None) => "all data".to_string(),
    };
    let filters = if report.filters.owners.is_empty() && report.filters.targets.is_empty() {
        "none".to_string()
    } else {
        let mut parts = Vec::new();
        if !report.filters.owners.is_empty() {
            parts.push(format!(
                "owner {}",
                report
                    .filters
                    .owners
                    .iter()
                    .map(|o| escape(o))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !report.filters.targets.is_empty() {
            parts.push(format!(
                "target {}",
                report
                    .filters
                    .targets
                    .iter()
                    .map(|t| escape(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        parts.join("; ")
    };
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SSM Session Manager sessions: {period_title}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>AWS Systems Manager Session Manager sessions</h1>
<p class="meta"><b>Period:</b> <span id="period">{period}</span> &nbsp; <b>Filters:</b> {filters}</p>
<p class="meta"><b>Accounts:</b> {accounts} &nbsp; <b>Regions:</b> {regions}</p>
<p class="meta"><b>Source:</b> <span class="mono">{source}</span> &nbsp; <b>Generated:</b> {generated} by ssm-audit {version}</p>
</header>
"#,
        period_title = escape(&period),
        period = escape(&period),
        accounts = escape(&join_or_none(&report.totals.accounts)),
        regions = escape(&join_or_none(&report.totals.regions)),
        source = escape(&report.source),
        generated = escape(&report.generated_at),
        version = env!("CARGO_PKG_VERSION"),
    );

    if let Some(evidence) = &report.evidence {
        render_evidence(&mut html, evidence);
    }
    if !report.skipped_files.is_empty() {
        html.push_str(
            "<section id=\"skipped-files\"><h2>Files left out</h2><p>These files under \
             <span class=\"mono\">sessions/</span> could not be read, so their sessions are \
             not counted below. Verify the data set.</p><ul>",
        );
        for file in &report.skipped_files {
            let _ = write!(
                html,
                "<li><span class=\"mono\">{}</span>: {}</li>",
                escape(&file.key),
                escape(&file.reason)
            );
        }
        html.push_str("</ul></section>\n");
    }
    let t = &report.totals;
    html.push_str("<section><h2>Totals</h2><div class=\"totals\">");
    for (id, n, label) in [
        ("total-sessions", t.sessions.to_string(), "sessions"),
        ("total-owners", t.owners.to_string(), "owners"),
        ("total-targets", t.targets.to_string(), "targets"),
        ("total-failed", t.failed.to_string(), "failed"),
        ("total-jit", t.just_in_time.to_string(), "Just-in-Time"),
        (
            "total-after-hours",
            t.after_hours.to_string(),
            "after hours",
        ),
        (
            "total-open",
            t.still_open.to_string(),
            "still open when last seen",
        ),
        (
            "total-hours",
            format!("{:.1}", t.hours_total),
            "hours in sessions",
        ),
    ] {
        let _ = write!(
            html,
            r#"<div class="total"><span class="n" id="{id}">{n}</span><span class="l">{label}</span></div>"#
        );
    }
    html.push_str("</div>");
    if !t.by_status.is_empty() {
        html.push_str("<p class=\"meta\">By status: ");
        let parts: Vec<String> = t
            .by_status
            .iter()
            .map(|(s, n)| format!("{} {n}", escape(s)))
            .collect();
        html.push_str(&parts.join(", "));
        html.push_str("</p>");
    }
    html.push_str("</section>\n");

    html.push_str("<section class=\"chart\"><h2>Sessions per day (UTC)</h2>");
    html.push_str(&chart(report));
    html.push_str("</section>\n");

    html.push_str("<section><h2>Top owners</h2>");
    name_counts(&mut html, "top-owners", "Owner", &report.top_owners);
    html.push_str("</section>\n<section><h2>Top targets</h2>");
    name_counts(&mut html, "top-targets", "Target", &report.top_targets);
    html.push_str("</section>\n");

    let sections = [
        (
            "longest",
            "Longest sessions",
            &report.longest,
            "No ended sessions in the period.",
        ),
        (
            "failed",
            "Failed sessions",
            &report.failed,
            "No failed sessions in the period.",
        ),
        (
            "jit",
            "Just-in-Time sessions",
            &report.just_in_time,
            "No Just-in-Time sessions in the period.",
        ),
        (
            "after-hours",
            "Sessions after hours (before 08:00 or from 18:00 UTC on weekdays, or on weekends)",
            &report.after_hours,
            "No sessions after hours in the period.",
        ),
    ];
    for (id, title, indices, empty) in sections {
        let rows: Vec<&SessionRecord> = indices.iter().map(|&i| &report.sessions[i]).collect();
        let _ = write!(html, "<section><h2>{title} ({})</h2>", rows.len());
        session_table(&mut html, id, &rows, empty);
        html.push_str("</section>\n");
    }
    let all: Vec<&SessionRecord> = report.sessions.iter().collect();
    let _ = write!(html, "<section><h2>All sessions ({})</h2>", all.len());
    session_table(
        &mut html,
        "all-sessions",
        &all,
        "No sessions match the period and filters.",
    );
    html.push_str("</section>\n");

    html.push_str(
        "<footer>Times are UTC. Data: AWS Systems Manager DescribeSessions as recorded by ssm-audit; \
         first and last seen are when ssm-audit observed each session. This file holds no scripts and \
         loads nothing from the network.</footer>\n</body>\n</html>\n",
    );
    html
}

fn join_or_none(values: &[String]) -> String {
    if values.is_empty() {
        "none".into()
    } else {
        values.join(", ")
    }
}

fn name_counts(html: &mut String, id: &str, label: &str, rows: &[super::NameCount]) {
    if rows.is_empty() {
        html.push_str("<p class=\"empty\">No sessions.</p>");
        return;
    }
    let _ = write!(html, "<table id=\"{id}\"><thead><tr><th>{label}</th><th class=\"num\">Sessions</th></tr></thead><tbody>");
    for row in rows {
        let _ = write!(
            html,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&row.name),
            row.sessions
        );
    }
    html.push_str("</tbody></table>");
}

fn session_table(html: &mut String, id: &str, rows: &[&SessionRecord], empty: &str) {
    if rows.is_empty() {
        let _ = write!(html, "<p class=\"empty\" id=\"{id}\">{empty}</p>");
        return;
    }
    let _ = write!(
        html,
        "<table id=\"{id}\"><thead><tr><th>Session</th><th>Owner</th><th>Target</th><th>Status</th>\
         <th>Access</th><th>Start (UTC)</th><th>End (UTC)</th><th class=\"num\">Minutes</th><th>Reason</th></tr></thead><tbody>"
    );
    for r in rows {
        let _ = write!(
            html,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"reason\">{}</td></tr>",
            escape(&r.session_id),
            opt(r.owner.as_deref()),
            opt(r.target.as_deref()),
            opt(r.status.as_deref()),
            opt(r.access_type.as_deref()),
            escape(&rfc3339(r.start_date)),
            r.end_date.map(|e| escape(&rfc3339(e))).unwrap_or_else(|| opt(None)),
            duration_minutes(r).map(|m| m.to_string()).unwrap_or_else(|| opt(None)),
            opt(r.reason.as_deref()),
        );
    }
    html.push_str("</tbody></table>");
}

/// Sessions per day as an inline SVG bar chart, every day of the period.
fn chart(report: &Report) -> String {
    let days = &report.sessions_per_day;
    if days.is_empty() {
        return "<p class=\"empty\">No sessions.</p>".into();
    }
    let max = days.iter().map(|d| d.sessions).max().unwrap_or(0).max(1);
    let (width, height, left, bottom, top) = (1000.0, 260.0, 44.0, 28.0, 12.0);
    let plot_w = width - left - 8.0;
    let plot_h = height - bottom - top;
    let slot = plot_w / days.len() as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let mut svg = format!(
        "<svg id=\"per-day-chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Sessions per day\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\"/><line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text><text x=\"{lx}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        y0 = top + plot_h,
        x1 = width - 8.0,
        lx = left - 6.0,
        ty = top + 10.0,
    );
    for (i, day) in days.iter().enumerate() {
        let h = plot_h * day.sessions as f64 / max as f64;
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = top + plot_h - h;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" data-day=\"{d}\" data-sessions=\"{n}\"><title>{d}: {n}</title></rect>",
            d = escape(&day.day),
            n = day.sessions
        );
    }
    let label_every = (days.len() / 8).max(1);
    for (i, day) in days
        .iter()
        .enumerate()
        .filter(|(i, _)| i % label_every == 0 || *i == days.len() - 1)
    {
        let x = left + slot * i as f64 + slot / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{}</text>",
            escape(&day.day[5..]),
            y = height - 8.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_the_data_stays_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("日本 ü"), "日本 ü");
    }
}
