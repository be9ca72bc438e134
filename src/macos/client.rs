//! macOS: the one file of Endpoint Security calls (santad's wiring on macOS, which uses it, is
//! `daemon.rs`).
//!
//! Type-checked and linted for both Apple targets by `make check-macos` (against
//! `endpoint-sec-sys` 0.6.2, `block2` 0.6.2, `mach2` 0.7.0 and `libc` 0.2.191), never linked or
//! run here (see the README's macOS section). Everything that can be platform-neutral is in
//! [`crate::macos::es`] and tested on Linux; this file only
//!
//! - creates the client (`es_new_client`, errors as [`NewClientError`]), mutes santad itself
//!   (`es_mute_process` with our audit token), subscribes (`es_subscribe`), clears ES's cache
//!   (`es_clear_cache`) and deletes the client (`es_delete_client`, on the creating thread);
//! - in the callback, retains the message (`es_retain_message`) and hands it to
//!   [`EsShared::intake`](crate::macos::es::EsShared::intake), which pushes it onto a worker's
//!   queue (no evaluation, no blocking);
//! - reads messages into plain [`MessageView`]s and answers them (`es_respond_auth_result`,
//!   releasing with `es_release_message` when the engine drops the payload).

use super::MacError;
use crate::eventlog::{ARGS_BYTES_MAX, Text};
use crate::macos::es::{
    AuthPort, ClearCacheError, EsMessage, EventView, ExecView, FileView, MessageView,
    NewClientError, ProcessView, RespondError,
};
use endpoint_sec_sys::block2::RcBlock;
use endpoint_sec_sys::{
    audit_token_t, audit_token_to_pid, audit_token_to_pidversion, audit_token_to_rgid,
    audit_token_to_ruid, es_action_type_t, es_auth_result_t, es_clear_cache, es_client_t,
    es_delete_client, es_destination_type_t, es_event_close_t, es_event_exec_t, es_event_rename_t,
    es_event_type_t, es_event_unlink_t, es_exec_arg, es_exec_arg_count, es_file_t, es_message_t,
    es_mute_process, es_new_client, es_process_t, es_release_message, es_respond_auth_result,
    es_retain_message, es_return_t, es_string_token_t, es_subscribe, es_unsubscribe_all,
};
use santa_rules as rules;
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One ES message, retained until the engine is done with it.
pub struct RetainedMessage(NonNull<es_message_t>);

// SAFETY: a retained es_message_t is immutable and owned by the ES framework until released;
// ES documents retaining in the handler and answering/releasing later from other threads (that
// is what es_retain_message is for). We never write through the pointer.
unsafe impl Send for RetainedMessage {}
// SAFETY: see Send: shared references only read immutable memory.
unsafe impl Sync for RetainedMessage {}

impl std::fmt::Debug for RetainedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RetainedMessage").field(&self.0).finish()
    }
}

impl RetainedMessage {
    /// Retains `msg`.
    ///
    /// # Safety
    ///
    /// `msg` must be the message ES passed to the handler block, and the call must happen while
    /// the handler runs (the message is only guaranteed to live for that scope).
    unsafe fn retain(msg: NonNull<es_message_t>) -> Self {
        // SAFETY: by the caller's contract `msg` is valid now; retaining extends its lifetime
        // until the matching es_release_message in Drop.
        unsafe { es_retain_message(msg.as_ref()) };
        Self(msg)
    }

    fn raw(&self) -> &es_message_t {
        // SAFETY: retained in `retain`, released only in Drop, so valid for &self's lifetime.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for RetainedMessage {
    fn drop(&mut self) {
        // SAFETY: retained exactly once in `retain`; this is the one matching release.
        unsafe { es_release_message(self.0.as_ref()) };
    }
}

fn token_bytes(token: &es_string_token_t) -> &[u8] {
    // SAFETY: ES string tokens in a retained message point to `length` initialised bytes that
    // live as long as the message; as_os_str returns an empty string for null/0.
    unsafe { token.as_os_str() }.as_bytes()
}

fn file_view(file: &es_file_t) -> FileView<'_> {
    let st = &file.stat;
    FileView {
        path: token_bytes(&file.path),
        path_truncated: file.path_truncated,
        // `as u64` on dev_t (i32) sign-extends exactly as std's MetadataExt::dev does, so the
        // key matches the fstat of the opened file in es::open_executable.
        dev: st.st_dev as u64,
        ino: st.st_ino,
        // time_t and c_long are both i64 on macOS.
        ctime_ns: st
            .st_ctime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_ctime_nsec),
        size: st.st_size as u64,
    }
}

