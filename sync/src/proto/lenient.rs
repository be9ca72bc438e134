//! Reading a field the way protobuf's JSON parser does, which is how Santa reads every server
//! answer (`JsonStringToMessage` with `ignore_unknown_fields`): `null` means the field's default,
//! a number may arrive as a JSON number or as a decimal string, and an integral float such as
//! `100.0` is an integer. Anything else of the wrong type is an error for the whole message, as it
//! is in protobuf.
//!
//! Used as `#[serde(deserialize_with = "lenient::de")]` on every message field (`proto_message!`
//! in `mod.rs`). Every scalar, and every enum (`enums.rs`, whose own `Deserialize` is this one),
//! is read as one [`Scalar`] first, then by its type's [`FromScalar`]: one visitor for all types,
//! and what each type accepts in one `match`.

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use std::fmt;

/// A field type read with protobuf-JSON's leniency.
pub(crate) trait Lenient: Sized {
    /// Reads the value; `null` yields the default.
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// `deserialize_with` entry point for any [`Lenient`] field.
pub(crate) fn de<'de, D: Deserializer<'de>, T: Lenient>(d: D) -> Result<T, D::Error> {
    T::deserialize_lenient(d)
}

/// `skip_serializing_if` for every field: Santa's JSON printer omits a field that holds its
/// default value (`PrintOptions` left at its defaults), and an `optional` field that is not set
/// (`None`, the default of an `Option`).
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// One JSON scalar as the parser found it, before the field's type reads it: every scalar field
/// and enum reads through this, so the rules of what protobuf accepts live in one place per
/// type ([`FromScalar`]) rather than in one visitor per type.
pub(crate) enum Scalar {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer (`i128` holds both of JSON's: every `i64` and every `u64`).
    Int(i128),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// A string.
    Text(String),
}

impl Scalar {
    /// The error for a scalar of the wrong kind (a string where a bool goes, ...); objects and
    /// arrays are refused before this, by the visitor.
    fn wrong<E: de::Error>(&self, expected: &str) -> E {
        let unexpected = match self {
            Scalar::Null => Unexpected::Unit,
            Scalar::Bool(b) => Unexpected::Bool(*b),
            Scalar::Int(n) => match i64::try_from(*n) {
                Ok(n) => Unexpected::Signed(n),
                // Only a u64 beyond i64 gets here.
                Err(_) => Unexpected::Unsigned(u64::try_from(*n).unwrap_or(u64::MAX)),
            },
            Scalar::Float(v) => Unexpected::Float(*v),
            Scalar::Text(s) => Unexpected::Str(shorten(s)),
        };
        E::invalid_type(unexpected, &expected)
    }

    /// The error for a string that does not hold what the field needs.
    fn bad_text<E: de::Error>(text: &str, expected: &'static str) -> E {
        E::invalid_value(Unexpected::Str(shorten(text)), &expected)
    }

    /// An integral float as an integer: protobuf accepts `1e2` or `100.0` for an integer or an
    /// enum, but not `1.5`. `None` for a fraction or a value that is not finite.
    fn integral(v: f64) -> Option<i64> {
        if v.fract() != 0.0 || !v.is_finite() {
            return None;
        }
        // Saturating; callers bound the value further.
        #[allow(clippy::cast_possible_truncation)]
        Some(v as i64)
    }
}

/// Reads any JSON scalar into a [`Scalar`]; an object or an array is an error naming what the
/// field expected.
struct ScalarVisitor(&'static str);

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
}

/// A type read from one JSON scalar as protobuf's parser reads it.
pub(crate) trait FromScalar: Sized {
    /// What the field takes, for error messages ("an uint32 as a number or a decimal string").
    const EXPECTED: &'static str;

    /// The value for `scalar`; `null` is the type's default.
    fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<Self, E>;
}

impl<T: FromScalar> Lenient for T {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::from_scalar(d.deserialize_any(ScalarVisitor(T::EXPECTED))?)
    }
}

/// An integer type protobuf JSON may carry as a number or a decimal string.
trait ProtoInt: Default + TryFrom<i128> {
    /// The proto type, for errors.
    const NAME: &'static str;
    /// [`FromScalar::EXPECTED`].
    const EXPECTED: &'static str;
}
impl ProtoInt for u32 {
    const NAME: &'static str = "uint32";
    const EXPECTED: &'static str = "an uint32 as a number or a decimal string";
}
impl ProtoInt for i32 {
    const NAME: &'static str = "int32";
    const EXPECTED: &'static str = "an int32 as a number or a decimal string";
}

impl<T: ProtoInt> FromScalar for T {
    const EXPECTED: &'static str = <T as ProtoInt>::EXPECTED;

    fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<T, E> {
        let n = match scalar {
            Scalar::Null => return Ok(T::default()),
            Scalar::Int(n) => n,
            Scalar::Float(v) => float_integer(v)?,
            // A decimal string: an integer, or a float that is one.
            Scalar::Text(s) => match s.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => match s.parse::<f64>() {
                    Ok(v) => float_integer(v)?,
                    Err(_) => return Err(Scalar::bad_text(&s, Self::EXPECTED)),
                },
            },
            other @ Scalar::Bool(_) => return Err(other.wrong(Self::EXPECTED)),
        };
        T::try_from(n).map_err(|_| E::custom(format_args!("{n} is out of range for {}", T::NAME)))
    }
}

/// An integer field's float: integral, and within f64's exactly representable integers.
fn float_integer<E: de::Error>(v: f64) -> Result<i128, E> {
    match Scalar::integral(v) {
        Some(n) if v.abs() <= 9.0e15 => Ok(n.into()),
        _ => Err(E::custom(format_args!("{v} is not an integer"))),
    }
}

impl FromScalar for f64 {
    const EXPECTED: &'static str = "a double as a number or a decimal string";

    fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<f64, E> {
        match scalar {
            Scalar::Null => Ok(0.0),
            // Beyond 2^53 the nearest double.
            #[allow(clippy::cast_precision_loss)]
            Scalar::Int(n) => Ok(n as f64),
            Scalar::Float(v) => Ok(v),
            Scalar::Text(s) => s
                .parse::<f64>()
                .map_err(|_| Scalar::bad_text(&s, Self::EXPECTED)),
            other => Err(other.wrong(Self::EXPECTED)),
        }
    }
}

impl FromScalar for bool {
    const EXPECTED: &'static str = "true or false";

    fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<bool, E> {
        match scalar {
            Scalar::Null => Ok(false),
            Scalar::Bool(b) => Ok(b),
            Scalar::Text(s) => match s.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Scalar::bad_text(&s, Self::EXPECTED)),
            },
            other => Err(other.wrong(Self::EXPECTED)),
        }
    }
}

impl FromScalar for String {
    const EXPECTED: &'static str = "a string";

    fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<String, E> {
        match scalar {
            Scalar::Null => Ok(String::new()),
            Scalar::Text(s) => Ok(s),
            other => Err(other.wrong(Self::EXPECTED)),
        }
    }
}

/// Reads a proto enum (see `enums.rs`): a name (`from_name`) or a number (`from_number`, an
/// integral float too); `null`, and a name or number the proto does not define, are the zero
/// value. `what` names the enum in errors.
pub(crate) fn enum_from_scalar<T: Default, E: de::Error>(
    scalar: Scalar,
    what: &str,
    from_number: fn(i64) -> Option<T>,
    from_name: fn(&str) -> Option<T>,
) -> Result<T, E> {
    let known = match scalar {
        Scalar::Null => None,
        Scalar::Text(name) => from_name(&name),
        // Beyond i64 it names no value of any enum.
        Scalar::Int(n) => i64::try_from(n).ok().and_then(from_number),
        Scalar::Float(v) => match Scalar::integral(v) {
            Some(n) => from_number(n),
            None => return Err(E::custom(format_args!("{v} is not a {what} number"))),
        },
        other @ Scalar::Bool(_) => {
            return Err(other.wrong(&format!("a {what} name or number")));
        }
    };
    Ok(known.unwrap_or_default())
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

/// Serde's own `Deserialize` for a [`Lenient`] type, so `Option` can wrap it.
struct ReadLenient<T>(T);

impl<'de, T: Lenient> Deserialize<'de> for ReadLenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize_lenient(d).map(ReadLenient)
    }
}

/// A field with explicit presence (`optional` in the proto): `null` or absent is "not set".
impl<T: Lenient> Lenient for Option<T> {
    fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<ReadLenient<T>>::deserialize(d)?.map(|read| read.0))
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
