//! X.509 certificates as they appear in a code signature: identity (SHA-256, SHA-1, names,
//! validity), the issuer link, the public key and the signature, verified with `ring`.

use std::fmt;

use serde::Serialize;

use crate::asn1::{self, Asn1Error, Reader, tag};
use crate::ids::{Sha1, Sha256};

/// At most this many extensions are looked at per certificate (Apple's carry about ten).
const EXTENSION_COUNT_MAX: usize = 64;
/// At most this many attributes per name (real names have under ten).
const NAME_ATTRIBUTE_COUNT_MAX: usize = 64;

pub(crate) mod oid {
    //! DER content octets of the object identifiers used here.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    pub const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    pub const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
    /// `anyExtendedKeyUsage`.
    pub const ANY_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
    /// `id-kp-codeSigning`.
    pub const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
    /// Apple's marker extension for Developer ID Application leaf certificates.
    pub const APPLE_DEVELOPER_ID_APPLICATION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x06, 0x01, 0x0d];
    /// Mac App Store application signing.
    pub const APPLE_MAC_APP_STORE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x06, 0x01, 0x09];
    /// iOS App Store application signing (iOS apps on Apple silicon).
    pub const APPLE_IOS_APP_STORE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x06, 0x01, 0x03];
    /// Apple's own software signing (platform binaries).
    pub const APPLE_SOFTWARE_SIGNING: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x06, 0x16];
}

/// A digest algorithm named in a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DigestAlgorithm {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    pub(crate) fn from_oid(o: &[u8]) -> Option<Self> {
        match o {
            oid::SHA1 => Some(Self::Sha1),
            oid::SHA256 => Some(Self::Sha256),
            oid::SHA384 => Some(Self::Sha384),
            oid::SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub(crate) fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    /// Digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        ring::digest::digest(self.ring(), bytes).as_ref().to_vec()
    }
}

/// The public key of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// RSA: the `RSAPublicKey` DER.
    Rsa(Vec<u8>),
    /// ECDSA P-256: the uncompressed point.
    P256(Vec<u8>),
    /// ECDSA P-384: the uncompressed point.
    P384(Vec<u8>),
    /// A key type this crate cannot verify with.
    Unsupported,
}

/// Whether the key type was usable and the signature held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    Valid,
    Invalid,
    Unsupported,
}

impl PublicKey {
    /// Verifies `signature` over `message` hashed with `digest`.
    pub(crate) fn verify(
        &self,
        digest: DigestAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> SignatureCheck {
        use ring::signature as s;
        let (alg, key): (&dyn s::VerificationAlgorithm, &[u8]) = match (self, digest) {
            (Self::Rsa(k), DigestAlgorithm::Sha1) => {
                (&s::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, k)
            }
            (Self::Rsa(k), DigestAlgorithm::Sha256) => (&s::RSA_PKCS1_2048_8192_SHA256, k),
            (Self::Rsa(k), DigestAlgorithm::Sha384) => (&s::RSA_PKCS1_2048_8192_SHA384, k),
            (Self::Rsa(k), DigestAlgorithm::Sha512) => (&s::RSA_PKCS1_2048_8192_SHA512, k),
            (Self::P256(k), DigestAlgorithm::Sha256) => (&s::ECDSA_P256_SHA256_ASN1, k),
            (Self::P256(k), DigestAlgorithm::Sha384) => (&s::ECDSA_P256_SHA384_ASN1, k),
            (Self::P384(k), DigestAlgorithm::Sha256) => (&s::ECDSA_P384_SHA256_ASN1, k),
            (Self::P384(k), DigestAlgorithm::Sha384) => (&s::ECDSA_P384_SHA384_ASN1, k),
            _ => return SignatureCheck::Unsupported,
        };
        match s::UnparsedPublicKey::new(alg, key).verify(message, signature) {
            Ok(()) => SignatureCheck::Valid,
            Err(_) => SignatureCheck::Invalid,
        }
    }
}

/// A distinguished name: the fields Santa shows plus the whole name as RFC 4514 text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Name {
    /// CN.
    pub common_name: Option<String>,
    /// O.
    pub organization: Option<String>,
    /// OU.
    pub organizational_unit: Option<String>,
    /// The whole name, RFC 4514 (last RDN first).
    pub rfc4514: String,
}

