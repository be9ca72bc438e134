//! The listener and handler threads, and the running server.

use super::*;

/// The running control server. [`ControlServer::stop`] (or drop) stops its threads and
/// removes the socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    socket: SocketEntry,
    stop: Arc<AtomicBool>,
    dispatcher: Arc<Dispatcher<Connection>>,
    /// The block watchers whose writer this server runs, if it runs one.
    watchers: Option<Arc<BlockWatchers>>,
    threads: Vec<JoinHandle<()>>,
}

/// The fd stays open for the call: the listener outlives it.
fn poll_readable(fd: i32, timeout_ms: i32) -> bool {
    crate::fdwait::wait_for(fd, libc::POLLIN, timeout_ms) != 0
}

/// Accepts, identifies and queues; never waits on a peer.
fn accept_loop(
    ctx: &ControlContext,
    listener: &UnixListener,
    dispatcher: &Dispatcher<Connection>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if !poll_readable(listener.as_raw_fd(), ACCEPT_POLL_MS) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::error!("control: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
        let (uid, pid) = match peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                // Without credentials nobody is authorised for anything.
                refuse_now(
                    stream,
                    ErrorKind::PermissionDenied,
                    &format!("peer credentials unavailable: {e}"),
                );
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        match dispatcher.admit(uid, Connection { stream, uid, pid }) {
            Ok(()) => {}
            Err((conn, Refusal::UidLimit)) => {
                ctx.counters.uid_limited.fetch_add(1, Ordering::Relaxed);
                refuse_now(
                    conn.stream,
                    ErrorKind::Busy,
                    "santad is busy with this user's other connections; try again",
                );
            }
            Err((conn, Refusal::QueueFull | Refusal::Stopping)) => {
                ctx.counters.busy.fetch_add(1, Ordering::Relaxed);
                refuse_now(conn.stream, ErrorKind::Busy, "santad is busy; try again");
            }
        }
    }
}

fn handler_loop(ctx: &ControlContext, dispatcher: &Dispatcher<Connection>, stop: &AtomicBool) {
    while let Some(job) = dispatcher.take() {
        let uid = job.uid;
        // A bug in one request's handling must not take a handler away for good (nor leave
        // its unprivileged place taken).
        let served =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(ctx, job.conn, stop)));
        dispatcher.release(uid);
        if served.is_err() {
            ctx.counters.handler_panics.fetch_add(1, Ordering::Relaxed);
            log::error!("control: handling a request from uid {uid} panicked");
        }
    }
}

impl ControlServer {
    /// Binds the socket at `path` and starts the listener and handler threads.
    pub fn start(ctx: Arc<ControlContext>, path: &Path) -> Result<ControlServer, ServerError> {
        let Bound { listener, entry } = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dispatcher = Arc::new(Dispatcher::new());
        // A second server on the same context keeps reporting the first one's load.
        let _ = ctx.dispatcher.set(dispatcher.clone());
        let mut server = ControlServer {
            path: path.to_owned(),
            socket: entry,
            stop: stop.clone(),
            dispatcher: dispatcher.clone(),
            watchers: None,
            threads: Vec::new(),
        };
        let spawn_err = |source| ServerError::Io {
            path: path.to_owned(),
            source,
        };
        for i in 0..HANDLER_THREADS {
            let (ctx, dispatcher, stop) = (ctx.clone(), dispatcher.clone(), stop.clone());
            let t = std::thread::Builder::new()
                .name(format!("santad-control-{i}"))
                .spawn(move || handler_loop(&ctx, &dispatcher, &stop))
                .map_err(spawn_err)?;
            server.threads.push(t);
        }
        if let Some(watchers) = ctx.watchers().cloned()
            && watchers.claim_writer()
        {
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name("santad-notify".into())
                .spawn(move || watchers.run_writer(&stop))
                .map_err(spawn_err)?;
            server.threads.push(t);
            server.watchers = ctx.watchers().cloned();
        }
        let t = std::thread::Builder::new()
            .name("santad-control".into())
            .spawn(move || accept_loop(&ctx, &listener, &dispatcher, &stop))
            .map_err(spawn_err)?;
        server.threads.push(t);
        Ok(server)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, lets the handlers finish (each within a fraction of a second: reads
    /// re-check the stop flag), joins them and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.dispatcher.stop();
        if let Some(w) = &self.watchers {
            w.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.socket.remove_if_ours();
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}
