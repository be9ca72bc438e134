//! `promtool check metrics` (Prometheus's own linter of the text exposition format) over a text,
//! for the metrics tests. Debian's `prometheus` package ships it (`make deps` installs it). A
//! machine without it fails the test that asks, with a message saying so: a check that is
//! skipped when its tool is missing would pass without checking anything.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text`; `Ok` with what it printed if it found nothing wrong,
/// `Err` with its complaints otherwise. Panics if promtool cannot be run at all.
pub fn promtool_check_metrics(text: &str) -> Result<String, String> {
    let promtool = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let mut child = match Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool ({}) cannot be run: {e}. The metrics tests need it: install Debian's \
             `prometheus` package (`make deps` does), or set PROMTOOL to a promtool binary",
            promtool.to_string_lossy()
        ),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_owned();
    // Written from another thread: promtool may answer before it has read everything.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("promtool's output");
    let _ = writer.join();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(printed)
    } else {
        Err(printed)
    }
}
