//! The isolate threads: each runs one program at a time on its own current-thread runtime
//! (isolates are not `Send`), and gives freed memory back after a large one.

use std::{panic::AssertUnwindSafe, time::Duration};

use crossbeam_channel::Receiver;

use crate::sandbox::{Engine, ErrorKind, ProgramError, RunOutcome, RunRequest, spin_then_sleep};

use super::schedule::Job;

/// Runs jobs one after another; with a `template`, the next job's isolate is made while
/// the thread waits for it (for the shape of the last job), so a program starts in an
/// isolate that is ready.
pub(super) fn isolate_thread(
    engine: Engine,
    spin: Duration,
    queue: Receiver<Job>,
    mut template: Option<RunRequest>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!("isolate thread could not start its runtime: {err}");
            return;
        }
    };
    let prepare = |template: &Option<RunRequest>| {
        template
            .as_ref()
            .and_then(|t| runtime.block_on(engine.prepare(t)))
    };
    let mut warm = prepare(&template);
    while let Ok(job) = queue.recv() {
        if job.cancel.is_cancelled() || job.started.send(()).is_err() {
            continue;
        }
        let cpu_before = crate::sandbox::cpu::this_thread();
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // Tool replies come from other threads: spinning briefly spares each one a wake.
            runtime.block_on(spin_then_sleep(
                spin,
                engine.run_then_retire(warm.take(), &job.request, &job.cancel, job.host.clone()),
            ))
        }));
        let (mut outcome, retired) = match ran {
            Ok((outcome, retired)) => (outcome, Some(retired)),
            Err(_) => (
                RunOutcome::failed(ProgramError::new(
                    ErrorKind::Runtime,
                    "the engine failed while running this program (a bug in codemode-mcp); the server keeps serving",
                )),
                None,
            ),
        };
        outcome.cpu = crate::sandbox::cpu::spent(cpu_before, crate::sandbox::cpu::this_thread());
        let large = outcome.heap_peak_bytes > TRIM_AFTER_HEAP_BYTES;
        let _ = job.reply.send(outcome);
        // The answer is out; freeing the isolate no longer delays it.
        drop(retired);
        if large {
            return_freed_memory();
        }
        if let Some(template) = &mut template {
            template.bindings = job.request.bindings;
            template.fetch = job.request.fetch;
            template.limits = job.request.limits;
        }
        warm = prepare(&template);
    }
}

/// Heap peak past which the isolate thread hands freed memory back to the OS.
const TRIM_AFTER_HEAP_BYTES: usize = 8 << 20;

/// glibc keeps what a big isolate freed in that thread's arena; with one arena per isolate
/// thread the process would keep up to a heap cap per thread. Trimming returns it.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
