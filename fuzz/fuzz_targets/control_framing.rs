//! The control socket's framing and request parsing over arbitrary bytes, as santad reads a
//! peer's connection (`santad::control`: `FrameDecoder`, `decode_frame`, `parse_request`,
//! `decode_request`): no panic, no hang, and bounded heap.
//!
//! The first input byte chooses the cap (so the oversized-length path is reached with short
//! inputs too) and how the rest is cut into pieces, as reads of a socket would cut it; the rest
//! is the peer's bytes. Oracles beyond "no panic":
//! - fed whole or in pieces, the decoder gives the same body, or the same error;
//! - a body is at most the cap and the header's length; the decoder's buffer never exceeds the
//!   announced length, nor twice the body bytes received or `BODY_GROWTH_MIN_BYTES`;
//! - the heap the decode holds is bounded by that, and the parse's by a multiple of its input;
//! - a request that parses encodes (`encode_request`, what santactl sends) and decodes back to
//!   itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santad::control::{
    self, BODY_GROWTH_MIN_BYTES, DecodeError, FRAME_HEADER_BYTES, FrameDecoder, FrameError,
    REQUEST_BYTES_MAX_UNPRIVILEGED,
};

#[global_allocator]
static ALLOCATOR: santa_fuzz::Counting = santa_fuzz::Counting;

/// Heap the JSON parse may hold per body byte. An internally tagged enum buffers the fields it
/// does not know yet as serde `Content` values (32 bytes each, at most one per two input bytes:
/// `[0,0,…]`), and their vectors grow by doubling: 32 bytes a byte, with room to spare.
const PARSE_BYTES_PER_BODY_BYTE: usize = 32;

/// Heap the parse holds whatever the input: the error's message and the parser's own state.
const PARSE_FIXED_BYTES: usize = 16 << 10;

/// Heap a decode holds beyond its body buffer (the result's own small allocations).
const DECODE_FIXED_BYTES: usize = 1 << 10;

/// The caps the first byte chooses from: none at all, tiny, one page, santad's cap for
/// unprivileged peers (root's, 256 MiB, differs only in the number).
const CAPS: [usize; 4] = [0, 64, 4096, REQUEST_BYTES_MAX_UNPRIVILEGED];

/// The most a decoder may hold for a frame announcing `announced` bytes of which `received`
/// arrived.
fn buffer_bound(announced: usize, received: usize) -> usize {
    (2 * received).max(BODY_GROWTH_MIN_BYTES).min(announced)
}

fn announced(bytes: &[u8]) -> Option<usize> {
    let header: [u8; FRAME_HEADER_BYTES] = bytes.get(..FRAME_HEADER_BYTES)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

fn same_error(a: &FrameError, b: &FrameError) -> bool {
    match (a, b) {
        (FrameError::TooLarge { len: x, .. }, FrameError::TooLarge { len: y, .. }) => x == y,
        (FrameError::Truncated { received: x }, FrameError::Truncated { received: y }) => x == y,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, bytes)) = data.split_first() else {
        return;
    };
    let max = CAPS[usize::from(knob & 3)];

    // Whole.
    let (whole, peak) = santa_fuzz::peak_during(|| control::decode_frame(bytes, max));
    match &whole {
        Ok((body, used)) => {
            assert!(
                body.len() <= max,
                "a body of {} over the cap {max}",
                body.len()
            );
            assert_eq!(Some(body.len()), announced(bytes));
            assert_eq!(*used, FRAME_HEADER_BYTES + body.len());
            assert!(*used <= bytes.len());
            let bound = buffer_bound(body.len(), body.len()) + DECODE_FIXED_BYTES;
            assert!(peak <= bound, "decoding held {peak} bytes (bound {bound})");
        }
        Err(FrameError::TooLarge { len, max: m }) => {
            assert_eq!(*m, max);
            assert!(*len > max as u64);
            assert!(
                peak <= DECODE_FIXED_BYTES,
                "{peak} bytes held for a refused header"
            );
        }
        Err(FrameError::Truncated { received }) => {
            assert_eq!(*received, bytes.len(), "a short input is taken whole");
            if let Some(announced) = announced(bytes) {
                let bound =
                    buffer_bound(announced, received - FRAME_HEADER_BYTES) + DECODE_FIXED_BYTES;
                assert!(peak <= bound, "decoding held {peak} bytes (bound {bound})");
            }
        }
        Err(e) => panic!("a pure decode cannot fail with {e:?}"),
    }

    // In pieces, sized by a small generator seeded from the knob (1 to 256 bytes each).
    let mut decoder = FrameDecoder::new(max);
    let mut state = u32::from(knob) | 0x100;
    let mut at = 0;
    let mut failed = None;
    while at < bytes.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let end = (at + 1 + (state & 0xff) as usize).min(bytes.len());
        match decoder.feed(&bytes[at..end]) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= end - at);
                at += n;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        if let Some(announced) = announced(bytes) {
            let body_got = decoder.received().saturating_sub(FRAME_HEADER_BYTES);
            assert!(decoder.buffer_bytes() <= buffer_bound(announced, body_got));
        }
        if decoder.is_complete() {
            assert_eq!(decoder.wanted(), 0);
        }
    }
    let pieces = match failed {
        Some(e) => Err(e),
        None => decoder.finish().map(|body| (body, at)),
    };
    match (&whole, &pieces) {
        (Ok(w), Ok(p)) => assert_eq!(w, p, "whole and in pieces differ"),
        (Err(w), Err(p)) => assert!(same_error(w, p), "whole {w:?}, in pieces {p:?}"),
        (w, p) => panic!("whole {w:?}, in pieces {p:?}"),
    }

    // The request.
    let parsed = match &whole {
        Ok((body, _)) => {
            let (parsed, peak) = santa_fuzz::peak_during(|| control::parse_request(body));
            let bound = PARSE_BYTES_PER_BODY_BYTE * body.len() + PARSE_FIXED_BYTES;
            assert!(
                peak <= bound,
                "parsing {} bytes held {peak} (bound {bound})",
                body.len()
            );
            if let Err(e) = &parsed {
                assert!(e.message.chars().count() <= 256, "a bounded message: {e:?}");
            }
            Some(parsed)
        }
        Err(_) => None,
    };
    if let Some(Ok(request)) = &parsed {
        let _ = (request.needs_root(), request.name());
        // What santactl would send for it reads back as the same request.
        let message = control::encode_request(request).expect("a request encodes");
        let again = control::decode_request(&message, usize::MAX).expect("and decodes");
        assert_eq!(&again, request, "round trip");
    }

    // The one-call form agrees with the two steps.
    match (control::decode_request(bytes, max), &whole, &parsed) {
        (Ok(r), Ok(_), Some(Ok(p))) => assert_eq!(&r, p),
        (Err(DecodeError::Request(e)), Ok(_), Some(Err(p))) => assert_eq!(&e, p),
        (Err(DecodeError::Frame(e)), Err(w), None) => assert!(same_error(&e, w)),
        (r, w, p) => panic!("decode_request {r:?}; steps {w:?} {p:?}"),
    }
});
