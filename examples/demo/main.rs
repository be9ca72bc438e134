//! `make demo`: santad in Lockdown on a private tmpfs — one binary allowed by a rule, one
//! unknown binary denied — with the decision log lines it wrote. `make demo-sync` (`demo
//! --sync`): the same, but santad starts in Monitor and takes Lockdown and the rule from the
//! repo's sync test server, then uploads the blocked execution to it.
//!
//! Safety: santad watches only the tmpfs this program mounts; it is stopped by its pid and the
//! mount is removed when the program ends, also on failure.
//!
//! Linux only (fanotify on a private tmpfs); elsewhere it says so and exits with a failure.

santa_testkit::linux_only_main!("demo", "fanotify on a private tmpfs");
