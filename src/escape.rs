//! Printing untrusted strings (entity names and ids, file names, corpus text): control
//! characters are shown escaped, so that a name cannot move the cursor, recolour the
//! terminal, clear the screen or start a new line of output.

use std::borrow::Cow;
use std::path::Path;

/// Whether `c` changes how the following text is shown rather than being shown itself:
/// C0 and C1 controls, DEL, and the Unicode bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as an escape (`\n`, `\t`, `\r`, `\e`, `\u{…}`);
/// backslashes are left as they are. Borrowed when there is nothing to escape.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path for messages: `display()` with control characters escaped.
pub fn path(p: &Path) -> String {
    text(&p.display().to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_and_keeps_text() {
        assert_eq!(text("Barack Obama"), "Barack Obama");
        assert!(matches!(text("Zürich"), Cow::Borrowed(_)));
        assert_eq!(text("a\x1b[31mred\nb\tc\r"), "a\\e[31mred\\nb\\tc\\r");
        assert_eq!(text("\u{9b}2J\u{7f}"), "\\u{9b}2J\\u{7f}");
        assert_eq!(text("abc\u{202E}fed"), "abc\\u{202e}fed");
    }
}