/// One certificate of a code signature.
#[derive(Clone, Serialize)]
pub struct Certificate {
    /// SHA-256 of the DER: the identity of Santa's CERTIFICATE rules.
    pub sha256: Sha256,
    /// SHA-1 of the DER.
    pub sha1: Sha1,
    /// Subject.
    pub subject: Name,
    /// Issuer.
    pub issuer: Name,
    /// Start of validity, seconds since the epoch.
    pub not_before_unix: i64,
    /// End of validity, seconds since the epoch.
    pub not_after_unix: i64,
    /// Start of validity, `YYYY-MM-DD HH:MM:SS+00:00`.
    pub valid_from: String,
    /// End of validity, `YYYY-MM-DD HH:MM:SS+00:00`.
    pub valid_until: String,
    #[serde(skip)]
    pub(crate) der: Vec<u8>,
    #[serde(skip)]
    pub(crate) tbs: std::ops::Range<usize>,
    #[serde(skip)]
    pub(crate) subject_raw: std::ops::Range<usize>,
    #[serde(skip)]
    pub(crate) issuer_raw: std::ops::Range<usize>,
    #[serde(skip)]
    pub(crate) serial: std::ops::Range<usize>,
    #[serde(skip)]
    pub(crate) signature_digest: Option<DigestAlgorithm>,
    #[serde(skip)]
    pub(crate) signature: Vec<u8>,
    #[serde(skip)]
    pub(crate) public_key: PublicKey,
    #[serde(skip)]
    pub(crate) extension_oids: Vec<Vec<u8>>,
    #[serde(skip)]
    pub(crate) subject_key_id: Option<Vec<u8>>,
    /// `basicConstraints`, when present.
    #[serde(skip)]
    pub(crate) basic_constraints: Option<BasicConstraints>,
    /// `keyUsage` bits (bit 0, `digitalSignature`, is `0x8000`), when present.
    #[serde(skip)]
    pub(crate) key_usage: Option<u16>,
    /// `extKeyUsage` purposes (OID contents), when present.
    #[serde(skip)]
    pub(crate) ext_key_usage: Option<Vec<Vec<u8>>>,
}

/// The `basicConstraints` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BasicConstraints {
    /// `cA`: the key may sign certificates.
    pub(crate) ca: bool,
    /// `pathLenConstraint`: CA certificates that may follow below this one, leaf excluded.
    pub(crate) path_len: Option<u32>,
}

/// `keyUsage` `digitalSignature`.
pub(crate) const KEY_USAGE_DIGITAL_SIGNATURE: u16 = 0x8000;
/// `keyUsage` `keyCertSign`.
pub(crate) const KEY_USAGE_KEY_CERT_SIGN: u16 = 0x0400;

/// Most purposes read from one `extKeyUsage` (real certificates name a handful).
const EXT_KEY_USAGE_COUNT_MAX: usize = 32;

