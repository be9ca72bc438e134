//! Every parser of attacker-supplied bytes: Mach-O, SuperBlob, CodeDirectory, CMS, X.509,
//! plists and DER entitlements. Any panic, overflow or out-of-bounds access is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santa_signing::FileSigning;
use santa_signing::verify::ExternalFiles;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = FileSigning::from_bytes(data, &ExternalFiles::default()) {
        // Building the report walks every field; serialising touches the rest.
        let _ = s.cdhash();
        let _ = s.leaf_certificate_sha256();
    }
    let _ = santa_signing::cms::CmsSignature::parse(data);
    let _ = santa_signing::plist::parse(data);
    let _ = santa_signing::entitlements::from_der(data);
    let _ = santa_signing::x509::Certificate::from_der(data);
});
