//! A bounded BER/DER reader: just enough ASN.1 for CMS `SignedData`, X.509 certificates and
//! Apple's DER entitlements.
//!
//! `codesign` writes the CMS envelope in BER with indefinite lengths, while the certificates and
//! signed attributes inside are DER; this reader accepts both length forms and hands out each
//! element's content and raw encoding as sub-slices of the input (no copies). Nesting is capped
//! at [`DEPTH_MAX`] so a crafted input cannot exhaust the stack.
//!
//! Bounds, whatever the input claims:
//! - **Output**: the reader allocates nothing; every element it returns is a sub-slice of its
//!   input, and ASN.1 has no references, so no byte is handed out as part of two siblings.
//!   What callers build from elements (certificates, names, entitlements) is therefore bounded
//!   by the bytes they read; DER entitlements, which build a tree, also charge a budget.
//! - **Nesting**: [`DEPTH_MAX`] levels, checked at every element, definite or indefinite.
//! - **Time**: an indefinite length is found by walking its children once; the caller's own
//!   walk repeats that at each of at most [`DEPTH_MAX`] levels, so a read costs at most
//!   `DEPTH_MAX` passes over its input (no re-scan can multiply beyond that).
//! - **Lengths**: at most 4 length octets and 4 high-tag octets, every end `checked_add`ed and
//!   inside its container.

use std::fmt;

/// Deepest nesting accepted. Certificates nest about 8 levels, the CMS envelope about 10 above
/// them; 48 leaves room for extensions without allowing unbounded recursion.
pub const DEPTH_MAX: u32 = 48;