fn parse_basic_constraints(value: &[u8]) -> Result<BasicConstraints, Asn1Error> {
    let mut outer = Reader::new(value);
    let mut seq = outer.enter(tag::SEQUENCE, "BasicConstraints")?;
    let ca = match seq.optional(tag::BOOLEAN, "cA")? {
        Some(b) => b.content.first().is_some_and(|&v| v != 0),
        None => false,
    };
    let path_len = match seq.optional(tag::INTEGER, "pathLenConstraint")? {
        // Small non-negative integers only; anything else is no usable constraint.
        Some(i) if i.content.len() <= 4 && i.content.first().is_some_and(|&b| b < 0x80) => {
            Some(i.content.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
        }
        Some(_) => {
            return Err(Asn1Error::BadValue {
                what: "pathLenConstraint",
            });
        }
        None => None,
    };
    Ok(BasicConstraints { ca, path_len })
}

fn parse_key_usage(value: &[u8]) -> Result<u16, Asn1Error> {
    let mut r = Reader::new(value);
    let bits = r.expect(tag::BIT_STRING, "KeyUsage")?;
    // The first octet counts the unused bits of the last; the bits that follow start at bit 0.
    let bytes = bits.content.get(1..).unwrap_or(&[]);
    let hi = u16::from(bytes.first().copied().unwrap_or(0));
    let lo = u16::from(bytes.get(1).copied().unwrap_or(0));
    Ok(hi << 8 | lo)
}

fn parse_ext_key_usage(value: &[u8]) -> Result<Vec<Vec<u8>>, Asn1Error> {
    let mut outer = Reader::new(value);
    let mut seq = outer.enter(tag::SEQUENCE, "ExtKeyUsageSyntax")?;
    let mut out = Vec::new();
    while !seq.is_empty() {
        if out.len() >= EXT_KEY_USAGE_COUNT_MAX {
            return Err(Asn1Error::BadValue {
                what: "too many key purposes",
            });
        }
        out.push(seq.expect(tag::OID, "KeyPurposeId")?.content.to_vec());
    }
    Ok(out)
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("sha256", &self.sha256)
            .field("subject", &self.subject.rfc4514)
            .field("issuer", &self.issuer.rfc4514)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Asn1Error> {
        let base = der.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let mut top = Reader::new(der);
        let cert = top.expect(tag::SEQUENCE, "Certificate")?;
        let depth = top.depth;
        let mut c = cert.children(depth);
        let tbs = c.expect(tag::SEQUENCE, "TBSCertificate")?;
        let sig_alg = c
            .enter(tag::SEQUENCE, "signatureAlgorithm")?
            .expect(tag::OID, "signatureAlgorithm")?;
        let sig_bits = c.expect(tag::BIT_STRING, "signatureValue")?;
        let signature = bit_string_bytes(sig_bits.content, "signatureValue")?.to_vec();

        let mut t = tbs.children(depth + 1);
        t.optional(tag::context(0), "version")?;
        let serial = t.expect(tag::INTEGER, "serialNumber")?;
        t.expect(tag::SEQUENCE, "signature")?;
        let issuer = t.expect(tag::SEQUENCE, "issuer")?;
        let mut validity = t.enter(tag::SEQUENCE, "validity")?;
        let nb = validity.read("notBefore")?;
        let na = validity.read("notAfter")?;
        let not_before_unix = asn1::time_to_unix(&nb)?;
        let not_after_unix = asn1::time_to_unix(&na)?;
        let subject = t.expect(tag::SEQUENCE, "subject")?;
        let spki = t.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?;
        let public_key = parse_spki(&spki, depth + 2)?;
        t.optional(0x81, "issuerUniqueID")?;
        t.optional(0x82, "subjectUniqueID")?;
        let mut extension_oids = Vec::new();
        let mut subject_key_id = None;
        let (mut basic_constraints, mut key_usage, mut ext_key_usage) = (None, None, None);
        if let Some(exts) = t.optional(tag::context(3), "extensions")? {
            let mut seq = exts
                .children(depth + 2)
                .enter(tag::SEQUENCE, "Extensions")?;
            while !seq.is_empty() {
                if extension_oids.len() >= EXTENSION_COUNT_MAX {
                    return Err(Asn1Error::BadValue {
                        what: "too many extensions",
                    });
                }
                let mut e = seq.enter(tag::SEQUENCE, "Extension")?;
                let id = e.expect(tag::OID, "extnID")?;
                e.optional(tag::BOOLEAN, "critical")?;
                let value = e.expect(tag::OCTET_STRING, "extnValue")?;
                match id.content {
                    oid::BASIC_CONSTRAINTS => {
                        basic_constraints = Some(parse_basic_constraints(value.content)?);
                    }
                    oid::KEY_USAGE => key_usage = Some(parse_key_usage(value.content)?),
                    oid::EXT_KEY_USAGE => {
                        ext_key_usage = Some(parse_ext_key_usage(value.content)?);
                    }
                    _ => {}
                }
                if id.content == oid::SUBJECT_KEY_ID {
                    let mut inner = Reader::new(value.content);
                    subject_key_id = Some(
                        inner
                            .expect(tag::OCTET_STRING, "subjectKeyIdentifier")?
                            .content
                            .to_vec(),
                    );
                }
                extension_oids.push(id.content.to_vec());
            }
        }
        let signature_digest = match sig_alg.content {
            oid::SHA1_WITH_RSA => Some(DigestAlgorithm::Sha1),
            oid::SHA256_WITH_RSA | oid::ECDSA_SHA256 => Some(DigestAlgorithm::Sha256),
            oid::SHA384_WITH_RSA | oid::ECDSA_SHA384 => Some(DigestAlgorithm::Sha384),
            oid::SHA512_WITH_RSA => Some(DigestAlgorithm::Sha512),
            _ => None,
        };
        let der_owned = cert.raw.to_vec();
        Ok(Self {
            sha256: Sha256::digest(cert.raw),
            sha1: Sha1::digest(cert.raw),
            subject: parse_name(subject.content)?,
            issuer: parse_name(issuer.content)?,
            not_before_unix,
            not_after_unix,
            valid_from: asn1::format_unix_utc(not_before_unix),
            valid_until: asn1::format_unix_utc(not_after_unix),
            tbs: range(tbs.raw),
            subject_raw: range(subject.raw),
            issuer_raw: range(issuer.raw),
            serial: range(serial.content),
            signature_digest,
            signature,
            public_key,
            extension_oids,
            subject_key_id,
            basic_constraints,
            key_usage,
            ext_key_usage,
            der: der_owned,
        })
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn subject_der(&self) -> &[u8] {
        &self.der[self.subject_raw.clone()]
    }

    pub(crate) fn issuer_der(&self) -> &[u8] {
        &self.der[self.issuer_raw.clone()]
    }

    pub(crate) fn serial(&self) -> &[u8] {
        &self.der[self.serial.clone()]
    }

    /// Subject and issuer are the same name.
    pub fn is_self_issued(&self) -> bool {
        self.subject_der() == self.issuer_der()
    }

    /// The certificate carries the extension `oid` (DER content octets).
    pub(crate) fn has_extension(&self, oid: &[u8]) -> bool {
        self.extension_oids.iter().any(|o| o == oid)
    }

    /// Whether `issuer`'s key signed this certificate.
    pub(crate) fn signed_by(&self, issuer: &Certificate) -> SignatureCheck {
        match self.signature_digest {
            Some(d) => issuer
                .public_key
                .verify(d, &self.der[self.tbs.clone()], &self.signature),
            None => SignatureCheck::Unsupported,
        }
    }
}

fn bit_string_bytes<'a>(content: &'a [u8], what: &'static str) -> Result<&'a [u8], Asn1Error> {
    match content.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err(Asn1Error::BadValue { what }),
    }
}

fn parse_spki(spki: &asn1::Tlv<'_>, depth: u32) -> Result<PublicKey, Asn1Error> {
    let mut r = spki.children(depth);
    let mut alg = r.enter(tag::SEQUENCE, "algorithm")?;
    let alg_oid = alg.expect(tag::OID, "algorithm")?;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.read("parameters")?)
    };
    let key_bits = r.expect(tag::BIT_STRING, "subjectPublicKey")?;
    let key = bit_string_bytes(key_bits.content, "subjectPublicKey")?.to_vec();
    Ok(match alg_oid.content {
        oid::RSA_ENCRYPTION => PublicKey::Rsa(key),
        oid::EC_PUBLIC_KEY => match params.filter(|p| p.tag == tag::OID).map(|p| p.content) {
            Some(oid::P256) => PublicKey::P256(key),
            Some(oid::P384) => PublicKey::P384(key),
            _ => PublicKey::Unsupported,
        },
        _ => PublicKey::Unsupported,
    })
}

