//! The mechanism's floor: a minimal allow-everything fanotify responder (one thread, one mark,
//! `FAN_OPEN_EXEC_PERM` only), as the exec-storm harness compares santad against it.
//!
//! `min-responder MOUNT`: marks only MOUNT (the harness's private mount, never `/`), answers
//! every exec with allow, and stops on SIGTERM/SIGINT (the kernel releases anything held).
//!
//! Linux only (fanotify); elsewhere it says so and exits with a failure.

santa_testkit::linux_only_main!("min-responder", "fanotify");
