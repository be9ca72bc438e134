//! Entitlements, from the XML blob (`0xfade7171`) or the DER blob (`0xfade7172`), as JSON.
//!
//! Only `santactl fileinfo` decodes them: santad's exec path does not, as no rule type uses
//! them (see [`crate::verify::Detail`]). Both decoders are bounded by their input: XML goes
//! through the plist decoder's output budget ([`crate::plist::decoded_bytes_max`]); DER has
//! no references, but a dictionary costs a whole B-tree node for its first entry, so the
//! values built from DER are charged to a budget of their own ([`der_decoded_bytes_max`]).

use std::mem::size_of;

use serde_json::{Map, Value};

use crate::asn1::{Asn1Error, Reader, Tlv, tag};
use crate::bytes::OutputBudget;

/// `[APPLICATION 16]`, constructed: the DER entitlements envelope.
const DER_ENVELOPE: u8 = 0x70;
/// `[16]`, constructed, context-specific: a dictionary.
const DER_DICT: u8 = 0xb0;
/// Most entries accepted across one DER entitlements blob: real ones hold a few dozen.
const DER_ENTRY_COUNT_MAX: usize = 10_000;
/// Decoded bytes allowed per DER input byte. The densest honest shape, a dictionary of
/// one-entry dictionaries, takes 13 input bytes per entry and one B-tree node (about 630
/// bytes) plus an entry (about 160) for each: about 61 bytes per input byte. Anything denser
/// is refused before it is built.
pub const DER_DECODED_BYTES_PER_INPUT_BYTE: usize = 64;
/// Decoded bytes allowed on top of the per-byte allowance: nested one-entry dictionaries cost
/// a node per 6 input bytes, but the ASN.1 depth cap stops them at about two dozen levels
/// (15 KiB); 64 KiB covers that and any small blob.
pub const DER_DECODED_BYTES_BASE: usize = 64 << 10;
/// Heap of one `serde_json::Map` node (a `BTreeMap` leaf: 11 keys, 11 values, parent link and
/// lengths), charged when a dictionary gets its first entry.
const MAP_NODE_BYTES: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16;
/// Heap charged per dictionary entry beyond its key's bytes: B-tree nodes stay at least about
/// 5 entries full and internal nodes add one node per 6 children, so a quarter of a node per
/// entry covers both.
const MAP_ENTRY_BYTES: usize = MAP_NODE_BYTES / 4;

/// The most bytes [`from_der`] builds from a blob of `input_len` bytes.
pub fn der_decoded_bytes_max(input_len: usize) -> usize {
    input_len
        .saturating_mul(DER_DECODED_BYTES_PER_INPUT_BYTE)
        .saturating_add(DER_DECODED_BYTES_BASE)
}

/// XML entitlements (a plist dictionary) as JSON.
pub fn from_xml(payload: &[u8]) -> Result<Value, crate::plist::PlistError> {
    crate::plist::parse(payload).map(|p| p.to_json())
}

/// DER entitlements as JSON, building at most [`der_decoded_bytes_max`] of the blob's length.
pub fn from_der(payload: &[u8]) -> Result<Value, Asn1Error> {
    let mut r = Reader::new(payload);
    let mut env = r.enter(DER_ENVELOPE, "DER entitlements")?;
    env.expect(tag::INTEGER, "DER entitlements version")?;
    let dict = env.expect(DER_DICT, "DER entitlements dictionary")?;
    let mut der = Der {
        count: 0,
        budget: OutputBudget::new(der_decoded_bytes_max(payload.len())),
    };
    der.value(&dict, env.depth)
}

struct Der {
    count: usize,
    budget: OutputBudget,
}

impl Der {
    fn value(&mut self, t: &Tlv<'_>, depth: u32) -> Result<Value, Asn1Error> {
        self.count += 1;
        if self.count > DER_ENTRY_COUNT_MAX {
            return Err(Asn1Error::BadValue {
                what: "too many entitlements",
            });
        }
        let bad = |what| Asn1Error::BadValue { what };
        Ok(match t.tag {
            tag::BOOLEAN => match t.content {
                [0] => Value::Bool(false),
                [_] => Value::Bool(true),
                _ => return Err(bad("entitlement boolean")),
            },
            tag::INTEGER => {
                if t.content.is_empty() || t.content.len() > 8 {
                    return Err(bad("entitlement integer"));
                }
                let neg = t.content[0] & 0x80 != 0;
                let mut v: i64 = if neg { -1 } else { 0 };
                for &b in t.content {
                    v = (v << 8) | i64::from(b);
                }
                Value::from(v)
            }
            tag::UTF8_STRING => {
                let text = std::str::from_utf8(t.content).map_err(|_| bad("entitlement string"))?;
                self.budget.charge(text.len())?;
                Value::String(text.to_string())
            }
            tag::SEQUENCE => {
                let mut items = Vec::new();
                let mut r = t.children(depth);
                while !r.is_empty() {
                    let item = r.read("entitlement array item")?;
                    // `Vec` doubles: 4 slots at the first push, then at most 2 per push.
                    let slots = if items.is_empty() { 4 } else { 2 };
                    self.budget.charge_items(slots, size_of::<Value>())?;
                    items.push(self.value(&item, depth + 1)?);
                }
                Value::Array(items)
            }
            DER_DICT => {
                let mut map = Map::new();
                let mut r = t.children(depth);
                while !r.is_empty() {
                    let mut pair = r.enter(tag::SEQUENCE, "entitlement entry")?;
                    let key = pair.expect(tag::UTF8_STRING, "entitlement key")?;
                    let key =
                        std::str::from_utf8(key.content).map_err(|_| bad("entitlement key"))?;
                    let v = pair.read("entitlement value")?;
                    let node = if map.is_empty() { MAP_NODE_BYTES } else { 0 };
                    self.budget.charge(node + MAP_ENTRY_BYTES + key.len())?;
                    let v = self.value(&v, depth + 2)?;
                    map.insert(key.to_string(), v);
                }
                Value::Object(map)
            }
            _ => return Err(bad("entitlement value type")),
        })
    }
}