/// Short names for the attribute types that appear in code-signing certificates.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        _ => return None,
    })
}

fn string_value(v: &asn1::Tlv<'_>) -> Option<String> {
    match v.tag {
        tag::UTF8_STRING | tag::PRINTABLE_STRING | tag::IA5_STRING => {
            std::str::from_utf8(v.content).ok().map(str::to_string)
        }
        // T61 in practice carries Latin-1.
        tag::T61_STRING => Some(v.content.iter().map(|&b| char::from(b)).collect()),
        tag::BMP_STRING if v.content.len().is_multiple_of(2) => {
            let units: Vec<u16> = v
                .content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn escape_rfc4514(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_name(content: &[u8]) -> Result<Name, Asn1Error> {
    let mut rdns = Reader::new(content);
    let mut name = Name::default();
    let mut parts: Vec<String> = Vec::new();
    let mut count = 0;
    while !rdns.is_empty() {
        let mut set = rdns.enter(tag::SET, "RelativeDistinguishedName")?;
        let mut rdn_parts: Vec<String> = Vec::new();
        while !set.is_empty() {
            count += 1;
            if count > NAME_ATTRIBUTE_COUNT_MAX {
                return Err(Asn1Error::BadValue {
                    what: "too many name attributes",
                });
            }
            let mut atv = set.enter(tag::SEQUENCE, "AttributeTypeAndValue")?;
            let t = atv.expect(tag::OID, "attribute type")?;
            let v = atv.read("attribute value")?;
            let text = string_value(&v);
            let label = attribute_name(t.content);
            match (label, &text) {
                (Some("CN"), Some(s)) => name.common_name = Some(s.clone()),
                (Some("O"), Some(s)) => name.organization = Some(s.clone()),
                (Some("OU"), Some(s)) => name.organizational_unit = Some(s.clone()),
                _ => {}
            }
            let key = label
                .map(str::to_string)
                .or_else(|| asn1::oid_to_string(t.content))
                .unwrap_or_default();
            let value = match (label, text) {
                (Some(_), Some(s)) => escape_rfc4514(&s),
                _ => format!("#{}", crate::ids::hex(v.raw)),
            };
            rdn_parts.push(format!("{key}={value}"));
        }
        parts.push(rdn_parts.join("+"));
    }
    parts.reverse();
    name.rfc4514 = parts.join(",");
    Ok(name)
}
