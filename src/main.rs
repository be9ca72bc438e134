//! santad's entry point: `santad [--config FILE] [--check-config]`.
//!
//! Without `--config`, santad reads `/etc/santa/santad.toml` if present, else runs on its
//! embedded defaults (Monitor mode, every filesystem watched, log on stdout).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config_path: Option<PathBuf> = None;
    let mut check_only = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--config") => match args.next() {
                Some(path) => config_path = Some(PathBuf::from(path)),
                None => {
                    eprintln!("santad: --config needs a file");
                    return ExitCode::from(2);
                }
            },
            Some("--check-config") => check_only = true,
            _ => {
                eprintln!(
                    "santad: unknown argument {arg:?}; usage: santad [--config FILE] [--check-config]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (config, source) = match santad::setup::load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("santad: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        let watching = if config.watch_paths.is_empty() {
            "every filesystem".to_owned()
        } else {
            format!("{} path(s)", config.watch_paths.len())
        };
        let scope = config.lockdown_scope.as_ref().map_or(String::new(), |s| {
            format!(
                ", Lockdown scoped to {} user(s), {} group(s), {} cgroup(s)",
                s.users.len(),
                s.groups.len(),
                s.cgroups.len()
            )
        });
        println!(
            "santad: config OK ({source:?}): {:?} mode{scope}, watching {watching}",
            config.client_mode
        );
        return ExitCode::SUCCESS;
    }
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        santad::stderr_logger::install();
        #[cfg(target_os = "linux")]
        let run = santad::daemon::run(config, config_path).map_err(|e| e.to_string());
        #[cfg(target_os = "macos")]
        let run = santad::macos::run(config, config_path).map_err(|e| e.to_string());
        match run {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("santad: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = config;
        eprintln!(
            "santad: no event source for this platform (Linux: fanotify, macOS: Endpoint Security)"
        );
        ExitCode::FAILURE
    }
}
