//! Checks of a project file from someone else: fields this version does not know (named with
//! their line), and numbers out of range beyond what the build options check.

use anyhow::{bail, Result};
use std::collections::BTreeSet;

use super::Project;

/// The field names a project may hold: top-level ones and those of `options` and `eval`
/// (`options.k`), from the types themselves.
fn known_fields() -> BTreeSet<String> {
    let mut p = Project {
        model_id: Some(String::new()),
        ..Default::default()
    };
    p.options.shard = Some((0, 1));
    let mut out = BTreeSet::from(["eval_results".to_string()]);
    let Ok(ron::Value::Map(top)) = ron::to_string(&p).and_then(|t| {
        ron::from_str::<ron::Value>(&t).map_err(|e| ron::Error::Message(e.to_string()))
    }) else {
        return out;
    };
    for (k, v) in top.iter() {
        let ron::Value::String(k) = k else { continue };
        out.insert(k.clone());
        if let ron::Value::Map(inner) = v {
            for (ik, _) in inner.iter() {
                if let ron::Value::String(ik) = ik {
                    out.insert(format!("{k}.{ik}"));
                }
            }
        }
    }
    out
}

/// The `name:` keys of a RON text with their 1-based lines, as paths: `name` at the top
/// level, `options.k` one level down. Strings, characters and comments are skipped.
pub(super) fn keys_with_lines(text: &str) -> Vec<(String, usize)> {
    let b = text.as_bytes();
    let (mut i, mut line, mut depth) = (0usize, 1usize, 0usize);
    let mut top: Option<String> = None;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                // A character literal ('x', '\n'); a lone quote is skipped.
                let end = b[i + 1..].iter().take(4).position(|&x| x == b'\'');
                if let Some(e) = end {
                    i += e + 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                let mut j = i;
                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                let is_key = b.get(j) == Some(&b':') && b.get(j + 1) != Some(&b':');
                if is_key && depth == 1 {
                    top = Some(word.to_string());
                    out.push((word.to_string(), line));
                } else if is_key && depth == 2 {
                    if let Some(t) = &top {
                        out.push((format!("{t}.{word}"), line));
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// One warning per field the project names that this version does not know: `FILE:LINE:
/// unknown field `x` (ignored)`.
pub(super) fn unknown_field_warnings(text: &str, file: &str) -> Vec<String> {
    let known = known_fields();
    keys_with_lines(text)
        .into_iter()
        .filter(|(k, _)| {
            // Inside eval_results the keys are data, not fields.
            !k.starts_with("eval_results.") && !known.contains(k)
        })
        .map(|(k, line)| {
            format!(
                "{file}:{line}: unknown field `{}` (ignored)",
                crate::escape::text(&k)
            )
        })
        .collect()
}

/// The numbers a project holds beyond its build options, checked as the CLI checks them.
pub(super) fn validate_eval(p: &Project) -> Result<()> {
    let e = &p.eval;
    if e.k == 0 {
        bail!("eval.k (neighbours for typing) must be at least 1");
    }
    if e.k > 10_000 {
        bail!("eval.k {}: at most 10000 neighbours", e.k);
    }
    if let Some(n) = e.norms.iter().find(|n| !(n.is_finite() && **n > 0.0)) {
        bail!("eval.norms: each norm must be a positive finite number, found {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_with_their_lines_outside_strings_and_comments() {
        let text = "// a: comment\n(\n  name: \"x: y\",\n  options: (\n    k: 3, /* z: 1 */\n    norm: 7.0,\n  ),\n  colour: Some(\"red\"),\n)";
        let keys = keys_with_lines(text);
        assert_eq!(
            keys,
            vec![
                ("name".to_string(), 3),
                ("options".to_string(), 4),
                ("options.k".to_string(), 5),
                ("options.norm".to_string(), 6),
                ("colour".to_string(), 8),
            ]
        );
        let w = unknown_field_warnings(text, "p.ron");
        assert_eq!(
            w,
            vec!["p.ron:8: unknown field `colour` (ignored)".to_string()]
        );
    }

    #[test]
    fn every_field_of_the_bundled_demo_is_known() {
        let text = std::fs::read_to_string(super::super::bundled_demo()).unwrap();
        assert_eq!(unknown_field_warnings(&text, "demo"), Vec::<String>::new());
        let known = known_fields();
        for f in [
            "corpus",
            "options.k",
            "options.norm",
            "eval.k",
            "eval.norms",
            "model_id",
        ] {
            assert!(known.contains(f), "{f} missing from {known:?}");
        }
    }
}
