//! The programs a benchmark or demo starts: found beside it in the build folder, and killed (by
//! their pid, never by name) when the guard drops, before any mount guard unmounts.

use std::path::PathBuf;
use std::process::Child;

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
