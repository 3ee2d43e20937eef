//! HTML building blocks of the web UI: the one escaping function every user-supplied value
//! goes through, the page layout, and small fragments (forms with their CSRF field, tables).
//!
//! No templating engine: pages are `format!` strings, and the rule is simple enough to check
//! by reading: any value that did not come from a literal in this crate passes [`escape`].

use std::fmt::Write as _;

/// Escapes text for an HTML element body or a double- or single-quoted attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// Percent-encodes a path segment (ids and accessors in links and form actions).
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Who is signed in, for the header; `None` on the sign-in page.
pub(crate) struct Chrome<'a> {
    pub(crate) display_name: &'a str,
    pub(crate) csrf: &'a str,
}

/// A whole page: `title` is plain text (escaped here), `body` is HTML built by the caller.
pub(crate) fn page(title: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let nav = match chrome {
        Some(chrome) => format!(
            r#"<nav aria-label="Main"><ul>
<li><a href="/ui/">Approvals inbox</a></li>
<li><a href="/ui/leases">Leases and tokens</a></li>
<li><a href="/ui/audit">Audit and alerts</a></li>
</ul>
<p class="who">Signed in as <strong>{name}</strong></p>
<form method="post" action="/ui/logout">{csrf}<button type="submit">Sign out</button></form>
</nav>"#,
            name = escape(chrome.display_name),
            csrf = csrf_field(chrome.csrf),
        ),
        None => String::new(),
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ward</title>
<link rel="stylesheet" href="/ui/static/ward.css">
</head>
<body>
<header><p class="brand"><a href="/ui/">Ward</a></p>{nav}</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

/// The hidden CSRF field of every form.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(csrf)
    )
}

/// A one-button form posting to `action` (already a safe, encoded path).
pub(crate) fn button_form(action: &str, label: &str, csrf: &str, with_reason: bool) -> String {
    let reason = if with_reason {
        let id = format!("reason-{}", encode_segment(action));
        format!(
            r#"<label for="{id}">Reason (optional)</label><input id="{id}" name="reason" type="text" maxlength="500">"#
        )
    } else {
        String::new()
    };
    format!(
        r#"<form method="post" action="{action}" class="inline">{csrf}{reason}<button type="submit">{label}</button></form>"#,
        action = escape(action),
        csrf = csrf_field(csrf),
        label = escape(label),
    )
}

/// A message box; `kind` is `error` or `notice`, and the text says which in words too.
pub(crate) fn message(kind: &str, text: &str) -> String {
    let (class, prefix) = if kind == "error" {
        ("error", "Error: ")
    } else {
        ("notice", "")
    };
    format!(
        r#"<p class="{class}" role="status">{prefix}{}</p>"#,
        escape(text)
    )
}

/// A table with a caption, header cells and rows of already-built cell HTML.
pub(crate) fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<table>\n<caption>{}</caption>\n<thead><tr>",
        escape(caption)
    );
    for header in headers {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(header));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// "3m ago", "2h ago".
pub(crate) fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_in_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let html = page("<b>t</b>", None, "");
        assert!(html.contains("<title>&lt;b&gt;t&lt;/b&gt; · Ward</title>"));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a/b c<"), "a%2Fb%20c%3C");
        assert_eq!(encode_segment("abc-123_X"), "abc-123_X");
    }
}
