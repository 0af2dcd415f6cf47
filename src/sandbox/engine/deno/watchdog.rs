//! Stops isolates whose JS keeps its own thread busy: such a thread cannot look at a clock,
//! so one watchdog thread per process does, and calls `terminate_execution` on the isolate
//! once its run's clock ([`crate::sandbox::RunClock`]) runs out or its program is cancelled. It is started before a worker locks
//! itself down (a locked-down worker may not start threads).

use std::{
    sync::{Arc, Condvar, Mutex, OnceLock},
    time::Duration,
};

use deno_core::v8;

use super::{Stop, Watch};
use crate::sandbox::CancelHandle;

/// How often cancellations and clocks are looked at while some program runs.
const CANCEL_POLL: Duration = Duration::from_millis(2);

struct Entry {
    id: u64,
    terminate: v8::IsolateHandle,
    watch: Arc<Watch>,
    cancel: CancelHandle,
}

#[derive(Default)]
struct Watched {
    entries: Vec<Entry>,
    next_id: u64,
}

struct Watchdog {
    watched: Mutex<Watched>,
    changed: Condvar,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            watched: Mutex::new(Watched::default()),
            changed: Condvar::new(),
        }));
        // Returns once the thread runs: a worker locks itself down right after, and a thread
        // still starting then would be killed by the filter it inherits.
        let (running, started) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("codemode-deno-watchdog".into())
            .spawn(move || {
                let _ = running.send(());
                watchdog.watch();
            });
        match spawned {
            Ok(_) => {
                let _ = started.recv();
            }
            // Deadlines are still kept while programs wait on the host, and the executor's
            // hard deadline ends the rest.
            Err(e) => tracing::error!("the deno engine's watchdog thread could not start: {e}"),
        }
        watchdog
    })
}

/// Starts the watchdog thread now, while this process may still start threads.
pub(super) fn start() {
    watchdog();
}

impl Watchdog {
    fn watch(&self) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            watched.entries.retain(|entry| {
                let stop = if entry.cancel.is_cancelled() {
                    Some(Stop::Cancelled)
                } else if entry.cancel.clock().expired() {
                    Some(Stop::Timeout)
                } else {
                    None
                };
                match stop {
                    Some(why) => {
                        entry.watch.stop(why);
                        entry.terminate.terminate_execution();
                        false
                    }
                    None => true,
                }
            });
            watched = if watched.entries.is_empty() {
                self.changed
                    .wait(watched)
                    .unwrap_or_else(|e| e.into_inner())
            } else {
                self.changed
                    .wait_timeout(watched, CANCEL_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            };
        }
    }
}

/// An isolate being watched; dropping it stops the watch.
pub(super) struct Watching(u64);

/// Watches an isolate until the returned guard is dropped.
pub(super) fn watch(
    terminate: v8::IsolateHandle,
    watch: Arc<Watch>,
    cancel: CancelHandle,
) -> Watching {
    let watchdog = watchdog();
    let mut watched = watchdog.watched.lock().unwrap_or_else(|e| e.into_inner());
    watched.next_id += 1;
    let id = watched.next_id;
    watched.entries.push(Entry {
        id,
        terminate,
        watch,
        cancel,
    });
    watchdog.changed.notify_one();
    Watching(id)
}

impl Drop for Watching {
    fn drop(&mut self) {
        let watchdog = watchdog();
        let mut watched = watchdog.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.entries.retain(|entry| entry.id != self.0);
    }
}
