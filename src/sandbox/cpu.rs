//! The CPU time a run used (user + system), as the kernel counts it: for the isolate
//! thread that ran it in process, or for the worker process that ran it, read by the
//! host from the outside, so that a worker cannot misreport its own.

use std::time::Duration;

/// The CPU time this thread has used so far.
pub fn this_thread() -> Option<Duration> {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU time process `pid` (all its threads) has used so far; `None` once it is gone.
pub fn of_process(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the answer.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    read(clock)
}

/// The CPU used between two readings, when both were taken.
pub fn spent(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

fn read(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid place for the answer.
    (unsafe { libc::clock_gettime(clock, &mut now) } == 0).then(|| {
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_and_a_busy_process_are_seen_computing() {
        let process = of_process(std::process::id());
        // As the host reads a worker: after the work, not while a thread of it runs (a
        // running thread's time reaches the process clock at the kernel's pace).
        let worked = std::thread::spawn(|| {
            let thread = this_thread();
            let mut x = 0u64;
            while spent(thread, this_thread()).unwrap() < Duration::from_millis(5) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            spent(thread, this_thread()).unwrap()
        })
        .join()
        .unwrap();
        assert!(worked >= Duration::from_millis(5));
        let seen = spent(process, of_process(std::process::id())).unwrap();
        assert!(seen >= Duration::from_millis(5), "{seen:?}");
        assert_eq!(of_process(u32::MAX), None);
    }
}
