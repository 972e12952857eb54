//! How text from outside the program is shown to the people reading its
//! messages: an SDK error, or any error with its causes, as one line. (Strings from the API and from files
//! in the output are escaped here too as the product grows.) A leaf: every
//! module may use it, it uses none.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// One line that says what an SDK call's error was: the service's error code
/// and message when the service answered, otherwise each cause in turn
/// ("dispatch failure: io error: … Connection refused (os error 111)").
/// The SDK's own `DisplayErrorContext` also prints a debug dump, which
/// reads badly in an operator's page.
pub fn error_text<E>(error: &E) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    if let Some(code) = error.code() {
        return match error.message() {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        };
    }
    chain_text(error)
}

/// An error and its causes as one line, each thing said once: wrappers
/// often repeat their source's text in their own.
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    let mut text = parts.join(": ");
    // rustls says "invalid peer certificate: UnknownIssuer" when a proxy or
    // a private endpoint presents a CA the system does not trust.
    if text.contains("invalid peer certificate") && !text.contains("--ca-bundle") {
        text.push_str(
            " (if a proxy or a private endpoint presents its own CA, trust it with --ca-bundle or AWS_CA_BUNDLE)",
        );
    }
    text
}

/// `text` from outside the program (the API, a file in the output, a lock)
/// made safe to print or log on one line: control characters (newlines,
/// ANSI escapes, NUL) and bidirectional overrides, which could forge a log
/// line or hide text on a terminal, are shown as escapes (`\n`,
/// `\u{1b}`, `\u{202e}`); everything else is kept.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_cannot_forge_a_line_or_hide_text() {
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            printable("a\nINFO forged\u{1b}[31m\u{202e}x\0"),
            "a\\nINFO forged\\u{1b}[31m\\u{202e}x\\u{0}"
        );
    }
}
