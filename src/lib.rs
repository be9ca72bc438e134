//! santad: the daemon's library half (config, event sources, wiring, control protocol).
