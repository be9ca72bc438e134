//! santad's benchmarks and harnesses.
