//! Mach-O structure: thin and fat (32- and 64-bit fat headers), CPU type, file type,
//! `__PAGEZERO`, and where each slice keeps its code signature.
//!
//! Everything is parsed from a byte slice (the mapped file) with checked offsets; the parsed
//! [`Slice`]s borrow their bytes from it. Counts are capped before anything is allocated.

use std::fmt;

use serde::Serialize;

use crate::bytes::{be_u32, be_u64, le_u32, le_u64, slice_at, slice_at_u64};

/// At most this many slices in a fat file, as in Santa's `SNTFileInfo.mm`: real universal
/// binaries carry two or three; a larger count is a malformed or hostile header.
pub const FAT_ARCH_COUNT_MAX: u32 = 64;

/// At most this many load commands per slice. Real binaries have tens to a few hundred; the
/// kernel bounds them only by `sizeofcmds`, so this keeps a crafted header from making us walk
/// millions of 8-byte commands.
pub const LOAD_COMMAND_COUNT_MAX: u32 = 8192;

const FAT_MAGIC: u32 = 0xcafe_babe;
const FAT_MAGIC_64: u32 = 0xcafe_babf;
const MH_MAGIC: u32 = 0xfeed_face;
const MH_MAGIC_64: u32 = 0xfeed_facf;
const LC_SEGMENT: u32 = 0x1;
const LC_SEGMENT_64: u32 = 0x19;
const LC_CODE_SIGNATURE: u32 = 0x1d;
const CPU_ARCH_ABI64: i32 = 0x0100_0000;
const CPU_ARCH_ABI64_32: i32 = 0x0200_0000;
const CPU_SUBTYPE_MASK: u32 = 0xff00_0000;

/// A CPU family from the Mach-O header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CpuType {
    /// 32-bit Intel.
    I386,
    /// 64-bit Intel.
    X86_64,
    /// 32-bit ARM.
    Arm,
    /// 64-bit ARM (Apple silicon).
    Arm64,
    /// ARM64 with 32-bit pointers (watchOS).
    Arm64_32,
    /// 32-bit PowerPC.
    PowerPc,
    /// 64-bit PowerPC.
    PowerPc64,
    /// Any other value, kept raw.
    Other(i32),
}

impl CpuType {
    /// The CPU type for a raw `cputype` field.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            7 => Self::I386,
            x if x == 7 | CPU_ARCH_ABI64 => Self::X86_64,
            12 => Self::Arm,
            x if x == 12 | CPU_ARCH_ABI64 => Self::Arm64,
            x if x == 12 | CPU_ARCH_ABI64_32 => Self::Arm64_32,
            18 => Self::PowerPc,
            x if x == 18 | CPU_ARCH_ABI64 => Self::PowerPc64,
            x => Self::Other(x),
        }
    }

    /// The architecture this machine runs natively, if it is one Mach-O knows.
    pub fn host() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::Arm64)
        } else {
            None
        }
    }
}

/// The architecture's name as Santa prints it (`macho_arch_name_for_cpu_type`, which knows the
/// subtypes, so `arm64e` and `x86_64h` are named), or `cputype:cpusubtype` for one it does not
/// know (`SNTFileInfo nameForCPUType:`).
pub fn arch_name(cpu_type: i32, cpu_subtype: u32) -> String {
    let name = match (CpuType::from_raw(cpu_type), cpu_subtype) {
        (CpuType::I386, _) => "i386",
        (CpuType::X86_64, 8) => "x86_64h",
        (CpuType::X86_64, _) => "x86_64",
        (CpuType::Arm64, 1) => "arm64v8",
        (CpuType::Arm64, 2) => "arm64e",
        (CpuType::Arm64, _) => "arm64",
        (CpuType::Arm64_32, _) => "arm64_32",
        (CpuType::Arm, 5) => "armv4t",
        (CpuType::Arm, 6) => "armv6",
        (CpuType::Arm, 7) => "armv5",
        (CpuType::Arm, 8) => "xscale",
        (CpuType::Arm, 9) => "armv7",
        (CpuType::Arm, 10) => "armv7f",
        (CpuType::Arm, 11) => "armv7s",
        (CpuType::Arm, 12) => "armv7k",
        (CpuType::Arm, 14) => "armv6m",
        (CpuType::Arm, 15) => "armv7m",
        (CpuType::Arm, 16) => "armv7em",
        (CpuType::Arm, _) => "arm",
        (CpuType::PowerPc, _) => "ppc",
        (CpuType::PowerPc64, _) => "ppc64",
        (CpuType::Other(_), _) => return format!("{cpu_type}:{cpu_subtype}"),
    };
    name.to_owned()
}

