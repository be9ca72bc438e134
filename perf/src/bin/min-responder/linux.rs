//! min-responder on Linux (see `main.rs`).

use santa_rules::Action;
use santad::linux::fanotify::{
    EventBuffer, Fanotify, InitOptions, MASK_OPEN_EXEC_PERM, MarkScope, WakeFd,
};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn main() -> ExitCode {
    let Some(mount) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: min-responder MOUNT");
        return ExitCode::from(2);
    };
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let run = || -> Result<(), santad::linux::fanotify::Error> {
        let fan = Fanotify::new(InitOptions {
            report_pidfd: false,
            enable_audit: false,
        })?;
        fan.add_watch(&mount, MarkScope::Mount, MASK_OPEN_EXEC_PERM)?;
        let wake = WakeFd::new()?;
        let mut buf = EventBuffer::new(4096)?;
        println!("ready");
        while !STOP.load(Ordering::SeqCst) {
            let ready = fan.wait(&wake, 100)?;
            if !ready.events {
                continue;
            }
            for event in fan.read(&mut buf)? {
                let event = event?;
                if let Some(fd) = event.fd {
                    fan.respond(fd.as_fd(), Action::Allow, false)?;
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("min-responder: {e}");
            ExitCode::FAILURE
        }
    }
}
