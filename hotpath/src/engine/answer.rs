//! What an event is answered with, by whom, and what became of a submission.

/// Why an event was answered with the default instead of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultReason {
    /// The deadline came before a decision.
    Deadline,
    /// The target worker's queue was full.
    QueueFull,
    /// Every in-flight slot was taken.
    SlotsFull,
    /// The engine is shutting down.
    ShuttingDown,
    /// The evaluation panicked (ours or, for parked events, the owner's), or the responder
    /// did.
    EvaluationFailed,
}

impl DefaultReason {
    /// A stable name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::QueueFull => "queue_full",
            Self::SlotsFull => "slots_full",
            Self::ShuttingDown => "shutting_down",
            Self::EvaluationFailed => "evaluation_failed",
        }
    }
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// This worker evaluated the file.
    Evaluated,
    /// The decision cache.
    Cache,
    /// Another worker's evaluation of the same file, waited for.
    Coalesced,
}

/// The answer to one event.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a, D> {
    /// A decision.
    Decided {
        /// The decision.
        decision: &'a D,
        /// Where it came from.
        origin: Origin,
        /// Whether the responder may let the kernel cache it (true only for the evaluation that
        /// produced a cacheable decision and for cache hits).
        cacheable: bool,
        /// The cache epoch the decision belongs to. A kernel-side cache entry placed for it must
        /// be withdrawn if [`Epoch::current`](crate::Epoch::current) has moved on once it is placed (a flush raced it).
        epoch: u64,
    },
    /// The configured default (the responder knows what it is: it depends on mode and config).
    Default(DefaultReason),
}

/// Which thread answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// Worker `n`.
    Worker(usize),
    /// The deadline thread (or whoever calls [`Engine::expire_due`](super::Engine::expire_due)).
    Deadline,
    /// The thread that submitted the event (queue or slots full, shutdown).
    Submitter,
}

/// What happened to a submitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for a worker.
    Queued,
    /// Already answered with the default (the responder was called).
    Answered(DefaultReason),
}