impl fmt::Display for CpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I386 => f.write_str("i386"),
            Self::X86_64 => f.write_str("x86_64"),
            Self::Arm => f.write_str("arm"),
            Self::Arm64 => f.write_str("arm64"),
            Self::Arm64_32 => f.write_str("arm64_32"),
            Self::PowerPc => f.write_str("ppc"),
            Self::PowerPc64 => f.write_str("ppc64"),
            Self::Other(x) => write!(f, "cpu({x:#x})"),
        }
    }
}

/// The Mach-O `filetype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MachFileType {
    /// `MH_OBJECT`: relocatable object.
    Object,
    /// `MH_EXECUTE`: an executable.
    Execute,
    /// `MH_FVMLIB`: fixed VM shared library.
    FixedVmLib,
    /// `MH_CORE`: core dump.
    Core,
    /// `MH_PRELOAD`: preloaded executable.
    Preload,
    /// `MH_DYLIB`: dynamic library.
    Dylib,
    /// `MH_DYLINKER`: the dynamic linker.
    Dylinker,
    /// `MH_BUNDLE`: loadable bundle (plug-in, Python/Node extension).
    Bundle,
    /// `MH_DYLIB_STUB`: stub library.
    DylibStub,
    /// `MH_DSYM`: debug symbols.
    Dsym,
    /// `MH_KEXT_BUNDLE`: kernel extension.
    KextBundle,
    /// `MH_FILESET`: kernel collection.
    FileSet,
    /// Any other value.
    Other(u32),
}

impl MachFileType {
    /// The file type for a raw `filetype` field.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Object,
            2 => Self::Execute,
            3 => Self::FixedVmLib,
            4 => Self::Core,
            5 => Self::Preload,
            6 => Self::Dylib,
            7 => Self::Dylinker,
            8 => Self::Bundle,
            9 => Self::DylibStub,
            10 => Self::Dsym,
            11 => Self::KextBundle,
            12 => Self::FileSet,
            x => Self::Other(x),
        }
    }

    /// The `MH_*` constant name, as the fixtures' manifest and `otool` spell it.
    pub fn constant_name(&self) -> &'static str {
        match self {
            Self::Object => "MH_OBJECT",
            Self::Execute => "MH_EXECUTE",
            Self::FixedVmLib => "MH_FVMLIB",
            Self::Core => "MH_CORE",
            Self::Preload => "MH_PRELOAD",
            Self::Dylib => "MH_DYLIB",
            Self::Dylinker => "MH_DYLINKER",
            Self::Bundle => "MH_BUNDLE",
            Self::DylibStub => "MH_DYLIB_STUB",
            Self::Dsym => "MH_DSYM",
            Self::KextBundle => "MH_KEXT_BUNDLE",
            Self::FileSet => "MH_FILESET",
            Self::Other(_) => "MH_UNKNOWN",
        }
    }

    /// Santa's wording for `fileinfo`'s Type line.
    pub fn description(&self) -> &'static str {
        // Santa's `humanReadableFileType`: four Mach-O kinds have a name, the rest is Unknown.
        match self {
            Self::Execute => "Executable",
            Self::Dylib => "Dynamic Library",
            Self::Bundle => "Bundle/Plugin",
            Self::KextBundle => "Kernel Extension",
            _ => "Unknown",
        }
    }
}

/// Where a slice keeps its code signature (`LC_CODE_SIGNATURE`), relative to the slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CodeSignatureLocation {
    /// Offset of the SuperBlob from the start of the slice.
    pub data_offset: u32,
    /// Size of the signature area in bytes.
    pub data_size: u32,
}

