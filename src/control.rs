//! The control socket: the protocol and client are the `santa-control` crate (what `santactl`
//! links), re-exported here; santad's server is [`server`] (Linux and macOS).

pub use santa_control::*;

#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod server;
