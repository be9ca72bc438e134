//! Builds the BPF exec backstop (`bpf/exec_backstop.bpf.c`) with clang for Linux targets; santad
//! embeds the object (`src/linux/backstop.rs`). clang is the one system package the build needs:
//! `make deps` (run by `make test` and `make run`) installs it from Debian's packages.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/exec_backstop.bpf.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("exec_backstop.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // The program reads the new image's entry point from struct pt_regs, whose field names
    // are the architecture's.
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "-D__TARGET_ARCH_x86",
        Ok("aarch64") => "-D__TARGET_ARCH_arm64",
        Ok(other) => panic!("the BPF exec backstop does not know {other}'s registers"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    let status = Command::new(&clang)
        .args([
            "-target", "bpf", arch, "-O2", "-g", "-Wall", "-Werror", "-c",
        ])
        .arg("bpf/exec_backstop.bpf.c")
        .arg("-o")
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to build bpf/exec_backstop.bpf.c ({s})"),
        Err(e) => panic!(
            "santad's BPF exec backstop needs clang to build ({clang}: {e}). Install it with \
             `make deps` (Debian: apt-get install clang), or set CLANG to a clang binary."
        ),
    }
}