/// One architecture of a Mach-O file (the whole file when it is thin).
#[derive(Clone, Copy, Debug)]
pub struct Slice<'a> {
    /// CPU family.
    pub cpu: CpuType,
    /// Raw `cputype`.
    pub cpu_type_raw: i32,
    /// `cpusubtype` without its capability bits.
    pub cpu_subtype: u32,
    /// File type.
    pub file_type: MachFileType,
    /// 64-bit header.
    pub is_64: bool,
    /// Offset of the slice in the file (0 when thin).
    pub offset: u64,
    /// The first segment is a `__PAGEZERO` at address 0 with no access: its absence in an
    /// executable is a classic sign of a binary built to map code at address 0.
    pub has_pagezero: bool,
    /// Where the code signature is, if the slice has one.
    pub code_signature: Option<CodeSignatureLocation>,
    /// The slice's bytes.
    pub bytes: &'a [u8],
}

impl Slice<'_> {
    /// The slice's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A parsed Mach-O file: one slice if thin, one per architecture if fat.
#[derive(Clone, Debug)]
pub struct MachO<'a> {
    /// The file had a fat (universal) header.
    pub fat: bool,
    /// The slices that are thin Mach-O files, in header order.
    pub slices: Vec<Slice<'a>>,
    /// The fat header's records whose bytes are not a readable thin Mach-O. Security reads each
    /// slice at its record's offset on its own, so one bad slice does not make the others
    /// unreadable; it only has no signing information (Santa then finds the file's signing not
    /// consistent across architectures when another slice is signed).
    pub unreadable: Vec<UnreadableSlice>,
}

/// A fat record whose slice could not be read as a thin Mach-O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableSlice {
    /// Index of the record in the fat header.
    pub index: usize,
    /// The record's `cputype`.
    pub cpu_type_raw: i32,
    /// The record's `cpusubtype`, without capability bits.
    pub cpu_subtype: u32,
    /// The record's offset.
    pub offset: u64,
    /// The record's size.
    pub size: u64,
    /// Why it is unreadable.
    pub error: MachOError,
}

/// What a file is, judged by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FileFormat {
    /// A thin Mach-O.
    MachO,
    /// A fat (universal) Mach-O.
    FatMachO,
    /// A script (`#!`).
    Script,
    /// Anything else.
    Other,
}

/// Classifies a file by its magic; cheap (reads 4 bytes).
pub fn classify(bytes: &[u8]) -> FileFormat {
    if bytes.starts_with(b"#!") {
        return FileFormat::Script;
    }
    match (be_u32(bytes, 0), le_u32(bytes, 0)) {
        // Java class files share 0xcafebabe; what follows their version word is not a CPU.
        (Some(FAT_MAGIC | FAT_MAGIC_64), _) if looks_fat(bytes) => FileFormat::FatMachO,
        (Some(m), Some(l)) if is_thin_magic(m) || is_thin_magic(l) => FileFormat::MachO,
        _ => FileFormat::Other,
    }
}

/// A fat header is Mach-O when one of its records names a CPU Mach-O knows or points at a thin
/// Mach-O header, as Santa's `SNTFileInfo machHeaders` decides (whatever the records' CPU types:
/// an unknown one is no reason to call the file something else). Java class files share the magic; what follows it
/// there is a version, and the records it would imply point at no Mach-O.
fn looks_fat(bytes: &[u8]) -> bool {
    let Some(count) = be_u32(bytes, 4) else {
        return false;
    };
    if count == 0 || count > FAT_ARCH_COUNT_MAX {
        // Not a usable fat file, but `parse` gives the typed error for it.
        return count > FAT_ARCH_COUNT_MAX;
    }
    let is_64 = be_u32(bytes, 0) == Some(FAT_MAGIC_64);
    let entry_len: usize = if is_64 { 32 } else { 20 };
    (0..count as usize).any(|index| {
        let at = 8 + index * entry_len;
        // A CPU type Mach-O knows is taken at its word, so a record pointing nowhere still
        // reaches `parse` and gets its typed error.
        let known_cpu = be_u32(bytes, at).map(|c| CpuType::from_raw(c as i32));
        if !matches!(known_cpu, None | Some(CpuType::Other(_))) {
            return true;
        }
        let offset = if is_64 {
            be_u64(bytes, at + 8)
        } else {
            be_u32(bytes, at + 8).map(u64::from)
        };
        offset
            .and_then(|o| usize::try_from(o).ok())
            .is_some_and(|o| {
                be_u32(bytes, o).is_some_and(is_thin_magic)
                    || le_u32(bytes, o).is_some_and(is_thin_magic)
            })
    })
}

