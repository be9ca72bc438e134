//! The SVG bar chart of the overheads (perf/results/exec-overhead.svg).

use crate::listener::Config;
use crate::report::us;
use crate::stats::{Results, overhead};
use crate::workloads::Workload;
use std::fmt::Write as _;

/// A horizontal bar chart of the (trimmed-mean) overheads, one group per workload.
pub(crate) fn chart(configs: &[Config], results: &Results) -> String {
    let workloads = [
        Workload::Repeated,
        Workload::RepeatedUser,
        Workload::FirstExec1M,
        Workload::FirstExec50M,
    ];
    let row_h = 18.0;
    let label_w = 300.0;
    let bar_w = 460.0;
    let mut y = 30.0;
    let mut body = String::new();
    for w in workloads {
        let values: Vec<(Config, f64)> = configs
            .iter()
            .filter(|c| **c != Config::None)
            .filter_map(|c| overhead(results, *c, w).map(|v| (*c, v.max(0.0))))
            .collect();
        let max = values.iter().map(|(_, v)| *v).fold(1.0, f64::max);
        let _ = writeln!(
            body,
            "<text x=\"10\" y=\"{y}\" font-weight=\"bold\">{}</text>",
            w.name()
        );
        y += row_h;
        for (c, v) in values {
            let len = bar_w * v / max;
            let _ = writeln!(
                body,
                "<text x=\"20\" y=\"{}\">{}</text>",
                y + 12.0,
                c.name()
            );
            let fill = if matches!(c, Config::SantadMonitor | Config::SantadLockdown) {
                "#2b7bb9"
            } else {
                "#999"
            };
            let _ = writeln!(
                body,
                "<rect x=\"{label_w}\" y=\"{}\" width=\"{len:.1}\" height=\"14\" fill=\"{fill}\"/>",
                y + 2.0
            );
            let _ = writeln!(
                body,
                "<text x=\"{:.1}\" y=\"{}\">{} µs</text>",
                label_w + len + 6.0,
                y + 13.0,
                us(v)
            );
            y += row_h;
        }
        y += row_h / 2.0;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"16\" font-size=\"14\">Per-exec overhead by configuration (interquartile mean, µs; shorter is better)</text>\n{body}</svg>\n",
        y + 10.0
    )
}
