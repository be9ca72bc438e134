//! `santactl fileinfo`: Santa's keys, layout and JSON, computed locally with the signing crate.
//! Only `Rule` and `Expected Decision` are asked of santad (`None` when it is not running).

use crate::out::Progress;
use crate::{Daemon, Failure, out, outln};
use clap::Args;
use regex::{Regex, RegexBuilder};
use santa_control::{CheckTarget, FileFacts, Reply, Request};
use santa_signing as signing;
use serde_json::{Map, Value};
use std::cell::Cell;
use std::path::{Path, PathBuf};

const PATH: &str = "Path";
const SHA256: &str = "SHA-256";
const SHA1: &str = "SHA-1";
const BUNDLE_NAME: &str = "Bundle Name";
const BUNDLE_VERSION: &str = "Bundle Version";
const BUNDLE_VERSION_STR: &str = "Bundle Version Str";
const TEAM_ID: &str = "Team ID";
const SIGNING_ID: &str = "Signing ID";
const CDHASH: &str = "CDHash";
const TYPE: &str = "Type";
const PAGE_ZERO: &str = "Page Zero";
const CODE_SIGNED: &str = "Code-signed";
const ASSESSMENT: &str = "Security Assessment";
const VALIDATION: &str = "Validation";
const SECURE_SIGNING_TIME: &str = "Secure Signing Time";
const SIGNING_TIME: &str = "Signing Time";
const ENTITLEMENTS: &str = "Entitlements";
const UNIVERSAL_SIGNING_CHAIN: &str = "Universal Signing Chain";
const RULE: &str = "Rule";
const DECISION: &str = "Expected Decision";
const SIGNING_CHAIN: &str = "Signing Chain";
// Keys of one certificate of the chain.
const COMMON_NAME: &str = "Common Name";
const ORGANIZATION: &str = "Organization";
const ORGANIZATIONAL_UNIT: &str = "Organizational Unit";
const VALID_FROM: &str = "Valid From";
const VALID_UNTIL: &str = "Valid Until";

/// Santa's file keys that this platform can compute, in Santa's order. (Santa's quarantine
/// keys, Download *, have no counterpart on Linux.)
pub const FILE_INFO_KEYS: [&str; 21] = [
    PATH,
    SHA256,
    SHA1,
    BUNDLE_NAME,
    BUNDLE_VERSION,
    BUNDLE_VERSION_STR,
    TEAM_ID,
    SIGNING_ID,
    CDHASH,
    TYPE,
    PAGE_ZERO,
    CODE_SIGNED,
    ASSESSMENT,
    VALIDATION,
    SECURE_SIGNING_TIME,
    SIGNING_TIME,
    RULE,
    DECISION,
    ENTITLEMENTS,
    SIGNING_CHAIN,
    UNIVERSAL_SIGNING_CHAIN,
];
/// Santa's keys of one certificate of the signing chain.
pub const SIGNING_CHAIN_KEYS: [&str; 7] = [
    SHA256,
    SHA1,
    COMMON_NAME,
    ORGANIZATION,
    ORGANIZATIONAL_UNIT,
    VALID_FROM,
    VALID_UNTIL,
];

/// Most files a `--recursive` walk lists (each costs a path in memory before any is read).
const RECURSIVE_FILES_MAX: usize = 1 << 22;

#[derive(Args, Debug)]
#[command(after_help = "\
Valid keys: Path, SHA-256, SHA-1, Bundle Name, Bundle Version, Bundle Version Str, Team ID,
  Signing ID, CDHash, Type, Page Zero, Code-signed, Security Assessment, Validation, Secure
  Signing Time, Signing Time, Rule, Expected Decision, Entitlements, Signing Chain, Universal
  Signing Chain.
Valid keys with --cert-index: SHA-256, SHA-1, Common Name, Organization, Organizational Unit,
  Valid From, Valid Until.

