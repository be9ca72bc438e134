//! Bounds-checked access to attacker-supplied bytes: every read is a `get` with a checked range,
//! so a bad offset or length becomes `None` (and then a typed error), never a panic.

/// `bytes[offset .. offset + len]`, or `None` if any part lies outside or the sum overflows.
pub(crate) fn slice_at(bytes: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    bytes.get(offset..offset.checked_add(len)?)
}

/// `bytes[offset .. offset + len]` with `u64` offsets (fat headers and linkedit commands).
pub(crate) fn slice_at_u64(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    slice_at(
        bytes,
        usize::try_from(offset).ok()?,
        usize::try_from(len).ok()?,
    )
}

pub(crate) fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    slice_at(bytes, offset, N)?.try_into().ok()
}

pub(crate) fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_be_bytes)
}

pub(crate) fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_be_bytes)
}

pub(crate) fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_le_bytes)
}

pub(crate) fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_le_bytes)
}

/// A NUL-terminated string starting at `offset`, at most `max_len` bytes long, as UTF-8.
pub(crate) fn c_str_at(bytes: &[u8], offset: usize, max_len: usize) -> Option<&str> {
    let rest = bytes.get(offset..)?;
    let window = &rest[..rest.len().min(max_len.saturating_add(1))];
    let end = window.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&window[..end]).ok()
}

/// What a decoder may still allocate for the values it builds. Decoders charge it *before* each
/// allocation (a string's bytes, a container's slots), so one that runs out stops before it
/// allocates: the output of a decode is bounded by the limit, however often the input makes
/// the decoder revisit the same bytes (binary plists share objects by reference).
#[derive(Debug)]
pub(crate) struct OutputBudget {
    left: usize,
    limit: usize,
}

/// An [`OutputBudget`] ran out; `limit_bytes` is what it started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetExceeded {
    pub limit_bytes: usize,
}

impl OutputBudget {
    /// A budget of `limit_bytes`.
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Self {
            left: limit_bytes,
            limit: limit_bytes,
        }
    }

    /// Takes `bytes` from the budget, or fails (and takes nothing) if fewer are left.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), BudgetExceeded> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(BudgetExceeded {
                limit_bytes: self.limit,
            }),
        }
    }

    /// `count` items of `size` bytes each (saturating: an overflow is simply too much).
    pub(crate) fn charge_items(&mut self, count: usize, size: usize) -> Result<(), BudgetExceeded> {
        self.charge(count.saturating_mul(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_are_none() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(be_u32(&b, 0), Some(0x0102_0304));
        assert_eq!(le_u32(&b, 1), Some(0x0504_0302));
        assert_eq!(be_u32(&b, 2), None);
        assert_eq!(slice_at(&b, usize::MAX, 2), None);
        assert_eq!(slice_at_u64(&b, u64::MAX, 1), None);
        assert_eq!(be_u64(&b, 0), None);
        assert_eq!(c_str_at(b"abc\0def", 0, 10), Some("abc"));
        assert_eq!(c_str_at(b"abcdef", 0, 10), None);
        assert_eq!(c_str_at(b"abcdef\0", 0, 3), None);
    }

    #[test]
    fn a_budget_refuses_what_it_cannot_cover_and_keeps_the_rest() {
        let mut b = OutputBudget::new(10);
        assert_eq!(b.charge(4), Ok(()));
        assert_eq!(b.charge(7), Err(BudgetExceeded { limit_bytes: 10 }));
        assert_eq!(b.charge(6), Ok(()));
        assert_eq!(b.charge(1), Err(BudgetExceeded { limit_bytes: 10 }));
        // A product that overflows saturates, and no budget below `usize::MAX` covers it.
        assert_eq!(
            OutputBudget::new(usize::MAX - 1).charge_items(usize::MAX / 2 + 1, 2),
            Err(BudgetExceeded {
                limit_bytes: usize::MAX - 1
            })
        );
    }
}
