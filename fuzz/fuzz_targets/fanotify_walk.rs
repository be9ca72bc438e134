//! The fanotify read-buffer walk over arbitrary bytes: never panics, never loops, every step
//! moves forward and stays inside the buffer, and a well-formed event's ranges are in bounds.
//! The walk is the pure layer (`walk_record`): no fd is owned, answered or closed here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santad::linux::fanotify::{RecordStep, walk_record};

fuzz_target!(|bytes: &[u8]| {
    let mut offset = 0usize;
    let mut steps = 0usize;
    while let Some(step) = walk_record(bytes, offset) {
        steps += 1;
        // Each step consumes at least 4 bytes, so a buffer has at most len / 4 + 1 steps.
        assert!(steps <= bytes.len() / 4 + 1, "the walk does not advance");
        let next = match step {
            RecordStep::Event {
                start,
                len,
                info_at,
                ..
            } => {
                assert_eq!(start, offset);
                assert!(len >= 24 && start + len <= bytes.len());
                assert!(info_at >= start + 24 && info_at <= start + len);
                start + len
            }
            RecordStep::Malformed { start, next, .. } => {
                assert_eq!(start, offset);
                assert!(next > start && next <= bytes.len());
                next
            }
        };
        offset = next;
    }
});
