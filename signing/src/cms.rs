//! The CMS `SignedData` blob of a code signature: certificates, the signer (found by issuer and
//! serial number, not by position), its signed attributes (message digest, signing time and the
//! hash-agility attributes that bind the alternate CodeDirectories) and the signature itself.

use std::fmt;

use serde::Serialize;

use crate::asn1::{self, Asn1Error, Reader, tag};
use crate::plist::{self, Plist};
use crate::x509::{Certificate, DigestAlgorithm};

/// At most this many certificates in one signature. `codesign` embeds the chain (three) and
/// the timestamp authority adds its own inside the token; 32 is far above any real count.
pub const CERTIFICATE_COUNT_MAX: usize = 32;
/// At most this many signed or unsigned attributes (codesign writes five or six).
const ATTRIBUTE_COUNT_MAX: usize = 64;
/// At most this many CodeDirectory hashes in a hash-agility attribute (one per CD: at most 6).
const AGILITY_HASH_COUNT_MAX: usize = 16;
/// The most bytes the v1 hash-agility plist may decode to, whatever its length. It is read on
/// the exec path before the signature over it is checked, so its size is the attacker's; the
/// honest one (`codesign`'s XML: a dictionary, one key, an array of one 20-byte CDHash per
/// CodeDirectory) decodes to about 600 bytes for two CodeDirectories and under 3 KiB for
/// [`AGILITY_HASH_COUNT_MAX`] of them, as the plist decoder accounts it.
const AGILITY_PLIST_DECODED_BYTES_MAX: usize = 8 << 10;

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
const OID_TIMESTAMP_TOKEN: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0e,
];
const OID_APPLE_CDHASHES_V1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x09, 0x01];
const OID_APPLE_CDHASHES_V2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x09, 0x02];

/// Why a CMS blob could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmsError {
    /// The ASN.1 is malformed.
    Asn1(Asn1Error),
    /// The ContentInfo is not `signedData`.
    NotSignedData,
    /// More than [`CERTIFICATE_COUNT_MAX`] certificates.
    TooManyCertificates,
    /// No `SignerInfo`, or more than one (a code signature has exactly one signer).
    SignerCount {
        /// How many were found.
        count: usize,
    },
    /// No embedded certificate matches the signer's issuer and serial number.
    SignerCertificateMissing,
    /// A digest algorithm this crate does not know.
    UnsupportedDigest {
        /// The OID, dotted.
        oid: String,
    },
    /// Signed attributes written with an indefinite length: they must be DER to be signed.
    SignedAttributesNotDer,
    /// A signed attribute that does not have the shape its type requires.
    BadAttribute {
        /// Which attribute.
        what: &'static str,
    },
    /// Too many attributes or agility hashes.
    TooManyAttributes,
}

impl From<Asn1Error> for CmsError {
    fn from(e: Asn1Error) -> Self {
        Self::Asn1(e)
    }
}

impl fmt::Display for CmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Asn1(e) => write!(f, "CMS: {e}"),
            Self::NotSignedData => write!(f, "CMS content is not signedData"),
            Self::TooManyCertificates => {
                write!(
                    f,
                    "CMS holds more than {CERTIFICATE_COUNT_MAX} certificates"
                )
            }
            Self::SignerCount { count } => write!(f, "CMS has {count} signers, expected 1"),
            Self::SignerCertificateMissing => write!(f, "CMS signer certificate not embedded"),
            Self::UnsupportedDigest { oid } => write!(f, "CMS digest algorithm {oid} unsupported"),
            Self::SignedAttributesNotDer => write!(f, "CMS signed attributes are not DER"),
            Self::BadAttribute { what } => write!(f, "CMS attribute {what} malformed"),
            Self::TooManyAttributes => write!(f, "CMS holds too many attributes"),
        }
    }
}

impl std::error::Error for CmsError {}

/// One entry of the v2 hash-agility attribute: a CodeDirectory digest and its algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgilityHash {
    /// The digest algorithm OID, dotted.
    pub algorithm_oid: String,
    /// The algorithm, if known.
    pub algorithm: Option<DigestAlgorithm>,
    /// The full digest of the CodeDirectory.
    #[serde(serialize_with = "ser_hex")]
    pub digest: Vec<u8>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::ids::hex(v))
}

fn ser_hex_list<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for item in v {
        seq.serialize_element(&crate::ids::hex(item))?;
    }
    seq.end()
}

