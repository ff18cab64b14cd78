//! Turning what `ts_headline` marked into the contract's `highlight`: the
//! body HTML-escaped, with each match wrapped in `<mark>`…`</mark>`.
//!
//! `ts_headline` copies its text verbatim and does not escape it, so its
//! output is never sent as is. It reads the body with `<`, `>`, `&`,
//! \x01 and \x02 turned into spaces (one character for one, see the
//! migration) and marks matches with \x01 … \x02, which that text
//! therefore cannot hold. This module walks that output beside the body
//! itself: every other character must be the next body character as the
//! database read it, and what is written is always the body's own
//! character, escaped. Markers are the only source of `<mark>`. Should the
//! two ever disagree, the body comes back escaped with no marks: a lost
//! highlight, never markup a sender wrote.

/// Starts a match in the marked text (the SQL's StartSel).
pub(super) const START: char = '\u{1}';
/// Ends a match (the SQL's StopSel).
pub(super) const STOP: char = '\u{2}';

/// How the database read a body character (the migration's translate()).
fn as_indexed(c: char) -> char {
    match c {
        '<' | '>' | '&' | START | STOP => ' ',
        other => other,
    }
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        other => out.push(other),
    }
}

/// The body escaped, nothing marked.
pub fn escaped(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for c in body.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// The highlight of `body` given `marked`, `ts_headline`'s output for it.
pub fn highlight(body: &str, marked: &str) -> String {
    marks_onto(body, marked).unwrap_or_else(|| escaped(body))
}

fn marks_onto(body: &str, marked: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len() + 32);
    let mut body_chars = body.chars();
    let mut open = false;
    for c in marked.chars() {
        match c {
            START if !open => {
                out.push_str("<mark>");
                open = true;
            }
            STOP if open => {
                out.push_str("</mark>");
                open = false;
            }
            START | STOP => return None,
            _ => {
                let original = body_chars.next()?;
                if as_indexed(original) != c {
                    return None;
                }
                push_escaped(&mut out, original);
            }
        }
    }
    if open || body_chars.next().is_some() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_wrap_matches_and_everything_else_is_escaped() {
        let body = "<b>run</b> & \"dogs\" 'x'";
        let marked = " b \u{1}run\u{2} /b    \"\u{1}dogs\u{2}\" 'x'";
        assert_eq!(
            highlight(body, marked),
            "&lt;b&gt;<mark>run</mark>&lt;/b&gt; &amp; &quot;<mark>dogs</mark>&quot; &#39;x&#39;"
        );
    }

    #[test]
    fn a_body_holding_the_markers_itself_gets_no_marks_from_them() {
        let body = "a\u{1}b\u{2}c run";
        let marked = "a b c \u{1}run\u{2}";
        assert_eq!(highlight(body, marked), "a\u{1}b\u{2}c <mark>run</mark>");
    }

    #[test]
    fn disagreement_falls_back_to_the_escaped_body() {
        for marked in [
            "<script>",
            "\u{1}<b>\u{2}",
            "\u{1}\u{1}x\u{2}",
            "\u{2}",
            "\u{1}<b>",
            "<b",
            "<b>>",
        ] {
            assert_eq!(highlight("<b>", marked), "&lt;b&gt;", "{marked:?}");
        }
    }

    #[test]
    fn non_ascii_text_keeps_its_characters() {
        assert_eq!(
            highlight("naïve café 🦊", "\u{1}naïve\u{2} café 🦊"),
            "<mark>naïve</mark> café 🦊"
        );
    }
}