/// Universal tags used here (identifier octets, class and constructed bit included).
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const T61_STRING: u8 = 0x14;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const BMP_STRING: u8 = 0x1e;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[n]` constructed, context-specific.
    pub const fn context(n: u8) -> u8 {
        0xa0 | n
    }
}

/// Why ASN.1 bytes could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asn1Error {
    /// The input ended inside an element.
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A length that is malformed, longer than 4 octets, or past the end of its container.
    BadLength {
        /// What was being read.
        what: &'static str,
    },
    /// An indefinite length on a primitive element (not allowed even in BER).
    IndefinitePrimitive {
        /// What was being read.
        what: &'static str,
    },
    /// Nesting deeper than `DEPTH_MAX` (48) levels.
    TooDeep,
    /// A different element than the structure requires.
    UnexpectedTag {
        /// What was being read.
        what: &'static str,
        /// The identifier octet expected.
        expected: u8,
        /// The identifier octet found.
        found: u8,
    },
    /// A value that does not fit its type (bad time, bad OID, bad boolean, bad string...).
    BadValue {
        /// What was being read.
        what: &'static str,
    },
    /// Decoding would build more than `limit_bytes` of values (DER entitlements).
    DecodedTooLarge {
        /// The output limit for this input.
        limit_bytes: usize,
    },
}

impl From<crate::bytes::BudgetExceeded> for Asn1Error {
    fn from(e: crate::bytes::BudgetExceeded) -> Self {
        Self::DecodedTooLarge {
            limit_bytes: e.limit_bytes,
        }
    }
}

impl fmt::Display for Asn1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "ASN.1 truncated in {what}"),
            Self::BadLength { what } => write!(f, "ASN.1 bad length in {what}"),
            Self::IndefinitePrimitive { what } => {
                write!(f, "ASN.1 indefinite length on a primitive in {what}")
            }
            Self::TooDeep => write!(f, "ASN.1 nested deeper than {DEPTH_MAX}"),
            Self::UnexpectedTag {
                what,
                expected,
                found,
            } => write!(
                f,
                "ASN.1 {what}: expected tag {expected:#04x}, found {found:#04x}"
            ),
            Self::BadValue { what } => write!(f, "ASN.1 bad value in {what}"),
            Self::DecodedTooLarge { limit_bytes } => {
                write!(f, "ASN.1 decodes to more than {limit_bytes} bytes")
            }
        }
    }
}

impl std::error::Error for Asn1Error {}

/// One element: its identifier octet, its content and its whole encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    /// First identifier octet (class, constructed bit, low tag number or 0x1f).
    pub tag: u8,
    /// The content octets (for an indefinite length: up to, not including, the end marker).
    pub content: &'a [u8],
    /// The whole element: identifier, length, content (and end marker).
    pub raw: &'a [u8],
    /// The element used an indefinite length.
    pub indefinite: bool,
}

impl<'a> Tlv<'a> {
    /// A reader over the children of this (constructed) element.
    pub fn children(&self, depth: u32) -> Reader<'a> {
        Reader {
            rest: self.content,
            depth: depth + 1,
        }
    }
}

/// Reads consecutive elements from a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    pub depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader at nesting depth 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            depth: 0,
        }
    }

    /// No elements left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The identifier octet of the next element, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element.
    pub fn read(&mut self, what: &'static str) -> Result<Tlv<'a>, Asn1Error> {
        let (tlv, used) = read_tlv(self.rest, self.depth, what)?;
        self.rest = &self.rest[used..];
        Ok(tlv)
    }

    /// The next element, which must have identifier `expected`.
    pub fn expect(&mut self, expected: u8, what: &'static str) -> Result<Tlv<'a>, Asn1Error> {
        let found = self.peek_tag().ok_or(Asn1Error::Truncated { what })?;
        if found != expected {
            return Err(Asn1Error::UnexpectedTag {
                what,
                expected,
                found,
            });
        }
        self.read(what)
    }

    /// The next element if it has identifier `t`.
    pub fn optional(&mut self, t: u8, what: &'static str) -> Result<Option<Tlv<'a>>, Asn1Error> {
        if self.peek_tag() == Some(t) {
            self.read(what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A reader over the children of the next element, which must have identifier `t`.
    pub fn enter(&mut self, t: u8, what: &'static str) -> Result<Reader<'a>, Asn1Error> {
        let depth = self.depth;
        Ok(self.expect(t, what)?.children(depth))
    }
}

/// Reads one element at the start of `input`; returns it and the bytes it used.
fn read_tlv<'a>(
    input: &'a [u8],
    depth: u32,
    what: &'static str,
) -> Result<(Tlv<'a>, usize), Asn1Error> {
    if depth > DEPTH_MAX {
        return Err(Asn1Error::TooDeep);
    }
    let truncated = Asn1Error::Truncated { what };
    let tag = *input.first().ok_or(truncated.clone())?;
    let mut pos = 1usize;
    if tag & 0x1f == 0x1f {
        // High tag number: base-128 octets, at most 4 (no tag used here needs more).
        let mut n = 0;
        loop {
            let b = *input.get(pos).ok_or(truncated.clone())?;
            pos += 1;
            n += 1;
            if n > 4 {
                return Err(Asn1Error::BadLength { what });
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let first = *input.get(pos).ok_or(truncated.clone())?;
    pos += 1;
    let constructed = tag & 0x20 != 0;
    if first == 0x80 {
        if !constructed {
            return Err(Asn1Error::IndefinitePrimitive { what });
        }
        let start = pos;
        loop {
            let rest = input.get(pos..).ok_or(truncated.clone())?;
            if rest.len() < 2 {
                return Err(truncated);
            }
            if rest[0] == 0 && rest[1] == 0 {
                let content = &input[start..pos];
                let end = pos + 2;
                return Ok((
                    Tlv {
                        tag,
                        content,
                        raw: &input[..end],
                        indefinite: true,
                    },
                    end,
                ));
            }
            let (_, used) = read_tlv(rest, depth + 1, what)?;
            pos += used;
        }
    }
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(Asn1Error::BadLength { what });
        }
        let octets = input.get(pos..pos + n).ok_or(truncated.clone())?;
        pos += n;
        octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let end = pos.checked_add(len).ok_or(Asn1Error::BadLength { what })?;
    let content = input.get(pos..end).ok_or(Asn1Error::BadLength { what })?;
    Ok((
        Tlv {
            tag,
            content,
            raw: &input[..end],
            indefinite: false,
        },
        end,
    ))
}

/// An OID's content octets as dotted decimal, for display.
pub(crate) fn oid_to_string(content: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, &b) in content.iter().enumerate() {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == content.len() {
            return None;
        }
    }
    let mut s = String::new();
    for (i, a) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        let _ = write!(s, "{a}");
    }
    (!s.is_empty()).then_some(s)
}

/// Seconds since the Unix epoch for a UTCTime or GeneralizedTime element (`Z` form only, as
/// RFC 5280 requires).
pub(crate) fn time_to_unix(t: &Tlv<'_>) -> Result<i64, Asn1Error> {
    let what = "time";
    let bad = Asn1Error::BadValue { what };
    let s = std::str::from_utf8(t.content).map_err(|_| bad.clone())?;
    let digits = s.strip_suffix('Z').ok_or(bad.clone())?;
    // All ASCII digits first: the slicing below then always falls on character boundaries.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let (year, rest) = match t.tag {
        tag::UTC_TIME if digits.len() == 12 => {
            let yy: i64 = digits[..2].parse().map_err(|_| bad.clone())?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        tag::GENERALIZED_TIME if digits.len() == 14 => {
            (digits[..4].parse().map_err(|_| bad.clone())?, &digits[4..])
        }
        _ => return Err(bad),
    };
    let num = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(-1) };
    let (month, day, hour, min, sec) = (num(0), num(2), num(4), num(6), num(8));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&min)
        || !(0..=60).contains(&sec)
    {
        return Err(bad);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01: the inverse
/// of `days_from_civil` (Howard Hinnant's algorithm). Also the event log's timestamps.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD HH:MM:SS+00:00` for seconds since the epoch (UTC).
pub fn format_unix_utc(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00:00",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_lengths() {
        // SEQUENCE (indefinite) { INTEGER 5, OCTET STRING "ab" } end-of-contents
        let ber = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b', 0x00, 0x00, 0xff,
        ];
        let mut r = Reader::new(&ber);
        let seq = r.read("seq").unwrap();
        assert!(seq.indefinite);
        assert_eq!(seq.raw.len(), 11);
        let mut c = seq.children(0);
        assert_eq!(c.expect(tag::INTEGER, "int").unwrap().content, &[5]);
        assert_eq!(c.expect(tag::OCTET_STRING, "os").unwrap().content, b"ab");
        assert!(c.is_empty());
    }

    #[test]
    fn malformed_lengths_are_errors() {
        assert!(matches!(
            Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1]).read("x"),
            Err(Asn1Error::BadLength { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x04, 0x80, 0, 0]).read("x"),
            Err(Asn1Error::IndefinitePrimitive { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x04, 0x05, 1]).read("x"),
            Err(Asn1Error::BadLength { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x30, 0x80, 0x02]).read("x"),
            Err(Asn1Error::Truncated { .. })
        ));
        // 100 nested indefinite SEQUENCEs: refused by depth, not by stack overflow.
        let mut deep = vec![];
        for _ in 0..100 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(Reader::new(&deep).read("x").is_err());
    }

    #[test]
    fn times_and_oids() {
        let t = Tlv {
            tag: tag::UTC_TIME,
            content: b"270201221215Z",
            raw: &[],
            indefinite: false,
        };
        let secs = time_to_unix(&t).unwrap();
        assert_eq!(format_unix_utc(secs), "2027-02-01 22:12:15+00:00");
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00+00:00");
        // Twelve bytes that are not twelve ASCII digits: an error, not a char-boundary panic.
        let t = Tlv {
            tag: tag::UTC_TIME,
            content: "2\u{e9}0201221215Z".as_bytes(),
            raw: &[],
            indefinite: false,
        };
        assert!(time_to_unix(&t).is_err());
        assert_eq!(
            oid_to_string(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]).as_deref(),
            Some("2.16.840.1.101.3.4.2.1")
        );
    }
}
