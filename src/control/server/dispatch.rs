//! Who gets a handler: root always, each other uid a bounded share (see the module above).

use super::*;

/// Connections waiting and being served, at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchLoad {
    /// Root connections waiting for a handler.
    pub root_waiting: usize,
    /// Non-root connections waiting for a handler.
    pub users_waiting: usize,
    /// Non-root connections being served (at most [`UNPRIVILEGED_HANDLERS_MAX`]).
    pub users_serving: usize,
}

/// Why [`Dispatcher::admit`] turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue for this kind of peer is full.
    QueueFull,
    /// This uid already has [`CONNECTIONS_PER_UID_MAX`] connections inside santad.
    UidLimit,
    /// The server is stopping.
    Stopping,
}

/// One non-root uid's connections inside santad.
#[derive(Debug, Default)]
struct UidLoad {
    /// Waiting or being served.
    inside: usize,
    /// Being served.
    serving: usize,
}

#[derive(Debug)]
struct DispatchState<T> {
    root: VecDeque<T>,
    users: VecDeque<(u32, T)>,
    users_serving: usize,
    /// Only uids with a connection inside: at most [`PENDING_CONNECTIONS_MAX`] +
    /// [`UNPRIVILEGED_HANDLERS_MAX`] entries.
    per_uid: HashMap<u32, UidLoad>,
    stopping: bool,
}

/// A connection handed to a handler. For a non-root peer it holds one of the unprivileged
/// places until [`Dispatcher::release`].
#[derive(Debug)]
pub struct Job<T> {
    /// The connection.
    pub conn: T,
    /// The peer's uid.
    pub uid: u32,
}

/// Hands accepted connections to the handlers under the rules in this module's doc: root
/// first and never behind non-root peers, at most [`UNPRIVILEGED_HANDLERS_MAX`] handlers for
/// non-root peers and [`HANDLERS_PER_UID_MAX`] for any one of them, at most
/// [`CONNECTIONS_PER_UID_MAX`] connections per non-root uid inside. Generic over the
/// connection so the rules are tested without sockets.
#[derive(Debug)]
pub struct Dispatcher<T> {
    state: Mutex<DispatchState<T>>,
    ready: Condvar,
}

impl<T> Default for Dispatcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Dispatcher<T> {
    /// Nothing queued.
    pub fn new() -> Dispatcher<T> {
        Dispatcher {
            state: Mutex::new(DispatchState {
                root: VecDeque::new(),
                users: VecDeque::new(),
                users_serving: 0,
                per_uid: HashMap::new(),
                stopping: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues a connection from `uid`, or hands it back with the reason it may not wait.
    pub fn admit(&self, uid: u32, conn: T) -> Result<(), (T, Refusal)> {
        let mut st = lock(&self.state);
        if st.stopping {
            return Err((conn, Refusal::Stopping));
        }
        if uid == 0 {
            if st.root.len() >= ROOT_PENDING_CONNECTIONS_MAX {
                return Err((conn, Refusal::QueueFull));
            }
            st.root.push_back(conn);
        } else {
            if st.per_uid.get(&uid).map_or(0, |l| l.inside) >= CONNECTIONS_PER_UID_MAX {
                return Err((conn, Refusal::UidLimit));
            }
            if st.users.len() >= PENDING_CONNECTIONS_MAX {
                return Err((conn, Refusal::QueueFull));
            }
            st.users.push_back((uid, conn));
            st.per_uid.entry(uid).or_default().inside += 1;
        }
        drop(st);
        self.ready.notify_all();
        Ok(())
    }

    fn take_locked(st: &mut DispatchState<T>) -> Option<Job<T>> {
        if let Some(conn) = st.root.pop_front() {
            return Some(Job { conn, uid: 0 });
        }
        if st.users_serving >= UNPRIVILEGED_HANDLERS_MAX {
            return None;
        }
        let per_uid = &st.per_uid;
        let i = st.users.iter().position(|(uid, _)| {
            per_uid
                .get(uid)
                .is_none_or(|l| l.serving < HANDLERS_PER_UID_MAX)
        })?;
        let (uid, conn) = st.users.remove(i)?;
        st.users_serving += 1;
        st.per_uid.entry(uid).or_default().serving += 1;
        Some(Job { conn, uid })
    }

    /// The next connection a handler may serve now, if any (does not wait).
    pub fn try_take(&self) -> Option<Job<T>> {
        Self::take_locked(&mut lock(&self.state))
    }

    /// Waits for the next connection a handler may serve; `None` once stopping.
    pub fn take(&self) -> Option<Job<T>> {
        let mut st = lock(&self.state);
        loop {
            if st.stopping {
                return None;
            }
            if let Some(job) = Self::take_locked(&mut st) {
                return Some(job);
            }
            st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A handler is done with a [`Job`] of `uid`: its places are free again.
    pub fn release(&self, uid: u32) {
        if uid == 0 {
            return;
        }
        let mut st = lock(&self.state);
        st.users_serving = st.users_serving.saturating_sub(1);
        if let Some(l) = st.per_uid.get_mut(&uid) {
            l.serving = l.serving.saturating_sub(1);
            l.inside = l.inside.saturating_sub(1);
            if l.inside == 0 {
                st.per_uid.remove(&uid);
            }
        }
        drop(st);
        // A connection of this uid may be waiting, and an idle handler may take it.
        self.ready.notify_all();
    }

    /// Stops handing out connections: waiting ones are dropped (closed), waiting handlers
    /// return from [`Dispatcher::take`].
    pub fn stop(&self) {
        let mut st = lock(&self.state);
        st.stopping = true;
        st.root.clear();
        for (uid, _) in std::mem::take(&mut st.users) {
            if let Some(l) = st.per_uid.get_mut(&uid) {
                l.inside = l.inside.saturating_sub(1);
            }
        }
        drop(st);
        self.ready.notify_all();
    }

    /// What is waiting and being served now.
    pub fn load(&self) -> DispatchLoad {
        let st = lock(&self.state);
        DispatchLoad {
            root_waiting: st.root.len(),
            users_waiting: st.users.len(),
            users_serving: st.users_serving,
        }
    }
}
