//! A bounded property-list reader (XML and binary `bplist00`), for `Info.plist`, XML
//! entitlements and the hash-agility attribute of a CMS signature.
//!
//! Only what those need: dictionaries, arrays, strings, integers, reals, booleans, data and
//! dates. Malformed input is a [`PlistError`]. Every decode is bounded three ways, whatever the
//! input claims:
//!
//! - **Output**: the bytes a decode may allocate for the values it builds are capped by
//!   [`decoded_bytes_max`] of the input length, charged before each allocation and at every
//!   visit of an object. A binary plist refers to objects by index, so one object can be
//!   reached from many places: each visit builds (and is charged for) a copy, and a small
//!   input that shares one large string a thousand times is refused with
//!   [`PlistError::DecodedTooLarge`] instead of being expanded.
//! - **Nesting**: at most [`DEPTH_MAX`] levels ([`PlistError::TooDeep`]), so recursion cannot
//!   exhaust the stack.
//! - **Cycles**: a binary container that contains itself, directly or through others, is
//!   [`PlistError::Cycle`], found by checking the (at most [`DEPTH_MAX`]) containers on the
//!   path.

use std::fmt;
use std::mem::size_of;

use serde_json::Value;

use crate::bytes::{BudgetExceeded, OutputBudget};

/// Deepest nesting accepted: real plists nest a handful of levels (an `Info.plist` with
/// document types about 6, entitlements 3, the hash-agility plist 2). 32 leaves room for odd
/// but honest files while keeping the recursion to a few kilobytes of stack.
pub const DEPTH_MAX: usize = 32;
/// Most objects accepted in one plist (the binary trailer's object count, or XML elements):
/// large `Info.plist`s hold a few thousand.
pub const OBJECT_COUNT_MAX: usize = 100_000;
/// Decoded bytes allowed per input byte. In a binary plist every reference costs at least one
/// input byte and fills one value slot of 32 bytes (`size_of::<Plist>()`; a dictionary entry,
/// 56 bytes, costs two references), so an array of shared scalars, the densest honest plist,
/// decodes at 32 bytes per input byte. Only copies of strings or data shared by reference
/// decode beyond that, which is the amplification this bound exists to refuse. XML decodes
/// at under 10 bytes per input byte (an element takes at least 4 input bytes).
pub const DECODED_BYTES_PER_INPUT_BYTE: usize = 32;
/// Decoded bytes allowed on top of the per-byte allowance, so that small plists which share
/// their few strings a lot (a 2 KB `Info.plist`) are never refused: 64 KiB is nothing next to
/// the memory santad runs in, and a hostile file gains no more than that from it.
pub const DECODED_BYTES_BASE: usize = 64 << 10;

/// The most bytes [`parse`] builds from an input of `input_len` bytes.
pub fn decoded_bytes_max(input_len: usize) -> usize {
    input_len
        .saturating_mul(DECODED_BYTES_PER_INPUT_BYTE)
        .saturating_add(DECODED_BYTES_BASE)
}

/// A property-list value.
#[derive(Clone, Debug, PartialEq)]
pub enum Plist {
    /// `<dict>`, in document order.
    Dict(Vec<(String, Plist)>),
    /// `<array>`.
    Array(Vec<Plist>),
    /// `<string>`.
    String(String),
    /// `<integer>`.
    Integer(i64),
    /// `<real>`.
    Real(f64),
    /// `<true/>` or `<false/>`.
    Bool(bool),
    /// `<data>`, decoded.
    Data(Vec<u8>),
    /// `<date>`, as written.
    Date(String),
}

impl Plist {
    /// The value under `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Plist> {
        match self {
            Self::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// As JSON (data becomes lowercase hex, dates stay strings).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Dict(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Self::Array(items) => Value::Array(items.iter().map(Plist::to_json).collect()),
            Self::String(s) | Self::Date(s) => Value::String(s.clone()),
            Self::Integer(i) => Value::from(*i),
            Self::Real(r) => serde_json::Number::from_f64(*r).map_or(Value::Null, Value::Number),
            Self::Bool(b) => Value::Bool(*b),
            Self::Data(d) => Value::String(crate::ids::hex(d)),
        }
    }
}

