//! The worker's lockdown, applied before it reads any program and in this order:
//! resource limits, new user and network namespaces, Landlock, seccomp. A layer the kernel
//! does not offer is reported as unavailable (the server says so at start); a layer it
//! offers but that cannot be applied stops the worker (fail closed).

use std::{collections::BTreeMap, fmt};

use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
use serde::{Deserialize, Serialize};

/// One layer's state in a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer {
    /// In force; what it does.
    Enforced(String),
    /// This kernel (or the container around it) does not offer it; why.
    Unavailable(String),
}

impl Layer {
    /// Whether it is in force.
    pub fn is_enforced(&self) -> bool {
        matches!(self, Self::Enforced(_))
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enforced(what) => write!(f, "enforced: {what}"),
            Self::Unavailable(why) => write!(f, "UNAVAILABLE: {why}"),
        }
    }
}

/// What a worker's lockdown achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockdownReport {
    /// Resource limits (always applied).
    pub rlimits: Layer,
    /// New user and network namespaces: no network interface, no host identity.
    pub namespaces: Layer,
    /// Landlock: no file-system access.
    pub landlock: Layer,
    /// The system-call allow-list; anything else kills the worker.
    pub seccomp: Layer,
}

impl LockdownReport {
    /// Every layer in force.
    pub fn complete(&self) -> bool {
        [
            &self.rlimits,
            &self.namespaces,
            &self.landlock,
            &self.seccomp,
        ]
        .iter()
        .all(|layer| layer.is_enforced())
    }
}

impl fmt::Display for LockdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rlimits:    {}", self.rlimits)?;
        writeln!(f, "namespaces: {}", self.namespaces)?;
        writeln!(f, "landlock:   {}", self.landlock)?;
        write!(f, "seccomp:    {}", self.seccomp)
    }
}

/// A layer the kernel offers could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("worker lockdown failed at {layer}: {reason}")]
pub(super) struct LockdownError {
    layer: &'static str,
    reason: String,
}

fn failed(layer: &'static str, reason: impl fmt::Display) -> LockdownError {
    LockdownError {
        layer,
        reason: reason.to_string(),
    }
}

/// Resource limits a worker runs under.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResourceLimits {
    /// Address space, bytes: the heap cap plus room for the binary, stacks and runtime.
    pub(super) address_space_bytes: u64,
    /// CPU seconds before the kernel kills the worker.
    pub(super) cpu_seconds: u64,
}

/// Open files a worker may hold: its pipes, the runtime's epoll and eventfd, stdio.
const OPEN_FILES: u64 = 32;

/// The first stage, while the process has one thread (unsharing a user namespace needs
/// that): rlimits, namespaces, Landlock.
pub(super) fn restrict_process(
    limits: ResourceLimits,
) -> Result<(Layer, Layer, Layer), LockdownError> {
    let rlimits = set_rlimits(limits)?;
    let namespaces = unshare_namespaces();
    let landlock = restrict_file_system()?;
    Ok((rlimits, namespaces, landlock))
}

fn set_rlimits(limits: ResourceLimits) -> Result<Layer, LockdownError> {
    let set = |resource, soft: u64, hard: u64, name: &'static str| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(failed(
                "rlimits",
                format!("{name}: {}", std::io::Error::last_os_error()),
            ));
        }
        Ok(())
    };
    set(
        libc::RLIMIT_AS,
        limits.address_space_bytes,
        limits.address_space_bytes,
        "RLIMIT_AS",
    )?;
    // SIGXCPU at the soft limit, SIGKILL a second later.
    set(
        libc::RLIMIT_CPU,
        limits.cpu_seconds,
        limits.cpu_seconds + 1,
        "RLIMIT_CPU",
    )?;
    set(libc::RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES, "RLIMIT_NOFILE")?;
    set(libc::RLIMIT_CORE, 0, 0, "RLIMIT_CORE")?;
    set(libc::RLIMIT_FSIZE, 0, 0, "RLIMIT_FSIZE")?;
    Ok(Layer::Enforced(format!(
        "address space {} MiB, {} CPU seconds, {OPEN_FILES} open files, no core dumps, no file writes",
        limits.address_space_bytes >> 20,
        limits.cpu_seconds
    )))
}

fn unshare_namespaces() -> Layer {
    // SAFETY: unshare changes only this process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        Layer::Enforced(
            "new user and network namespaces: no network interface but a down loopback, no host user"
                .into(),
        )
    } else {
        Layer::Unavailable(format!(
            "unshare(CLONE_NEWUSER | CLONE_NEWNET) refused: {} (user namespaces disabled, or a container policy)",
            std::io::Error::last_os_error()
        ))
    }
}

fn restrict_file_system() -> Result<Layer, LockdownError> {
    // SAFETY: the version query of landlock_create_ruleset reads no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    let abi = ABI::from(i32::try_from(version).unwrap_or(-1));
    if abi == ABI::Unsupported {
        return Ok(Layer::Unavailable(format!(
            "Landlock is not offered by this kernel: {}",
            std::io::Error::last_os_error()
        )));
    }
    // Everything this kernel's ABI can restrict is handled, and no rule grants any of it.
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| failed("landlock", e))?;
    if !AccessNet::from_all(abi).is_empty() {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| failed("landlock", e))?;
    }
    if !Scope::from_all(abi).is_empty() {
        ruleset = ruleset
            .scope(Scope::from_all(abi))
            .map_err(|e| failed("landlock", e))?;
    }
    let status = ruleset
        .create()
        .and_then(|created| created.restrict_self())
        .map_err(|e| failed("landlock", e))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(failed(
            "landlock",
            format!("the ruleset is not fully enforced ({:?})", status.ruleset),
        ));
    }
    Ok(Layer::Enforced(format!(
        "ABI {}: no file-system access{}{}",
        version,
        if AccessNet::from_all(abi).is_empty() {
            ""
        } else {
            ", no TCP bind or connect"
        },
        if Scope::from_all(abi).is_empty() {
            ""
        } else {
            ", no signals or abstract sockets outside the sandbox"
        }
    )))
}

/// System calls a locked-down worker makes: memory, its pipes and runtime (epoll, eventfd,
/// futex), clocks and sleeping, signals for aborting, and exit. No open, socket, fork,
/// clone or exec.
fn allowed_syscalls() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_tgkill,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_epoll_wait, libc::SYS_poll]);
    calls
}

/// The second stage, once the worker's runtime and pipes exist: the system-call
/// allow-list, on every thread.
pub(super) fn restrict_syscalls() -> Result<Layer, LockdownError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| failed("seccomp", e))?;
    let mut rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = allowed_syscalls()
        .into_iter()
        .map(|call| (call, Vec::new()))
        .collect();
    // `fcntl(fd, F_GETFD)` only: std's debug builds ask it whether a descriptor is open
    // before they adopt or close one, and it reveals nothing the worker does not own.
    let get_fd = seccompiler::SeccompCondition::new(
        1,
        seccompiler::SeccompCmpArgLen::Dword,
        seccompiler::SeccompCmpOp::Eq,
        libc::F_GETFD as u64,
    )
    .and_then(|c| seccompiler::SeccompRule::new(vec![c]))
    .map_err(|e| failed("seccomp", e))?;
    rules.insert(libc::SYS_fcntl, vec![get_fd]);
    let count = rules.len();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| failed("seccomp", e))?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(|e| failed("seccomp", e))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| failed("seccomp", e))?;
    Ok(Layer::Enforced(format!(
        "{count} system calls allowed; any other (open, socket, clone, execve, ...) kills the worker"
    )))
}
