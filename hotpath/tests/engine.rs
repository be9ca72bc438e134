//! The engine end to end, with real worker threads: every event answered exactly once.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use santa_hotpath::replay::{ReplaySource, Synthetic, Trace, TraceEvent};
use santa_hotpath::{
    Answer, AnsweredBy, Cacheability, Clock, CountersSnapshot, DefaultReason, Engine, EngineConfig,
    Evaluation, Evaluator, Event, ExternalSource, FileKey, FileStamp, FlushReason, MonotonicClock,
    Origin, Principal, Responder, SimClock, Source, Submit, Submitted,
};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

const STAMP: FileStamp = FileStamp {
    ctime_ns: 1,
    size_bytes: 100,
};

/// Event payload: an id to count answers by.
#[derive(Debug)]
struct Id(usize);

/// What the responder saw for one answer.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Decided(u32, Origin),
    Default(DefaultReason),
}

/// Counts answers per event id, and sends each one down a channel.
struct Recorder {
    answers: Vec<AtomicU8>,
    total: AtomicUsize,
    tx: Mutex<Option<mpsc::Sender<(usize, Seen)>>>,
}

impl Recorder {
    fn new(events: usize) -> (Arc<Self>, mpsc::Receiver<(usize, Seen)>) {
        let (tx, rx) = mpsc::channel();
        let r = Self {
            answers: (0..events).map(|_| AtomicU8::new(0)).collect(),
            total: AtomicUsize::new(0),
            tx: Mutex::new(Some(tx)),
        };
        (Arc::new(r), rx)
    }

    fn counting_only(events: usize) -> Arc<Self> {
        Arc::new(Self {
            answers: (0..events).map(|_| AtomicU8::new(0)).collect(),
            total: AtomicUsize::new(0),
            tx: Mutex::new(None),
        })
    }

    fn assert_each_answered_once(&self) {
        for (id, n) in self.answers.iter().enumerate() {
            assert_eq!(
                n.load(Ordering::SeqCst),
                1,
                "event {id} answered {} times",
                n.load(Ordering::SeqCst)
            );
        }
    }
}

impl Responder<Id, u32> for Recorder {
    fn respond(&self, _by: AnsweredBy, payload: &Id, answer: Answer<'_, u32>) {
        self.answers[payload.0].fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let seen = match answer {
                Answer::Decided {
                    decision, origin, ..
                } => Seen::Decided(*decision, origin),
                Answer::Default(reason) => Seen::Default(reason),
            };
            let _ = tx.send((payload.0, seen));
        }
    }
}

/// Decides `ino * 10 + rules_version`, counting evaluations; optionally blocks until released.
#[derive(Default)]
struct Scripted {
    evaluations: AtomicUsize,
    rules_version: AtomicU32,
    gate: Option<Arc<Gate>>,
    /// Only evaluations of inodes from this one up wait at the gate (0: every one).
    gated_from_ino: u64,
    keys: Mutex<Vec<u64>>,
}

/// Holds evaluations until opened; tells the test when one has started.
struct Gate {
    open: Mutex<bool>,
    cv: std::sync::Condvar,
    entered: Mutex<mpsc::Sender<()>>,
}

