//! Sentence splitting: a passage into sentences (byte ranges) that never cut through a link.

use super::Link;

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "al", "fig",
    "figs", "no", "vol", "approx", "inc", "ltd", "co", "corp", "mt", "u.s", "u.k", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gen", "gov", "sen",
    "rep", "rev", "ref", "eq", "ca",
];

/// Sentences of `text` (byte ranges) that never cut through a link: sentences that a link
/// crosses are joined.
pub fn split_sentences_around(text: &str, links: &[Link]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (a, b) in split_sentences(text) {
        if let Some(last) = out.last_mut() {
            if links
                .iter()
                .any(|l| l.start < last.1 && l.end > last.1.min(a))
            {
                last.1 = b;
                continue;
            }
        }
        out.push((a, b));
    }
    out
}

/// Splits a passage into sentences (byte ranges, trimmed). A sentence ends at `.`, `!` or `?`
/// (plus closing quotes/brackets) followed by whitespace and an upper-case letter, digit or
/// opening quote/bracket, unless the word before is a known abbreviation or a single initial.
pub fn split_sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut start = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '!' | '?' | '"' | '\'' | ')' | ']' | '”' | '’'
                )
            {
                j += 1;
            }
            let mut k = j;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            let boundary = k > j
                && k < chars.len()
                && {
                    let n = chars[k].1;
                    n.is_uppercase()
                        || n.is_ascii_digit()
                        || matches!(n, '"' | '\'' | '(' | '[' | '“' | '‘')
                }
                && !(c == '.' && is_abbreviation(&text[start..pos]));
            if boundary {
                let end = if j < chars.len() {
                    chars[j].0
                } else {
                    text.len()
                };
                push_trimmed(text, start, end, &mut out);
                start = chars[k].0;
                i = k;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_uppercase))
        || ABBREVIATIONS.contains(&lower.as_str())
}

fn push_trimmed(text: &str, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let s = &text[a..b];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if a + lead < b - trail {
        out.push((a + lead, b - trail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(t: &str) -> Vec<&str> {
        split_sentences(t)
            .into_iter()
            .map(|(a, b)| &t[a..b])
            .collect()
    }

    #[test]
    fn splits_on_sentence_ends_but_not_abbreviations() {
        assert_eq!(
            split("Dr. Smith treated the patient. It worked! Did it? yes. See Fig. 2 for details."),
            vec![
                "Dr. Smith treated the patient.",
                "It worked!",
                "Did it? yes.",
                "See Fig. 2 for details."
            ]
        );
        assert_eq!(
            split("  J. R. R. Tolkien wrote it.  "),
            vec!["J. R. R. Tolkien wrote it."]
        );
        assert_eq!(
            split("The value was 3.5 mg. Then \"it\" ended."),
            vec!["The value was 3.5 mg.", "Then \"it\" ended."]
        );
        assert!(split("   ").is_empty());
    }

    #[test]
    fn sentences_are_not_split_inside_a_link() {
        let t = "He met the Rev. Dr. Who. Then he left. Fine.";
        // A link over "Who. Then" (made up) keeps those sentences together.
        let s = t.find("Who").unwrap();
        let e = t.find("Then").unwrap() + 4;
        let links = [Link {
            start: s,
            end: e,
            id: "x".into(),
        }];
        let got: Vec<&str> = split_sentences_around(t, &links)
            .into_iter()
            .map(|(a, b)| &t[a..b])
            .collect();
        assert_eq!(got, vec!["He met the Rev. Dr. Who. Then he left.", "Fine."]);
    }
}