fn is_thin_magic(m: u32) -> bool {
    m == MH_MAGIC || m == MH_MAGIC_64
}

/// Why bytes are not a well-formed Mach-O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachOError {
    /// The bytes end before a structure that must be there.
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Where it should start.
        offset: u64,
    },
    /// The magic is neither thin nor fat Mach-O.
    BadMagic {
        /// The first four bytes, big-endian.
        magic: u32,
    },
    /// A fat header announcing no slices.
    NoArchs,
    /// A fat header announcing more than [`FAT_ARCH_COUNT_MAX`] slices.
    TooManyArchs {
        /// The count in the header.
        count: u32,
    },
    /// A fat slice lies (partly) outside the file.
    SliceOutOfBounds {
        /// Slice index in the fat header.
        index: usize,
        /// Offset from the header.
        offset: u64,
        /// Size from the header.
        size: u64,
        /// The file's length.
        file_len: u64,
    },
    /// Two fat slices overlap each other or the fat header.
    SlicesOverlap {
        /// Index of the first slice.
        first: usize,
        /// Index of the slice it overlaps (`None`: the fat header).
        second: Option<usize>,
    },
    /// A fat slice that is not a thin Mach-O (nested fat files are refused).
    BadSliceMagic {
        /// Slice index.
        index: usize,
        /// Its first four bytes, big-endian.
        magic: u32,
    },
    /// More than [`LOAD_COMMAND_COUNT_MAX`] load commands.
    TooManyLoadCommands {
        /// The count in the header.
        count: u32,
    },
    /// A load command with a size below 8, or running past `sizeofcmds`.
    BadLoadCommand {
        /// Index of the command.
        index: u32,
        /// Its `cmdsize`.
        cmd_size: u32,
    },
    /// More than one `LC_CODE_SIGNATURE`.
    DuplicateCodeSignature,
    /// `LC_CODE_SIGNATURE` points outside the slice.
    CodeSignatureOutOfBounds {
        /// Its `dataoff`.
        data_offset: u32,
        /// Its `datasize`.
        data_size: u32,
        /// The slice's length.
        slice_len: u64,
    },
    /// An error inside slice `index` of a fat file.
    InSlice {
        /// Slice index.
        index: usize,
        /// What went wrong.
        source: Box<MachOError>,
    },
}

impl Serialize for MachOError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for MachOError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, offset } => write!(f, "truncated {what} at offset {offset}"),
            Self::BadMagic { magic } => write!(f, "not a Mach-O file (magic {magic:#010x})"),
            Self::NoArchs => write!(f, "fat header with no architectures"),
            Self::TooManyArchs { count } => write!(
                f,
                "fat header claims {count} architectures (max {FAT_ARCH_COUNT_MAX})"
            ),
            Self::SliceOutOfBounds {
                index,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "slice {index} ({size} bytes at {offset}) exceeds the file ({file_len} bytes)"
            ),
            Self::SlicesOverlap {
                first,
                second: Some(s),
            } => write!(f, "slices {first} and {s} overlap"),
            Self::SlicesOverlap {
                first,
                second: None,
            } => write!(f, "slice {first} overlaps the fat header"),
            Self::BadSliceMagic { index, magic } => {
                write!(
                    f,
                    "slice {index} is not a thin Mach-O (magic {magic:#010x})"
                )
            }
            Self::TooManyLoadCommands { count } => {
                write!(f, "{count} load commands (max {LOAD_COMMAND_COUNT_MAX})")
            }
            Self::BadLoadCommand { index, cmd_size } => {
                write!(f, "load command {index} has bad size {cmd_size}")
            }
            Self::DuplicateCodeSignature => write!(f, "more than one LC_CODE_SIGNATURE"),
            Self::CodeSignatureOutOfBounds {
                data_offset,
                data_size,
                slice_len,
            } => write!(
                f,
                "code signature ({data_size} bytes at {data_offset}) exceeds the slice ({slice_len} bytes)"
            ),
            Self::InSlice { index, source } => write!(f, "slice {index}: {source}"),
        }
    }
}

