//! Model aliases (`MODEL_ALIASES`): client model names such as `gpt-4o` or `claude-sonnet-4`
//! mapped to Gemini models by pattern (`*` matches anything, the first matching entry wins).
//! Applied on every route; answers still report the name the client sent.

use super::error::GatewayError;

/// The alias table, in the order it was configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelAliases {
    entries: Vec<(String, String)>,
}

/// Name prefixes of other vendors' models: without an alias these can never work on Gemini.
const FOREIGN: &[&str] = &[
    "gpt-",
    "chatgpt",
    "o1",
    "o3",
    "o4",
    "claude",
    "text-davinci",
    "davinci",
    "codex",
    "dall-e",
    "tts-",
    "whisper",
];

impl ModelAliases {
    /// Parses `pattern=model,pattern=model`. The error names what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((pattern, model)) = item.split_once('=') else {
                return Err(format!("expected pattern=gemini-model, got {item:?}"));
            };
            let (pattern, model) = (pattern.trim(), model.trim().trim_start_matches("models/"));
            if pattern.is_empty() || model.is_empty() {
                return Err(format!("expected pattern=gemini-model, got {item:?}"));
            }
            if model.contains('*') {
                return Err(format!("the target of {item:?} must be a model name, not a pattern"));
            }
            entries.push((pattern.to_ascii_lowercase(), model.to_string()));
        }
        Ok(ModelAliases { entries })
    }

    /// The Gemini model for a requested name: the first matching alias, or the name itself.
    /// A name of another vendor that no alias matches is a clear 404.
    pub fn resolve(&self, requested: &str) -> Result<String, GatewayError> {
        let lower = requested.to_ascii_lowercase();
        if let Some((_, model)) = self.entries.iter().find(|(p, _)| wildcard_match(p, &lower)) {
            return Ok(model.clone());
        }
        if FOREIGN.iter().any(|f| lower.starts_with(f)) {
            return Err(GatewayError::UnknownModel {
                model: requested.to_string(),
            });
        }
        Ok(requested.to_string())
    }

    /// Aliases that name one model exactly (no wildcard), for model lists.
    pub fn exact(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(p, _)| !p.contains('*'))
            .map(|(p, _)| p.as_str())
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_with_wildcards() {
        let a = ModelAliases::parse(
            "claude-*haiku*=gemini-2.5-flash, claude-*=gemini-2.5-pro ,gpt-*=gemini-2.5-flash,my-model=models/gemini-2.0-flash",
        )
        .unwrap();
        assert_eq!(a.resolve("claude-3-5-haiku-latest").unwrap(), "gemini-2.5-flash");
        assert_eq!(a.resolve("claude-sonnet-4-5").unwrap(), "gemini-2.5-pro");
        assert_eq!(a.resolve("GPT-5-codex").unwrap(), "gemini-2.5-flash");
        assert_eq!(a.resolve("my-model").unwrap(), "gemini-2.0-flash");
        assert_eq!(a.resolve("gemini-2.5-pro").unwrap(), "gemini-2.5-pro");
        assert_eq!(a.exact().collect::<Vec<_>>(), ["my-model"]);
    }

    #[test]
    fn foreign_names_without_alias_are_unknown() {
        let a = ModelAliases::default();
        let e = a.resolve("gpt-4o").unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(e.to_string().contains("MODEL_ALIASES"));
        assert_eq!(a.resolve("gemma-3-27b-it").unwrap(), "gemma-3-27b-it");
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(ModelAliases::parse("gpt-4o").is_err());
        assert!(ModelAliases::parse("=gemini").is_err());
        assert!(ModelAliases::parse("a=b*").is_err());
        assert!(ModelAliases::parse("").unwrap().exact().next().is_none());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*b*c", "a--b--c"));
        assert!(!wildcard_match("a*b*c", "a--c--b"));
        assert!(!wildcard_match("ab*ba", "aba"));
        assert!(wildcard_match("claude-*", "claude-"));
    }
}
