//! Reading a field the way protobuf's JSON parser does, which is how Santa reads every server
//! answer (`JsonStringToMessage` with `ignore_unknown_fields`): `null` means the field's default,
//! a number may arrive as a JSON number or as a decimal string, and an integral float such as
//! `100.0` is an integer. Anything else of the wrong type is an error for the whole message, as it
//! is in protobuf.
//!
//! Used as `#[serde(deserialize_with = "lenient::de")]` on scalar, optional and repeated fields;
//! enums carry the same rules in their own `Deserialize` (see `enums.rs`).

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A field type read with protobuf-JSON's leniency.
pub(crate) trait Lenient: Sized {
    /// Reads the value; `null` yields the default.
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// `deserialize_with` entry point for any [`Lenient`] field.
pub(crate) fn de<'de, D: Deserializer<'de>, T: Lenient>(d: D) -> Result<T, D::Error> {
    T::deserialize_lenient(d)
}

/// `skip_serializing_if` for proto3 fields without presence: Santa's JSON printer omits a field
/// that holds its default value (`PrintOptions` left at its defaults).
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An integer type protobuf JSON may carry as a number or a decimal string.
trait ProtoInt: Sized + Default + TryFrom<i64> + TryFrom<u64> {
    const NAME: &'static str;
}
impl ProtoInt for u32 {
    const NAME: &'static str = "uint32";
}
impl ProtoInt for i32 {
    const NAME: &'static str = "int32";
}

struct IntVisitor<T>(PhantomData<T>);

impl<T: ProtoInt> IntVisitor<T> {
    fn range<E: de::Error>(shown: impl fmt::Display) -> E {
        E::custom(format_args!("{shown} is out of range for {}", T::NAME))
    }
}

impl<T: ProtoInt> Visitor<'_> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an {} as a number or a decimal string", T::NAME)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| Self::range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| Self::range(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // protobuf accepts `1e2` or `100.0` for an integer field, but not `1.5`.
        if v.fract() != 0.0 || !v.is_finite() || v.abs() > 9.0e15 {
            return Err(E::custom(format_args!("{v} is not an integer")));
        }
        // Exact: the value is integral and within f64's exactly representable integers.
        #[allow(clippy::cast_possible_truncation)]
        self.visit_i64(v as i64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if let Ok(n) = v.parse::<i64>() {
            return self.visit_i64(n);
        }
        match v.parse::<f64>() {
            Ok(f) => self.visit_f64(f),
            Err(_) => Err(E::invalid_value(de::Unexpected::Str(shorten(v)), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// At most this many bytes of a bad value go into an error message: the value came from a server
/// and the message goes to a log.
const SHOWN_BYTES_MAX: usize = 64;

/// The start of `text`, cut at a character boundary, for an error message.
pub(crate) fn shorten(text: &str) -> &str {
    if text.len() <= SHOWN_BYTES_MAX {
        return text;
    }
    let mut end = SHOWN_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Lenient for u32 {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor::<u32>(PhantomData))
    }
}

impl Lenient for i32 {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor::<i32>(PhantomData))
    }
}

struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a double as a number or a decimal string")
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.parse::<f64>()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(shorten(v)), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }
}

impl Lenient for f64 {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FloatVisitor)
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(E::invalid_value(de::Unexpected::Str(shorten(v)), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

impl Lenient for bool {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoolVisitor)
    }
}

struct StringVisitor;

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

impl Lenient for String {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringVisitor)
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: Lenient> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        T::deserialize_lenient(d).map(Some)
    }
}

/// A field with explicit presence (`optional` in the proto): `null` or absent is "not set".
impl<T: Lenient> Lenient for Option<T> {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(OptionVisitor(PhantomData))
    }
}

/// A repeated field: `null` is the empty list. Elements use their own `Deserialize`.
impl<T: for<'a> Deserialize<'a>> Lenient for Vec<T> {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "de")]
        n: u32,
        #[serde(deserialize_with = "de")]
        i: i32,
        #[serde(deserialize_with = "de")]
        b: bool,
        #[serde(deserialize_with = "de")]
        s: String,
        #[serde(deserialize_with = "de")]
        o: Option<u32>,
        #[serde(deserialize_with = "de")]
        v: Vec<String>,
        #[serde(deserialize_with = "de")]
        f: f64,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn null_is_the_default_everywhere() {
        let p =
            probe(r#"{"n":null,"i":null,"b":null,"s":null,"o":null,"v":null,"f":null}"#).unwrap();
        assert_eq!(p, Probe::default());
    }

    #[test]
    fn numbers_as_strings_and_integral_floats_are_integers() {
        let p = probe(r#"{"n":"100","i":"-3","o":"7","f":"1.5"}"#).unwrap();
        assert_eq!((p.n, p.i, p.o, p.f), (100, -3, Some(7), 1.5));
        assert_eq!(probe(r#"{"n":100.0}"#).unwrap().n, 100);
        assert_eq!(probe(r#"{"n":1e2}"#).unwrap().n, 100);
    }

    #[test]
    fn wrong_types_and_ranges_are_errors_not_panics() {
        for bad in [
            r#"{"n":-1}"#,
            r#"{"n":4294967296}"#,
            r#"{"n":1.5}"#,
            r#"{"n":"x"}"#,
            r#"{"n":1e300}"#,
            r#"{"i":2147483648}"#,
            r#"{"b":1}"#,
            r#"{"s":5}"#,
            r#"{"v":"a"}"#,
            r#"{"v":[1]}"#,
            r#"{"n":{}}"#,
        ] {
            assert!(probe(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn bad_values_in_errors_are_shortened() {
        let long = "9".repeat(10_000) + "x";
        let err = probe(&format!(r#"{{"n":"{long}"}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{err}");
        assert_eq!(shorten("é".repeat(100).as_str()).len(), 64);
    }
}