/// Why a property list could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlistError {
    /// Not XML or binary plist, or a structural error at byte `offset`.
    Malformed {
        /// What was wrong.
        what: &'static str,
        /// Where (byte offset in the input).
        offset: usize,
    },
    /// Nested deeper than [`DEPTH_MAX`].
    TooDeep,
    /// More than [`OBJECT_COUNT_MAX`] objects (declared by the binary trailer, or XML
    /// elements).
    TooManyObjects,
    /// A binary container that contains itself, directly or through other containers.
    Cycle {
        /// Index of the container met again on its own path.
        object: usize,
    },
    /// Decoding would build more than `limit_bytes` (see [`decoded_bytes_max`]): objects
    /// shared by reference would be copied too often, or the input is simply too large.
    DecodedTooLarge {
        /// The output limit for this input.
        limit_bytes: usize,
    },
}

impl From<BudgetExceeded> for PlistError {
    fn from(e: BudgetExceeded) -> Self {
        Self::DecodedTooLarge {
            limit_bytes: e.limit_bytes,
        }
    }
}

impl fmt::Display for PlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { what, offset } => {
                write!(f, "malformed property list at byte {offset}: {what}")
            }
            Self::TooDeep => write!(f, "property list nests deeper than {DEPTH_MAX} levels"),
            Self::TooManyObjects => {
                write!(
                    f,
                    "property list holds more than {OBJECT_COUNT_MAX} objects"
                )
            }
            Self::Cycle { object } => {
                write!(f, "property list object {object} contains itself")
            }
            Self::DecodedTooLarge { limit_bytes } => write!(
                f,
                "property list decodes to more than {limit_bytes} bytes (shared objects copied too often)"
            ),
        }
    }
}

impl std::error::Error for PlistError {}

/// Parses an XML or binary property list, building at most [`decoded_bytes_max`] of its
/// length.
pub fn parse(bytes: &[u8]) -> Result<Plist, PlistError> {
    parse_within(bytes, decoded_bytes_max(bytes.len()))
}

/// Parses an XML or binary property list, building at most `decoded_bytes_max` bytes: for
/// callers that know their plist is small whatever its length (the hash-agility attribute).
pub fn parse_within(bytes: &[u8], decoded_bytes_max: usize) -> Result<Plist, PlistError> {
    let mut budget = OutputBudget::new(decoded_bytes_max);
    // The top value itself.
    budget.charge(size_of::<Plist>())?;
    if bytes.starts_with(b"bplist00") {
        binary::parse(bytes, budget)
    } else {
        let text = std::str::from_utf8(bytes).map_err(|e| PlistError::Malformed {
            what: "not UTF-8",
            offset: e.valid_up_to(),
        })?;
        Xml {
            s: text,
            pos: 0,
            objects: 0,
            budget,
        }
        .document()
    }
}

struct Xml<'a> {
    s: &'a str,
    pos: usize,
    objects: usize,
    budget: OutputBudget,
}

/// Charges a growing `Vec` for the slot its next push may need: 4 slots at the first push
/// (`Vec`'s smallest capacity), then 2 per push (capacity doubles, so it never exceeds twice
/// the length).
fn charge_push<T>(budget: &mut OutputBudget, len: usize) -> Result<(), PlistError> {
    let slots = if len == 0 { 4 } else { 2 };
    Ok(budget.charge_items(slots, size_of::<T>())?)
}

