//! As much PromQL as the dashboard checks need: the metric names an expression selects (with
//! their label matchers) and an alert expression without its threshold. Not a parser: it skips
//! strings, label matchers, ranges, numbers, Grafana variables, functions, aggregations and
//! label lists, and calls every other word a metric name.

use std::collections::BTreeSet;

/// Words followed by a label list, not a selector: `sum by (le) (...)`.
const GROUPING: &str = "by without on ignoring group_left group_right";
/// Operators and aggregations written as words.
const KEYWORDS: &str = "and or unless bool offset atan2 inf nan sum min max avg group stddev \
    stdvar count count_values bottomk topk quantile limitk limit_ratio";

fn is_one_of(word: &str, words: &str) -> bool {
    words
        .split_whitespace()
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Index just past the string literal starting at `at`.
fn skip_string(s: &[u8], at: usize) -> usize {
    let quote = s[at];
    let mut i = at + 1;
    while i < s.len() && s[i] != quote {
        i += if s[i] == b'\\' && quote != b'`' { 2 } else { 1 };
    }
    i + 1
}

/// Index just past the bracket group opened at `at` (strings and nesting respected).
fn skip_group(s: &[u8], at: usize) -> usize {
    let (open, close) = (
        s[at],
        match s[at] {
            b'(' => b')',
            b'{' => b'}',
            _ => b']',
        },
    );
    let mut depth = 0;
    let mut i = at;
    while i < s.len() {
        match s[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(s, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    s.len()
}

/// The metric names an expression selects, each with the text of its label matchers.
pub fn selectors(expr: &str) -> Vec<(String, String)> {
    let s = expr.as_bytes();
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' | b'\'' | b'`' => i = skip_string(s, i),
            b'{' | b'[' => i = skip_group(s, i),
            // Numbers and durations (`0.95`, `5m`), and Grafana variables.
            c if c.is_ascii_digit() || c == b'.' || c == b'$' => {
                i += 1;
                while i < s.len() && (word_byte(s[i]) || s[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < s.len() && word_byte(s[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < s.len() && s[next].is_ascii_whitespace() {
                    next += 1;
                }
                let followed_by = s.get(next).copied();
                if is_one_of(word, GROUPING) {
                    if followed_by == Some(b'(') {
                        i = skip_group(s, next);
                    }
                } else if followed_by == Some(b'(') || is_one_of(word, KEYWORDS) {
                    // A function, an aggregation or an operator.
                } else if followed_by == Some(b'{') {
                    i = skip_group(s, next);
                    out.push((word.to_owned(), expr[next + 1..i - 1].to_owned()));
                } else {
                    out.push((word.to_owned(), String::new()));
                }
            }
            _ => i += 1,
        }
    }
    out
}

pub fn metric_names(expr: &str) -> BTreeSet<String> {
    selectors(expr).into_iter().map(|(name, _)| name).collect()
}

/// Names in `expr` that msbd does not serve.
pub fn undeclared(expr: &str, declared: &BTreeSet<String>) -> Vec<String> {
    metric_names(expr)
        .into_iter()
        .filter(|name| !declared.contains(name))
        .collect()
}

/// A rule's expression without its final threshold comparison (`A > 0.9` -> `A`).
pub fn without_threshold(expr: &str) -> Option<&str> {
    let s = expr.as_bytes();
    let mut last = None;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(s, i);
                continue;
            }
            b'(' | b'{' | b'[' => {
                i = skip_group(s, i);
                continue;
            }
            b'=' | b'!' | b'<' | b'>' if s.get(i + 1) == Some(&b'=') => {
                last = Some((i, 2));
                i += 2;
                continue;
            }
            b'<' | b'>' => last = Some((i, 1)),
            _ => {}
        }
        i += 1;
    }
    let (at, len) = last?;
    let threshold = expr[at + len..].trim();
    let threshold = threshold.strip_prefix("bool").unwrap_or(threshold).trim();
    threshold.parse::<f64>().ok()?;
    Some(expr[..at].trim())
}