impl std::error::Error for MachOError {}

/// Parses a thin or fat Mach-O.
pub fn parse(bytes: &[u8]) -> Result<MachO<'_>, MachOError> {
    let magic = be_u32(bytes, 0).ok_or(MachOError::Truncated {
        what: "magic",
        offset: 0,
    })?;
    match magic {
        FAT_MAGIC | FAT_MAGIC_64 => parse_fat(bytes, magic == FAT_MAGIC_64),
        _ => Ok(MachO {
            fat: false,
            slices: vec![parse_thin(bytes, 0)?],
            unreadable: Vec::new(),
        }),
    }
}

struct FatArch {
    cpu_type: i32,
    cpu_subtype: u32,
    offset: u64,
    size: u64,
}

fn parse_fat(bytes: &[u8], is_64: bool) -> Result<MachO<'_>, MachOError> {
    let count = be_u32(bytes, 4).ok_or(MachOError::Truncated {
        what: "fat header",
        offset: 4,
    })?;
    if count == 0 {
        return Err(MachOError::NoArchs);
    }
    if count > FAT_ARCH_COUNT_MAX {
        return Err(MachOError::TooManyArchs { count });
    }
    let entry_len: usize = if is_64 { 32 } else { 20 };
    let header_end = 8 + entry_len * count as usize;
    let file_len = bytes.len() as u64;
    let mut archs = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let at = 8 + index * entry_len;
        let truncated = MachOError::Truncated {
            what: "fat_arch",
            offset: at as u64,
        };
        let entry = slice_at(bytes, at, entry_len).ok_or(truncated.clone())?;
        let cpu_type = be_u32(entry, 0).ok_or(truncated.clone())? as i32;
        let cpu_subtype = be_u32(entry, 4).ok_or(truncated.clone())? & !CPU_SUBTYPE_MASK;
        let (offset, size) = if is_64 {
            (be_u64(entry, 8), be_u64(entry, 16))
        } else {
            (
                be_u32(entry, 8).map(u64::from),
                be_u32(entry, 12).map(u64::from),
            )
        };
        let (offset, size) = offset.zip(size).ok_or(truncated)?;
        if offset.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(MachOError::SliceOutOfBounds {
                index,
                offset,
                size,
                file_len,
            });
        }
        if offset < header_end as u64 {
            return Err(MachOError::SlicesOverlap {
                first: index,
                second: None,
            });
        }
        archs.push(FatArch {
            cpu_type,
            cpu_subtype,
            offset,
            size,
        });
    }
    // Overlap check on a sorted copy of indices: O(n log n) with n <= 64.
    let mut order: Vec<usize> = (0..archs.len()).collect();
    order.sort_by_key(|&i| archs[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&archs[pair[0]], &archs[pair[1]]);
        // `offset + size` was checked above.
        if a.offset + a.size > b.offset {
            return Err(MachOError::SlicesOverlap {
                first: pair[0].min(pair[1]),
                second: Some(pair[0].max(pair[1])),
            });
        }
    }
    let mut slices = Vec::with_capacity(archs.len());
    let mut unreadable = Vec::new();
    for (index, arch) in archs.iter().enumerate() {
        // In bounds: checked above.
        let body = slice_at_u64(bytes, arch.offset, arch.size).unwrap_or(&[]);
        let slice_magic = be_u32(body, 0).unwrap_or(0);
        let parsed = if is_thin_magic(slice_magic) || le_u32(body, 0).is_some_and(is_thin_magic) {
            parse_thin(body, arch.offset).map_err(|source| MachOError::InSlice {
                index,
                source: Box::new(source),
            })
        } else {
            Err(MachOError::BadSliceMagic {
                index,
                magic: slice_magic,
            })
        };
        match parsed {
            Ok(mut slice) => {
                // The slice is named by its record, as Santa names architectures
                // (`SNTFileInfo machHeaders`) and as the kernel picks one; a record whose CPU
                // type differs from the slice's own header is not an error to Security, which
                // reads the slice at the record's offset.
                slice.offset = arch.offset;
                slice.cpu_type_raw = arch.cpu_type;
                slice.cpu = CpuType::from_raw(arch.cpu_type);
                slice.cpu_subtype = arch.cpu_subtype;
                slices.push(slice);
            }
            Err(error) => unreadable.push(UnreadableSlice {
                index,
                cpu_type_raw: arch.cpu_type,
                cpu_subtype: arch.cpu_subtype,
                offset: arch.offset,
                size: arch.size,
                error,
            }),
        }
    }
    if slices.is_empty() {
        // Nothing in the file is Mach-O code: report why the first slice is not.
        return Err(unreadable.swap_remove(0).error);
    }
    Ok(MachO {
        fat: true,
        slices,
        unreadable,
    })
}

