//! Bundles, as Santa's `santabundleservice` sees them: the highest ancestor bundle of a binary,
//! the `MH_EXECUTE` binaries inside it, and the bundle hash — SHA-256 of the concatenation of
//! their lowercase hex SHA-256 strings, sorted, without separator.
//!
//! Walking is single-threaded (directory reads are cheap); hashing runs on a few scoped threads
//! pulling from a shared index, with progress reported through a callback. Both are bounded by a
//! file count and a time budget.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::file::{FileBytes, HashLimits};
use crate::ids::Sha256;
use crate::macho::{self, FileFormat, MachFileType};
use crate::plist;
use crate::verify::ExternalFiles;

/// Directory extensions that make a bundle (with an `Info.plist` naming a bundle identifier).
pub const BUNDLE_EXTENSIONS: &[&str] = &["app", "bundle", "framework", "kext", "xctest", "xpc"];

/// Default for [`BundleLimits::file_count_max`]: Xcode.app, the largest bundle in common use,
/// holds about 500,000 files; past 1,000,000 the walk itself is a denial of service.
pub const BUNDLE_FILE_COUNT_MAX_DEFAULT: usize = 1_000_000;
/// Default for [`BundleLimits::time_budget`]: Santa's bundle service gives up after 10 minutes.
pub const BUNDLE_TIME_BUDGET_DEFAULT: Duration = Duration::from_secs(600);
/// Largest `Info.plist` read: real ones are a few KiB.
const INFO_PLIST_BYTES_MAX: u64 = 1 << 20;
/// Largest `_CodeSignature/CodeResources` read: it lists every resource of the bundle with its
/// hashes, a few MiB for the largest apps.
const CODE_RESOURCES_BYTES_MAX: u64 = 64 << 20;
/// Deepest directory nesting walked inside a bundle.
const WALK_DEPTH_MAX: usize = 64;

/// A bundle and the identity its `Info.plist` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bundle {
    /// The bundle directory.
    pub path: PathBuf,
    /// `CFBundleIdentifier`.
    pub identifier: String,
    /// Santa's bundle name: `CFBundleDisplayName`, else `CFBundleName` (empty ones skipped).
    pub name: Option<String>,
    /// `CFBundleVersion`.
    pub version: Option<String>,
    /// `CFBundleShortVersionString`.
    pub short_version: Option<String>,
    /// `CFBundleExecutable`.
    pub executable: Option<String>,
}

fn has_bundle_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| BUNDLE_EXTENSIONS.iter().any(|b| e.eq_ignore_ascii_case(b)))
}

/// Where a bundle directory keeps its `Info.plist`, in the order to try.
fn info_plist_candidates(dir: &Path) -> [PathBuf; 4] {
    [
        dir.join("Contents/Info.plist"),
        dir.join("Resources/Info.plist"),
        dir.join("Versions/Current/Resources/Info.plist"),
        dir.join("Info.plist"),
    ]
}

fn read_small(path: &Path, max: u64) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    std::fs::read(path).ok()
}

/// Reads the bundle at `dir`, if it is one: a bundle extension and an `Info.plist` with a
/// `CFBundleIdentifier`.
pub fn read_bundle(dir: &Path) -> Option<Bundle> {
    if !has_bundle_extension(dir) {
        return None;
    }
    read_info_of(dir)
}

/// The bundle at `dir` if it has an `Info.plist` with a `CFBundleIdentifier`, whatever its
/// extension.
fn read_info_of(dir: &Path) -> Option<Bundle> {
    if !dir.is_dir() {
        return None;
    }
    info_plist_candidates(dir).iter().find_map(|p| {
        let bytes = read_small(p, INFO_PLIST_BYTES_MAX)?;
        bundle_from_info_plist(dir, &bytes).filter(|b| !b.identifier.is_empty())
    })
}

/// The highest ancestor of `binary` that is a bundle (Santa's `useAncestorBundle`, used for
/// bundle events): for a helper inside `Foo.app/Contents/Frameworks/Bar.framework`, that is
/// `Foo.app`.
pub fn find_ancestor_bundle(binary: &Path) -> Option<Bundle> {
    let abs = std::path::absolute(binary).ok()?;
    abs.ancestors().skip(1).filter_map(read_bundle).last()
}

/// The nearest ancestor of `binary` that is a bundle, as Santa's `fileinfo` finds it
/// (`findBundleWithAncestor:NO`): any directory with an extension and an `Info.plist` naming a
/// bundle identifier, so that a helper inside `Foo.app/Contents/Frameworks/Bar.framework` is
/// described as part of `Bar.framework`.
pub fn find_nearest_bundle(binary: &Path) -> Option<Bundle> {
    let abs = std::path::absolute(binary).ok()?;
    abs.ancestors()
        .skip(1)
        .find_map(|dir| dir.extension().and_then(|_| read_info_of(dir)))
}