impl<'a> Xml<'a> {
    fn err(&self, what: &'static str) -> PlistError {
        PlistError::Malformed {
            what,
            offset: self.pos,
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    /// Skips whitespace, `<?...?>`, `<!DOCTYPE ...>` and comments.
    fn skip_misc(&mut self) -> Result<(), PlistError> {
        loop {
            self.skip_ws();
            let r = self.rest();
            let end = if r.starts_with("<?") {
                r.find("?>").map(|i| i + 2)
            } else if r.starts_with("<!--") {
                r.find("-->").map(|i| i + 3)
            } else if r.starts_with("<!") {
                r.find('>').map(|i| i + 1)
            } else {
                return Ok(());
            };
            self.pos += end.ok_or_else(|| self.err("unterminated markup"))?;
        }
    }

    /// Reads `<name attrs>` or `<name/>`; returns the name and whether it was self-closing.
    fn open_tag(&mut self) -> Result<(&'a str, bool), PlistError> {
        self.skip_misc()?;
        let r = self.rest();
        if !r.starts_with('<') || r.starts_with("</") {
            return Err(self.err("expected an element"));
        }
        let close = r.find('>').ok_or_else(|| self.err("unterminated tag"))?;
        let inner = &r[1..close];
        self.pos += close + 1;
        let (inner, empty) = match inner.strip_suffix('/') {
            Some(i) => (i, true),
            None => (inner, false),
        };
        let name = inner.split_whitespace().next().unwrap_or("");
        Ok((name, empty))
    }

    fn close_tag(&mut self, name: &str) -> Result<(), PlistError> {
        self.skip_misc()?;
        let r = self.rest();
        // `strip_prefix` rather than byte indexing: the text after `</` may be multi-byte.
        let after = r
            .strip_prefix("</")
            .and_then(|t| t.strip_prefix(name))
            .map(str::trim_start)
            .filter(|t| t.starts_with('>'));
        match after {
            Some(t) => {
                self.pos += r.len() - t.len() + 1;
                Ok(())
            }
            None => Err(self.err("expected a closing tag")),
        }
    }

    /// Text up to the next `<`, entities decoded.
    fn text(&mut self) -> Result<String, PlistError> {
        let r = self.rest();
        let end = r.find('<').ok_or_else(|| self.err("unterminated text"))?;
        let raw = &r[..end];
        // Entities only shrink text, so the raw length covers the decoded string.
        self.budget.charge(raw.len())?;
        let out = unescape(raw).ok_or_else(|| self.err("bad entity"))?;
        self.pos += end;
        Ok(out)
    }

    /// The children of a container element up to its close tag (none for `<tag/>`), each
    /// charged to the output budget before it is read.
    fn children<T>(
        &mut self,
        tag: &str,
        empty: bool,
        mut child: impl FnMut(&mut Self) -> Result<T, PlistError>,
    ) -> Result<Vec<T>, PlistError> {
        let mut out = Vec::new();
        if !empty {
            loop {
                self.skip_misc()?;
                if self.rest().starts_with("</") {
                    break;
                }
                charge_push::<T>(&mut self.budget, out.len())?;
                out.push(child(self)?);
            }
            self.close_tag(tag)?;
        }
        Ok(out)
    }

    fn document(mut self) -> Result<Plist, PlistError> {
        let (name, empty) = self.open_tag()?;
        if name != "plist" || empty {
            return Err(self.err("expected <plist>"));
        }
        let v = self.value(0)?;
        self.close_tag("plist")?;
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Plist, PlistError> {
        if depth > DEPTH_MAX {
            return Err(PlistError::TooDeep);
        }
        self.objects += 1;
        if self.objects > OBJECT_COUNT_MAX {
            return Err(PlistError::TooManyObjects);
        }
        let (name, empty) = self.open_tag()?;
        let leaf_text = |x: &mut Self| -> Result<String, PlistError> {
            if empty {
                return Ok(String::new());
            }
            let t = x.text()?;
            x.close_tag(name)?;
            Ok(t)
        };
        match name {
            "true" | "false" => {
                if !empty {
                    self.close_tag(name)?;
                }
                Ok(Plist::Bool(name == "true"))
            }
            "string" => Ok(Plist::String(leaf_text(self)?)),
            "date" => Ok(Plist::Date(leaf_text(self)?)),
            "integer" => {
                let t = leaf_text(self)?;
                let t = t.trim();
                let v = match t.strip_prefix("0x") {
                    Some(h) => i64::from_str_radix(h, 16).ok(),
                    None => t.parse().ok(),
                };
                v.map(Plist::Integer).ok_or_else(|| self.err("bad integer"))
            }
            "real" => leaf_text(self)?
                .trim()
                .parse()
                .map(Plist::Real)
                .map_err(|_| self.err("bad real")),
            "data" => {
                let t = leaf_text(self)?;
                self.budget.charge(t.len() / 4 * 3 + 3)?;
                base64_decode(&t)
                    .map(Plist::Data)
                    .ok_or_else(|| self.err("bad base64"))
            }
            "array" => {
                let items = self.children("array", empty, |p| p.value(depth + 1))?;
                Ok(Plist::Array(items))
            }
            "dict" => {
                let entries = self.children("dict", empty, |p| {
                    let (k, k_empty) = p.open_tag()?;
                    if k != "key" {
                        return Err(p.err("expected <key>"));
                    }
                    let key = if k_empty {
                        String::new()
                    } else {
                        let t = p.text()?;
                        p.close_tag("key")?;
                        t
                    };
                    Ok((key, p.value(depth + 1)?))
                })?;
                Ok(Plist::Dict(entries))
            }
            _ => Err(self.err("unknown element")),
        }
    }
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('&') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let semi = after.find(';')?;
        let ent = &after[..semi];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()?
                } else {
                    ent.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Standard base64 (whitespace ignored, padding optional).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

mod binary {
    //! `bplist00`: a trailer at the end locates an offset table; objects refer to each other by
    //! index. Every index and offset is checked; every visit of an object is charged to the
    //! output budget (an object reached through several references is built, and paid for,
    //! once per reference); containers already on the path are refused as a cycle.

    use std::mem::size_of;

    use super::{DEPTH_MAX, OBJECT_COUNT_MAX, Plist, PlistError};
    use crate::bytes::{OutputBudget, be_u64, slice_at};

    /// Seconds from the Unix epoch to the binary plist epoch, 2001-01-01T00:00:00Z.
    const PLIST_EPOCH_UNIX: i64 = 978_307_200;
    /// Dates further than this from 2001 (about ±3000 years) are refused rather than formatted:
    /// no honest plist holds one, and it keeps the arithmetic far from overflow.
    const DATE_SECONDS_MAX: f64 = 1e11;
    /// Bytes charged for a formatted date: the 20-byte string and the scratch string it is
    /// cut from.
    const DATE_DECODED_BYTES: usize = 64;

    struct Doc<'a> {
        bytes: &'a [u8],
        offsets: &'a [u8],
        offset_size: usize,
        ref_size: usize,
        count: usize,
        budget: OutputBudget,
        /// Indices of the containers being decoded, outermost first: at most `DEPTH_MAX + 1`.
        path: Vec<usize>,
    }

    fn be_uint(b: &[u8]) -> u64 {
        b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    }

    fn bad(what: &'static str, offset: usize) -> PlistError {
        PlistError::Malformed { what, offset }
    }

    pub(super) fn parse(bytes: &[u8], budget: OutputBudget) -> Result<Plist, PlistError> {
        let t = bytes
            .len()
            .checked_sub(32)
            .filter(|&t| t >= 8)
            .ok_or(bad("no trailer", 0))?;
        let offset_size = usize::from(bytes[t + 6]);
        let ref_size = usize::from(bytes[t + 7]);
        let count = be_u64(bytes, t + 8).ok_or(bad("trailer", t))?;
        let top = be_u64(bytes, t + 16).ok_or(bad("trailer", t))?;
        let table = be_u64(bytes, t + 24).ok_or(bad("trailer", t))?;
        if !(1..=8).contains(&offset_size) || !(1..=8).contains(&ref_size) {
            return Err(bad("bad trailer sizes", t));
        }
        let count = usize::try_from(count)
            .ok()
            .filter(|&c| c <= OBJECT_COUNT_MAX)
            .ok_or(PlistError::TooManyObjects)?;
        let table = usize::try_from(table).map_err(|_| bad("offset table", t))?;
        let offsets = count
            .checked_mul(offset_size)
            .and_then(|len| slice_at(bytes, table, len))
            .ok_or(bad("offset table", t))?;
        let top = usize::try_from(top)
            .ok()
            .filter(|&i| i < count)
            .ok_or(bad("top object", t))?;
        let mut doc = Doc {
            bytes,
            offsets,
            offset_size,
            ref_size,
            count,
            budget,
            path: Vec::with_capacity(DEPTH_MAX + 1),
        };
        doc.object(top, 0)
    }

    impl Doc<'_> {
        /// Where object `index` starts.
        fn offset_of(&self, index: usize) -> Result<usize, PlistError> {
            if index >= self.count {
                return Err(bad("object reference out of range", index));
            }
            // `index < count` and the table holds `count * offset_size` bytes.
            let at = index * self.offset_size;
            let entry = slice_at(self.offsets, at, self.offset_size).ok_or(bad("offset", at))?;
            usize::try_from(be_uint(entry)).map_err(|_| bad("object offset", at))
        }

        /// A length: the marker's low nibble, or (when it is 15) the integer object after it.
        fn length(&self, low: usize, pos: &mut usize) -> Result<usize, PlistError> {
            if low != 0xf {
                return Ok(low);
            }
            let m = *self.bytes.get(*pos).ok_or(bad("length", *pos))?;
            // A length is an integer of 1, 2, 4 or 8 bytes.
            if m >> 4 != 1 || m & 0xf > 3 {
                return Err(bad("length marker", *pos));
            }
            let n = 1usize << (m & 0xf);
            let v = slice_at(self.bytes, *pos + 1, n).ok_or(bad("length", *pos))?;
            *pos += 1 + n;
            usize::try_from(be_uint(v)).map_err(|_| bad("length", *pos))
        }

        fn object(&mut self, index: usize, depth: usize) -> Result<Plist, PlistError> {
            if depth > DEPTH_MAX {
                return Err(PlistError::TooDeep);
            }
            let off = self.offset_of(index)?;
            let marker = *self.bytes.get(off).ok_or(bad("object offset", off))?;
            let (kind, low) = (marker >> 4, usize::from(marker & 0xf));
            let mut pos = off + 1;
            match kind {
                0x0 => match marker {
                    0x08 => Ok(Plist::Bool(false)),
                    0x09 => Ok(Plist::Bool(true)),
                    _ => Err(bad("unsupported simple object", off)),
                },
                0x1 => {
                    // 1, 2, 4 and 8-byte integers; 16-byte ones carry the value in their low
                    // 8 bytes.
                    if low > 4 {
                        return Err(bad("integer size", off));
                    }
                    let v = slice_at(self.bytes, pos, 1 << low).ok_or(bad("integer", pos))?;
                    Ok(Plist::Integer(be_uint(v) as i64))
                }
                0x2 => real(self.bytes, low, pos)
                    .map(Plist::Real)
                    .ok_or(bad("real", pos)),
                0x3 => {
                    let secs = real(self.bytes, low, pos)
                        .filter(|s| s.abs() < DATE_SECONDS_MAX)
                        .ok_or(bad("date", pos))?;
                    self.budget.charge(DATE_DECODED_BYTES)?;
                    // Whole seconds, as XML plists write them.
                    let t = crate::asn1::format_unix_utc(secs.floor() as i64 + PLIST_EPOCH_UNIX);
                    // `YYYY-MM-DD HH:MM:SS+00:00` to `YYYY-MM-DDTHH:MM:SSZ`.
                    let iso = t
                        .get(..10)
                        .zip(t.get(11..19))
                        .map(|(d, h)| format!("{d}T{h}Z"))
                        .ok_or(bad("date", pos))?;
                    Ok(Plist::Date(iso))
                }
                0x4 => {
                    let n = self.length(low, &mut pos)?;
                    let v = slice_at(self.bytes, pos, n).ok_or(bad("data", pos))?;
                    self.budget.charge(v.len())?;
                    Ok(Plist::Data(v.to_vec()))
                }
                0x5 => {
                    let n = self.length(low, &mut pos)?;
                    let v = slice_at(self.bytes, pos, n).ok_or(bad("ascii string", pos))?;
                    // Non-ASCII bytes become U+FFFD (3 bytes each run): size the result first.
                    let len: usize = v
                        .utf8_chunks()
                        .map(|c| c.valid().len() + if c.invalid().is_empty() { 0 } else { 3 })
                        .sum();
                    self.budget.charge(len)?;
                    let mut s = String::with_capacity(len);
                    for c in v.utf8_chunks() {
                        s.push_str(c.valid());
                        if !c.invalid().is_empty() {
                            s.push(char::REPLACEMENT_CHARACTER);
                        }
                    }
                    Ok(Plist::String(s))
                }
                0x6 => {
                    let n = self.length(low, &mut pos)?;
                    let v = n
                        .checked_mul(2)
                        .and_then(|len| slice_at(self.bytes, pos, len))
                        .ok_or(bad("utf-16 string", pos))?;
                    let units = || {
                        char::decode_utf16(
                            v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])),
                        )
                        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    };
                    let len: usize = units().map(char::len_utf8).sum();
                    self.budget.charge(len)?;
                    let mut s = String::with_capacity(len);
                    s.extend(units());
                    Ok(Plist::String(s))
                }
                0xa | 0xd => {
                    if self.path.contains(&index) {
                        return Err(PlistError::Cycle { object: index });
                    }
                    let n = self.length(low, &mut pos)?;
                    let per_entry = if kind == 0xd { 2 } else { 1 };
                    let refs = n
                        .checked_mul(per_entry)
                        .and_then(|r| r.checked_mul(self.ref_size))
                        .and_then(|len| slice_at(self.bytes, pos, len))
                        .ok_or(bad("object refs", pos))?;
                    self.path.push(index);
                    let v = if kind == 0xa {
                        self.array(refs, n, depth)
                    } else {
                        self.dict(refs, n, depth, pos)
                    };
                    self.path.pop();
                    v
                }
                _ => Err(bad("unsupported object", off)),
            }
        }

