//! The agent's main loop on Linux: the watch thread's events become notices on the session bus.

use crate::desktop::Desktop;
use crate::notice::{Capabilities, Notice};
use crate::watch::{BACKOFF_MAX, BACKOFF_MIN, Event, Watcher};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Default control socket when neither `--socket` nor a readable config names one (as santactl).
/// How long one pass of the loop waits on the bus: how soon a block is shown.
const PUMP: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    name = "santa-notify",
    version,
    about = "Show santad's block notices for this user as desktop notifications."
)]
struct Cli {
    /// santad's control socket [default: ControlSocketPath from the config, else /run/santad/santad.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// santad's config file, read for ControlSocketPath [default: /etc/santa/santad.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Every user's blocks, not only this user's (root only).
    #[arg(long)]
    all_users: bool,
    /// The program that opens the event detail URL when the notice's action is clicked.
    #[arg(long, value_name = "PROGRAM", default_value = "xdg-open")]
    opener: String,
    /// Also print each block on stderr.
    #[arg(long, short)]
    verbose: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

fn socket_path(cli: &Cli) -> PathBuf {
    santa_config::control_socket_path(cli.socket.as_deref(), cli.config.as_deref())
}

/// The session bus, connected again after it failed (the session may come up after us).
struct Bus {
    opener: String,
    desktop: Option<Desktop>,
    next_try: Instant,
    backoff: Duration,
}

impl Bus {
    fn get(&mut self) -> Option<&mut Desktop> {
        if self.desktop.is_none() && Instant::now() >= self.next_try {
            match Desktop::connect(self.opener.clone()) {
                Ok(d) => {
                    eprintln!("santa-notify: connected to the session bus");
                    self.desktop = Some(d);
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    eprintln!(
                        "santa-notify: session bus: {}; trying again in {} s",
                        e.message().unwrap_or("unavailable"),
                        self.backoff.as_secs()
                    );
                    self.next_try = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.desktop.as_mut()
    }

    fn failed(&mut self) {
        self.desktop = None;
        self.next_try = Instant::now() + self.backoff;
    }
}

fn show(bus: &mut Bus, event: &santa_control::BlockEvent, verbose: bool) {
    if verbose {
        eprintln!(
            "santa-notify: blocked {} (pid {}, reason {})",
            event.path, event.pid, event.reason
        );
    }
    let Some(desktop) = bus.get() else {
        eprintln!(
            "santa-notify: no session bus; block of {} not shown",
            event.path
        );
        return;
    };
    // A server that does not answer GetCapabilities is asked to show plain text with the URL.
    let caps = desktop.capabilities().unwrap_or(Capabilities {
        actions: false,
        body_markup: false,
    });
    match desktop.notify(&Notice::from_event(event, caps)) {
        Ok(id) => {
            if verbose {
                eprintln!("santa-notify: shown as notification {id}");
            }
        }
        Err(e) => {
            eprintln!("santa-notify: Notify: {}", e.message().unwrap_or("failed"));
            if e.name() == Some("org.freedesktop.DBus.Error.Disconnected") {
                bus.failed();
            }
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let handler = on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t;
    // SAFETY: installing a handler that only stores to an atomic; SIGPIPE ignored so a closed
    // socket is an error to handle, not a killing signal.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let socket = socket_path(&cli);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = match Watcher::spawn(socket.clone(), cli.all_users, stop.clone()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("santa-notify: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut bus = Bus {
        opener: cli.opener.clone(),
        desktop: None,
        next_try: Instant::now(),
        backoff: BACKOFF_MIN,
    };
    let _ = bus.get();
    let mut status = ExitCode::SUCCESS;
    while !STOP.load(Ordering::Relaxed) {
        match bus.desktop.as_mut().map(|d| d.pump(PUMP)) {
            Some(Err(e)) => {
                eprintln!(
                    "santa-notify: session bus lost: {}",
                    e.message().unwrap_or("error")
                );
                bus.failed();
            }
            Some(Ok(())) => {}
            None => {
                let _ = bus.get();
                std::thread::sleep(PUMP);
            }
        }
        while let Ok(event) = watcher.events.try_recv() {
            match event {
                Event::Connected(reply) => eprintln!(
                    "santa-notify: watching {} blocks at {}",
                    reply
                        .uid
                        .map_or("every user's".to_owned(), |u| format!("uid {u}'s")),
                    socket.display()
                ),
                Event::Block(event) => show(&mut bus, &event, cli.verbose),
                Event::Lost { why, retry_in } => eprintln!(
                    "santa-notify: santad at {}: {why}; trying again in {} s",
                    socket.display(),
                    retry_in.as_secs()
                ),
                Event::Refused(why) => {
                    eprintln!("santa-notify: {why}");
                    status = ExitCode::FAILURE;
                    STOP.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join();
    status
}