Examples: santactl fileinfo --cert-index 1 --key SHA-256 --json /usr/bin/yes
          santactl fileinfo /usr/bin -r --key Path --key SHA-256 --key Rule
          santactl fileinfo /usr/bin/* --filter Type=Script --filter Path=zip")]
pub struct FileInfoArgs {
    /// Files to describe.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Search directories recursively (a progress bar on a terminal).
    #[arg(short, long, conflicts_with = "bundleinfo")]
    recursive: bool,
    /// Output in JSON format.
    #[arg(long)]
    json: bool,
    /// Show only this key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Show only this certificate of the signing chain: 0 is the leaf, -1 the root.
    #[arg(
        long,
        allow_negative_numbers = true,
        conflicts_with = "bundleinfo",
        value_name = "N"
    )]
    cert_index: Option<i64>,
    /// Show a file only if KEY's value matches the case-insensitive REGEX (repeatable; any
    /// filter matching shows the file).
    #[arg(long = "filter", value_name = "KEY=REGEX")]
    filters: Vec<String>,
    /// With several filters: all must match.
    #[arg(long)]
    filter_inclusive: bool,
    /// Also show the bundle's hash and the hashes of its executables (a progress bar on a
    /// terminal).
    #[arg(short, long)]
    bundleinfo: bool,
    /// Also show the file's entitlements.
    #[arg(long)]
    entitlements: bool,
    /// Also validate each architecture's signature (Validation) and ask for the system's
    /// security assessment (Security Assessment: `spctl`, which only macOS has).
    #[arg(long)]
    verify: bool,
    /// Dates in the local time zone instead of UTC.
    #[arg(long)]
    localtz: bool,
}

/// Reads everything `fileinfo` prints about `path`. As in Santa (`SNTFileInfo resolvePath:`),
/// the path is made absolute with its symbolic links resolved, and a bundle directory stands for
/// its main executable. Files of any size are described (santad's `MaxHashBytes` bounds what the
/// daemon hashes, not what an operator asks about).
pub fn load(path: &Path) -> Result<signing::FileInfo, String> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let resolved = std::fs::canonicalize(&abs)
        .map_err(|_| format!("File does not exist: {}", abs.display()))?;
    let file = if resolved.is_dir() {
        let exe = signing::bundle::bundle_executable(&resolved)
            .ok_or_else(|| format!("Provided path was not a plain file: {}", resolved.display()))?;
        // The Info.plist names the executable; resolved too, so that the Path line is the file
        // described even when CFBundleExecutable holds links or `..`.
        std::fs::canonicalize(&exe)
            .map_err(|_| format!("File does not exist: {}", exe.display()))?
    } else {
        resolved
    };
    let meta =
        std::fs::metadata(&file).map_err(|_| format!("File does not exist: {}", file.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "Provided path was not a plain file: {}",
            file.display()
        ));
    }
    signing::file_info(&file, &fileinfo_options())
        .map_err(|e| format!("Invalid or empty file: {}: {e}", file.display()))
}

/// What `fileinfo` reads a file with: no size bound.
fn fileinfo_options() -> signing::FileInfoOptions {
    signing::FileInfoOptions {
        limits: signing::HashLimits {
            hash_bytes_max: u64::MAX,
            ..signing::HashLimits::default()
        },
    }
}

/// The identities santad needs to decide about this file.
pub fn facts(info: &signing::FileInfo) -> FileFacts {
    let status = info
        .signing
        .as_ref()
        .map_or(signing::SigningStatus::Unsigned, |s| s.status);
    FileFacts {
        path: info.path.to_string_lossy().into_owned(),
        sha256: info.sha256.to_string(),
        cdhash: info.cdhash().map(|c| c.to_string()),
        signing_id: info.signing_id().map(ToString::to_string),
        team_id: info.team_id().map(ToString::to_string),
        cert_sha256: info.signing_chain().first().map(|c| c.sha256.to_string()),
        signing_status: status,
        platform_binary: info
            .signing
            .as_ref()
            .is_some_and(signing::FileSigning::is_platform_binary),
    }
}

/// A date as Santa prints it (`NSISO8601DateFormatter`): `2027-02-01T22:12:15Z` in UTC, or with
/// the local offset (`2027-02-01T17:12:15-05:00`) under `--localtz`.
pub(crate) fn iso8601(unix: i64, localtz: bool) -> String {
    let offset = if localtz { local_offset_secs(unix) } else { 0 };
    let t = unix.saturating_add(offset);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = signing::civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        format!("{sign}{:02}:{:02}", o / 3600, o / 60 % 60)
    };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{zone}")
}

/// The local time zone's offset from UTC at `unix`, in seconds (`localtime_r`'s `tm_gmtoff`).
fn local_offset_secs(unix: i64) -> i64 {
    // `time_t` is 64-bit on every target santactl builds for.
    let t: libc::time_t = unix;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct, to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals for the duration of the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

fn cert_fields(c: &signing::x509::Certificate, localtz: bool) -> Map<String, Value> {
    let opt = |o: &Option<String>| Value::String(o.clone().unwrap_or_else(|| "null".into()));
    let mut m = Map::new();
    m.insert(SHA256.into(), Value::String(c.sha256.to_string()));
    m.insert(SHA1.into(), Value::String(c.sha1.to_string()));
    m.insert(COMMON_NAME.into(), opt(&c.subject.common_name));
    m.insert(ORGANIZATION.into(), opt(&c.subject.organization));
    m.insert(
        ORGANIZATIONAL_UNIT.into(),
        opt(&c.subject.organizational_unit),
    );
    let date = |unix| Value::String(iso8601(unix, localtz));
    m.insert(VALID_FROM.into(), date(c.not_before_unix));
    m.insert(VALID_UNTIL.into(), date(c.not_after_unix));
    m
}

/// Santa's Validation (`MOLCodesignChecker validationStatusForArchitecture:`): each Mach-O
/// slice's own verdict.
fn validation(info: &signing::FileInfo) -> Option<Value> {
    let slices = &info.signing.as_ref()?.slices;
    let list: Vec<Value> = slices
        .iter()
        .filter(|sl| sl.unreadable.is_none())
        .map(|sl| {
            let status = match sl.status {
                signing::SigningStatus::Unsigned => "Unsigned".to_owned(),
                signing::SigningStatus::AdHoc => "Ad-hoc signed".to_owned(),
                signing::SigningStatus::Invalid => {
                    let why = sl.invalid_reason.as_ref().map(ToString::to_string);
                    format!("Invalid ({})", why.as_deref().unwrap_or("unknown"))
                }
                signing::SigningStatus::Development | signing::SigningStatus::Production => {
                    "Valid on disk".to_owned()
                }
            };
            let mut m = Map::new();
            let arch = signing::macho::arch_name(sl.cpu_type, sl.cpu_subtype);
            m.insert("arch".into(), Value::String(arch));
            m.insert("status".into(), Value::String(status));
            Value::Object(m)
        })
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// Santa's Universal Signing Chain: per slice, its architecture, then its chain, or that it is
/// ad-hoc or unsigned.
fn universal_chain(info: &signing::FileInfo, localtz: bool) -> Option<Value> {
    let signers = info.signing.as_ref()?.universal_signers()?;
    let mut out = Vec::new();
    let mark = |k: &str| {
        let mut m = Map::new();
        m.insert(k.into(), Value::Bool(true));
        Value::Object(m)
    };
    for (slice, signer) in signers {
        let mut arch = Map::new();
        let name = signing::macho::arch_name(slice.cpu_type, slice.cpu_subtype);
        arch.insert("arch".into(), Value::String(name));
        out.push(Value::Object(arch));
        match signer {
            signing::UniversalSigner::AdHoc => out.push(mark("ad-hoc")),
            signing::UniversalSigner::Unsigned => out.push(mark("unsigned")),
            signing::UniversalSigner::Chain(certs) => {
                out.extend(certs.iter().map(|c| Value::Object(cert_fields(c, localtz))))
            }
        }
    }
    Some(Value::Array(out))
}

/// santad's view of files, asked once per file and not again once santad did not answer.
struct DaemonView<'d> {
    daemon: &'d Daemon,
    unavailable: Cell<bool>,
}

impl DaemonView<'_> {
    /// `(Rule, Expected Decision)`, as Santa's fileinfo words them; Santa's message for both
    /// when santad does not answer (and santad is not asked again for the next files).
    fn check(&self, info: &signing::FileInfo) -> (String, String) {
        let unreachable = || {
            (
                COMMUNICATION_ERROR.to_owned(),
                COMMUNICATION_ERROR.to_owned(),
            )
        };
        if self.unavailable.get() {
            return unreachable();
        }
        let mut facts = facts(info);
        // Santa looks a file signed with a development certificate up by all its identities,
        // as if it were production-signed, and then says why a Team ID or Signing ID rule
        // found that way does not apply to it.
        let development = facts.signing_status == signing::SigningStatus::Development;
        if development {
            facts.signing_status = signing::SigningStatus::Production;
        }
        let request = Request::RuleCheck {
            target: CheckTarget::File { facts },
        };
        match self.daemon.ask(&request) {
            Ok(Reply::RuleCheck(r)) => {
                let ignored = r
                    .rule
                    .as_ref()
                    .and_then(|rule| match rule.rule_type.as_str() {
                        "TEAMID" if development => Some("TeamID"),
                        "SIGNINGID" if development => Some("SigningID"),
                        _ => None,
                    });
                if let Some(kind) = ignored {
                    let text = format!(
                        "None ({kind} rule ignored because code signed with a development certificate.)"
                    );
                    return (text.clone(), text);
                }
                let platform = info
                    .signing
                    .as_ref()
                    .is_some_and(signing::FileSigning::is_platform_binary);
                let rule = match r.rule {
                    Some(rule) => rule.santa_text(),
                    None if platform => "Platform Binary".to_owned(),
                    None => "None".to_owned(),
                };
                (rule, r.decision.unwrap_or_else(|| "None".to_owned()))
            }
            _ => {
                self.unavailable.set(true);
                unreachable()
            }
        }
    }
}

/// Santa's words for a Rule or Expected Decision that santad did not answer.
const COMMUNICATION_ERROR: &str = "Could not communicate with daemon";

/// One file's values by key (computed lazily: the daemon is asked only if a key needs it).
struct Values<'a> {
    info: &'a signing::FileInfo,
    daemon: &'a DaemonView<'a>,
    check: Option<(String, String)>,
    localtz: bool,
}

impl Values<'_> {
    fn get(&mut self, key: &str) -> Option<Value> {
        let info = self.info;
        let s = |v: String| Some(Value::String(v));
        match key {
            PATH => s(info.path.display().to_string()),
            SHA256 => s(info.sha256.to_string()),
            SHA1 => s(info.sha1.to_string()),
            BUNDLE_NAME => info.bundle_name().map(str::to_owned).and_then(s),
            BUNDLE_VERSION => info.bundle_version().map(str::to_owned).and_then(s),
            BUNDLE_VERSION_STR => info.bundle_version_str().map(str::to_owned).and_then(s),
            TEAM_ID => info.team_id().and_then(|t| s(t.to_string())),
            SIGNING_ID => info.signing_id().and_then(|t| s(t.to_string())),
            CDHASH => info.cdhash().and_then(|c| s(c.to_string())),
            TYPE => s(info.type_description.clone()),
            PAGE_ZERO => info
                .signing
                .as_ref()
                .filter(|sg| sg.is_missing_page_zero())
                .and_then(|_| s("__PAGEZERO segment missing/bad!".to_owned())),
            CODE_SIGNED => s(info.code_signed().clone()),
            SECURE_SIGNING_TIME | SIGNING_TIME => {
                let signing = info.signing.as_ref();
                let time = if key == SIGNING_TIME {
                    signing.and_then(signing::FileSigning::signing_time_unix)
                } else {
                    signing.and_then(signing::FileSigning::secure_signing_time_unix)
                };
                s(time.map_or_else(|| "None".to_owned(), |t| iso8601(t, self.localtz)))
            }
            ENTITLEMENTS => Some(
                info.signing
                    .as_ref()
                    .and_then(signing::FileSigning::entitlements)
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new())),
            ),
            UNIVERSAL_SIGNING_CHAIN => universal_chain(info, self.localtz),
            VALIDATION => validation(info),
            // Santa runs /usr/sbin/spctl for a Mach-O file, and says this where there is none.
            ASSESSMENT => info
                .signing
                .as_ref()
                .and_then(|_| s("Unable to locate suitable spctl binary".to_owned())),
            RULE | DECISION => {
                let (rule, decision) = self
                    .check
                    .get_or_insert_with(|| self.daemon.check(info))
                    .clone();
                s(if key == RULE { rule } else { decision })
            }
            SIGNING_CHAIN => (!info.signing_chain().is_empty()).then(|| {
                Value::Array(
                    info.signing_chain()
                        .iter()
                        .map(|c| Value::Object(cert_fields(c, self.localtz)))
                        .collect(),
                )
            }),
            _ => None,
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Options {
    keys: Vec<String>,
    filters: Vec<(String, Regex)>,
    filter_inclusive: bool,
    cert_index: Option<i64>,
    json: bool,
    bundleinfo: bool,
    entitlements: bool,
    verify: bool,
    localtz: bool,
    width: usize,
}

fn parse_options(args: &FileInfoArgs) -> Result<Options, Failure> {
    let valid: &[&str] = if args.cert_index.is_some() {
        &SIGNING_CHAIN_KEYS
    } else {
        &FILE_INFO_KEYS
    };
    let mut keys: Vec<String> = Vec::new();
    for k in &args.keys {
        if !valid.contains(&k.as_str()) {
            return Err(Failure::Usage(if args.cert_index.is_some() {
                format!("\"{k}\" is an invalid key when using --cert-index")
            } else {
                format!("\"{k}\" is an invalid key")
            }));
        }
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    if keys.is_empty() {
        keys = valid.iter().map(|k| (*k).to_owned()).collect();
    }
    let mut filters = Vec::new();
    for f in &args.filters {
        let Some((k, re)) = f
            .split_once('=')
            .filter(|(k, re)| !k.is_empty() && !re.is_empty())
        else {
            return Err(Failure::Usage(format!(
                "\"{f}\" is an invalid filter predicate.\nFilter predicates must be of the form key=regex (with no spaces around \"=\")"
            )));
        };
        if !valid.contains(&k) || k == SIGNING_CHAIN {
            return Err(Failure::Usage(format!("\"{k}\" is an invalid filter key")));
        }
        let regex = RegexBuilder::new(re)
            .case_insensitive(true)
            .build()
            .map_err(|_| {
                Failure::Usage(format!(
                    "\"{re}\" is an invalid regular expression in filter argument."
                ))
            })?;
        filters.push((k.to_owned(), regex));
    }
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    Ok(Options {
        keys,
        filters,
        filter_inclusive: args.filter_inclusive,
        cert_index: args.cert_index,
        json: args.json,
        bundleinfo: args.bundleinfo,
        entitlements: args.entitlements,
        verify: args.verify,
        localtz: args.localtz,
        width,
    })
}

fn passes(opts: &Options, mut value: impl FnMut(&str) -> String) -> bool {
    if opts.filters.is_empty() {
        return true;
    }
    let matches = opts
        .filters
        .iter()
        .filter(|(k, re)| re.is_match(&value(k)))
        .count();
    if opts.filter_inclusive {
        matches == opts.filters.len()
    } else {
        matches > 0
    }
}

/// What to print for one file, or `Ok(None)` when filters hide it.
fn describe(
    opts: &Options,
    daemon: &DaemonView<'_>,
    path: &Path,
) -> Result<Option<Map<String, Value>>, String> {
    let info = load(path)?;
    let mut values = Values {
        info: &info,
        daemon,
        check: None,
        localtz: opts.localtz,
    };
    let mut dict = Map::new();
    if let Some(index) = opts.cert_index {
        let chain = &info.signing_chain();
        if chain.is_empty() {
            return Ok(None);
        }
        let len = chain.len() as i64;
        let i = if index < 0 { len + index } else { index };
        if !(0..len).contains(&i) {
            return Err(format!("Invalid --cert-index: {index}"));
        }
        let cert = cert_fields(&chain[i as usize], opts.localtz);
        if !passes(opts, |k| cert.get(k).map(text_of).unwrap_or_default()) {
            return Ok(None);
        }
        for k in &opts.keys {
            if let Some(v) = cert.get(k) {
                dict.insert(k.clone(), v.clone());
            }
        }
        return Ok(Some(dict));
    }
    if !passes(opts, |k| {
        values.get(k).as_ref().map(text_of).unwrap_or_default()
    }) {
        return Ok(None);
    }
    for k in &opts.keys {
        // Entitlements only when asked for, as in Santa.
        if (k == ENTITLEMENTS && !opts.entitlements)
            || ((k == ASSESSMENT || k == VALIDATION) && !opts.verify)
        {
            continue;
        }
        if let Some(v) = values.get(k) {
            dict.insert(k.clone(), v);
        }
    }
    if opts.bundleinfo
        && let Some(bundle) = &info.bundle
    {
        dict.insert("Bundle Info".into(), bundle_info(bundle)?);
    }
    Ok(Some(dict))
}

fn bundle_info(bundle: &signing::bundle::Bundle) -> Result<Value, String> {
    let progress = Progress::new("hashing bundle");
    let hashed = signing::bundle::hash_bundle(
        &bundle.path,
        &signing::bundle::BundleLimits::default(),
        &|p| progress.update(p.files_done, p.files_total),
    );
    progress.finish();
    let hashed = hashed.map_err(|e| format!("{}: {e}", bundle.path.display()))?;
    let mut m = Map::new();
    m.insert(
        "Main Bundle Path".into(),
        Value::String(bundle.path.display().to_string()),
    );
    m.insert(
        "Main Bundle ID".into(),
        Value::String(bundle.identifier.clone()),
    );
    m.insert(
        "Bundle Hash".into(),
        hashed
            .bundle_hash
            .map_or(Value::Null, |h| Value::String(h.to_string())),
    );
    let list = hashed
        .binaries
        .iter()
        .map(|b| {
            let mut e = Map::new();
            e.insert(SHA256.into(), Value::String(b.sha256.to_string()));
            e.insert(PATH.into(), Value::String(b.path.display().to_string()));
            Value::Object(e)
        })
        .collect();
    m.insert("Bundle Hashes".into(), Value::Array(list));
    Ok(Value::Object(m))
}

fn print_text(opts: &Options, dict: &Map<String, Value>) {
    let single = opts.keys.len() == 1 && opts.keys[0] != SIGNING_CHAIN;
    for k in &opts.keys {
        let Some(v) = dict.get(k) else { continue };
        match (k.as_str(), v) {
            (ENTITLEMENTS, Value::Object(ents)) => print_entitlements(k, ents, opts.width),
            (VALIDATION, Value::Array(list)) => print_validation(list, opts.width),
            (_, Value::Array(chain)) => print_chain(k, chain),
            (_, v) if single => outln!("{}", text_of(v)),
            (_, v) => outln!("{k:<w$}: {}", text_of(v), w = opts.width),
        }
    }
    if let Some(Value::Object(b)) = dict.get("Bundle Info") {
        outln!("Bundle Info:");
        for k in ["Main Bundle Path", "Main Bundle ID", "Bundle Hash"] {
            let v = b.get(k).map(text_of).unwrap_or_default();
            outln!("       {k:<20}: {v}");
        }
        if let Some(Value::Array(list)) = b.get("Bundle Hashes") {
            for (i, e) in list.iter().enumerate() {
                let h = e.get(SHA256).map(text_of).unwrap_or_default();
                let p = e.get(PATH).map(text_of).unwrap_or_default();
                outln!("          {:>3}. {h}  {p}", i + 1);
            }
        }
    }
    if !single {
        outln!();
    }
}

/// A signing chain as Santa's `stringForSigningChain` prints it; a universal chain's entries
/// name an architecture, or say a slice is ad-hoc or unsigned.
fn print_chain(key: &str, chain: &[Value]) {
    outln!("{key}:");
    let mut i = 1;
    for entry in chain {
        if let Some(arch) = entry.get("arch") {
            outln!("  Architecture: {}", text_of(arch));
            i = 1;
            continue;
        }
        if let Some(kind) = ["ad-hoc", "unsigned"]
            .into_iter()
            .find(|k| entry.get(*k).is_some())
        {
            outln!("    {i:>2}. {kind:<20}");
            continue;
        }
        if i > 1 {
            outln!();
        }
        for (j, ck) in SIGNING_CHAIN_KEYS.iter().enumerate() {
            let value = entry.get(*ck).map(text_of).unwrap_or_default();
            if j == 0 {
                outln!("   {i:>2}. {ck:<20}: {value}");
            } else {
                outln!("       {ck:<20}: {value}");
            }
        }
        i += 1;
    }
}

/// Validation as Santa's `stringForValidation` prints it: one numbered line per architecture,
/// aligned with the other values.
fn print_validation(list: &[Value], width: usize) {
    outln!("{VALIDATION}:");
    for (i, entry) in list.iter().enumerate() {
        let arch = entry.get("arch").map(text_of).unwrap_or_default();
        let status = entry.get("status").map(text_of).unwrap_or_default();
        let label = format!("{}. {arch}", i + 1);
        outln!("    {label:<w$}: {status}", w = width.saturating_sub(4));
    }
}

/// Entitlements as Santa's `stringForEntitlements` prints them: claimed booleans by name,
/// other values beside their name, false ones left out.
fn print_entitlements(key: &str, ents: &Map<String, Value>, width: usize) {
    if ents.is_empty() {
        outln!("{key:<width$}: None");
        return;
    }
    outln!("{key}:");
    let mut i = 0;
    for (name, value) in ents {
        match value {
            Value::Bool(false) => {}
            Value::Bool(true) => {
                i += 1;
                outln!("   {i:>2}. {name}");
            }
            other => {
                i += 1;
                outln!("   {i:>2}. {name}: {}", text_of(other));
            }
        }
    }
}

/// Regular files under `dir` (symbolic links are not followed into directories), sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, progress: &Progress) -> Result<(), String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mut here: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        here.sort();
        for p in here.into_iter().rev() {
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                if out.len() >= RECURSIVE_FILES_MAX {
                    return Err(format!(
                        "{}: more than {RECURSIVE_FILES_MAX} files",
                        dir.display()
                    ));
                }
                out.push(p);
                progress.update(0, out.len());
            }
        }
    }
    Ok(())
}

/// Runs `santactl fileinfo`.
pub fn run(daemon: &Daemon, args: &FileInfoArgs) -> Result<(), Failure> {
    let opts = parse_options(args)?;
    let view = DaemonView {
        daemon,
        unavailable: Cell::new(false),
    };
    let mut failures = 0usize;
    let mut first = true;
    if opts.json {
        out!("[\n");
    }
    for path in &args.paths {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let mut files = Vec::new();
        let mut walked = false;
        let bundle_dir = abs.is_dir() && signing::bundle::bundle_executable(&abs).is_some();
        if abs.is_dir() && (args.recursive || !bundle_dir) {
            if !args.recursive {
                eprintln!(
                    "{} is a directory.  Use the -r flag to search recursively.",
                    abs.display()
                );
                failures += 1;
                continue;
            }
            let listing = Progress::new("listing");
            let r = walk(&abs, &mut files, &listing);
            listing.finish();
            if let Err(e) = r {
                eprintln!("{e}");
                failures += 1;
            }
            walked = true;
        } else {
            files.push(abs);
        }
        let progress = Progress::new("fileinfo");
        let total = files.len();
        for (i, file) in files.iter().enumerate() {
            if walked {
                progress.update(i, total);
            }
            match describe(&opts, &view, file) {
                Ok(Some(dict)) if !dict.is_empty() => {
                    progress.finish();
                    if opts.json {
                        if !first {
                            out!(",\n");
                        }
                        let text = serde_json::to_string_pretty(&Value::Object(dict))
                            .unwrap_or_else(|_| "{}".into());
                        out!("{text}");
                    } else {
                        print_text(&opts, &dict);
                    }
                    first = false;
                }
                Ok(_) => {}
                Err(e) => {
                    progress.finish();
                    eprintln!("{e}");
                    failures += 1;
                }
            }
        }
        progress.finish();
    }
    if opts.json {
        out!("\n]\n");
    }
    if failures > 0 {
        return Err(Failure::Failed(format!(
            "fileinfo: {failures} path(s) could not be described"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
