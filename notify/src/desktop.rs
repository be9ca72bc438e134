//! The session bus: `Notify` on `org.freedesktop.Notifications`, and its `ActionInvoked` and
//! `NotificationClosed` signals, through the `dbus` crate's blocking connection (libdbus).

use crate::notice::{ACTION_OPEN, Capabilities, Notice};
use dbus::arg::{PropMap, RefArg, Variant};
use dbus::blocking::Connection;
use dbus::message::MatchRule;
use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const BUS_NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const INTERFACE: &str = "org.freedesktop.Notifications";
/// How long one call to the notification server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Notices whose URL is remembered for a later click: older ones are forgotten (their action
/// then does nothing), so a flood of blocks cannot grow this agent.
const REMEMBERED_MAX: usize = 64;
/// URL openers running at once; a click beyond them is ignored (and said so).
const OPENERS_MAX: usize = 4;
/// Signals kept between two pumps (more are dropped: only clicks matter, and a person clicks
/// far less often).
const SIGNALS_MAX: usize = 256;

/// A signal from the notification server: `(id, Some(action key))` for `ActionInvoked`,
/// `(id, None)` for `NotificationClosed`.
type Signal = (u32, Option<String>);

/// The session bus and what this agent showed on it.
pub struct Desktop {
    conn: Connection,
    opener: String,
    /// `(notification id, URL)`, oldest first.
    urls: VecDeque<(u32, String)>,
    signals: Arc<Mutex<Vec<Signal>>>,
    openers: Vec<Child>,
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop")
            .field("remembered", &self.urls.len())
            .finish_non_exhaustive()
    }
}

fn push_signal(signals: &Mutex<Vec<Signal>>, s: Signal) {
    let mut v = signals.lock().unwrap_or_else(PoisonError::into_inner);
    if v.len() < SIGNALS_MAX {
        v.push(s);
    }
}

impl Desktop {
    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`) and listens for the
    /// notification server's signals; URLs are opened with `opener URL`.
    pub fn connect(opener: String) -> Result<Desktop, dbus::Error> {
        let conn = Connection::new_session()?;
        let signals = Arc::new(Mutex::new(Vec::new()));
        // Only the owner of the Notifications name may tell us of a click: another client on
        // the bus cannot make this agent open anything.
        let rule = |member: &'static str| {
            MatchRule::new_signal(INTERFACE, member)
                .with_sender(BUS_NAME)
                .with_path(PATH)
        };
        let s = signals.clone();
        conn.add_match(
            rule("ActionInvoked"),
            move |(id, key): (u32, String), _: &Connection, _: &dbus::Message| {
                push_signal(&s, (id, Some(key)));
                true
            },
        )?;
        let s = signals.clone();
        conn.add_match(
            rule("NotificationClosed"),
            move |(id, _reason): (u32, u32), _: &Connection, _: &dbus::Message| {
                push_signal(&s, (id, None));
                true
            },
        )?;
        Ok(Desktop {
            conn,
            opener,
            urls: VecDeque::new(),
            signals,
            openers: Vec::new(),
        })
    }

    /// What the notification server can do now.
    pub fn capabilities(&self) -> Result<Capabilities, dbus::Error> {
        let proxy = self.conn.with_proxy(BUS_NAME, PATH, CALL_TIMEOUT);
        let (names,): (Vec<String>,) = proxy.method_call(INTERFACE, "GetCapabilities", ())?;
        Ok(Capabilities::from_names(&names))
    }

    /// Shows `notice`; returns the server's id for it.
    pub fn notify(&mut self, notice: &Notice) -> Result<u32, dbus::Error> {
        let proxy = self.conn.with_proxy(BUS_NAME, PATH, CALL_TIMEOUT);
        let actions: Vec<&str> = notice
            .actions
            .iter()
            .flat_map(|(key, label)| [key.as_str(), label.as_str()])
            .collect();
        let mut hints = PropMap::new();
        // Normal urgency: the user is told, nothing is on fire.
        hints.insert("urgency".into(), Variant(Box::new(1u8) as Box<dyn RefArg>));
        hints.insert(
            "category".into(),
            Variant(Box::new("x-santa.block".to_owned()) as Box<dyn RefArg>),
        );
        let (id,): (u32,) = proxy.method_call(
            INTERFACE,
            "Notify",
            (
                "Santa",
                0u32,
                "dialog-warning",
                notice.summary.as_str(),
                notice.body.as_str(),
                actions,
                hints,
                // The server's default expiry.
                -1i32,
            ),
        )?;
        if let Some(url) = &notice.url
            && !notice.actions.is_empty()
        {
            if self.urls.len() >= REMEMBERED_MAX {
                self.urls.pop_front();
            }
            self.urls.push_back((id, url.clone()));
        }
        Ok(id)
    }

    /// Handles the bus for up to `timeout`: a click on a notice of ours opens its URL.
    pub fn pump(&mut self, timeout: Duration) -> Result<(), dbus::Error> {
        self.conn.process(timeout)?;
        self.openers
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let signals =
            std::mem::take(&mut *self.signals.lock().unwrap_or_else(PoisonError::into_inner));
        for (id, action) in signals {
            let Some(i) = self.urls.iter().position(|(n, _)| *n == id) else {
                continue;
            };
            match action {
                Some(key) if key == ACTION_OPEN => {
                    if let Some((_, url)) = self.urls.remove(i) {
                        self.open(&url);
                    }
                }
                Some(_) => {}
                None => {
                    self.urls.remove(i);
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, url: &str) {
        if self.openers.len() >= OPENERS_MAX {
            eprintln!(
                "santa-notify: {OPENERS_MAX} URLs are being opened already; not opening {url}"
            );
            return;
        }
        match Command::new(&self.opener)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => self.openers.push(child),
            Err(e) => eprintln!("santa-notify: cannot run {} {url}: {e}", self.opener),
        }
    }
}
