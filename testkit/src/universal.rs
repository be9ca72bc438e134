//! Universal (fat) Mach-O files assembled for tests from the slices of real ones, so that a test
//! can mix slices signed in different ways, or give a record a CPU type no parser knows.

/// One slice of a universal file: the fat record's CPU type and subtype, and the slice's bytes.
#[derive(Debug, Clone, Copy)]
pub struct FatSlice<'a> {
    /// The record's `cputype`.
    pub cpu_type: i32,
    /// The record's `cpusubtype`.
    pub cpu_subtype: u32,
    /// The slice (a thin Mach-O, or anything a test wants there).
    pub bytes: &'a [u8],
}

/// Slices are placed at 16 KiB boundaries, as `lipo` aligns arm64 slices.
const ALIGN: usize = 1 << 14;

/// A `FAT_MAGIC` universal file holding `slices` in order.
pub fn universal(slices: &[FatSlice<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xcafe_babe_u32.to_be_bytes());
    out.extend_from_slice(&(slices.len() as u32).to_be_bytes());
    let mut at = ALIGN;
    let mut placed = Vec::with_capacity(slices.len());
    for s in slices {
        for v in [
            s.cpu_type as u32,
            s.cpu_subtype,
            at as u32,
            s.bytes.len() as u32,
            14,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        placed.push(at);
        at += s.bytes.len().div_ceil(ALIGN) * ALIGN;
    }
    out.resize(at, 0);
    for (s, &offset) in slices.iter().zip(&placed) {
        out[offset..offset + s.bytes.len()].copy_from_slice(s.bytes);
    }
    out
}

/// The four bytes at `at`.
fn word(file: &[u8], at: usize) -> [u8; 4] {
    let mut w = [0; 4];
    w.copy_from_slice(&file[at..at + 4]);
    w
}

/// The slices of a `FAT_MAGIC` universal file (records read as written, not checked beyond
/// lying inside the file: a test input that does not panics the test), or the whole file as one
/// slice when it is thin (its CPU type and subtype read from its little-endian header).
pub fn slices_of(file: &[u8]) -> Vec<FatSlice<'_>> {
    let be = |at: usize| u32::from_be_bytes(word(file, at));
    if be(0) != 0xcafe_babe {
        let le = |at: usize| u32::from_le_bytes(word(file, at));
        return vec![FatSlice {
            cpu_type: le(4) as i32,
            cpu_subtype: le(8),
            bytes: file,
        }];
    }
    (0..be(4) as usize)
        .map(|i| {
            let r = 8 + 20 * i;
            let (offset, size) = (be(r + 8) as usize, be(r + 12) as usize);
            FatSlice {
                cpu_type: be(r) as i32,
                cpu_subtype: be(r + 4),
                bytes: &file[offset..offset + size],
            }
        })
        .collect()
}
