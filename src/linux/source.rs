//! The fanotify source: each worker reads the group into its own buffer and submits to its own
//! queue; the loaders' loads are answered here, as part of their exec.

use super::*;

/// One worker's wait set: an epoll instance holding the group fd with `EPOLLEXCLUSIVE` (the
/// kernel wakes one waiting worker per event, not all of them — with every worker polling the
/// same fd, each event would cost a wake-up on every CPU) and the worker's own wake fd.
#[derive(Debug)]
struct WaitSet {
    epoll: std::os::fd::OwnedFd,
}

impl WaitSet {
    fn new(group: std::os::fd::BorrowedFd<'_>, wake: &WakeFd) -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by the kernel and is owned by nobody else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        for (fd, flags, token) in [
            (
                group.as_raw_fd(),
                libc::EPOLLIN as u32 | libc::EPOLLEXCLUSIVE as u32,
                0u64,
            ),
            (wake.as_raw_fd(), libc::EPOLLIN as u32, 1u64),
        ] {
            let mut ev = libc::epoll_event {
                events: flags,
                u64: token,
            };
            // SAFETY: both fds are open for the life of this call; `ev` is a valid epoll_event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { epoll })
    }

    /// Waits for events or a wake-up, at most `timeout_ms`.
    fn wait(&self, timeout_ms: i32) {
        use std::os::fd::AsRawFd;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // SAFETY: `events` is a writable array of 2 epoll_event, and 2 is passed as its length.
        let _ =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, timeout_ms) };
    }
}

/// The fanotify source: each worker reads the group into its own buffer.
#[derive(Debug)]
pub struct FanotifySource {
    linux: Arc<Linux>,
    policy: Arc<rules::PolicyEngine>,
    responder: Arc<FanotifyResponder>,
    buffers: Box<[Mutex<EventBuffer>]>,
    wakes: Box<[WakeFd]>,
    waits: Box<[WaitSet]>,
    deadline_ns: u64,
    /// Reads of the group so far (see `poll`).
    reads: Mutex<u64>,
}

