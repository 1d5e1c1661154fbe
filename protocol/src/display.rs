//! Text from peers made safe to show: the one rule for every string a
//! peer supplies (file names, media types, collection entries, a holder's
//! reasons) before a page puts it on screen.
//!
//! Such text may carry characters that change how the text around them
//! looks without being visible themselves: bidirectional overrides turn
//! `invoice\u{202E}fdp.exe` into what reads as `invoiceexe.pdf`,
//! zero-width characters hide inside words, control characters and line
//! separators break lines, and long runs of spaces push an extension out
//! of sight. [`safe_text`] replaces every invisible character with a
//! visible U+FFFD (so the reader sees that something was there), collapses
//! whitespace, and caps the length while keeping the end, where a file's
//! extension is.

/// What stands for each character that was removed: visible, so that a
/// reader sees the text was tampered with.
pub const REPLACEMENT: char = '\u{FFFD}';

/// What stands for the middle of a text that was too long.
const ELLIPSIS: char = '\u{2026}';

/// Unicode's format characters (general category Cf, Unicode 15.1), as
/// inclusive ranges: bidirectional marks, embeddings, overrides and
/// isolates (U+200E/F, U+061C, U+202A–E, U+2066–9), zero-width characters
/// (U+200B–D, U+2060, U+FEFF), the soft hyphen, tags and the rest. A table
/// of these 21 ranges rather than a crate: a general-category crate ships
/// tables for every category, which the browser peer would carry for this
/// one check.
const FORMAT: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character (category Cf).
pub fn is_format(c: char) -> bool {
    in_table(&FORMAT, c)
}

/// Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties,
/// Unicode 15.1; 4174 code points), as inclusive ranges, adjacent ones
/// merged: what a renderer draws as nothing whatever its category. Beyond
/// the format characters above: the combining grapheme joiner (U+034F),
/// the Hangul fillers (U+115F–U+1160, U+3164, U+FFA0: a name of U+3164
/// alone shows as blank), Khmer inherent vowels (U+17B4–U+17B5),
/// variation selectors (U+180B–U+180F, U+FE00–U+FE0F, U+E0100–U+E01EF),
/// and unassigned code points kept ignorable for future use.
const DEFAULT_IGNORABLE: [(u32, u32); 17] = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// Whether `c` lies in one of `table`'s sorted, disjoint ranges.
fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether `c` is a Default_Ignorable_Code_Point.
pub fn is_default_ignorable(c: char) -> bool {
    in_table(&DEFAULT_IGNORABLE, c)
}

/// Whether `c` must not reach the screen as it is: control characters,
/// format characters, default-ignorable characters, and the line and
/// paragraph separators.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || is_format(c) || is_default_ignorable(c) || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` as it may be shown: every hidden character (see [`is_hidden`])
/// replaced by [`REPLACEMENT`], runs of whitespace made one space, no
/// whitespace at either end, and at most `max` characters; a longer text
/// loses its middle to an ellipsis, so its end (a file's extension) stays
/// in sight.
pub fn safe_text(text: &str, max: usize) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(text.len().min(4 * max + 8));
    for c in text.chars() {
        if is_hidden(c) {
            chars.push(REPLACEMENT);
        } else if c.is_whitespace() {
            if chars.last().is_some_and(|&l| l != ' ') {
                chars.push(' ');
            }
        } else {
            chars.push(c);
        }
        // Enough to cut from: the head, the tail is read below.
        if chars.len() > 2 * max + 2 {
            break;
        }
    }
    if chars.len() > 2 * max + 2 {
        // Too long by far: the end comes from the end of `text`.
        let tail = safe_text_tail(text, max);
        chars.truncate(max);
        chars.push(ELLIPSIS);
        chars.extend(tail);
    }
    while chars.last() == Some(&' ') {
        chars.pop();
    }
    if chars.len() <= max {
        return chars.into_iter().collect();
    }
    if max == 0 {
        return String::new();
    }
    // Two thirds of the room for the start, the rest for the end.
    let keep = max - 1;
    let tail = (keep + 1) / 3;
    let head = keep - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push(ELLIPSIS);
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// The last `max` characters of `text`, made safe the same way (read from
/// the end, so a huge text costs no more than its tail).
fn safe_text_tail(text: &str, max: usize) -> Vec<char> {
    let mut rev: Vec<char> = Vec::with_capacity(max);
    for c in text.chars().rev() {
        let c = if is_hidden(c) {
            REPLACEMENT
        } else if c.is_whitespace() {
            if rev.last().is_none_or(|&l| l == ' ') {
                continue;
            }
            ' '
        } else {
            c
        };
        rev.push(c);
        if rev.len() == max {
            break;
        }
    }
    rev.reverse();
    rev
}

/// A holder's own words (why it refused), shown as its claim: quoted,
/// made safe and at most [`HOLDER_WORDS`] characters. Quotation marks in
/// them become `'`, so the words cannot close the quote and go on as if
/// the page spoke.
pub fn holder_says(message: &str) -> String {
    let words: String = safe_text(message, HOLDER_WORDS)
        .chars()
        .map(|c| if is_quote(c) { '\'' } else { c })
        .collect();
    format!("holder says: “{words}”")
}

/// Whether `c` is a quotation mark that could pass for the end of a
/// quote: every character of Unicode's Quotation_Mark property (ASCII,
/// typographic, guillemets, CJK brackets and their fullwidth forms) and
/// the primes that look like them.
fn is_quote(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '\u{00AB}'
            | '\u{00BB}'
            | '\u{2018}'..='\u{201F}'
            | '\u{2032}'..='\u{2037}'
            | '\u{2039}'
            | '\u{203A}'
            | '\u{2E42}'
            | '\u{300C}'..='\u{300F}'
            | '\u{301D}'..='\u{301F}'
            | '\u{FE41}'..='\u{FE44}'
            | '\u{FF02}'
            | '\u{FF07}'
            | '\u{FF62}'
            | '\u{FF63}'
            | '\u{275B}'..='\u{275E}'
            | '\u{2760}'
            | '\u{1F676}'..='\u{1F678}'
    )
}

