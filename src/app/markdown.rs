//! Markdown → safe HTML for assistant replies: raw HTML in the source is shown as text, links
//! open safely, code blocks get a copy button.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only http(s), mailto and data:image URLs survive; anything else (javascript:, …) is dropped.
fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
        || lower.starts_with("data:image/")
        || lower.starts_with('#')
}

/// Renders markdown to HTML that is safe to put into the page.
pub fn render(source: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let events = Parser::new_ext(source, options).map(|event| match event {
        // Raw HTML is never interpreted.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: "".into(),
            title,
            id,
        }),
        Event::Start(Tag::CodeBlock(kind)) => {
            let lang = match &kind {
                CodeBlockKind::Fenced(lang) => lang.split_whitespace().next().unwrap_or("").to_string(),
                CodeBlockKind::Indented => String::new(),
            };
            let label = if lang.is_empty() {
                "code".to_string()
            } else {
                escape(&lang)
            };
            Event::Html(
                format!(
                    "<div class=\"codeblock\"><div class=\"codebar\"><span>{label}</span>\
                     <button type=\"button\" class=\"copy\" aria-label=\"Copy code\">Copy</button></div><pre><code>"
                )
                .into(),
            )
        }
        Event::End(TagEnd::CodeBlock) => Event::Html("</code></pre></div>".into()),
        other => other,
    });
    let mut html = String::with_capacity(source.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html.replace("<a href=", "<a target=\"_blank\" rel=\"noopener noreferrer\" href=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lists_tables_and_code_with_copy_buttons() {
        let html = render("# Title\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n");
        assert!(html.contains("<li>a</li>"));
        assert!(html.contains("<table>"));
        assert!(html.contains("class=\"copy\""));
        assert!(html.contains("<span>rust</span>"));
        assert!(html.contains("fn main() {}"));
    }

    #[test]
    fn raw_html_and_script_urls_are_neutralised() {
        let html = render("<script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))");
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn code_content_is_escaped() {
        let html = render("```\n<b>bold</b>\n```");
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    }
}
