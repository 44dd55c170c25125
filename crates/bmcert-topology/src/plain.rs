//! Input echoed in messages, made safe for a terminal and a log line.

use core::fmt;

/// The most characters of an input a message repeats; the rest is counted, not shown.
pub const ECHO_LIMIT: usize = 200;

/// Displays text that came from input (a file, an argument, a certificate) so that it cannot
/// drive a terminal or forge log lines: control characters (C0 such as NUL, ESC and line
/// breaks, DEL, C1) and the bidirectional formatting characters that reorder what a reader
/// sees (U+200E/F, U+202A to U+202E, U+2066 to U+2069) are written as `\u{..}` escapes, and
/// text beyond [`ECHO_LIMIT`] characters is cut with a count of what was left out.
///
/// Error messages of the bmcert crates that repeat input print it through this type; the
/// typed error keeps the raw value.
///
/// ```
/// use bmcert_topology::Escaped;
/// assert_eq!(Escaped("a\u{1b}[31mb\0").to_string(), "a\\u{1b}[31mb\\u{0}");
/// assert_eq!(Escaped("mail.example.test").to_string(), "mail.example.test");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

/// True for the characters [`Escaped`] writes as escapes.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == ECHO_LIMIT {
                let rest = self.0[i..].chars().count();
                return write!(f, "... ({rest} more characters)");
            }
            if is_unsafe_char(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(Escaped("\0").to_string(), "\\u{0}");
        assert_eq!(Escaped("a\nb\r\t").to_string(), "a\\u{a}b\\u{d}\\u{9}");
        assert_eq!(Escaped("\u{7f}\u{9b}").to_string(), "\\u{7f}\\u{9b}");
        assert_eq!(Escaped("x\u{202e}y").to_string(), "x\\u{202e}y");
        assert_eq!(Escaped("bücher").to_string(), "bücher");
    }

    #[test]
    fn long_input_is_cut_with_a_count() {
        let long = "a".repeat(ECHO_LIMIT + 5);
        let shown = Escaped(&long).to_string();
        assert!(shown.starts_with(&"a".repeat(ECHO_LIMIT)));
        assert!(shown.ends_with("... (5 more characters)"), "{shown}");
        assert_eq!(
            Escaped(&long[..ECHO_LIMIT]).to_string(),
            "a".repeat(ECHO_LIMIT)
        );
    }
}
