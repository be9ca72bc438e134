//! `santactl`: the operator's CLI for santad.
//!
//! The commands (status, rule, fileinfo, flushcache, version, metrics) arrive with the
//! "santactl and the control socket" issue; until then this binary only says so.

fn main() {
    eprintln!("santactl: no commands yet; see the project's issues (santactl and the control socket)");
    std::process::exit(2);
}