/// Largest embedded `Info.plist` read, as Santa bounds it (`SNTFileInfo embeddedPlist`).
const EMBEDDED_INFO_PLIST_BYTES_MAX: u64 = 2_000_000;

/// The `Info.plist` an executable without a bundle carries in its `__TEXT,__info_plist` section
/// (command-line tools linked with `-sectcreate`), as Santa's `SNTFileInfo embeddedPlist` finds
/// it: executables only, the first `__TEXT` segment, sections within bounds.
pub fn embedded_info_plist<'a>(slice: &Slice<'a>) -> Option<&'a [u8]> {
    if slice.file_type != MachFileType::Execute {
        return None;
    }
    let bytes = slice.bytes;
    let little = matches!(le_u32(bytes, 0), Some(MH_MAGIC | MH_MAGIC_64));
    let rd32 = |b: &[u8], off: usize| {
        if little {
            le_u32(b, off)
        } else {
            be_u32(b, off)
        }
    };
    let (header_len, segment_len, section_len) = if slice.is_64 {
        (32usize, 72usize, 80usize)
    } else {
        (28, 56, 68)
    };
    let ncmds = rd32(bytes, 16)?.min(LOAD_COMMAND_COUNT_MAX);
    let mut at = header_len;
    for _ in 0..ncmds {
        let cmd = rd32(bytes, at)?;
        let size = rd32(bytes, at + 4)? as usize;
        let body = slice_at(bytes, at, size.max(8))?;
        let is_text = slice_at(body, 8, 16).is_some_and(|n| n.starts_with(b"__TEXT\0"));
        if (cmd == LC_SEGMENT_64 || cmd == LC_SEGMENT) && is_text {
            let nsects = rd32(body, if slice.is_64 { 64 } else { 48 })? as usize;
            for i in 0..nsects.min(size / section_len) {
                let sect = slice_at(body, segment_len + i * section_len, section_len)?;
                if !sect.starts_with(b"__info_plist") {
                    continue;
                }
                let (size, offset) = if slice.is_64 {
                    (rd64_in(sect, 40, little)?, rd32(sect, 48)?)
                } else {
                    (u64::from(rd32(sect, 36)?), rd32(sect, 40)?)
                };
                if size >= EMBEDDED_INFO_PLIST_BYTES_MAX {
                    return None;
                }
                return slice_at_u64(bytes, u64::from(offset), size);
            }
            return None;
        }
        at = at.checked_add(size.max(8))?;
    }
    None
}

