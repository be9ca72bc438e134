//! Output: stdout lines that turn a closed pipe into a quiet exit, and a progress bar that only
//! a terminal sees.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writes to stdout; a reader that went away (`santactl … | head`) ends santactl quietly with
/// status 0, any other write error with status 1.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("santactl: writing output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`write`].
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($t:tt)*) => {{
        $crate::out::write(format_args!($($t)*));
        $crate::out::write(format_args!("\n"));
    }};
}

/// `print!` through [`write`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*)) };
}

/// How often the bar is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Width of the bar in cells.
const BAR_CELLS: usize = 30;

/// A progress bar on stderr, drawn only when stderr is a terminal (never into a pipe or a log).
#[derive(Debug)]
pub struct Progress {
    label: String,
    enabled: bool,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    /// A bar labelled `label`; silent unless stderr is a terminal.
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_owned(),
            enabled: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    /// Shows `done` of `total` (throttled; callable from several threads).
    pub fn update(&self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REDRAW_EVERY) && done < total {
            return;
        }
        *last = Some(now);
        let filled = (done.min(total) * BAR_CELLS)
            .checked_div(total)
            .unwrap_or(0);
        let bar: String = (0..BAR_CELLS)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{} [{bar}] {done}/{total}", self.label);
        let _ = err.flush();
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if self.enabled && self.last.lock().is_ok_and(|l| l.is_some()) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