fn process_view(process: &es_process_t, version: u32) -> ProcessView<'_> {
    let token = process.audit_token;
    // SAFETY: the audit_token_to_* functions read a token passed by value; no preconditions.
    let (pid, pidversion, uid, gid) = unsafe {
        (
            audit_token_to_pid(token),
            audit_token_to_pidversion(token),
            audit_token_to_ruid(token),
            audit_token_to_rgid(token),
        )
    };
    // SAFETY: ES guarantees a non-null executable for every process (the accessor panics
    // rather than dereference null).
    let executable = unsafe { process.executable() };
    let tty = if version >= 2 {
        // SAFETY: `tty` exists from message version 2; null (no terminal) gives None.
        unsafe { process.tty() }
    } else {
        None
    };
    ProcessView {
        pid,
        pidversion,
        ppid: process.ppid,
        uid,
        gid,
        codesigning_flags: process.codesigning_flags,
        is_platform_binary: process.is_platform_binary,
        is_es_client: process.is_es_client,
        cdhash: process.cdhash,
        signing_id: token_bytes(&process.signing_id),
        team_id: token_bytes(&process.team_id),
        executable: file_view(executable),
        tty: tty.map(|f| token_bytes(&f.path)),
    }
}

fn exec_view(exec: &es_event_exec_t, version: u32) -> ExecView<'_> {
    // SAFETY: an exec event always has a non-null target.
    let target = unsafe { exec.target() };
    let image_cputype = if version >= 6 {
        // SAFETY: image_cputype exists from message version 6 (macOS 13); the union's struct
        // member is the one ES fills for exec events.
        Some(unsafe { exec.anon_0.anon_0.image_cputype })
    } else {
        None
    };
    ExecView {
        target: process_view(target, version),
        image_cputype,
    }
}

