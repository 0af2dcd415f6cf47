//! Waiting on the host without going to sleep at once. A program that awaits a tool call
//! leaves its thread with nothing to do until the reply; if the thread sleeps, the reply
//! has to wake it, and on a virtual machine waking an idle CPU costs tens of microseconds,
//! as much as the rest of a tool call's own overhead. So the thread first polls for a short
//! while, yielding its CPU to anything else runnable between polls (as Go's scheduler and
//! crossbeam's `Backoff` do), and sleeps only when the wait turns out to be long.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// How long a waiting isolate polls before its thread sleeps, by default: about the round
/// trip of a quick upstream call, short beside anything slow.
pub const SPIN: Duration = Duration::from_micros(200);

/// `inner`, polled for up to `spin` after each wake before its thread is let sleep.
/// Each poll goes through the runtime's driver (I/O, timers), so nothing waits on it.
pub fn spin_then_sleep<F: Future>(spin: Duration, inner: F) -> SpinThenSleep<F> {
    SpinThenSleep {
        inner: Box::pin(inner),
        spin,
        since: None,
        slept: false,
    }
}

/// See [`spin_then_sleep`].
#[derive(Debug)]
pub struct SpinThenSleep<F> {
    inner: Pin<Box<F>>,
    spin: Duration,
    /// When the current wait began.
    since: Option<Instant>,
    /// Whether the last poll let the thread sleep.
    slept: bool,
}

impl<F: Future> Future for SpinThenSleep<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.slept {
            // Woken from sleep: a new wait begins.
            self.slept = false;
            self.since = None;
        }
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(output),
            Poll::Pending => {
                let since = *self.since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.spin {
                    std::thread::yield_now();
                    cx.waker().wake_by_ref();
                } else {
                    self.slept = true;
                }
                Poll::Pending
            }
        }
    }
}