impl FanotifySource {
    /// A source for `workers` workers, answering permission events within `deadline_ns`.
    pub fn new(
        linux: Arc<Linux>,
        policy: Arc<rules::PolicyEngine>,
        responder: Arc<FanotifyResponder>,
        workers: usize,
        buffer_bytes: usize,
        deadline_ns: u64,
    ) -> Result<Self, fanotify::Error> {
        let buffers = (0..workers)
            .map(|_| EventBuffer::new(buffer_bytes).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let wakes: Box<[WakeFd]> = (0..workers)
            .map(|_| WakeFd::new())
            .collect::<Result<_, _>>()?;
        let waits = wakes
            .iter()
            .map(|w| WaitSet::new(linux.fan.as_fd(), w))
            .collect::<Result<_, _>>()
            .map_err(|source| fanotify::Error::Wait {
                call: "epoll",
                source,
            })?;
        Ok(Self {
            linux,
            policy,
            responder,
            buffers,
            wakes,
            waits,
            deadline_ns,
            reads: Mutex::new(0),
        })
    }
}

impl Source<ExecEvent> for FanotifySource {
    fn poll(&self, worker: usize, intake: &dyn Submit<ExecEvent>) -> usize {
        let counters = &self.linux.counters;
        let mut buffer = self.buffers[worker]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let default = default_response(&self.policy);
        // Reads are numbered in the order the kernel hands out events (the number is taken
        // under the lock held across the read): how a close from before a compiler's exec is
        // told from the compiler's own (see `compilers`).
        let (read, read_started_ns, events) = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            let started = compilers::monotonic_ns();
            let events = self.linux.fan.read_answering(&mut buffer, default);
            *reads += 1;
            (*reads, started, events)
        };
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                bump(&counters.read_errors);
                log::warn!("fanotify read: {e}");
                return 0;
            }
        };
        let mut submitted = 0;
        for event in events {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // The walk answered that record's permission event with the default, closed
                    // its fd, and goes on with the next one it can find.
                    bump(&counters.malformed_records);
                    log::warn!("fanotify event walk: {e}");
                    continue;
                }
            };
            if event.mask & fanotify::MASK_Q_OVERFLOW != 0 {
                bump(&counters.queue_overflows);
            }
            let Some(fd) = event.fd else { continue };
            let file = File::from(fd.into_owned());
            let permission = event.mask & fanotify::MASK_OPEN_EXEC_PERM != 0;
            let facts = match file_facts(&file) {
                Ok(facts) => facts,
                Err(_) => {
                    if permission {
                        bump(&counters.stat_failures);
                        if self
                            .linux
                            .fan
                            .respond(file.as_fd(), default, false)
                            .is_err()
                        {
                            bump(&counters.respond_errors);
                        }
                    }
                    continue;
                }
            };
            let key = facts.key;
            if event.mask & fanotify::MASK_CLOSE_WRITE != 0 {
                bump(&counters.close_writes);
                intake.invalidate(worker, key);
                let compiler_output =
                    self.linux
                        .compilers
                        .credits(event.pid, read, read_started_ns);
                match self.linux.prefetch_verdict(&facts, compiler_output) {
                    PrefetchVerdict::Go => {
                        bump(&counters.prefetch_offered);
                        // A compiler's output must be hashed for its rule even when the engine
                        // does not evaluate it: a second fd for that (a dup, compilers only).
                        let spare = if compiler_output {
                            file.try_clone().ok()
                        } else {
                            None
                        };
                        let pending: Option<compilers::PendingCell> = compiler_output.then(|| {
                            Arc::new(Mutex::new(Some(self.linux.pending_outputs.add(key))))
                        });
                        let prefetch = Event {
                            payload: ExecEvent {
                                compiler_output,
                                _pending: pending.clone(),
                                ..ExecEvent::read(file, event.pid, Kind::Prefetch, facts, read)
                            },
                            key,
                            stamp: facts.stamp,
                            // Nobody waits for it: the deadline thread leaves it alone.
                            deadline_ns: u64::MAX,
                        };
                        let outcome = intake.prefetch(prefetch);
                        if compiler_output && outcome != santa_hotpath::Prefetched::Queued {
                            // Already decided, being decided for an exec that raced the close,
                            // or no room: the rule is made off the lane (and the cached
                            // decision dropped).
                            let handed = spare.zip(self.linux.transitive.get()).is_some_and(
                                |(spare, sink)| {
                                    let mut path = Text::<{ eventlog::PATH_BYTES_MAX }>::new();
                                    let _ = procinfo::fd_path_into(spare.as_fd(), &mut path);
                                    sink.compiler_output_unevaluated(
                                        spare,
                                        key,
                                        path.as_bytes(),
                                        event.pid,
                                        // The mark moves with the work (the slot that
                                        // held it may wait for the very exec that waits
                                        // on it).
                                        Box::new(
                                            pending
                                                .as_ref()
                                                .and_then(|p| {
                                                    p.lock()
                                                        .unwrap_or_else(PoisonError::into_inner)
                                                        .take()
                                                })
                                                .unwrap_or_else(|| {
                                                    self.linux.pending_outputs.add(key)
                                                }),
                                        ),
                                    )
                                },
                            );
                            // Not handed: nobody makes the rule, nobody should wait for it.
                            if let Some(p) = &pending {
                                drop(p.lock().unwrap_or_else(PoisonError::into_inner).take());
                            }
                            if !handed {
                                bump(&counters.compiler_outputs_dropped);
                                log::warn!(
                                    "a file compiler pid {} wrote gets no transitive rule: no \
                                     room to hash it",
                                    event.pid
                                );
                            }
                        }
                    }
                    PrefetchVerdict::Large => bump(&counters.prefetch_skipped_large),
                    PrefetchVerdict::Budget => bump(&counters.prefetch_skipped_budget),
                    PrefetchVerdict::NotCandidate => {}
                }
                continue;
            }
            if self.linux.is_loader(key) && facts.mode_root_only() && facts.uid == 0 {
                // The kernel loading the ELF interpreter of an exec it is running: part of that
                // exec, which was decided (and logged) on its own binary. A direct run of the
                // loader (`ld.so ./tool`) opens it the same way; the backstop stops that one
                // (see crate::linux::backstop). No log line, no rule needed: the loader is root's.
                if permission {
                    bump(&counters.loader_loads);
                    // The kernel cache takes its next loads (and their notifications) while
                    // nothing changes it: a write clears the mark, a flush drops it.
                    if only_root_can_modify(&file, &facts)
                        && self
                            .linux
                            .fan
                            .ignore_inode(
                                file.as_fd(),
                                fanotify::MASK_OPEN_EXEC_PERM | fanotify::MASK_OPEN_EXEC,
                            )
                            .is_err()
                    {
                        bump(&counters.ignore_mark_errors);
                    }
                    if self
                        .linux
                        .fan
                        .respond(file.as_fd(), rules::Action::Allow, false)
                        .is_err()
                    {
                        bump(&counters.respond_errors);
                    }
                }
                continue;
            }
            // An exec by a registered compiler's pid of anything but the compiler ends it.
            self.linux.compilers.exec_seen(event.pid, key);
            let payload = |kind| ExecEvent {
                // While compilers run, an exec the rules would deny may be racing the close of
                // a compiler's output: it can wait for that rule.
                outputs: self
                    .linux
                    .compilers
                    .any()
                    .then(|| self.linux.pending_outputs.clone()),
                ..ExecEvent::read(file, event.pid, kind, facts, read)
            };
            if permission {
                bump(&counters.permission_events);
                let deadline_ns = intake.now_ns().saturating_add(self.deadline_ns);
                intake.submit(
                    worker,
                    Event {
                        payload: payload(Kind::Permission),
                        key,
                        stamp: facts.stamp,
                        deadline_ns,
                    },
                );
                submitted += 1;
            } else if event.mask & fanotify::MASK_OPEN_EXEC != 0 {
                bump(&counters.notifications);
                if self.linux.recent.take(event.pid, key) {
                    bump(&counters.notifications_deduplicated);
                    continue;
                }
                // Nothing to decide when the kernel cache let it run: logged there, with the
                // decision that placed the mark.
                let event = payload(Kind::Notification);
                let Err(event) = self.responder.kernel_cached(worker, event) else {
                    continue;
                };
                // Neither asked nor cached: the kernel ran this exec without a decision of
                // ours (seen on 6.18 under mark churn). Decided now, like a held exec; the
                // responder logs it and, for a deny, kills the process.
                bump(&counters.unasked_execs);
                let deadline_ns = intake.now_ns().saturating_add(self.deadline_ns);
                intake.submit(
                    worker,
                    Event {
                        payload: event.into_unasked(),
                        key,
                        stamp: facts.stamp,
                        deadline_ns,
                    },
                );
                submitted += 1;
            }
        }
        submitted
    }

    fn wait(&self, worker: usize) {
        self.waits[worker].wait(WAIT_TIMEOUT_MS);
        self.wakes[worker].drain();
    }

    fn wake(&self, worker: usize) {
        let _ = self.wakes[worker].wake();
    }

    fn is_prefetch(&self, event: &ExecEvent) -> bool {
        event.kind == Kind::Prefetch
    }

    fn prefetch_must_run(&self, event: &ExecEvent) -> bool {
        event.compiler_output
    }

    fn restamp(&self, event: &ExecEvent) -> Option<FileStamp> {
        let (_, stamp) = key_and_stamp(&event.file).ok()?;
        event
            .restamped_size
            .store(stamp.size_bytes, Ordering::Release);
        event
            .restamped_ctime_ns
            .store(stamp.ctime_ns, Ordering::Release);
        Some(stamp)
    }

    /// The file's owner pays for hashing it; root's files (the system's own binaries, which no
    /// unprivileged user can grow or slow down) are not bounded.
    fn principal(&self, event: &ExecEvent) -> Option<Principal> {
        // A prefetch holds no charge: it runs on its own thread and nobody waits for it.
        (event.facts.uid != 0 && event.kind != Kind::Prefetch).then_some(Principal {
            id: event.facts.uid,
            cost_bytes: event.facts.stamp.size_bytes,
        })
    }
}