/// The main executable of the bundle at `dir`, as `NSBundle executablePath` finds it for a
/// bundle directory given to Santa's fileinfo: `CFBundleExecutable` under `Contents/MacOS` for a
/// macOS bundle, beside the `Info.plist`'s directory for a framework (`Resources/Info.plist`) or
/// a flat bundle. `None` when `dir` is no bundle or names no executable that is a file.
pub fn bundle_executable(dir: &Path) -> Option<PathBuf> {
    let [contents, resources, versioned, flat] = info_plist_candidates(dir);
    let places = [
        (contents, dir.join("Contents/MacOS")),
        (resources, dir.to_path_buf()),
        (versioned, dir.join("Versions/Current")),
        (flat, dir.to_path_buf()),
    ];
    places.into_iter().find_map(|(plist, exe_dir)| {
        let bytes = read_small(&plist, INFO_PLIST_BYTES_MAX)?;
        let b = bundle_from_info_plist(dir, &bytes).filter(|b| !b.identifier.is_empty())?;
        let exe = exe_dir.join(b.executable?);
        exe.is_file().then_some(exe)
    })
}

/// The identity an `Info.plist` gives the bundle at `dir` (the plist's bytes).
pub fn bundle_from_info_plist(dir: &Path, bytes: &[u8]) -> Option<Bundle> {
    let info = plist::parse(bytes).ok()?;
    let s = |k: &str| {
        info.get(k)
            .and_then(plist::Plist::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Some(Bundle {
        path: dir.to_path_buf(),
        identifier: s("CFBundleIdentifier").unwrap_or_default(),
        name: s("CFBundleDisplayName").or_else(|| s("CFBundleName")),
        version: s("CFBundleVersion"),
        short_version: s("CFBundleShortVersionString"),
        executable: s("CFBundleExecutable"),
    })
}

/// The files a binary's special slots seal when it is the main executable of a bundle:
/// `Contents/Info.plist` and `Contents/_CodeSignature/CodeResources`.
pub fn external_files_for(binary: &Path) -> ExternalFiles {
    // .../X.app/Contents/MacOS/binary -> .../X.app/Contents
    let contents = binary
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "MacOS"))
        .and_then(Path::parent)
        .filter(|p| p.file_name().is_some_and(|n| n == "Contents"));
    match contents {
        Some(c) => ExternalFiles {
            info_plist: read_small(&c.join("Info.plist"), INFO_PLIST_BYTES_MAX),
            code_resources: read_small(
                &c.join("_CodeSignature/CodeResources"),
                CODE_RESOURCES_BYTES_MAX,
            ),
        },
        None => ExternalFiles::default(),
    }
}

/// Bounds for [`hash_bundle`].
#[derive(Clone, Copy, Debug)]
pub struct BundleLimits {
    /// At most this many directory entries are visited.
    pub file_count_max: usize,
    /// The walk and hashing stop when this much time has passed.
    pub time_budget: Duration,
    /// Hashing threads (0: the number of CPUs).
    pub threads: usize,
    /// Per-file limits.
    pub hash: HashLimits,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            file_count_max: BUNDLE_FILE_COUNT_MAX_DEFAULT,
            time_budget: BUNDLE_TIME_BUDGET_DEFAULT,
            threads: 0,
            hash: HashLimits::default(),
        }
    }
}

/// Progress of a bundle hash, for a UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BundleProgress {
    /// Regular files found by the walk.
    pub files_total: usize,
    /// Files examined so far.
    pub files_done: usize,
    /// Executables found so far.
    pub binaries_found: usize,
}

/// One executable of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleBinary {
    /// Its path.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: Sha256,
}

