//! Invariants broken on purpose (`simulate --break-<name>`): each switch makes the world or
//! the configuration violate one invariant, and the tests check that the simulation reports
//! it. A check that no break can trip would prove nothing.

/// One deliberate violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Event Grid swallows completion events: runs lack their final event.
    FinalEvent,
    /// Event Grid keeps every final event ten times: more publications than the bound.
    DuplicateEvents,
    /// Nothing is delivered or repaired after the first starts: runs stay open.
    Terminal,
    /// Graph keeps operations running for days, under a poll deadline stretched to let it:
    /// runs end past the documented bound.
    TimeBound,
    /// Graph fails one currency's exports with a code no injected fault causes.
    Unexplained,
    /// A landed partition disappears from the partner's storage.
    Output,
    /// An export's `_current.json` is rewritten to name a run that is not the newest.
    Current,
    /// An export is started behind the pipeline's back, with no run recording it.
    Exports,
    /// A SAS signature reaches a queue message.
    Secret,
    /// The ledger acknowledges open-run markers without storing them: runs the watchdog
    /// cannot see.
    OpenIndex,
    /// A file of an earlier landing stays in a FinOps hubs folder beside the new manifest:
    /// hubs would ingest it with the new files.
    Hubs,
}

impl Break {
    pub const ALL: [Break; 11] = [
        Break::FinalEvent,
        Break::DuplicateEvents,
        Break::Terminal,
        Break::TimeBound,
        Break::Unexplained,
        Break::Output,
        Break::Current,
        Break::Exports,
        Break::Secret,
        Break::OpenIndex,
        Break::Hubs,
    ];

    /// The switch's name: `--break-{name}`.
    pub fn name(self) -> &'static str {
        match self {
            Break::FinalEvent => "final-event",
            Break::DuplicateEvents => "duplicate-events",
            Break::Terminal => "terminal",
            Break::TimeBound => "time-bound",
            Break::Unexplained => "unexplained-failure",
            Break::Output => "output",
            Break::Current => "current",
            Break::Exports => "exports",
            Break::Secret => "secret",
            Break::OpenIndex => "open-index",
            Break::Hubs => "hubs",
        }
    }

    /// Words of the violation this break must cause.
    pub fn symptom(self) -> &'static str {
        match self {
            Break::FinalEvent => "has final events",
            Break::DuplicateEvents => "published its final event",
            Break::Terminal => "stuck in",
            Break::TimeBound => "beyond the bound",
            Break::Unexplained => "without a fault that explains it",
            Break::Output => "missing at",
            Break::Current => "_current.json names",
            Break::Exports => "Graph started",
            Break::Secret => "a secret reached",
            Break::OpenIndex => "outside the open-run index",
            Break::Hubs => "its manifest does not list",
        }
    }

    /// The break a `--break-{name}` flag names.
    pub fn from_flag(flag: &str) -> Option<Break> {
        let name = flag.strip_prefix("--break-")?;
        Break::ALL.into_iter().find(|b| b.name() == name)
    }
}
