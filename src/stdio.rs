//! The stdio transport's file descriptors, guarded: the protocol gets a private duplicate of
//! fd 1, and fd 1 itself is pointed at stderr, so that nothing else in the process (an
//! engine's stray `printf`, a dependency's `println!`) can corrupt the protocol stream.

use std::{fs::File, io, os::fd::FromRawFd};

/// Takes fd 1 for the protocol and points fd 1 at stderr. Call once, before any isolate
/// runs; returns the file the protocol writes to.
pub fn take_stdout() -> io::Result<File> {
    // SAFETY: plain fd syscalls on fds this process owns; the duplicate is owned by the
    // returned File and nowhere else.
    unsafe {
        let private = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if private < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            let err = io::Error::last_os_error();
            libc::close(private);
            return Err(err);
        }
        Ok(File::from_raw_fd(private))
    }
}