        /// Reference `i` of a container's list.
        fn reference(&self, refs: &[u8], i: usize) -> usize {
            let rs = self.ref_size;
            // The caller sized `refs` for every index it asks for; an index too large for
            // `usize` is out of range like any other.
            refs.get(i * rs..(i + 1) * rs)
                .and_then(|r| usize::try_from(be_uint(r)).ok())
                .unwrap_or(usize::MAX)
        }

        fn array(&mut self, refs: &[u8], n: usize, depth: usize) -> Result<Plist, PlistError> {
            self.budget.charge_items(n, size_of::<Plist>())?;
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                items.push(self.object(self.reference(refs, i), depth + 1)?);
            }
            Ok(Plist::Array(items))
        }

        fn dict(
            &mut self,
            refs: &[u8],
            n: usize,
            depth: usize,
            pos: usize,
        ) -> Result<Plist, PlistError> {
            self.budget.charge_items(n, size_of::<(String, Plist)>())?;
            let mut entries = Vec::with_capacity(n);
            for i in 0..n {
                let key = match self.object(self.reference(refs, i), depth + 1)? {
                    Plist::String(s) => s,
                    _ => return Err(bad("non-string key", pos)),
                };
                let value = self.object(self.reference(refs, n + i), depth + 1)?;
                entries.push((key, value));
            }
            Ok(Plist::Dict(entries))
        }
    }

    /// A 4- or 8-byte big-endian float at `pos` (marker low nibble 2 or 3).
    fn real(bytes: &[u8], low: usize, pos: usize) -> Option<f64> {
        match low {
            2 => slice_at(bytes, pos, 4)
                .and_then(|b| b.try_into().ok())
                .map(|b| f64::from(f32::from_be_bytes(b))),
            3 => slice_at(bytes, pos, 8)
                .and_then(|b| b.try_into().ok())
                .map(f64::from_be_bytes),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_dict_with_entities_and_data() {
        let x = br#"<?xml version="1.0"?><!DOCTYPE plist><plist version="1.0"><dict>
            <key>a&amp;b</key><string>x &lt;y&gt;</string>
            <key>n</key><integer>-4</integer><key>t</key><true/>
            <key>d</key><data>AAEC
            /w==</data><key>arr</key><array><string/><false/></array>
            </dict></plist>"#;
        let p = parse(x).unwrap();
        assert_eq!(p.get("a&b").and_then(Plist::as_str), Some("x <y>"));
        assert_eq!(p.get("n"), Some(&Plist::Integer(-4)));
        assert_eq!(p.get("t"), Some(&Plist::Bool(true)));
        assert_eq!(p.get("d"), Some(&Plist::Data(vec![0, 1, 2, 255])));
        assert_eq!(
            p.get("arr"),
            Some(&Plist::Array(vec![
                Plist::String(String::new()),
                Plist::Bool(false)
            ]))
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        for bad in [
            &b"<plist><dict><key>a</key></dict></plist>"[..],
            b"<plist><string>x</plist>",
            b"<plist><dict><string>k</string></dict></plist>",
            b"\xff\xfe",
            b"",
            "<plist><string>x</\u{e9}\u{e9}></plist>".as_bytes(),
            "<plist><array></\u{1F600}".as_bytes(),
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("<plist>{}</plist>", "<array>".repeat(100));
        assert_eq!(parse(deep.as_bytes()), Err(PlistError::TooDeep));
    }

    #[test]
    fn binary_dict() {
        // {"CFBundleIdentifier": "com.x"} written by hand: objects 0 dict, 1 key, 2 value.
        let mut b = b"bplist00".to_vec();
        let o0 = b.len();
        b.extend_from_slice(&[0xd1, 0x01, 0x02]);
        let o1 = b.len();
        b.push(0x5f);
        b.extend_from_slice(&[0x10, 18]);
        b.extend_from_slice(b"CFBundleIdentifier");
        let o2 = b.len();
        b.push(0x55);
        b.extend_from_slice(b"com.x");
        let table = b.len();
        b.extend_from_slice(&[o0 as u8, o1 as u8, o2 as u8]);
        santa_testkit::BplistTrailer::new(1, 1, 3, table).push(&mut b);
        let p = parse(&b).unwrap();
        assert_eq!(
            p.get("CFBundleIdentifier").and_then(Plist::as_str),
            Some("com.x")
        );
        // A dict whose value refers back to itself is a cycle, not a deep recursion.
        b[o0 + 2] = 0;
        assert_eq!(parse(&b), Err(PlistError::Cycle { object: 0 }));
    }
}
