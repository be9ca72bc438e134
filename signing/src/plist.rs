//! A bounded property-list reader (XML and binary `bplist00`), for `Info.plist`, XML
//! entitlements and the hash-agility attribute of a CMS signature.
//!
//! Only what those need: dictionaries, arrays, strings, integers, reals, booleans, data and
//! dates. Depth and object counts are capped; malformed input is a [`PlistError`].

use std::fmt;

use serde_json::Value;

/// Deepest nesting accepted (real plists nest a handful of levels).
const DEPTH_MAX: usize = 32;
/// Most objects accepted in one plist: large Info.plists hold a few thousand.
const OBJECT_COUNT_MAX: usize = 100_000;

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
    /// Deeper than the nesting cap, or more objects than the object cap.
    TooLarge,
}

impl fmt::Display for PlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { what, offset } => {
                write!(f, "malformed property list at byte {offset}: {what}")
            }
            Self::TooLarge => write!(f, "property list nests or holds too much"),
        }
    }
}

impl std::error::Error for PlistError {}

/// Parses an XML or binary property list.
pub fn parse(bytes: &[u8]) -> Result<Plist, PlistError> {
    if bytes.starts_with(b"bplist00") {
        binary::parse(bytes)
    } else {
        let text = std::str::from_utf8(bytes).map_err(|e| PlistError::Malformed {
            what: "not UTF-8",
            offset: e.valid_up_to(),
        })?;
        Xml {
            s: text,
            pos: 0,
            objects: 0,
        }
        .document()
    }
}

