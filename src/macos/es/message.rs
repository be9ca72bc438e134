//! The message model: one Endpoint Security message as plain values borrowed from it
//! ([`MessageView`]), read through [`EsMessage`] from whatever holds it, and the engine's payload
//! ([`EsExec`]).

use crate::eventlog::{ARGS_BYTES_MAX, Text};
use santa_hotpath::{FileKey, FileStamp};

/// A file as Endpoint Security describes it (`es_file_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileView<'a> {
    /// Absolute path (bytes, not necessarily UTF-8).
    pub path: &'a [u8],
    /// ES truncated the path (it is then not the file's path and must not be opened).
    pub path_truncated: bool,
    /// `st_dev`, widened exactly as `std::os::unix::fs::MetadataExt::dev` widens it.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i64,
    /// `st_size`.
    pub size: u64,
}

impl FileView<'_> {
    /// The decision cache key.
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            ino: self.ino,
        }
    }

    /// What must still hold for a cached decision to apply.
    pub fn stamp(&self) -> FileStamp {
        FileStamp {
            ctime_ns: self.ctime_ns,
            size_bytes: self.size,
        }
    }
}

/// A process as Endpoint Security describes it (`es_process_t` plus its audit token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessView<'a> {
    /// pid (from the audit token).
    pub pid: i32,
    /// pidversion (from the audit token): tells apart two images run by one pid.
    pub pidversion: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `CS_*` flags, see [`cs`](super::cs).
    pub codesigning_flags: u32,
    /// The kernel says it is an Apple platform binary.
    pub is_platform_binary: bool,
    /// The process holds the Endpoint Security entitlement.
    pub is_es_client: bool,
    /// The code directory hash the kernel validated.
    pub cdhash: [u8; 20],
    /// Signing identifier (empty when unsigned).
    pub signing_id: &'a [u8],
    /// Team ID (empty for ad-hoc and platform binaries).
    pub team_id: &'a [u8],
    /// The executable file.
    pub executable: FileView<'a>,
    /// The controlling terminal's path, if any (message version ≥ 2).
    pub tty: Option<&'a [u8]>,
}

/// An exec, AUTH or NOTIFY (`es_event_exec_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecView<'a> {
    /// The new image.
    pub target: ProcessView<'a>,
    /// The image's CPU type (message version ≥ 6), for Santa's "the kernel will kill it" rule.
    pub image_cputype: Option<i32>,
}

/// The events santad subscribes to, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventView<'a> {
    /// `ES_EVENT_TYPE_AUTH_EXEC`: the exec waits for our answer.
    AuthExec(ExecView<'a>),
    /// `ES_EVENT_TYPE_NOTIFY_EXEC`: an exec happened (also those ES's cache allowed).
    NotifyExec(ExecView<'a>),
    /// `ES_EVENT_TYPE_NOTIFY_CLOSE`.
    NotifyClose {
        /// The file was written through a file descriptor.
        modified: bool,
        /// The file.
        target: FileView<'a>,
    },
    /// `ES_EVENT_TYPE_NOTIFY_UNLINK`.
    NotifyUnlink {
        /// The removed file.
        target: FileView<'a>,
    },
    /// `ES_EVENT_TYPE_NOTIFY_RENAME`.
    NotifyRename {
        /// The renamed file.
        source: FileView<'a>,
        /// The file it replaced, if it replaced one.
        destination: Option<FileView<'a>>,
    },
    /// Any other event type (its `es_event_type_t` number).
    Other(u32),
}

/// One ES message as plain values borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// `ES_ACTION_TYPE_AUTH`: the message must be answered before `deadline_ticks`.
    pub is_auth: bool,
    /// The kernel's deadline in `mach_absolute_time` ticks (AUTH only).
    pub deadline_ticks: u64,
    /// The process that acted (for an exec: the one calling exec).
    pub process: ProcessView<'a>,
    /// The event.
    pub event: EventView<'a>,
}

impl<'a> MessageView<'a> {
    /// The exec, for AUTH_EXEC and NOTIFY_EXEC.
    pub fn exec(&self) -> Option<&ExecView<'a>> {
        match &self.event {
            EventView::AuthExec(e) | EventView::NotifyExec(e) => Some(e),
            _ => None,
        }
    }
}

/// Whatever holds an ES message: a retained `es_message_t` on macOS, plain values in tests.
pub trait EsMessage: Send + Sync + 'static {
    /// The message as plain values (no copy: slices borrow the message).
    fn view(&self) -> MessageView<'_>;
    /// Writes the exec's arguments into `out`, each followed by NUL (exec messages only).
    fn exec_args_into(&self, out: &mut Text<ARGS_BYTES_MAX>);
}

/// AUTH or NOTIFY exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AUTH_EXEC`: the exec waits for our answer.
    Auth,
    /// `NOTIFY_EXEC`: only logged.
    Notify,
}

/// The engine's payload: one retained message and what the intake learned from it.
#[derive(Debug)]
pub struct EsExec<M> {
    pub(super) msg: M,
    pub(super) kind: Kind,
    pub(super) key: FileKey,
}

impl<M: EsMessage> EsExec<M> {
    /// The message.
    pub fn message(&self) -> &M {
        &self.msg
    }

    /// AUTH or NOTIFY.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}
