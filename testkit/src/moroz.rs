//! Moroz, a real Santa sync server users run, for tests: built from
//! `../shared/sync-servers/moroz` (Debian's `golang-go`, vendored sources, no network; its
//! README), started on loopback with a config folder of the test's own, killed when dropped.
//! A machine that cannot build Moroz fails the test that asked; nothing skips.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Moroz source tarball: `$MOROZ_SRC`, or `shared/` beside the repository.
pub fn moroz_source() -> PathBuf {
    if let Some(path) = std::env::var_os("MOROZ_SRC") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sync-servers/moroz/moroz-src.tar.gz")
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds Moroz under `root` once (later calls reuse the binary) and returns its path. Parallel
/// builders each use a private folder and rename the result into place: the last one wins with
/// an identical binary. Panics (a failed test) when Go or the source is missing.
pub fn moroz_binary(root: &Path) -> PathBuf {
    let binary = root.join("moroz-bin");
    if binary.exists() {
        return binary;
    }
    let source = moroz_source();
    assert!(
        source.exists(),
        "Moroz source not found at {} (set MOROZ_SRC)",
        source.display()
    );
    assert!(
        Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "Go is needed to build Moroz: apt-get install -y golang-go (make deps does)"
    );
    let work = root.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a build folder");
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(&source)
            .arg("-C")
            .arg(&work),
        "unpacking Moroz",
    );
    let built = work.join("moroz-bin");
    run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&built)
            .arg("./cmd/moroz")
            .current_dir(work.join("moroz"))
            .env("GOFLAGS", "-mod=vendor")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", root.join("gocache"))
            .env("GOPATH", root.join("gopath")),
        "building Moroz",
    );
    std::fs::rename(&built, &binary).expect("the built Moroz moved into place");
    let _ = std::fs::remove_dir_all(&work);
    binary
}

/// A running Moroz on loopback (plain HTTP), killed (by its pid) when dropped.
#[derive(Debug)]
pub struct Moroz {
    child: Child,
    addr: SocketAddr,
}

impl Moroz {
    /// Starts `binary` serving the configs in `configs` (`global.toml`, `<machine_id>.toml`),
    /// writing the events it receives under `events`.
    pub fn start(binary: &Path, configs: &Path, events: &Path) -> Moroz {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = Command::new(binary)
            .arg("--use-tls=false")
            .arg(format!("--http-addr={addr}"))
            .arg("--configs")
            .arg(configs)
            .arg("--persist-events=true")
            .arg("--event-dir")
            .arg(events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Moroz");
        let moroz = Moroz { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "Moroz did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        moroz
    }

    /// `SyncBaseURL` for it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1/santa/", self.addr)
    }
}

impl Drop for Moroz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event files Moroz wrote for `machine_id`, as (file_sha256, JSON text), sorted by hash:
/// `<events>/<file_sha256>/<machine_id>/<time>.json`.
pub fn moroz_events(events: &Path, machine_id: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for sha in std::fs::read_dir(events).into_iter().flatten().flatten() {
        let machine_dir = sha.path().join(machine_id);
        for file in std::fs::read_dir(&machine_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(file.path()).expect("Moroz's event file");
            found.push((sha.file_name().to_string_lossy().into_owned(), text));
        }
    }
    found.sort();
    found
}