/// A parsed CMS `SignedData` from a code signature.
#[derive(Clone, Debug, Serialize)]
pub struct CmsSignature {
    /// The embedded certificates, in the order they were written.
    pub certificates: Vec<Certificate>,
    /// Index in `certificates` of the signer's certificate (the leaf).
    pub signer_index: usize,
    /// The signer's digest algorithm.
    pub digest_algorithm: DigestAlgorithm,
    /// The `signingTime` attribute (unauthenticated by any third party), seconds since epoch.
    pub signing_time_unix: Option<i64>,
    /// The `messageDigest` attribute: the digest of the slot-0 CodeDirectory.
    #[serde(serialize_with = "ser_opt_hex")]
    pub message_digest: Option<Vec<u8>>,
    /// CDHashes (truncated) listed by the v1 hash-agility attribute.
    #[serde(serialize_with = "ser_hex_list")]
    pub cdhashes_v1: Vec<Vec<u8>>,
    /// Full CodeDirectory digests listed by the v2 hash-agility attribute.
    pub cdhashes_v2: Vec<AgilityHash>,
    /// The signer carries an RFC 3161 timestamp token.
    pub has_timestamp_token: bool,
    /// The token's `genTime`, seconds since epoch: Santa's Secure Signing Time. Shown only; the
    /// timestamp authority's signature over it is not checked, and no decision reads it.
    pub timestamp_unix: Option<i64>,
    #[serde(skip)]
    pub(crate) signed_attributes: Option<Vec<u8>>,
    #[serde(skip)]
    pub(crate) signature: Vec<u8>,
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&crate::ids::hex(v)),
        None => s.serialize_none(),
    }
}

