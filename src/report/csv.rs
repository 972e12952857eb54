//! The CSV report: one row per session, RFC 4180 quoting, UTF-8 with a byte
//! order mark so spreadsheets detect the encoding of non-Latin reasons.
//!
//! CSV injection: a spreadsheet runs a cell that begins with `=`, `+`, `-`
//! or `@` (or their full-width forms) as a formula, some after leading
//! spaces or control characters, and some treat a leading tab, carriage
//! return, line feed or NUL specially. Every text cell from the data that
//! begins with a control character, or whose first character after leading
//! spaces and control characters is a trigger, gets a leading apostrophe,
//! which spreadsheets show as text and do not evaluate (OWASP CSV
//! injection, ASVS 5.0). Numbers and times that ssm-audit formats itself
//! are left alone.

use super::{duration_minutes, is_after_hours, rfc3339, ReportError};
use crate::dataset::record::SessionRecord;

const HEADER: [&str; 18] = [
    "session_id",
    "account_id",
    "region",
    "status",
    "target",
    "owner",
    "document_name",
    "reason",
    "access_type",
    "start_date",
    "end_date",
    "duration_minutes",
    "max_session_duration_minutes",
    "after_hours",
    "s3_output_url",
    "cloudwatch_output_url",
    "first_seen_at",
    "last_seen_at",
];

/// Makes a text cell from the data safe to open in a spreadsheet.
pub fn neutralise(cell: &str) -> String {
    const TRIGGERS: [char; 8] = [
        '=', '+', '-', '@', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}',
    ];
    let after_padding = cell.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
    if cell.starts_with(char::is_control) || after_padding.starts_with(TRIGGERS) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

pub fn render(sessions: &[SessionRecord]) -> Result<Vec<u8>, ReportError> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut writer = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .from_writer(&mut out);
        let encode = |e: ::csv::Error| ReportError::Encode(e.to_string());
        writer.write_record(HEADER).map_err(encode)?;
        let text = |v: Option<&str>| neutralise(v.unwrap_or(""));
        for r in sessions {
            writer
                .write_record([
                    neutralise(&r.session_id),
                    neutralise(&r.account_id),
                    neutralise(&r.region),
                    text(r.status.as_deref()),
                    text(r.target.as_deref()),
                    text(r.owner.as_deref()),
                    text(r.document_name.as_deref()),
                    text(r.reason.as_deref()),
                    text(r.access_type.as_deref()),
                    rfc3339(r.start_date),
                    r.end_date.map(rfc3339).unwrap_or_default(),
                    duration_minutes(r)
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    r.max_session_duration_minutes
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    is_after_hours(r).to_string(),
                    text(r.s3_output_url.as_deref()),
                    text(r.cloudwatch_output_url.as_deref()),
                    rfc3339(r.first_seen_at),
                    rfc3339(r.last_seen_at),
                ])
                .map_err(encode)?;
        }
        writer
            .flush()
            .map_err(|e| ReportError::Encode(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::record::tests::record;

    #[test]
    fn formulas_are_neutralised_and_quoting_follows_rfc_4180() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("-rf"), "'-rf");
        assert_eq!(neutralise("@lead"), "'@lead");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("plain, text"), "plain, text");
        for hostile in [
            "\0=1+1",
            "\n=1+1",
            "\t=1",
            "\r@x",
            "  =1+1",
            " \u{b}-2",
            "\u{ff1d}1+1",
            "\u{ff20}SUM(A1)",
            "\u{0}",
            "\u{1b}[31m",
        ] {
            assert_eq!(neutralise(hostile), format!("'{hostile}"), "{hostile:?}");
        }
        assert_eq!(neutralise("  spaced words"), "  spaced words");
        let mut r = record("a", 0, "Terminated", 0);
        r.reason = Some("=cmd|' /C calc'!A0, \"quoted\"\nline".into());
        let text = String::from_utf8(render(&[r]).expect("renders")).expect("utf-8");
        assert!(text.starts_with('\u{feff}'));
        assert!(
            text.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\nline\""),
            "{text}"
        );
        assert!(text.contains("\r\n"));
    }
}
