//! Secrets that cannot be printed by accident: Gemini API keys and client tokens.
//!
//! `Secret` has no `Serialize` impl and its `Debug`/`Display` show only the masked form, so a key can
//! reach a log line or a response only through an explicit, greppable call to [`Secret::expose`].

use std::fmt;

/// A secret string. Compare with [`Secret::matches`] (constant time), print with [`Secret::masked`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The raw value, for the one place that needs it (the upstream request header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A form safe to show to operators: `AIza…x7Q` (first four and last three characters) for
    /// keys long enough that this reveals nothing useful, `…` plus the last two otherwise.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// Constant-time comparison against a candidate (for client tokens).
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            let y = b.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

/// Masks any string the way [`Secret::masked`] does.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 12 {
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 3..].iter().collect();
        format!("{head}…{tail}")
    } else if chars.len() >= 6 {
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("…{tail}")
    } else {
        "…".to_string()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_long_keys_to_head_and_tail() {
        let s = Secret::new("AIzaSyD-abcdefghijklmnopqrstuvwxyzx7Q");
        assert_eq!(s.masked(), "AIza…x7Q");
        assert_eq!(format!("{s}"), "AIza…x7Q");
        assert_eq!(format!("{s:?}"), "Secret(AIza…x7Q)");
        assert!(!format!("{s:?}").contains("abcdefg"));
    }

    #[test]
    fn masks_short_values_without_revealing_them() {
        assert_eq!(mask("abcdefgh"), "…gh");
        assert_eq!(mask("abc"), "…");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("token-123");
        assert!(s.matches("token-123"));
        assert!(!s.matches("token-12"));
        assert!(!s.matches("token-1234"));
        assert!(!s.matches("token-124"));
        assert!(!s.matches(""));
    }
}