struct Xml<'a> {
    s: &'a str,
    pos: usize,
    objects: usize,
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
        let out = unescape(raw).ok_or_else(|| self.err("bad entity"))?;
        self.pos += end;
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
            return Err(PlistError::TooLarge);
        }
        self.objects += 1;
        if self.objects > OBJECT_COUNT_MAX {
            return Err(PlistError::TooLarge);
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
                base64_decode(&t)
                    .map(Plist::Data)
                    .ok_or_else(|| self.err("bad base64"))
            }
            "array" => {
                let mut items = Vec::new();
                if !empty {
                    loop {
                        self.skip_misc()?;
                        if self.rest().starts_with("</") {
                            break;
                        }
                        items.push(self.value(depth + 1)?);
                    }
                    self.close_tag("array")?;
                }
                Ok(Plist::Array(items))
            }
            "dict" => {
                let mut entries = Vec::new();
                if !empty {
                    loop {
                        self.skip_misc()?;
                        if self.rest().starts_with("</") {
                            break;
                        }
                        let (k, k_empty) = self.open_tag()?;
                        if k != "key" {
                            return Err(self.err("expected <key>"));
                        }
                        let key = if k_empty {
                            String::new()
                        } else {
                            let t = self.text()?;
                            self.close_tag("key")?;
                            t
                        };
                        let v = self.value(depth + 1)?;
                        entries.push((key, v));
                    }
                    self.close_tag("dict")?;
                }
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
    //! index. Every index and offset is checked, and objects already on the path are refused
    //! (a cycle would otherwise recurse forever).

    use super::{DEPTH_MAX, OBJECT_COUNT_MAX, Plist, PlistError};
    use crate::bytes::{be_u64, slice_at};

    struct Doc<'a> {
        bytes: &'a [u8],
        offsets: &'a [u8],
        offset_size: usize,
        ref_size: usize,
        count: usize,
        visited: usize,
    }

    fn be_uint(b: &[u8]) -> u64 {
        b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    }

    fn bad(what: &'static str, offset: usize) -> PlistError {
        PlistError::Malformed { what, offset }
    }

    pub(super) fn parse(bytes: &[u8]) -> Result<Plist, PlistError> {
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
        let count = usize::try_from(count).map_err(|_| PlistError::TooLarge)?;
        if count > OBJECT_COUNT_MAX {
            return Err(PlistError::TooLarge);
        }
        let table = usize::try_from(table).map_err(|_| bad("offset table", t))?;
        let offsets = slice_at(bytes, table, count * offset_size).ok_or(bad("offset table", t))?;
        let mut doc = Doc {
            bytes,
            offsets,
            offset_size,
            ref_size,
            count,
            visited: 0,
        };
        let top = usize::try_from(top).map_err(|_| bad("top object", t))?;
        doc.object(top, 0)
    }

    impl Doc<'_> {
        fn object(&mut self, index: usize, depth: usize) -> Result<Plist, PlistError> {
            if depth > DEPTH_MAX {
                return Err(PlistError::TooLarge);
            }
            self.visited += 1;
            if self.visited > OBJECT_COUNT_MAX || index >= self.count {
                return Err(PlistError::TooLarge);
            }
            let at = index * self.offset_size;
            let off = be_uint(&self.offsets[at..at + self.offset_size]);
            let off = usize::try_from(off).map_err(|_| bad("object offset", at))?;
            let marker = *self.bytes.get(off).ok_or(bad("object offset", off))?;
            let (kind, low) = (marker >> 4, usize::from(marker & 0xf));
            let mut pos = off + 1;
            // Lengths of 15 or more follow as an integer object.
            let length = |pos: &mut usize| -> Result<usize, PlistError> {
                if low != 0xf {
                    return Ok(low);
                }
                let m = *self.bytes.get(*pos).ok_or(bad("length", *pos))?;
                if m >> 4 != 1 {
                    return Err(bad("length marker", *pos));
                }
                let n = 1usize << (m & 0xf);
                let v = slice_at(self.bytes, *pos + 1, n).ok_or(bad("length", *pos))?;
                *pos += 1 + n;
                usize::try_from(be_uint(v)).map_err(|_| bad("length", *pos))
            };
            match kind {
                0x0 => match marker {
                    0x08 => Ok(Plist::Bool(false)),
                    0x09 => Ok(Plist::Bool(true)),
                    _ => Err(bad("unsupported simple object", off)),
                },
                0x1 => {
                    let n = 1usize << low;
                    let v = slice_at(self.bytes, pos, n).ok_or(bad("integer", pos))?;
                    Ok(Plist::Integer(be_uint(v) as i64))
                }
                0x2 => {
                    let v = match low {
                        2 => slice_at(self.bytes, pos, 4)
                            .and_then(|b| b.try_into().ok())
                            .map(|b| f64::from(f32::from_be_bytes(b))),
                        3 => slice_at(self.bytes, pos, 8)
                            .and_then(|b| b.try_into().ok())
                            .map(f64::from_be_bytes),
                        _ => None,
                    };
                    v.map(Plist::Real).ok_or(bad("real", pos))
                }
                0x4 => {
                    let n = length(&mut pos)?;
                    let v = slice_at(self.bytes, pos, n).ok_or(bad("data", pos))?;
                    Ok(Plist::Data(v.to_vec()))
                }
                0x5 => {
                    let n = length(&mut pos)?;
                    let v = slice_at(self.bytes, pos, n).ok_or(bad("ascii string", pos))?;
                    Ok(Plist::String(String::from_utf8_lossy(v).into_owned()))
                }
                0x6 => {
                    let n = length(&mut pos)?;
                    let v = slice_at(
                        self.bytes,
                        pos,
                        n.checked_mul(2).ok_or(PlistError::TooLarge)?,
                    )
                    .ok_or(bad("utf-16 string", pos))?;
                    let units: Vec<u16> = v
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    Ok(Plist::String(String::from_utf16_lossy(&units)))
                }
                0xa | 0xd => {
                    let n = length(&mut pos)?;
                    let pairs = if kind == 0xd { 2 } else { 1 };
                    let total = n.checked_mul(pairs).ok_or(PlistError::TooLarge)?;
                    if total > self.count {
                        return Err(PlistError::TooLarge);
                    }
                    let refs = slice_at(self.bytes, pos, total * self.ref_size)
                        .ok_or(bad("object refs", pos))?;
                    let rs = self.ref_size;
                    let idx = |i: usize| {
                        usize::try_from(be_uint(&refs[i * rs..(i + 1) * rs])).unwrap_or(usize::MAX)
                    };
                    if kind == 0xa {
                        let mut items = Vec::with_capacity(n);
                        for i in 0..n {
                            items.push(self.object(idx(i), depth + 1)?);
                        }
                        Ok(Plist::Array(items))
                    } else {
                        let mut entries = Vec::with_capacity(n);
                        for i in 0..n {
                            let key = match self.object(idx(i), depth + 1)? {
                                Plist::String(s) => s,
                                _ => return Err(bad("non-string key", pos)),
                            };
                            entries.push((key, self.object(idx(n + i), depth + 1)?));
                        }
                        Ok(Plist::Dict(entries))
                    }
                }
                _ => Err(bad("unsupported object", off)),
            }
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
        assert_eq!(parse(deep.as_bytes()), Err(PlistError::TooLarge));
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
        let mut trailer = [0u8; 32];
        trailer[6] = 1;
        trailer[7] = 1;
        trailer[8..16].copy_from_slice(&3u64.to_be_bytes());
        trailer[24..32].copy_from_slice(&(table as u64).to_be_bytes());
        b.extend_from_slice(&trailer);
        let p = parse(&b).unwrap();
        assert_eq!(
            p.get("CFBundleIdentifier").and_then(Plist::as_str),
            Some("com.x")
        );
        // A dict whose value refers back to itself is cut by the depth cap.
        b[o0 + 2] = 0;
        assert!(parse(&b).is_err());
    }
}