/// Most characters of a holder's words that are shown.
pub const HOLDER_WORDS: usize = 200;

/// Most characters of a file name or media type that are shown (a
/// manifest allows 255 bytes of either).
pub const NAME_CHARS: usize = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_cannot_hide_an_extension() {
        assert_eq!(
            safe_text("invoice\u{202E}fdp.exe", 100),
            "invoice\u{FFFD}fdp.exe"
        );
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert_eq!(safe_text(&format!("a{c}b"), 10), "a\u{FFFD}b", "{c:?}");
        }
    }

    #[test]
    fn zero_width_format_and_control_characters_become_visible() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{0000}',
            '\u{001B}',
            '\u{007F}',
            '\u{0085}',
            '\u{2028}',
            '\u{2029}',
        ] {
            assert_eq!(safe_text(&format!("a{c}b"), 10), "a\u{FFFD}b", "{c:?}");
        }
        // Line breaks and tabs are control characters too.
        assert_eq!(safe_text("a\nb\tc", 10), "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn ordinary_text_in_any_script_is_kept() {
        for s in [
            "report.pdf",
            "Ünïcödé ñame.txt",
            "日本語.png",
            "עברית.doc",
            "😀.gif",
        ] {
            assert_eq!(safe_text(s, 255), s);
        }
    }

    #[test]
    fn whitespace_is_collapsed_and_trimmed() {
        assert_eq!(
            safe_text("  invoice.pdf\u{3000}\u{00A0}    .exe  ", 100),
            "invoice.pdf .exe"
        );
        assert_eq!(safe_text("   ", 10), "");
    }

    #[test]
    fn long_text_keeps_its_start_and_its_end() {
        let name = format!("{}.exe", "a".repeat(300));
        let shown = safe_text(&name, 40);
        assert_eq!(shown.chars().count(), 40);
        assert!(shown.starts_with("aaaa"), "{shown}");
        assert!(shown.ends_with("a.exe"), "{shown}");
        assert!(shown.contains('…'), "{shown}");
        // Far too long: the end is read from the end.
        let huge = format!("{}.exe", "b".repeat(100_000));
        let shown = safe_text(&huge, 20);
        assert_eq!(shown.chars().count(), 20);
        assert!(shown.ends_with(".exe"), "{shown}");
        assert_eq!(safe_text("abc", 0), "");
        assert_eq!(safe_text("abcd", 3), "a…d");
    }

    #[test]
    fn the_format_table_is_sorted_and_disjoint() {
        for w in FORMAT.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
        let count: u32 = FORMAT.iter().map(|(lo, hi)| hi - lo + 1).sum();
        // Unicode 15.1 has 170 characters of category Cf.
        assert_eq!(count, 170);
        assert!(is_format('\u{206F}') && !is_format('\u{2070}') && !is_format('a'));
    }

    #[test]
    fn default_ignorable_characters_of_any_category_become_visible() {
        for c in [
            '\u{034F}',
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{17B4}',
            '\u{17B5}',
            '\u{180B}',
            '\u{180F}',
            '\u{FE00}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{2065}',
            '\u{FFF0}',
            '\u{E0FFF}',
        ] {
            assert_eq!(safe_text(&format!("a{c}b"), 10), "a\u{FFFD}b", "{c:?}");
        }
        // A name of Hangul fillers alone is not blank.
        assert_eq!(safe_text("\u{3164}\u{3164}", 10), "\u{FFFD}\u{FFFD}");
        // Neighbours that are visible stay.
        for c in ['\u{034E}', '\u{1161}', '\u{3165}', '\u{FE10}', '\u{E1000}'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }

    #[test]
    fn the_default_ignorable_table_is_sorted_disjoint_and_covers_the_format_ones_that_are() {
        for w in DEFAULT_IGNORABLE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 + 1 < w[1].0, "{w:?}");
        }
        let count: u32 = DEFAULT_IGNORABLE.iter().map(|(lo, hi)| hi - lo + 1).sum();
        // DerivedCoreProperties 15.1: "Total code points: 4174".
        assert_eq!(count, 4174);
        // Format characters that are default-ignorable (bidi controls,
        // zero-width ones) are in both tables.
        for c in ['\u{200B}', '\u{202E}', '\u{2066}', '\u{FEFF}', '\u{E0041}'] {
            assert!(is_format(c) && is_default_ignorable(c), "{c:?}");
        }
    }

    #[test]
    fn a_holder_cannot_close_its_quote_and_speak_as_the_page() {
        let said = holder_says("busy” — the page: your download is done. “");
        assert_eq!(
            said,
            "holder says: “busy' — the page: your download is done. '”"
        );
        for q in [
            '"', '“', '”', '„', '‟', '«', '»', '‘', '’', '‹', '›', '「', '」', '『', '』', '〝',
            '〞', '＂', '″',
        ] {
            let said = holder_says(&format!("a{q}b"));
            assert_eq!(said, "holder says: “a'b”", "{q:?}");
        }
    }

    #[test]
    fn a_holders_words_are_quoted_and_capped() {
        let said = holder_says(&format!("go to evil.example\u{202E}{}", "x".repeat(500)));
        assert!(said.starts_with("holder says: “go to evil.example\u{FFFD}"));
        assert!(said.ends_with('”'));
        assert!(said.chars().count() <= HOLDER_WORDS + "holder says: “”".chars().count());
    }
}
