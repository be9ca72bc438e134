//! A block event as a desktop notice: summary, body and the "open the URL" action, in the form
//! the notification server can show (plain text, or escaped for servers that read markup).

use santa_control::BlockEvent;

/// The action key for opening the event detail URL. `default` is the freedesktop key a server
/// invokes when the notice itself is clicked, so a click opens the URL too.
pub const ACTION_OPEN: &str = "default";

/// What the notification server can do (`GetCapabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `actions`: it shows actions and reports `ActionInvoked`.
    pub actions: bool,
    /// `body-markup`: it reads the body as markup, so `&`, `<` and `>` must be escaped.
    pub body_markup: bool,
}

impl Capabilities {
    /// From the server's capability names.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Capabilities {
        let has = |c: &str| names.iter().any(|n| n.as_ref() == c);
        Capabilities {
            actions: has("actions"),
            body_markup: has("body-markup"),
        }
    }
}

/// One desktop notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The title.
    pub summary: String,
    /// The text: Santa's message, then the file, reason, identifier and process.
    pub body: String,
    /// `(key, label)` pairs: the URL's, when there is a URL and the server shows actions.
    pub actions: Vec<(String, String)>,
    /// The URL the action opens (an http or https URL only).
    pub url: Option<String>,
}

/// Control characters (escape sequences, carriage returns) become `?`; newlines stay when
/// `newlines`, tabs become spaces.
fn clean(text: &str, newlines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' if newlines => '\n',
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// `text` with markup's special characters escaped.
pub fn escape_markup(text: &str) -> String {
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

/// Whether `url` is one this agent opens: a web page (Santa's event detail URL is one). Other
/// schemes (`file:`, handlers a user's desktop registers) are not opened on a click.
pub fn is_web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(char::is_control)
}

impl Notice {
    /// The notice for `event` on a server that can do `caps`.
    pub fn from_event(event: &BlockEvent, caps: Capabilities) -> Notice {
        let name = event
            .path
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or(&event.path);
        let summary = format!("Santa blocked {}", clean(name, false));
        let url = event
            .url
            .as_deref()
            .filter(|u| is_web_url(u))
            .map(str::to_owned);
        let mut body = format!(
            "{}\n\nPath: {}\nReason: {}\n",
            clean(event.message.trim(), true),
            clean(&event.path, false),
            clean(&event.reason_text, false),
        );
        if let Some(id) = &event.identifier {
            body.push_str(&format!("Identifier: {}\n", clean(id, false)));
        }
        body.push_str(&format!("Process: {} (parent {})", event.pid, event.ppid));
        let mut actions = Vec::new();
        if let Some(url) = &url {
            if caps.actions {
                actions.push((ACTION_OPEN.to_owned(), clean(&event.url_label, false)));
            } else {
                body.push_str(&format!("\nMore info: {url}"));
            }
        }
        Notice {
            summary: if caps.body_markup {
                // The summary is plain text by the specification; some servers mark it up too.
                escape_markup(&summary)
            } else {
                summary
            },
            body: if caps.body_markup {
                escape_markup(&body)
            } else {
                body
            },
            actions,
            url,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event() -> BlockEvent {
        BlockEvent {
            pid: 41,
            ppid: 40,
            uid: 1000,
            path: "/opt/bin/tool <x> & y".into(),
            identifier: Some("ab".repeat(32)),
            reason: "BINARY".into(),
            reason_text: "Binary rule".into(),
            message: "Not allowed here,\nask IT".into(),
            url: Some("https://santa.example/ab?u=alice".into()),
            url_label: "Details".into(),
            ..BlockEvent::default()
        }
    }

    const ALL: Capabilities = Capabilities {
        actions: true,
        body_markup: true,
    };
    const PLAIN: Capabilities = Capabilities {
        actions: false,
        body_markup: false,
    };

    #[test]
    fn the_body_has_santas_message_and_the_facts_and_the_url_is_an_action() {
        let n = Notice::from_event(&event(), ALL);
        assert_eq!(n.summary, "Santa blocked tool &lt;x&gt; &amp; y");
        assert_eq!(
            n.body,
            format!(
                "Not allowed here,\nask IT\n\nPath: /opt/bin/tool &lt;x&gt; &amp; y\n\
                 Reason: Binary rule\nIdentifier: {}\nProcess: 41 (parent 40)",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            n.actions,
            vec![("default".to_owned(), "Details".to_owned())]
        );
        assert_eq!(n.url.as_deref(), Some("https://santa.example/ab?u=alice"));
    }

    #[test]
    fn a_server_without_actions_or_markup_gets_plain_text_with_the_url() {
        let n = Notice::from_event(&event(), PLAIN);
        assert_eq!(n.summary, "Santa blocked tool <x> & y");
        assert!(
            n.body
                .ends_with("\nMore info: https://santa.example/ab?u=alice"),
            "{}",
            n.body
        );
        assert!(n.actions.is_empty());
    }

    #[test]
    fn hostile_text_cannot_add_lines_or_escapes_and_odd_urls_are_not_offered() {
        let mut e = event();
        e.path = "/tmp/a\nReason: fake\x1b[31m".into();
        e.url = Some("file:///etc/passwd".into());
        let n = Notice::from_event(&e, ALL);
        assert!(
            n.body.contains("Path: /tmp/a?Reason: fake?[31m\n"),
            "{}",
            n.body
        );
        assert!(n.actions.is_empty() && n.url.is_none());
        assert!(!is_web_url("https://x/\n"));
        assert!(is_web_url("HTTP://x/"));
        assert!(!is_web_url("javascript:alert(1)"));
        e.url = None;
        assert!(Notice::from_event(&e, ALL).actions.is_empty());
    }
}
