//! santad's entry point. The daemon itself is wired in issue #5; until then only the config
//! check runs: `santad [--config FILE] --check-config`.

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
    let (config, source) = match santad::config::load(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("santad: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        println!(
            "santad: config OK ({source:?}): {:?} mode, watching {} path(s)",
            config.client_mode,
            config.watch_paths.len()
        );
        return ExitCode::SUCCESS;
    }
    eprintln!("santad: the daemon is not wired yet (issue #5); only --check-config works");
    ExitCode::from(2)
}
