//! Entitlements, from the XML blob (`0xfade7171`) or the DER blob (`0xfade7172`), as JSON.

use serde_json::{Map, Value};

use crate::asn1::{Asn1Error, Reader, tag};

/// `[APPLICATION 16]`, constructed: the DER entitlements envelope.
const DER_ENVELOPE: u8 = 0x70;
/// `[16]`, constructed, context-specific: a dictionary.
const DER_DICT: u8 = 0xb0;
/// Most entries accepted across one DER entitlements blob.
const DER_ENTRY_COUNT_MAX: usize = 10_000;

/// XML entitlements (a plist dictionary) as JSON.
pub fn from_xml(payload: &[u8]) -> Result<Value, crate::plist::PlistError> {
    crate::plist::parse(payload).map(|p| p.to_json())
}

/// DER entitlements as JSON.
pub fn from_der(payload: &[u8]) -> Result<Value, Asn1Error> {
    let mut r = Reader::new(payload);
    let mut env = r.enter(DER_ENVELOPE, "DER entitlements")?;
    env.expect(tag::INTEGER, "DER entitlements version")?;
    let dict = env.expect(DER_DICT, "DER entitlements dictionary")?;
    let mut count = 0;
    value(&dict, env.depth, &mut count)
}

fn value(t: &crate::asn1::Tlv<'_>, depth: u32, count: &mut usize) -> Result<Value, Asn1Error> {
    *count += 1;
    if *count > DER_ENTRY_COUNT_MAX {
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
        tag::UTF8_STRING => Value::String(
            std::str::from_utf8(t.content)
                .map_err(|_| bad("entitlement string"))?
                .to_string(),
        ),
        tag::SEQUENCE => {
            let mut items = Vec::new();
            let mut r = t.children(depth);
            while !r.is_empty() {
                let item = r.read("entitlement array item")?;
                items.push(value(&item, depth + 1, count)?);
            }
            Value::Array(items)
        }
        DER_DICT => {
            let mut map = Map::new();
            let mut r = t.children(depth);
            while !r.is_empty() {
                let mut pair = r.enter(tag::SEQUENCE, "entitlement entry")?;
                let key = pair.expect(tag::UTF8_STRING, "entitlement key")?;
                let key = std::str::from_utf8(key.content).map_err(|_| bad("entitlement key"))?;
                let v = pair.read("entitlement value")?;
                map.insert(key.to_string(), value(&v, depth + 2, count)?);
            }
            Value::Object(map)
        }
        _ => return Err(bad("entitlement value type")),
    })
}