/// Reads a thin Mach-O occupying all of `bytes`.
fn parse_thin(bytes: &[u8], file_offset: u64) -> Result<Slice<'_>, MachOError> {
    let trunc = |what, offset: usize| MachOError::Truncated {
        what,
        offset: file_offset + offset as u64,
    };
    let raw_be = be_u32(bytes, 0).ok_or(trunc("magic", 0))?;
    let little = match le_u32(bytes, 0) {
        Some(MH_MAGIC | MH_MAGIC_64) => true,
        _ if is_thin_magic(raw_be) => false,
        _ => return Err(MachOError::BadMagic { magic: raw_be }),
    };
    let rd32 = |off: usize| {
        if little {
            le_u32(bytes, off)
        } else {
            be_u32(bytes, off)
        }
    };
    let is_64 = rd32(0) == Some(MH_MAGIC_64);
    let header_len: usize = if is_64 { 32 } else { 28 };
    let header = slice_at(bytes, 0, header_len).ok_or(trunc("mach_header", 0))?;
    let field = |off| {
        if little {
            le_u32(header, off)
        } else {
            be_u32(header, off)
        }
        .unwrap_or(0)
    };
    let cpu_type_raw = field(4) as i32;
    let cpu_subtype = field(8) & !CPU_SUBTYPE_MASK;
    let file_type = MachFileType::from_raw(field(12));
    let ncmds = field(16);
    let sizeofcmds = field(20);
    if ncmds > LOAD_COMMAND_COUNT_MAX {
        return Err(MachOError::TooManyLoadCommands { count: ncmds });
    }
    let cmds = slice_at(bytes, header_len, sizeofcmds as usize)
        .ok_or(trunc("load commands", header_len))?;
    let mut pos = 0usize;
    let mut first_segment_is_pagezero: Option<bool> = None;
    let mut code_signature = None;
    for index in 0..ncmds {
        let cmd_rd = |off: usize| {
            if little {
                le_u32(cmds, off)
            } else {
                be_u32(cmds, off)
            }
        };
        let cmd = cmd_rd(pos).ok_or(trunc("load command", header_len + pos))?;
        let cmd_size = cmd_rd(pos + 4).ok_or(trunc("load command", header_len + pos))?;
        let body = if cmd_size >= 8 {
            slice_at(cmds, pos, cmd_size as usize)
        } else {
            None
        };
        let body = body.ok_or(MachOError::BadLoadCommand { index, cmd_size })?;
        let brd32 = |off: usize| {
            if little {
                le_u32(body, off)
            } else {
                be_u32(body, off)
            }
        };
        match cmd {
            LC_SEGMENT | LC_SEGMENT_64 if first_segment_is_pagezero.is_none() => {
                let name = slice_at(body, 8, 16).map(|n| n.split(|&b| b == 0).next());
                let is_pagezero_name = name.flatten() == Some(b"__PAGEZERO".as_slice());
                let (vmaddr, maxprot, initprot) = if cmd == LC_SEGMENT_64 {
                    (rd64_in(body, 24, little), brd32(56), brd32(60))
                } else {
                    (brd32(24).map(u64::from), brd32(40), brd32(44))
                };
                first_segment_is_pagezero = Some(
                    is_pagezero_name
                        && vmaddr == Some(0)
                        && maxprot == Some(0)
                        && initprot == Some(0),
                );
            }
            LC_CODE_SIGNATURE => {
                if code_signature.is_some() {
                    return Err(MachOError::DuplicateCodeSignature);
                }
                let (data_offset, data_size) = brd32(8)
                    .zip(brd32(12))
                    .ok_or(MachOError::BadLoadCommand { index, cmd_size })?;
                let slice_len = bytes.len() as u64;
                if u64::from(data_offset) + u64::from(data_size) > slice_len {
                    return Err(MachOError::CodeSignatureOutOfBounds {
                        data_offset,
                        data_size,
                        slice_len,
                    });
                }
                code_signature = Some(CodeSignatureLocation {
                    data_offset,
                    data_size,
                });
            }
            _ => {}
        }
        pos += cmd_size as usize;
    }
    Ok(Slice {
        cpu: CpuType::from_raw(cpu_type_raw),
        cpu_type_raw,
        cpu_subtype,
        file_type,
        is_64,
        offset: 0,
        has_pagezero: first_segment_is_pagezero == Some(true),
        code_signature,
        bytes,
    })
}

fn rd64_in(bytes: &[u8], off: usize, little: bool) -> Option<u64> {
    if little {
        le_u64(bytes, off)
    } else {
        be_u64(bytes, off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_by_magic() {
        assert_eq!(classify(b"#!/bin/sh\n"), FileFormat::Script);
        assert_eq!(classify(&[0xcf, 0xfa, 0xed, 0xfe, 0, 0]), FileFormat::MachO);
        assert_eq!(classify(&[0xfe, 0xed, 0xfa, 0xce]), FileFormat::MachO);
        let fat = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2, 0x01, 0, 0, 0x07];
        assert_eq!(classify(&fat), FileFormat::FatMachO);
        // A Java 8 class file: minor 0, major 52, then a constant-pool count and a tag.
        let class = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52, 0, 0x1d, 0x0a, 0];
        assert_eq!(classify(&class), FileFormat::Other);
        assert_eq!(classify(&[]), FileFormat::Other);
        assert_eq!(classify(b"\x7fELF"), FileFormat::Other);
    }
}
