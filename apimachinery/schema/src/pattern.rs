//! `pattern` support.
//!
//! Upstream compiles patterns with Go's RE2 engine, so the accepted
//! language is RE2 (no look-around, no back-references), which is what the
//! ECMA-262 patterns used in practice reduce to. The `regex` crate is also
//! RE2-like; the differences handled here are:
//! - `\d`, `\w`, `\s` (and negations) are ASCII-only in Go but Unicode in
//!   the `regex` crate, so they are rewritten to explicit ASCII classes;
//! - inside a class, `[`, `&&`, `--`, `~~` are set syntax in `regex`, but
//!   literals in Go/ECMA, so they are escaped;
//! - a `{` that does not start a valid repetition is a literal in Go/ECMA
//!   but an error in `regex`;
//! - `\<`/`\>` are word boundaries in `regex` but literals in Go;
//! - `\b`/`\B` are ASCII word boundaries in Go.
//!
//! Anything else `regex` rejects (look-around, back-references, `\Q..\E`,
//! octal escapes) is reported as an invalid pattern.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct CompiledPattern(pub Regex);

impl CompiledPattern {
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

/// Compiles a schema pattern, or returns an error text in the shape of Go's
/// `regexp` errors (`error parsing regexp: ...`).
pub fn compile(pattern: &str) -> Result<CompiledPattern, String> {
    let translated = translate(pattern)?;
    match Regex::new(&translated) {
        Ok(re) => Ok(CompiledPattern(re)),
        Err(e) => Err(format!("error parsing regexp: {}", summarize(&e))),
    }
}

/// The last line of a `regex` error names the problem; the rest is a
/// multi-line caret diagram that does not fit into a one-line message.
fn summarize(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid pattern");
    last.trim().trim_start_matches("error: ").to_string()
}

fn translate(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    // Position right after '[' or '[^', where ']' is a literal in Go.
    let mut class_start = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                return Err("error parsing regexp: trailing backslash at end of expression".into());
            };
            i += 2;
            class_start = false;
            match n {
                'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                'w' => out.push_str(if in_class {
                    "0-9A-Za-z_"
                } else {
                    "[0-9A-Za-z_]"
                }),
                's' => out.push_str(if in_class {
                    "\\t\\n\\f\\r "
                } else {
                    "[\\t\\n\\f\\r ]"
                }),
                // Negated classes nest fine inside a class in `regex`.
                'D' => out.push_str("[^0-9]"),
                'W' => out.push_str("[^0-9A-Za-z_]"),
                'S' => out.push_str("[^\\t\\n\\f\\r ]"),
                'b' if !in_class => out.push_str("(?-u:\\b)"),
                'B' if !in_class => out.push_str("(?-u:\\B)"),
                '<' | '>' => out.push(n),
                'Q' => {
                    // Go's quoted literal run: everything up to \E (or the end).
                    let mut lit = String::new();
                    while i < chars.len() {
                        if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                            i += 2;
                            break;
                        }
                        lit.push(chars[i]);
                        i += 1;
                    }
                    out.push_str(&regex::escape(&lit));
                }
                c2 if c2.is_ascii_digit() && c2 != '0' => {
                    return Err(format!(
                        "error parsing regexp: invalid escape sequence: `\\{c2}`"
                    ));
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => {
                    in_class = false;
                    out.push(']');
                }
                '[' => {
                    // POSIX class `[:alpha:]` is fine; any other '[' is literal.
                    if chars.get(i + 1) == Some(&':')
                        && let Some(end) = find_posix_end(&chars, i + 2)
                    {
                        out.extend(&chars[i..=end]);
                        i = end + 1;
                        class_start = false;
                        continue;
                    }
                    out.push_str("\\[");
                }
                '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '-' if chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
                _ => out.push(c),
            }
            class_start = false;
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                class_start = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                continue;
            }
            '{' => {
                if let Some(end) = repetition_end(&chars, i) {
                    out.extend(&chars[i..=end]);
                    i = end + 1;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
                continue;
            }
            '}' => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

fn find_posix_end(chars: &[char], from: usize) -> Option<usize> {
    let mut j = from;
    while j + 1 < chars.len() {
        if chars[j] == ':' && chars[j + 1] == ']' {
            return Some(j + 1);
        }
        if !chars[j].is_ascii_alphabetic() && chars[j] != '^' {
            return None;
        }
        j += 1;
    }
    None
}

/// Index of the closing brace when `{` at `start` begins `{n}`, `{n,}` or
/// `{n,m}`.
fn repetition_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    let digits_from = j;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    if j == digits_from {
        return None;
    }
    if chars.get(j) == Some(&',') {
        j += 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
    }
    (chars.get(j) == Some(&'}')).then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        match compile(p) {
            Ok(re) => re.is_match(s),
            Err(e) => panic!("{p}: {e}"),
        }
    }

    #[test]
    fn translation() {
        assert!(m(r"^\d+$", "123"));
        assert!(!m(r"^\d+$", "١٢٣"));
        assert!(m(r"^[\w-]+$", "a_b-c"));
        assert!(m(r"^a{2}$", "aa"));
        assert!(m(r"^a{$", "a{"));
        assert!(m(r"^[[a]+$", "[a["));
        assert!(m(r"^[a&&b]+$", "a&&b"));
        assert!(m(r"^[[:alpha:]]+$", "abc"));
        assert!(m(r"^\/x$", "/x"));
        assert!(m(r"^[]a]+$", "]a"));
        assert!(m(r"\bfoo\b", "a foo b"));
        assert!(m(r"^a\<b$", "a<b"));
        assert!(m(r"^(?i)abc$", "ABC"));
    }

    #[test]
    fn rejects_unsupported() {
        assert!(compile("(?=a)b").is_err());
        assert!(compile(r"(a)\1").is_err());
        assert!(compile("a(").is_err());
        let e = compile("(?!x)").err().unwrap_or_default();
        assert!(e.starts_with("error parsing regexp: "), "{e}");
    }
}
