//! Logging for the launcher and the processes libcontainer clones from it.
//!
//! They are forks of a possibly multi-threaded caller, so they must not take locks another
//! caller thread may have held at the fork, such as the one inside the caller's `tracing`
//! writer. The launcher therefore replaces (for its only thread, which its clones inherit) the
//! caller's subscriber with this one: errors only, formatted into a fresh buffer and
//! written to fd 2 with one `write(2)`. In PID 1 before exec, fd 2 is the sandbox's stdio log,
//! so libcontainer's reasons for a failed start land there.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

pub(crate) struct LauncherLog;

impl LauncherLog {
    /// Makes this subscriber the current thread's default for the rest of the process's life.
    pub(crate) fn install() {
        let guard = tracing::subscriber::set_default(LauncherLog);
        // The launcher leaves with `_exit`; the guard must never restore the caller's
        // subscriber.
        std::mem::forget(guard);
    }
}

impl tracing::Subscriber for LauncherLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() == Level::ERROR
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!(
            "msb-namespace[{}] {} {}:",
            std::process::id(),
            metadata.level(),
            metadata.target()
        );
        event.record(&mut Fields(&mut line));
        line.push('\n');
        let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
