//! The control socket: the protocol and client are the `santa-control` crate (what `santactl`
//! links), re-exported here; santad's server is [`server`] (Linux).

pub use santa_control::*;

#[cfg(target_os = "linux")]
pub mod server;
