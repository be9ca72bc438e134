//! The programs a benchmark or demo starts: found beside it in the build folder, and killed (by
//! their pid, never by name) when the guard drops, before any mount guard unmounts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the child it holds (by its pid) and reaps it when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace binary `name` built beside the running program: in its folder
/// (`target/<profile>/`) or the one above (an example runs from `target/<profile>/examples/`).
/// The error says which `make` target builds both.
pub fn built_binary(name: &str, make_target: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "{name} not found beside {}; run `make {make_target}`",
                exe.display()
            )
        })
}

/// Starts the built `santad` (see [`built_binary`]) with `--config config` and waits until its
/// stderr has a line containing `ready`; its stderr is drained afterwards (and echoed when
/// `echo`), so it never blocks on a full pipe. Killed when the guard drops.
pub fn start_santad(
    config: &Path,
    make_target: &str,
    ready: &str,
    echo: bool,
) -> Result<KillOnDrop, String> {
    let mut child = Command::new(built_binary("santad", make_target)?)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let guard = KillOnDrop(child);
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(ready) => break,
            Some(Ok(_)) => {}
            _ => {
                return Err(format!(
                    "santad exited before saying {ready:?} (are you root?)"
                ));
            }
        }
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if echo {
                eprintln!("[santad] {line}");
            }
        }
    });
    Ok(guard)
}
