//! The command line: what to run and how big (`--quick`, `--rounds`, `--only`, `--raw`,
//! `--flamegraph`, `--help`).

use crate::listener::Config;

/// How many execs each workload makes, and in how many rounds.
pub(crate) struct Sizes {
    pub(crate) rounds: usize,
    pub(crate) repeated_pairs: usize,
    pub(crate) distinct_1m: usize,
    pub(crate) big_per_round: usize,
    pub(crate) storm_execs: usize,
}

/// What the command line asked for.
pub(crate) struct Args {
    /// `--help` or `-h`: print [`usage`] and do nothing else.
    pub(crate) help: bool,
    /// `--quick`: fewer rounds and smaller workloads (`make perf-quick`).
    pub(crate) quick: bool,
    /// `--only KEY,...`: these configurations (and always the one with no listener).
    pub(crate) only: Option<Vec<String>>,
    /// `--flamegraph`: profile santad instead of measuring the configurations.
    pub(crate) flamegraph: bool,
    /// `--raw FILE.csv`: also write every per-exec difference and watched latency.
    pub(crate) raw: Option<String>,
    pub(crate) sizes: Sizes,
}

impl Args {
    /// Reads `args` (the program name first); what it does not know is ignored.
    pub(crate) fn parse(args: &[String]) -> Args {
        let quick = args.iter().any(|a| a == "--quick");
        let rounds = args
            .iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok());
        let only: Option<Vec<String>> = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.split(',').map(str::to_string).collect());
        let sizes = if quick {
            Sizes {
                rounds: rounds.unwrap_or(2),
                repeated_pairs: 400,
                distinct_1m: 100,
                big_per_round: 1,
                storm_execs: 400,
            }
        } else {
            Sizes {
                rounds: rounds.unwrap_or(3),
                repeated_pairs: 2000,
                distinct_1m: 1000,
                big_per_round: 6,
                storm_execs: 4000,
            }
        };
        Args {
            help: args.iter().skip(1).any(|a| a == "--help" || a == "-h"),
            quick,
            only,
            flamegraph: args.iter().any(|a| a == "--flamegraph"),
            raw: args
                .iter()
                .position(|a| a == "--raw")
                .and_then(|i| args.get(i + 1))
                .cloned(),
            sizes,
        }
    }
}

/// The `--help` text.
pub(crate) fn usage() -> String {
    let keys: Vec<&str> = Config::ALL.iter().map(|c| c.key()).collect();
    format!(
        "exec-storm: what a listener costs every exec, measured side by side (needs root: it\n\
         mounts a private ext2 image and a tmpfs and starts fanotify listeners on the image).\n\
         \n\
         usage: exec-storm [--quick] [--rounds N] [--only CONFIG,...] [--raw FILE.csv] [--flamegraph]\n\
         \n\
         \x20 --quick           smaller workloads, 2 rounds unless --rounds says otherwise\n\
         \x20 --rounds N        rounds, configurations interleaved in each (default 3)\n\
         \x20 --only CONFIG,... only these configurations, beside `none`: {}\n\
         \x20 --raw FILE.csv    also write every per-exec difference and latency, and FILE.csv.rounds.csv\n\
         \x20 --flamegraph      profile santad under the workloads instead (perf/results/flamegraph.svg)\n\
         \x20 --help            this text\n\
         \n\
         Writes perf/RESULTS.md and perf/results/exec-overhead.svg.\n",
        keys.join(", ")
    )
}