impl EsMessage for RetainedMessage {
    fn view(&self) -> MessageView<'_> {
        let m = self.raw();
        let version = m.version;
        let ty = m.event_type;
        let event = if ty == es_event_type_t::ES_EVENT_TYPE_AUTH_EXEC
            || ty == es_event_type_t::ES_EVENT_TYPE_NOTIFY_EXEC
        {
            // SAFETY: the event type says `exec` is the member of the union ES filled.
            let exec: &es_event_exec_t = unsafe { &m.event.exec };
            let exec = exec_view(exec, version);
            if ty == es_event_type_t::ES_EVENT_TYPE_AUTH_EXEC {
                EventView::AuthExec(exec)
            } else {
                EventView::NotifyExec(exec)
            }
        } else if ty == es_event_type_t::ES_EVENT_TYPE_NOTIFY_CLOSE {
            // SAFETY: the event type says `close` is the member ES filled.
            let close: &es_event_close_t = unsafe { &m.event.close };
            // SAFETY: a close event always has a non-null target.
            let target = unsafe { close.target() };
            EventView::NotifyClose {
                modified: close.modified,
                target: file_view(target),
            }
        } else if ty == es_event_type_t::ES_EVENT_TYPE_NOTIFY_UNLINK {
            // SAFETY: the event type says `unlink` is the member ES filled.
            let unlink: &es_event_unlink_t = unsafe { &m.event.unlink };
            // SAFETY: an unlink event always has a non-null target.
            let target = unsafe { unlink.target() };
            EventView::NotifyUnlink {
                target: file_view(target),
            }
        } else if ty == es_event_type_t::ES_EVENT_TYPE_NOTIFY_RENAME {
            // SAFETY: the event type says `rename` is the member ES filled.
            let rename: &es_event_rename_t = unsafe { &m.event.rename };
            // SAFETY: a rename event always has a non-null source.
            let source = unsafe { rename.source() };
            let destination = if rename.destination_type
                == es_destination_type_t::ES_DESTINATION_TYPE_EXISTING_FILE
            {
                // SAFETY: EXISTING_FILE selects the `existing_file` member, set non-null.
                Some(file_view(unsafe {
                    rename.destination.existing_file.as_ref()
                }))
            } else {
                None
            };
            EventView::NotifyRename {
                source: file_view(source),
                destination,
            }
        } else {
            EventView::Other(ty.0)
        };
        // SAFETY: every message has a non-null instigating process.
        let process = unsafe { m.process() };
        MessageView {
            is_auth: m.action_type == es_action_type_t::ES_ACTION_TYPE_AUTH,
            deadline_ticks: m.deadline,
            process: process_view(process, version),
            event,
        }
    }

    fn exec_args_into(&self, out: &mut Text<ARGS_BYTES_MAX>) {
        let m = self.raw();
        let ty = m.event_type;
        if ty != es_event_type_t::ES_EVENT_TYPE_AUTH_EXEC
            && ty != es_event_type_t::ES_EVENT_TYPE_NOTIFY_EXEC
        {
            return;
        }
        // SAFETY: the event type says the exec member is the one filled.
        let exec: &es_event_exec_t = unsafe { &m.event.exec };
        // SAFETY: `exec` belongs to a retained exec message.
        let count = unsafe { es_exec_arg_count(exec) };
        for index in 0..count {
            // SAFETY: index < es_exec_arg_count, as es_exec_arg requires; the token points into
            // the retained message and is copied out before the next call.
            let arg = unsafe { es_exec_arg(exec, index) };
            out.push(token_bytes(&arg));
            out.push(b"\0");
            if out.is_truncated() {
                break;
            }
        }
    }
}

type Handler = dyn Fn(NonNull<es_client_t>, NonNull<es_message_t>);

/// santad's Endpoint Security client.
pub struct EsClient {
    raw: NonNull<es_client_t>,
    /// Kept alive as long as the client: ES calls it for every message.
    _handler: RcBlock<Handler>,
    deleted: AtomicBool,
}

// SAFETY: es_respond_auth_result, es_clear_cache, es_subscribe and es_mute_process may be called
// from any thread (Santa answers from its dispatch queues); es_delete_client must be called from
// the creating thread, which `run` guarantees by calling `delete` itself before returning.
unsafe impl Send for EsClient {}
// SAFETY: see Send; the client handle is not mutated by us after creation.
unsafe impl Sync for EsClient {}

impl std::fmt::Debug for EsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsClient").field("raw", &self.raw).finish()
    }
}

/// Answers `msg` through `client`.
pub(super) fn respond_raw(
    client: NonNull<es_client_t>,
    msg: &RetainedMessage,
    action: rules::Action,
    cache: bool,
) -> Result<(), RespondError> {
    // The decision's one translation into Endpoint Security's words.
    let result = match action {
        rules::Action::Allow => es_auth_result_t::ES_AUTH_RESULT_ALLOW,
        rules::Action::Deny => es_auth_result_t::ES_AUTH_RESULT_DENY,
    };
    // SAFETY: `client` is live (santad deletes it only after the engine answered everything);
    // `msg` is retained; an AUTH_EXEC message is answered with an auth result, once (the engine's
    // slot CAS guarantees it).
    let code = unsafe { es_respond_auth_result(client.as_ptr(), msg.0.as_ptr(), result, cache) };
    RespondError::check(code.0)
}