/// The result of [`hash_bundle`].
#[derive(Clone, Debug, Serialize)]
pub struct BundleHash {
    /// The bundle directory.
    pub path: PathBuf,
    /// Santa's bundle hash; `None` when the bundle holds no executable.
    pub bundle_hash: Option<Sha256>,
    /// The executables, sorted by path.
    pub binaries: Vec<BundleBinary>,
    /// Regular files examined.
    pub files_examined: usize,
    /// Files that could not be read (skipped, as Santa skips them).
    pub files_unreadable: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// Why a bundle could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A directory could not be listed.
    #[error("cannot list {}: {source}", path.display())]
    Walk {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// More than [`BundleLimits::file_count_max`] entries.
    #[error("bundle holds more than {limit} files")]
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// The time budget ran out.
    #[error("bundle hashing exceeded {budget:?}")]
    TimedOut {
        /// The budget.
        budget: Duration,
    },
}

/// Regular files under `root` (symlinks are not followed, as Santa's enumeration does not),
/// in a stable order.
fn walk(
    root: &Path,
    limits: &BundleLimits,
    deadline: Instant,
) -> Result<Vec<PathBuf>, BundleError> {
    let mut files = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        if Instant::now() > deadline {
            return Err(BundleError::TimedOut {
                budget: limits.time_budget,
            });
        }
        let rd = std::fs::read_dir(&dir).map_err(|source| BundleError::Walk {
            path: dir.clone(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| BundleError::Walk {
                path: dir.clone(),
                source,
            })?;
            seen += 1;
            if seen > limits.file_count_max {
                return Err(BundleError::TooManyFiles {
                    limit: limits.file_count_max,
                });
            }
            let Ok(t) = entry.file_type() else { continue };
            if t.is_dir() && depth < WALK_DEPTH_MAX {
                stack.push((entry.path(), depth + 1));
            } else if t.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// SHA-256 of a file if it is a Mach-O with an `MH_EXECUTE` slice; `Err` if unreadable.
fn executable_sha256(path: &Path, limits: &HashLimits) -> Result<Option<Sha256>, ()> {
    let file = File::open(path).map_err(|_| ())?;
    let bytes = FileBytes::load(&file, limits).map_err(|_| ())?;
    if !matches!(
        macho::classify(&bytes),
        FileFormat::MachO | FileFormat::FatMachO
    ) {
        return Ok(None);
    }
    let is_exec = macho::parse(&bytes)
        .map(|m| {
            m.slices
                .iter()
                .any(|s| s.file_type == MachFileType::Execute)
        })
        .unwrap_or(false);
    Ok(is_exec.then(|| bytes.sha256()))
}

/// Santa's bundle hash of a set of binary hashes: sort the lowercase hex strings, join them
/// without separator, SHA-256 the result. Duplicates count once (Santa keys them by hash).
pub fn bundle_hash_of(hashes: &[Sha256]) -> Option<Sha256> {
    if hashes.is_empty() {
        return None;
    }
    let mut hex: Vec<String> = hashes.iter().map(ToString::to_string).collect();
    hex.sort();
    hex.dedup();
    Some(Sha256::digest(hex.concat().as_bytes()))
}

/// Finds every executable in the bundle at `root`, hashes them in parallel and computes the
/// bundle hash. `progress` is called from the hashing threads as files complete.
pub fn hash_bundle(
    root: &Path,
    limits: &BundleLimits,
    progress: &(dyn Fn(BundleProgress) + Sync),
) -> Result<BundleHash, BundleError> {
    let start = Instant::now();
    let deadline = start + limits.time_budget;
    let files = walk(root, limits, deadline)?;
    let threads = match limits.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let found = AtomicUsize::new(0);
    let unreadable = AtomicUsize::new(0);
    let timed_out = AtomicBool::new(false);
    let results: Mutex<Vec<BundleBinary>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    if Instant::now() > deadline {
                        timed_out.store(true, Ordering::Relaxed);
                        break;
                    }
                    match executable_sha256(path, &limits.hash) {
                        Ok(Some(sha256)) => {
                            found.fetch_add(1, Ordering::Relaxed);
                            mine.push(BundleBinary {
                                path: path.clone(),
                                sha256,
                            });
                        }
                        Ok(None) => {}
                        Err(()) => {
                            unreadable.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(BundleProgress {
                        files_total: files.len(),
                        files_done: d,
                        binaries_found: found.load(Ordering::Relaxed),
                    });
                }
                // A poisoned lock means another hashing thread panicked; its results are
                // lost either way, so keep ours.
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                all.append(&mut mine);
            });
        }
    });
    if timed_out.load(Ordering::Relaxed) {
        return Err(BundleError::TimedOut {
            budget: limits.time_budget,
        });
    }
    let mut binaries = results.into_inner().unwrap_or_else(|p| p.into_inner());
    binaries.sort_by(|a, b| a.path.cmp(&b.path));
    let hashes: Vec<Sha256> = binaries.iter().map(|b| b.sha256).collect();
    Ok(BundleHash {
        path: root.to_path_buf(),
        bundle_hash: bundle_hash_of(&hashes),
        binaries,
        files_examined: done.into_inner(),
        files_unreadable: unreadable.into_inner(),
        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