impl Gate {
    fn new() -> (Arc<Self>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        (
            Arc::new(Self {
                open: Mutex::new(false),
                cv: std::sync::Condvar::new(),
                entered: Mutex::new(tx),
            }),
            rx,
        )
    }
    fn pass(&self) {
        let _ = self.entered.lock().unwrap().send(());
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// The payload carries the inode so the evaluator can decide by file.
struct ById {
    inner: Arc<Scripted>,
    inos: Arc<Vec<u64>>,
}

impl Evaluator<Id> for ById {
    type Decision = u32;
    type Local = ();
    fn local(&self, _worker: usize) {}
    fn evaluate(&self, _local: &mut (), payload: &Id) -> Evaluation<u32> {
        self.inner.evaluations.fetch_add(1, Ordering::SeqCst);
        let ino = self.inos[payload.0];
        self.inner.keys.lock().unwrap().push(ino);
        if let Some(gate) = &self.inner.gate
            && ino >= self.inner.gated_from_ino
        {
            gate.pass();
        }
        let decision = (ino as u32) * 10 + self.inner.rules_version.load(Ordering::SeqCst);
        Evaluation {
            decision,
            cacheability: Cacheability::UntilChanged,
        }
    }
}

/// An engine over [`ById`], fed from outside.
type ByIdEngine = Engine<Id, u32>;

/// Starts a [`ByIdEngine`] answering to `recorder`.
fn start_by_id<C: Clock>(
    cfg: EngineConfig,
    evaluator: ById,
    recorder: &Arc<Recorder>,
    clock: C,
) -> ByIdEngine {
    Engine::start(cfg, evaluator, recorder.clone(), clock, ExternalSource).unwrap()
}

/// A [`ById`] evaluator whose evaluations hold at a gate, and what the test watches it by.
struct Gated {
    recorder: Arc<Recorder>,
    answers: mpsc::Receiver<(usize, Seen)>,
    gate: Arc<Gate>,
    /// One message per evaluation that reached the gate.
    entered: mpsc::Receiver<()>,
    scripted: Arc<Scripted>,
}

/// A gated evaluator for events `0..inos.len()`, event `i` being for inode `inos[i]`.
fn gated(inos: Vec<u64>) -> (Gated, ById) {
    let (recorder, answers) = Recorder::new(inos.len());
    let (gate, entered) = Gate::new();
    let scripted = Arc::new(Scripted {
        gate: Some(gate.clone()),
        ..Scripted::default()
    });
    let evaluator = ById {
        inner: scripted.clone(),
        inos: Arc::new(inos),
    };
    let fixture = Gated {
        recorder,
        answers,
        gate,
        entered,
        scripted,
    };
    (fixture, evaluator)
}

fn config(workers: usize) -> EngineConfig {
    EngineConfig {
        workers,
        pin_workers: false,
        idle_spins: 64,
        ..EngineConfig::default()
    }
}

fn event(id: usize, ino: u64, deadline_ns: u64) -> Event<Id> {
    Event {
        payload: Id(id),
        key: FileKey { dev: 1, ino },
        stamp: STAMP,
        deadline_ns,
    }
}

#[test]
fn every_event_answered_exactly_once_under_contention() {
    const PRODUCERS: usize = 8;
    const PER_PRODUCER: usize = 125_000;
    const EVENTS: usize = PRODUCERS * PER_PRODUCER;
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("seed {seed} (rerun with SEED={seed})");
    let trace = Trace::synthetic(&Synthetic {
        events: EVENTS,
        hot_files: 2_000,
        new_percent: 5,
        seed,
    });
    let inos: Arc<Vec<u64>> = Arc::new(trace.events().iter().map(|e| e.key.ino).collect());
    let recorder = Recorder::counting_only(EVENTS);
    let evaluator = ById {
        inner: Arc::new(Scripted::default()),
        inos: inos.clone(),
    };
    let cfg = EngineConfig {
        cache_capacity: 1_000,
        queue_depth_max: 1_024,
        ..config(2)
    };
    let engine = start_by_id(cfg, evaluator, &recorder, MonotonicClock::new());
    let barrier = Arc::new(Barrier::new(PRODUCERS));
    let queued = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (handle, barrier, inos, queued) = (
                engine.handle(),
                barrier.clone(),
                inos.clone(),
                queued.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + i;
                    // Keep the queues from overflowing (2 × 1024 deep) so the workers, not the
                    // queue-full path, answer everything.
                    while handle.in_flight() > 800 {
                        std::thread::yield_now();
                    }
                    let deadline = handle.now_ns() + 60_000_000_000;
                    if handle.submit(p, event(id, inos[id], deadline)) == Submitted::Queued {
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let handle = engine.handle();
    engine.shutdown();
    assert_eq!(
        recorder.total.load(Ordering::SeqCst),
        EVENTS,
        "count in = count out"
    );
    recorder.assert_each_answered_once();
    let c = handle.counters();
    assert_eq!(
        c.events as usize,
        queued.load(Ordering::SeqCst),
        "every queued event reached a worker"
    );
    assert_eq!(c.hits + c.misses + c.waits, c.events);
    assert_eq!(
        c.events + c.defaults() - c.evaluator_panics - c.deadline_defaults,
        EVENTS as u64
    );
    assert_eq!(handle.in_flight(), 0, "no slot leaked");
    println!("{c:?}");
    assert!(
        c.events > EVENTS as u64 * 9 / 10,
        "the workers answered too few: {c:?}"
    );
    assert!(c.hits > 0 && c.misses > 0, "{c:?}");
}

#[test]
fn stuck_evaluator_is_answered_by_the_deadline() {
    let clock = Arc::new(SimClock::new(1_000));
    let (g, evaluator) = gated(vec![7, 8]);
    let cfg = EngineConfig {
        deadline_thread: false,
        ..config(1)
    };
    let engine = start_by_id(cfg, evaluator, &g.recorder, clock.clone());
    assert_eq!(engine.submit(0, event(0, 7, 1_500)), Submitted::Queued);
    g.entered
        .recv_timeout(Duration::from_secs(10))
        .expect("evaluation started");
    assert_eq!(
        engine.expire_due(),
        1_500,
        "not due yet: the earliest pending deadline is reported"
    );
    assert!(
        g.answers.try_recv().is_err(),
        "nothing answered before the deadline"
    );
    clock.advance(500);
    assert_eq!(engine.expire_due(), u64::MAX, "nothing pending any more");
    let (id, seen) = g.answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((id, seen), (0, Seen::Default(DefaultReason::Deadline)));
    // Let the stuck evaluation finish: its decision must not be sent a second time.
    g.gate.open();
    assert_eq!(engine.submit(0, event(1, 8, u64::MAX)), Submitted::Queued);
    let (id, seen) = g.answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((id, seen), (1, Seen::Decided(80, Origin::Evaluated)));
    let handle = engine.handle();
    engine.shutdown();
    g.recorder.assert_each_answered_once();
    assert_eq!(handle.counters().deadline_defaults, 1);
    // The finished evaluation was cached: the file is known now, the default was never cached.
    assert_eq!(g.scripted.evaluations.load(Ordering::SeqCst), 2);
}

#[test]
fn hundred_concurrent_events_for_one_file_evaluate_once() {
    const N: usize = 100;
    let (g, evaluator) = gated(vec![42; N]);
    let engine = start_by_id(config(2), evaluator, &g.recorder, MonotonicClock::new());
    // The first event starts the evaluation, which holds until all 100 are in flight.
    assert_eq!(engine.submit(0, event(0, 42, u64::MAX)), Submitted::Queued);
    g.entered.recv_timeout(Duration::from_secs(10)).unwrap();
    for id in 1..N {
        assert_eq!(
            engine.submit(id, event(id, 42, u64::MAX)),
            Submitted::Queued
        );
    }
    g.gate.open();
    let mut origins = std::collections::HashMap::new();
    for _ in 0..N {
        let (_, seen) = g.answers.recv_timeout(Duration::from_secs(10)).unwrap();
        match seen {
            Seen::Decided(420, origin) => *origins.entry(format!("{origin:?}")).or_insert(0) += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    engine.shutdown();
    g.recorder.assert_each_answered_once();
    assert_eq!(
        g.scripted.evaluations.load(Ordering::SeqCst),
        1,
        "exactly one evaluation: {origins:?}"
    );
    assert_eq!(origins.get("Evaluated"), Some(&1));
}

/// One worker, busy with event 0 (held at the gate); event 1 takes the last place `cfg` leaves
/// (in the queue, or in the slot table); event 2 must then be answered with `reason` at once.
/// Returns the counters once everything is answered.
fn the_third_event_is_answered_at_once_with(
    cfg: EngineConfig,
    reason: DefaultReason,
) -> CountersSnapshot {
    let (g, evaluator) = gated(vec![1, 2, 3]);
    let engine = start_by_id(cfg, evaluator, &g.recorder, MonotonicClock::new());
    assert_eq!(engine.submit(0, event(0, 1, u64::MAX)), Submitted::Queued);
    g.entered.recv_timeout(Duration::from_secs(10)).unwrap(); // the worker is busy with event 0
    assert_eq!(engine.submit(0, event(1, 2, u64::MAX)), Submitted::Queued); // the last place
    assert_eq!(
        engine.submit(0, event(2, 3, u64::MAX)),
        Submitted::Answered(reason)
    );
    assert_eq!(
        g.answers.recv_timeout(Duration::from_secs(10)).unwrap(),
        (2, Seen::Default(reason))
    );
    g.gate.open();
    let handle = engine.handle();
    engine.shutdown();
    g.recorder.assert_each_answered_once();
    handle.counters()
}

#[test]
fn full_queue_is_answered_with_the_default_at_once() {
    let cfg = EngineConfig {
        queue_depth_max: 1,
        ..config(1)
    };
    let counters = the_third_event_is_answered_at_once_with(cfg, DefaultReason::QueueFull);
    assert_eq!(counters.queue_full_defaults, 1);
}

#[test]
fn full_slot_table_is_answered_with_the_default_at_once() {
    let cfg = EngineConfig {
        inflight_max: 2,
        ..config(1)
    };
    the_third_event_is_answered_at_once_with(cfg, DefaultReason::SlotsFull);
}

#[test]
fn flush_makes_the_next_exec_see_new_rules() {
    let (recorder, answers) = Recorder::new(3);
    let scripted = Arc::new(Scripted::default());
    let evaluator = ById {
        inner: scripted.clone(),
        inos: Arc::new(vec![5, 5, 5]),
    };
    let engine = start_by_id(config(1), evaluator, &recorder, MonotonicClock::new());
    let next = |id| {
        engine.submit(0, event(id, 5, u64::MAX));
        answers.recv_timeout(Duration::from_secs(10)).unwrap().1
    };
    assert_eq!(next(0), Seen::Decided(50, Origin::Evaluated));
    scripted.rules_version.store(1, Ordering::SeqCst);
    assert_eq!(
        next(1),
        Seen::Decided(50, Origin::Cache),
        "cached until flushed"
    );
    engine.flush(FlushReason::Rules);
    assert_eq!(next(2), Seen::Decided(51, Origin::Evaluated));
    assert_eq!(engine.counters().flushes_for(FlushReason::Rules), 1);
}

#[test]
fn deadline_thread_answers_a_stuck_evaluation_on_the_real_clock() {
    let (g, evaluator) = gated(vec![9]);
    let clock = MonotonicClock::new();
    let engine = start_by_id(config(1), evaluator, &g.recorder, clock);
    let submitted = clock.now_ns();
    engine.submit(0, event(0, 9, submitted + 20_000_000));
    g.entered.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_, seen) = g.answers.recv_timeout(Duration::from_secs(10)).unwrap();
    let answered = clock.now_ns();
    assert_eq!(seen, Seen::Default(DefaultReason::Deadline));
    assert!(
        answered >= submitted + 20_000_000,
        "answered before the deadline"
    );
    g.gate.open();
    engine.shutdown();
    g.recorder.assert_each_answered_once();
}

#[test]
fn shutdown_answers_everything_held() {
    const N: usize = 500;
    let recorder = Recorder::counting_only(N);
    let evaluator = ById {
        inner: Arc::new(Scripted::default()),
        inos: Arc::new((0..N as u64).collect()),
    };
    let engine = start_by_id(config(2), evaluator, &recorder, MonotonicClock::new());
    let handle = engine.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (handle, stop) = (handle.clone(), stop.clone());
        std::thread::spawn(move || {
            for id in 0..N {
                handle.submit(id, event(id, id as u64, u64::MAX));
                if id == N / 2 {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        })
    };
    while !stop.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
    engine.shutdown();
    producer.join().unwrap();
    recorder.assert_each_answered_once();
    assert_eq!(handle.in_flight(), 0);
}

#[test]
fn replay_source_feeds_workers_from_inside() {
    const N: usize = 50_000;
    let trace = Trace::synthetic(&Synthetic {
        events: N,
        hot_files: 500,
        new_percent: 10,
        seed: 3,
    });
    let inos: Arc<Vec<u64>> = Arc::new(trace.events().iter().map(|e| e.key.ino).collect());
    let recorder = Recorder::counting_only(N);
    let ids = Arc::new(AtomicUsize::new(0));
    let source = {
        let ids = ids.clone();
        // Ids number submissions (the decision values do not matter here, only the counts).
        ReplaySource::new(trace, 4, 60_000_000_000, move |_: &TraceEvent, _now| {
            Id(ids.fetch_add(1, Ordering::SeqCst))
        })
    };
    let evaluator = ById {
        inner: Arc::new(Scripted::default()),
        inos,
    };
    let engine = Engine::start(
        config(2),
        evaluator,
        recorder.clone(),
        MonotonicClock::new(),
        source,
    )
    .unwrap();
    let clock = MonotonicClock::new();
    let start = clock.now_ns();
    while recorder.total.load(Ordering::SeqCst) < N {
        assert!(
            clock.now_ns() - start < 60_000_000_000,
            "replay did not finish"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let handle = engine.handle();
    engine.shutdown();
    recorder.assert_each_answered_once();
    let c = handle.counters();
    assert_eq!(c.events as usize, N);
    assert_eq!(c.defaults(), 0, "{c:?}");
}

/// A [`ById`] evaluator (rules version 0: it decides `ino * 10`) whose evaluations of inodes at
/// or above `gated_from_ino` wait for `gate`.
fn gated_from(gate: &Arc<Gate>, gated_from_ino: u64, inos: &Arc<Vec<u64>>) -> ById {
    ById {
        inner: Arc::new(Scripted {
            gate: Some(gate.clone()),
            gated_from_ino,
            ..Scripted::default()
        }),
        inos: inos.clone(),
    }
}

/// An outside source whose events belong to principals (uid by event id).
struct Owned {
    owners: Arc<Vec<u32>>,
}

impl Source<Id> for Owned {
    fn poll(&self, _worker: usize, _submit: &dyn santa_hotpath::Submit<Id>) -> usize {
        0
    }
    fn wait(&self, _worker: usize) {
        std::thread::park_timeout(Duration::from_millis(50));
    }
    fn wake(&self, _worker: usize) {}
    fn principal(&self, payload: &Id) -> Option<Principal> {
        Some(Principal {
            id: self.owners[payload.0],
            cost_bytes: 1 << 20,
        })
    }
}

/// How long a test waits for an answer that must come without the gate opening. Far below the
/// 60 s deadline the events carry, so an answer within it is not a deadline default.
const PROMPT: Duration = Duration::from_secs(10);

#[test]
fn events_parked_on_a_slow_evaluation_do_not_hold_a_worker() {
    // Event 0 starts a slow evaluation of inode 1000 on one worker; events 1..=50 are for the
    // same file and park on it. With two workers, event 51 (another file) must still be
    // answered at once: before parking, the second worker sat in a condvar wait on the first
    // one's placeholder until the deadline.
    const SAME: usize = 50;
    let mut inos = vec![1_000u64; SAME + 1];
    inos.push(2);
    let inos = Arc::new(inos);
    let (gate, entered) = Gate::new();
    let (recorder, rx) = Recorder::new(inos.len());
    let evaluator = gated_from(&gate, 1_000, &inos);
    let engine = start_by_id(config(2), evaluator, &recorder, MonotonicClock::new());
    let deadline = engine.now_ns() + 60_000_000_000;
    engine.submit(0, event(0, 1_000, deadline));
    entered
        .recv_timeout(PROMPT)
        .expect("the slow evaluation started");
    for id in 1..=SAME {
        // On the free worker's queue: they are parked before the other file is looked at.
        engine.submit(1, event(id, 1_000, deadline));
    }
    engine.submit(1, event(SAME + 1, 2, deadline));
    // The first answer must be the other file's: nothing else can be decided before the gate.
    let answered_other = match rx.recv_timeout(PROMPT) {
        Ok((id, seen)) if id == SAME + 1 => Some(seen),
        Ok((id, seen)) => panic!("event {id} answered before the gate opened: {seen:?}"),
        Err(_) => None,
    };
    assert_eq!(
        answered_other,
        Some(Seen::Decided(20, Origin::Evaluated)),
        "another file's exec waited behind parked events"
    );
    gate.open();
    let mut coalesced = 0;
    for _ in 0..=SAME {
        let (id, seen) = rx
            .recv_timeout(PROMPT)
            .expect("every parked event answered");
        assert!(id <= SAME);
        match seen {
            Seen::Decided(10_000, Origin::Evaluated) => assert_eq!(id, 0),
            Seen::Decided(10_000, Origin::Coalesced) => coalesced += 1,
            other => panic!("event {id}: {other:?}"),
        }
    }
    assert_eq!(
        coalesced, SAME,
        "each parked event took the owner's decision"
    );
    let c = engine.counters();
    assert_eq!(c.evaluations, 2, "one evaluation per file: {c:?}");
    assert_eq!(c.waits, SAME as u64);
    engine.shutdown();
    recorder.assert_each_answered_once();
}

#[test]
fn one_principals_slow_files_leave_a_worker_for_everyone_else() {
    // Principal 1000 execs five distinct slow files; with two workers it may evaluate one at
    // a time, so the other worker stays free: principal 2000's exec is answered at once.
    const SLOW: usize = 5;
    let mut inos: Vec<u64> = (0..SLOW as u64).map(|i| 1_000 + i).collect();
    inos.push(2);
    let mut owners = vec![1_000u32; SLOW];
    owners.push(2_000);
    let inos = Arc::new(inos);
    let (gate, entered) = Gate::new();
    let (recorder, rx) = Recorder::new(inos.len());
    let engine = Engine::start(
        config(2),
        gated_from(&gate, 1_000, &inos),
        recorder.clone(),
        MonotonicClock::new(),
        Owned {
            owners: Arc::new(owners),
        },
    )
    .unwrap();
    let deadline = engine.now_ns() + 60_000_000_000;
    for id in 0..SLOW {
        engine.submit(id % 2, event(id, inos[id], deadline));
    }
    entered
        .recv_timeout(PROMPT)
        .expect("one slow evaluation started");
    // The rest are deferred before the other user's exec arrives (the second worker may take
    // them after it otherwise, which would not show anything).
    let start = std::time::Instant::now();
    while engine.deferred() < SLOW as u64 - 1 && start.elapsed() < PROMPT {
        std::thread::sleep(Duration::from_millis(2));
    }
    engine.submit(1, event(SLOW, 2, deadline));
    let (id, seen) = rx
        .recv_timeout(PROMPT)
        .expect("the other user's exec was answered");
    assert_eq!((id, seen), (SLOW, Seen::Decided(20, Origin::Evaluated)));
    assert!(
        entered.recv_timeout(Duration::from_millis(300)).is_err(),
        "a second evaluation of the same principal started while one ran"
    );
    let c = engine.counters();
    assert_eq!(c.deferred as usize, SLOW - 1, "{c:?}");
    assert_eq!(engine.deferred() as usize, SLOW - 1);
    gate.open();
    for _ in 0..SLOW {
        let (id, seen) = rx
            .recv_timeout(PROMPT)
            .expect("every deferred event answered");
        assert_eq!(seen, Seen::Decided(inos[id] as u32 * 10, Origin::Evaluated));
    }
    assert_eq!(engine.deferred(), 0);
    engine.shutdown();
    recorder.assert_each_answered_once();
    assert_eq!(recorder.total.load(Ordering::SeqCst), SLOW + 1);
}

/// Panics on every answer of event 0, then behaves.
struct Panicky {
    inner: Arc<Recorder>,
    failed: AtomicUsize,
}

impl Responder<Id, u32> for Panicky {
    fn respond(&self, by: AnsweredBy, payload: &Id, answer: Answer<'_, u32>) {
        if payload.0 == 0 {
            panic!("responder bug");
        }
        self.inner.respond(by, payload, answer);
    }
    fn respond_failed(&self, _by: AnsweredBy, payload: &Id) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.inner.answers[payload.0].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_panicking_responder_costs_one_answer_not_the_worker() {
    let (recorder, _rx) = Recorder::new(3);
    let responder = Arc::new(Panicky {
        inner: recorder.clone(),
        failed: AtomicUsize::new(0),
    });
    let evaluator = ById {
        inner: Arc::new(Scripted::default()),
        inos: Arc::new(vec![1, 2, 3]),
    };
    let engine = Engine::start(
        config(1),
        evaluator,
        responder.clone(),
        MonotonicClock::new(),
        ExternalSource,
    )
    .unwrap();
    let deadline = engine.now_ns() + 60_000_000_000;
    for id in 0..3 {
        engine.submit(0, event(id, id as u64 + 1, deadline));
    }
    let start = std::time::Instant::now();
    while recorder.total.load(Ordering::SeqCst) < 2 && start.elapsed() < PROMPT {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(responder.failed.load(Ordering::SeqCst), 1);
    assert_eq!(engine.counters().responder_panics, 1);
    engine.shutdown();
    recorder.assert_each_answered_once();
}

fn prefetch_config(workers: usize) -> EngineConfig {
    EngineConfig {
        prefetch_queue_depth: 4,
        ..config(workers)
    }
}

/// A file prefetched before its exec: the exec arriving while the prefetch evaluates waits on
/// it (one evaluation, the exec answered `Coalesced`), a later exec is a cache hit, and while
/// the prefetch is held at the gate both workers still answer other files.
#[test]
fn an_exec_waits_on_the_prefetch_of_its_file_and_workers_stay_free() {
    // Event 0 is the prefetch of inode 1000; 1 its exec; 2 a later exec; 3 and 4 other files.
    let inos = Arc::new(vec![1_000u64, 1_000, 1_000, 2, 3]);
    let (gate, entered) = Gate::new();
    let (recorder, rx) = Recorder::new(inos.len());
    let evaluator = gated_from(&gate, 1_000, &inos);
    let engine = start_by_id(
        prefetch_config(2),
        evaluator,
        &recorder,
        MonotonicClock::new(),
    );
    let deadline = engine.now_ns() + 60_000_000_000;
    assert_eq!(
        engine.prefetch(event(0, 1_000, u64::MAX)),
        santa_hotpath::Prefetched::Queued
    );
    entered.recv_timeout(PROMPT).expect("the prefetch started");
    engine.submit(0, event(1, 1_000, deadline));
    // Both workers are free for other files while the prefetch is held.
    engine.submit(0, event(3, 2, deadline));
    engine.submit(1, event(4, 3, deadline));
    let mut others = Vec::new();
    for _ in 0..2 {
        let (id, seen) = rx.recv_timeout(PROMPT).expect("other files answered");
        others.push((id, seen));
    }
    others.sort_by_key(|(id, _)| *id);
    assert_eq!(
        others,
        vec![
            (3, Seen::Decided(20, Origin::Evaluated)),
            (4, Seen::Decided(30, Origin::Evaluated))
        ]
    );
    gate.open();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.recv_timeout(PROMPT).expect("prefetch and exec answered"));
    }
    got.sort_by_key(|(id, _)| *id);
    // The prefetch's own answer goes to the responder too (Linux's ignores it).
    assert_eq!(
        got,
        vec![
            (0, Seen::Decided(10_000, Origin::Evaluated)),
            (1, Seen::Decided(10_000, Origin::Coalesced))
        ]
    );
    engine.submit(0, event(2, 1_000, deadline));
    assert_eq!(
        rx.recv_timeout(PROMPT).unwrap(),
        (2, Seen::Decided(10_000, Origin::Cache))
    );
    let c = engine.counters();
    assert_eq!(c.prefetch_queued, 1);
    assert_eq!(c.prefetch_evaluations, 1);
    assert_eq!(
        c.evaluations, 2,
        "only the two other files on workers: {c:?}"
    );
    assert_eq!(c.waits, 1);
    engine.shutdown();
    recorder.assert_each_answered_once();
}

/// The lane is bounded: with its queue full a prefetch is dropped (counted) and leaves no
/// placeholder behind, so an exec of that file evaluates it itself; an already cached file is
/// not prefetched again; an engine without a lane says so.
#[test]
fn a_full_prefetch_lane_drops_prefetches_and_never_an_exec() {
    let inos = Arc::new((0..8u64).map(|i| 1_000 + i).collect::<Vec<_>>());
    let (gate, entered) = Gate::new();
    let (recorder, rx) = Recorder::new(inos.len() + 1);
    let mut all = (*inos).clone();
    all.push(5);
    let evaluator = gated_from(&gate, 1_000, &Arc::new(all));
    let engine = start_by_id(
        prefetch_config(2),
        evaluator,
        &recorder,
        MonotonicClock::new(),
    );
    // The first is taken by the lane's thread and held; four more fill the queue.
    assert_eq!(
        engine.prefetch(event(0, 1_000, u64::MAX)),
        santa_hotpath::Prefetched::Queued
    );
    entered.recv_timeout(PROMPT).unwrap();
    for id in 1..5 {
        assert_eq!(
            engine.prefetch(event(id, 1_000 + id as u64, u64::MAX)),
            santa_hotpath::Prefetched::Queued
        );
    }
    assert_eq!(
        engine.prefetch(event(5, 1_005, u64::MAX)),
        santa_hotpath::Prefetched::Full
    );
    // A full lane holds up no exec.
    let deadline = engine.now_ns() + 60_000_000_000;
    engine.submit(0, event(8, 5, deadline));
    assert_eq!(
        rx.recv_timeout(PROMPT).unwrap(),
        (8, Seen::Decided(50, Origin::Evaluated))
    );
    gate.open();
    for _ in 0..5 {
        rx.recv_timeout(PROMPT).unwrap();
    }
    // No placeholder was left for the dropped one: its exec is evaluated, not parked forever.
    engine.submit(1, event(7, 1_005, deadline));
    assert_eq!(
        rx.recv_timeout(PROMPT).unwrap(),
        (7, Seen::Decided(10_070, Origin::Evaluated))
    );
    assert_eq!(
        engine.prefetch(event(6, 1_001, u64::MAX)),
        santa_hotpath::Prefetched::Cached
    );
    let c = engine.counters();
    assert_eq!(
        (c.prefetch_queued, c.prefetch_full, c.prefetch_cached),
        (5, 1, 1)
    );
    engine.shutdown();
    let (recorder, _rx) = Recorder::new(1);
    let (gate, _entered) = Gate::new();
    let plain = start_by_id(
        config(1),
        gated_from(&gate, u64::MAX, &Arc::new(vec![1])),
        &recorder,
        MonotonicClock::new(),
    );
    assert_eq!(
        plain.prefetch(event(0, 1, u64::MAX)),
        santa_hotpath::Prefetched::Off
    );
    plain.shutdown();
}
