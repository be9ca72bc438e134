//! Runs the sync test server until killed: `santa-sync-testserver --config DIR [--addr
//! 127.0.0.1:PORT] [--page-size N]`. Prints the `SyncBaseURL` to give santad. For demos and
//! manual tests only; it listens on loopback.

use santa_sync::testserver::{ServerConfig, TestServer};
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("santa-sync-testserver: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut config_dir: Option<PathBuf> = None;
    let mut addr = "127.0.0.1:0".to_owned();
    let mut page_size = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => config_dir = Some(PathBuf::from(value()?)),
            "--addr" => addr = value()?,
            "--page-size" => page_size = Some(value()?.parse::<usize>()?),
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    let config = match config_dir {
        Some(dir) => ServerConfig::from_dir(&dir)?,
        None => return Err("--config DIR is required".into()),
    };
    let ip: std::net::SocketAddr = addr.parse()?;
    if !ip.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address").into());
    }
    let server = TestServer::start_on(&addr, config)?;
    server.knobs(|k| k.page_size = page_size);
    println!("{}", server.base_url());
    loop {
        std::thread::park();
    }
}
