//! Hand-built binary plists (`bplist00`) for parser tests: the 32-byte trailer that locates the
//! offset table, so that a test writes only the objects it is about.

/// Where a `bplist00` trailer says things are.
#[derive(Debug, Clone, Copy)]
pub struct BplistTrailer {
    /// Bytes per offset-table entry.
    pub offset_size: u8,
    /// Bytes per object reference.
    pub ref_size: u8,
    /// Objects declared.
    pub objects: u64,
    /// The top object's index.
    pub top: u64,
    /// Where the offset table starts.
    pub table: u64,
}

impl BplistTrailer {
    /// A trailer whose top object is the first.
    pub fn new(offset_size: u8, ref_size: u8, objects: u64, table: usize) -> Self {
        let table = table as u64;
        BplistTrailer {
            offset_size,
            ref_size,
            objects,
            top: 0,
            table,
        }
    }

    /// Appends the 32-byte trailer to `bytes`.
    pub fn push(&self, bytes: &mut Vec<u8>) {
        let mut trailer = [0u8; 32];
        trailer[6] = self.offset_size;
        trailer[7] = self.ref_size;
        trailer[8..16].copy_from_slice(&self.objects.to_be_bytes());
        trailer[16..24].copy_from_slice(&self.top.to_be_bytes());
        trailer[24..32].copy_from_slice(&self.table.to_be_bytes());
        bytes.extend_from_slice(&trailer);
    }
}