impl CmsSignature {
    /// Parses the content of a BlobWrapper (`0xfade0b01`) as CMS `SignedData`.
    pub fn parse(bytes: &[u8]) -> Result<Self, CmsError> {
        let mut top = Reader::new(bytes);
        let mut ci = top.enter(tag::SEQUENCE, "ContentInfo")?;
        if ci.expect(tag::OID, "contentType")?.content != OID_SIGNED_DATA {
            return Err(CmsError::NotSignedData);
        }
        let mut explicit = ci.enter(tag::context(0), "content")?;
        let mut sd = explicit.enter(tag::SEQUENCE, "SignedData")?;
        sd.expect(tag::INTEGER, "version")?;
        sd.expect(tag::SET, "digestAlgorithms")?;
        sd.expect(tag::SEQUENCE, "encapContentInfo")?;
        let mut certificates = Vec::new();
        if let Some(certs) = sd.optional(tag::context(0), "certificates")? {
            let mut r = certs.children(sd.depth);
            while !r.is_empty() {
                if certificates.len() >= CERTIFICATE_COUNT_MAX {
                    return Err(CmsError::TooManyCertificates);
                }
                let c = r.read("certificate")?;
                if c.tag == tag::SEQUENCE {
                    certificates.push(Certificate::from_der(c.raw)?);
                }
                // Other CertificateChoices (attribute certificates...) are not chains.
            }
        }
        sd.optional(tag::context(1), "crls")?;
        let signer_infos = sd.expect(tag::SET, "signerInfos")?;
        let mut signers = signer_infos.children(sd.depth);
        let mut count = 0;
        let mut first = None;
        while !signers.is_empty() {
            let s = signers.expect(tag::SEQUENCE, "SignerInfo")?;
            count += 1;
            if count > 1 {
                return Err(CmsError::SignerCount { count });
            }
            first = Some(s);
        }
        let signer = first.ok_or(CmsError::SignerCount { count: 0 })?;
        let mut si = signer.children(sd.depth);
        si.expect(tag::INTEGER, "version")?;
        let sid = si.read("sid")?;
        let signer_index = find_signer(&certificates, &sid, si.depth)?;
        let mut dalg = si.enter(tag::SEQUENCE, "digestAlgorithm")?;
        let doid = dalg.expect(tag::OID, "digestAlgorithm")?;
        let digest_algorithm =
            DigestAlgorithm::from_oid(doid.content).ok_or_else(|| CmsError::UnsupportedDigest {
                oid: asn1::oid_to_string(doid.content).unwrap_or_default(),
            })?;
        let mut out = CmsSignature {
            certificates,
            signer_index,
            digest_algorithm,
            signing_time_unix: None,
            message_digest: None,
            cdhashes_v1: Vec::new(),
            cdhashes_v2: Vec::new(),
            has_timestamp_token: false,
            timestamp_unix: None,
            signed_attributes: None,
            signature: Vec::new(),
        };
        if let Some(attrs) = si.optional(tag::context(0), "signedAttrs")? {
            if attrs.indefinite {
                return Err(CmsError::SignedAttributesNotDer);
            }
            // The signature covers the attributes re-tagged as a DER SET OF.
            let mut der = attrs.raw.to_vec();
            der[0] = tag::SET;
            out.signed_attributes = Some(der);
            read_signed_attributes(&attrs, si.depth, &mut out)?;
        }
        si.expect(tag::SEQUENCE, "signatureAlgorithm")?;
        out.signature = si.expect(tag::OCTET_STRING, "signature")?.content.to_vec();
        if let Some(unsigned) = si.optional(tag::context(1), "unsignedAttrs")? {
            for_each_attribute(&unsigned, si.depth, |t, a| {
                if t == OID_TIMESTAMP_TOKEN {
                    out.has_timestamp_token = true;
                    out.timestamp_unix = timestamp_gen_time(a).ok();
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The signer's certificate.
    pub fn signer(&self) -> &Certificate {
        &self.certificates[self.signer_index]
    }

    /// Indices of the chain from the signer up, following issuer names; stops at a self-issued
    /// certificate or when no issuer is embedded.
    pub fn chain_indices(&self) -> Vec<usize> {
        let mut chain = vec![self.signer_index];
        let mut current = self.signer_index;
        while chain.len() < self.certificates.len() {
            let cur = &self.certificates[current];
            if cur.is_self_issued() {
                break;
            }
            let next = self
                .certificates
                .iter()
                .enumerate()
                .find(|(i, c)| !chain.contains(i) && c.subject_der() == cur.issuer_der());
            match next {
                Some((i, _)) => {
                    chain.push(i);
                    current = i;
                }
                None => break,
            }
        }
        chain
    }
}

fn find_signer(
    certificates: &[Certificate],
    sid: &asn1::Tlv<'_>,
    depth: u32,
) -> Result<usize, CmsError> {
    let found = match sid.tag {
        tag::SEQUENCE => {
            let mut r = sid.children(depth);
            let issuer = r.expect(tag::SEQUENCE, "issuer")?;
            let serial = r.expect(tag::INTEGER, "serialNumber")?;
            certificates
                .iter()
                .position(|c| c.issuer_der() == issuer.raw && c.serial() == serial.content)
        }
        // [0] SubjectKeyIdentifier
        0x80 => certificates
            .iter()
            .position(|c| c.subject_key_id.as_deref() == Some(sid.content)),
        _ => None,
    };
    found.ok_or(CmsError::SignerCertificateMissing)
}

/// Walks a set of attributes (at most [`ATTRIBUTE_COUNT_MAX`]): `each` gets every attribute's
/// type OID and the reader over the rest of it (its values).
/// The `genTime` of an RFC 3161 timestamp token (a `SignedData` whose content is a `TSTInfo`),
/// from the attribute's values.
fn timestamp_gen_time(attribute: &mut asn1::Reader<'_>) -> Result<i64, Asn1Error> {
    let mut values = attribute.enter(tag::SET, "attrValues")?;
    let mut content_info = values.enter(tag::SEQUENCE, "TimeStampToken")?;
    content_info.expect(tag::OID, "contentType")?;
    let mut explicit = content_info.enter(tag::context(0), "content")?;
    let mut signed_data = explicit.enter(tag::SEQUENCE, "SignedData")?;
    signed_data.expect(tag::INTEGER, "version")?;
    signed_data.expect(tag::SET, "digestAlgorithms")?;
    let mut encap = signed_data.enter(tag::SEQUENCE, "encapContentInfo")?;
    encap.expect(tag::OID, "eContentType")?;
    let mut econtent = encap.enter(tag::context(0), "eContent")?;
    let tst_der = econtent.expect(tag::OCTET_STRING, "eContent")?;
    let mut outer = asn1::Reader::new(tst_der.content);
    let mut tst = outer.enter(tag::SEQUENCE, "TSTInfo")?;
    tst.expect(tag::INTEGER, "version")?;
    tst.expect(tag::OID, "policy")?;
    tst.expect(tag::SEQUENCE, "messageImprint")?;
    tst.expect(tag::INTEGER, "serialNumber")?;
    asn1::time_to_unix(&tst.read("genTime")?)
}

fn for_each_attribute<'a>(
    attrs: &asn1::Tlv<'a>,
    depth: u32,
    mut each: impl FnMut(&'a [u8], &mut asn1::Reader<'a>) -> Result<(), CmsError>,
) -> Result<(), CmsError> {
    let mut r = attrs.children(depth);
    let mut n = 0;
    while !r.is_empty() {
        n += 1;
        if n > ATTRIBUTE_COUNT_MAX {
            return Err(CmsError::TooManyAttributes);
        }
        let mut a = r.enter(tag::SEQUENCE, "Attribute")?;
        let t = a.expect(tag::OID, "attrType")?;
        each(t.content, &mut a)?;
    }
    Ok(())
}

fn read_signed_attributes(
    attrs: &asn1::Tlv<'_>,
    depth: u32,
    out: &mut CmsSignature,
) -> Result<(), CmsError> {
    for_each_attribute(attrs, depth, |t, a| {
        let mut values = a.enter(tag::SET, "attrValues")?;
        match t {
            OID_MESSAGE_DIGEST => {
                let v = values.expect(tag::OCTET_STRING, "messageDigest")?;
                out.message_digest = Some(v.content.to_vec());
            }
            OID_SIGNING_TIME => {
                let v = values.read("signingTime")?;
                out.signing_time_unix = Some(asn1::time_to_unix(&v)?);
            }
            OID_APPLE_CDHASHES_V1 => {
                let v = values.expect(tag::OCTET_STRING, "cdhashes plist")?;
                let bad = CmsError::BadAttribute {
                    what: "cdhashes (v1)",
                };
                let p = plist::parse_within(v.content, AGILITY_PLIST_DECODED_BYTES_MAX)
                    .map_err(|_| bad.clone())?;
                let Some(Plist::Array(items)) = p.get("cdhashes") else {
                    return Err(bad);
                };
                if items.len() > AGILITY_HASH_COUNT_MAX {
                    return Err(CmsError::TooManyAttributes);
                }
                for item in items {
                    match item {
                        Plist::Data(d) => out.cdhashes_v1.push(d.clone()),
                        _ => return Err(bad),
                    }
                }
            }
            OID_APPLE_CDHASHES_V2 => {
                while !values.is_empty() {
                    if out.cdhashes_v2.len() >= AGILITY_HASH_COUNT_MAX {
                        return Err(CmsError::TooManyAttributes);
                    }
                    let mut pair = values.enter(tag::SEQUENCE, "cdhashes (v2)")?;
                    let alg = pair.expect(tag::OID, "cdhashes (v2) algorithm")?;
                    let digest = pair.expect(tag::OCTET_STRING, "cdhashes (v2) digest")?;
                    out.cdhashes_v2.push(AgilityHash {
                        algorithm_oid: asn1::oid_to_string(alg.content).unwrap_or_default(),
                        algorithm: DigestAlgorithm::from_oid(alg.content),
                        digest: digest.content.to_vec(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1 hash-agility plist as `codesign` writes it (layout of the Developer ID fixture's),
    /// with `n` CDHashes.
    fn agility_xml(n: usize) -> Vec<u8> {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \
             \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <plist version=\"1.0\">\n<dict>\n\t<key>cdhashes</key>\n\t<array>\n",
        );
        for _ in 0..n {
            s.push_str("\t\t<data>\n\t\t1ZTj9s5oz6rI0IEmpdUSPVs1/Eo=\n\t\t</data>\n");
        }
        s.push_str("\t</array>\n</dict>\n</plist>\n");
        s.into_bytes()
    }

    #[test]
    fn honest_agility_plists_decode_within_their_bound_and_big_ones_do_not() {
        for n in [1, 2, AGILITY_HASH_COUNT_MAX] {
            let p = plist::parse_within(&agility_xml(n), AGILITY_PLIST_DECODED_BYTES_MAX).unwrap();
            let Some(Plist::Array(items)) = p.get("cdhashes") else {
                panic!("{p:?}")
            };
            assert_eq!(items.len(), n);
        }
        // The figures in the bound's comment.
        assert!(plist::parse_within(&agility_xml(2), 600).is_ok());
        assert!(plist::parse_within(&agility_xml(AGILITY_HASH_COUNT_MAX), 3 << 10).is_ok());
        // A thousand entries stop in the decoder, before they are built and counted.
        assert!(matches!(
            plist::parse_within(&agility_xml(1000), AGILITY_PLIST_DECODED_BYTES_MAX),
            Err(plist::PlistError::DecodedTooLarge { .. })
        ));
    }
}