impl EsClient {
    /// Connects to Endpoint Security; every message goes to `on_message` on ES's thread,
    /// retained, with the client that received it.
    pub fn new(
        on_message: impl Fn(NonNull<es_client_t>, RetainedMessage) + 'static,
    ) -> Result<Self, NewClientError> {
        let handler: RcBlock<Handler> = RcBlock::new(
            move |client: NonNull<es_client_t>, msg: NonNull<es_message_t>| {
                // SAFETY: ES calls the handler with a valid message for this call's duration.
                let retained = unsafe { RetainedMessage::retain(msg) };
                on_message(client, retained);
            },
        );
        let mut raw: *mut es_client_t = std::ptr::null_mut();
        // SAFETY: `raw` is a valid out pointer; the handler block outlives the client (it is
        // stored in the returned EsClient, and ES copies the block anyway).
        let code = unsafe { es_new_client(&mut raw, &handler) };
        NewClientError::check(code.0)?;
        let raw = NonNull::new(raw).ok_or(NewClientError::Internal)?;
        Ok(Self {
            raw,
            _handler: handler,
            deleted: AtomicBool::new(false),
        })
    }

    /// Stops ES from sending santad's own events (Santa's `muteSelf`): santad reads and hashes
    /// files, and must never wait on itself.
    pub fn mute_self(&self) -> Result<(), MacError> {
        let token = own_audit_token().map_err(MacError::AuditToken)?;
        // SAFETY: live client; `token` is a valid audit token on our stack for the call.
        let rc = unsafe { es_mute_process(self.raw.as_ptr(), &token) };
        if rc == es_return_t::ES_RETURN_SUCCESS {
            Ok(())
        } else {
            Err(MacError::Mute)
        }
    }

    /// Subscribes to `events` (adds to earlier subscriptions).
    pub fn subscribe(&self, events: &[es_event_type_t]) -> Result<(), MacError> {
        // SAFETY: live client; `events` points to `len` valid event types for the call.
        let rc = unsafe { es_subscribe(self.raw.as_ptr(), events.as_ptr(), events.len() as u32) };
        if rc == es_return_t::ES_RETURN_SUCCESS {
            Ok(())
        } else {
            Err(MacError::Subscribe)
        }
    }

    /// Stops every subscription: no new messages after it returns.
    pub fn unsubscribe_all(&self) {
        // SAFETY: live client.
        let _ = unsafe { es_unsubscribe_all(self.raw.as_ptr()) };
    }

    /// Clears ES's decision cache (shared by all ES clients, hence rate-limited).
    pub fn clear_cache(&self) -> Result<(), ClearCacheError> {
        // SAFETY: live client.
        let code = unsafe { es_clear_cache(self.raw.as_ptr()) };
        ClearCacheError::check(code.0)
    }

    /// Disconnects. Must be called on the thread that created the client, after the engine has
    /// answered everything (a retained message may not outlive its client's answers).
    pub fn delete(&self) {
        if !self.deleted.swap(true, Ordering::AcqRel) {
            // SAFETY: live client, deleted once, from the creating thread (see `run`).
            let _ = unsafe { es_delete_client(self.raw.as_ptr()) };
        }
    }
}

impl AuthPort<RetainedMessage> for Arc<EsClient> {
    fn respond(
        &self,
        msg: &RetainedMessage,
        action: rules::Action,
        cache: bool,
    ) -> Result<(), RespondError> {
        respond_raw(self.raw, msg, action, cache)
    }
}

/// santad's own audit token (`task_info(TASK_AUDIT_TOKEN)`, as Santa's `GetMyAuditToken`).
fn own_audit_token() -> Result<audit_token_t, i32> {
    use mach2::task_info::{TASK_AUDIT_TOKEN, TASK_AUDIT_TOKEN_COUNT};
    let mut token = audit_token_t::default();
    let mut count: mach2::message::mach_msg_type_number_t = TASK_AUDIT_TOKEN_COUNT;
    // SAFETY: `token` is 8 × u32, exactly TASK_AUDIT_TOKEN_COUNT integers, writable for the
    // call; `count` tells the kernel that size; mach_task_self has no preconditions.
    let kr = unsafe {
        mach2::task::task_info(
            mach2::traps::mach_task_self(),
            TASK_AUDIT_TOKEN,
            (&mut token as *mut audit_token_t).cast(),
            &mut count,
        )
    };
    if kr == mach2::kern_return::KERN_SUCCESS {
        Ok(token)
    } else {
        Err(kr)
    }
}
