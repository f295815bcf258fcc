//! Key names: `key_prefix + state id`, and the SCAN pattern that finds them.

/// Escapes Redis glob metacharacters (`*`, `?`, `[`, `]`, `\`) so `text`
/// matches itself in a `SCAN MATCH` / `KEYS` pattern.
///
/// ```
/// assert_eq!(state_redis::escape_glob("app:[prod]*"), r"app:\[prod\]\*");
/// ```
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The SCAN pattern matching every key under `prefix`.
pub(crate) fn scan_pattern(prefix: &str) -> String {
    escape_glob(prefix) + "*"
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_metacharacter_and_nothing_else() {
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert_eq!(escape_glob("connector_states:"), "connector_states:");
        assert_eq!(scan_pattern("p[1]:"), r"p\[1\]:*");
        assert_eq!(escape_glob("日本*"), r"日本\*");
    }
}
