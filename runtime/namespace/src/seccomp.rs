//! The seccomp filter of a namespace sandbox: an allow-list whose default is `EPERM`.
//!
//! Modelled on Docker's default profile: every syscall an ordinary Linux program needs is
//! allowed ([`ALLOWED_SYSCALLS`]); a few are allowed only with harmless arguments
//! ([`compile`]: `clone` and `unshare` without namespace flags, `socket` and `socketpair`
//! without `AF_VSOCK`, `personality` with the values programs use); everything else, including
//! the calls that reach into another process (`ptrace`, `process_vm_*`, `pidfd_getfd`, `kcmp`,
//! `process_madvise`), load or configure the kernel, mount, or enter namespaces, fails with
//! `EPERM`. `clone3` and `socketcall` fail with `ENOSYS` instead: libc then falls back to
//! `clone` and to the direct socket calls, whose arguments the filter can read. The filter
//! covers the 32-bit ABIs too. It is compiled once per build ([`program`], kept on disk by
//! `crate::seccomp_cache`): on x86_64 by msb as a compact program of ranges
//! ([`crate::seccomp_bpf`], 277 instructions against libseccomp's 698, tested to decide
//! exactly as libseccomp's does), elsewhere by libseccomp; PID 1 installs it as its last step
//! before exec. The reasons are in `docs/adr/002-namespace-backend.md`.

use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

/// Allowed with any arguments. Names that do not exist on an architecture are ignored there.
pub const ALLOWED_SYSCALLS: &[&str] = &[
    // Files and directories.
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "_llseek",
    "lseek",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "vmsplice",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "write",
    "writev",
    "chroot",
    // Extended attributes.
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "setxattr",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "setxattrat",
    "file_getattr",
    "file_setattr",
    // Waiting for files and events.
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "pipe",
    "pipe2",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "fanotify_mark",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // Asynchronous I/O (io_uring is not here).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    // Memory.
    "brk",
    "cachestat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // Processes and threads.
    "arch_prctl",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    // Signals.
    "kill",
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaction",
    "sigaltstack",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "tgkill",
    "tkill",
    // Synchronisation.
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // Time (reading it, sleeping, timers; setting the clock is not here).
    "adjtimex",
    "alarm",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    // System information.
    "getrandom",
    "sysinfo",
    "uname",
    // Sockets (`socket` and `socketpair` are filtered by family below).
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    // System V and POSIX IPC (the sandbox has its own IPC namespace).
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Fail with `ENOSYS`, so that libc falls back to a call the filter can inspect: `clone3`
/// keeps its flags in memory, `socketcall` (32-bit x86) its arguments.
pub const FALLBACK_SYSCALLS: &[&str] = &["clone3", "socketcall"];

/// Namespace flags of `clone` and `unshare`: a sandbox keeps the namespaces it was given.
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `unshare` also takes the time namespace flag (which `clone` reads as part of the exit signal).
const CLONE_NEWTIME: u64 = 0x80;

/// `AF_VSOCK`: the host-guest socket family, never meant for a sandbox.
pub const AF_VSOCK: u64 = 40;

/// Values of `personality` a program may set: the default, `PER_LINUX32`, `UNAME26`, both,
/// and `0xffffffff`, which only queries.
pub const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls newer than Debian 12's libseccomp (2.5.4), by their x86_64 number (shared with
/// 32-bit x86 from 424 on): allowed calls among them are added by number.
const NEWER_SYSCALLS: &[(&str, i32)] = &[
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// The filter as a classic BPF program (`struct sock_filter` array, native endian), compiled
/// once per process ([`compile`]) and installed in each PID 1 just before its exec.
///
/// With a cache directory set ([`set_cache_dir`]) the compiled program is kept there for the
/// next process of the same executable: libseccomp's compilation costs 20-30 ms of CPU, which
/// every supervisor (one per run) paid, on a run's path or beside it.
pub fn program() -> Result<&'static [u8], String> {
    static PROGRAM: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    PROGRAM
        .get_or_init(|| match CACHE_DIR.get() {
            Some(dir) => crate::seccomp_cache::cached(dir, compile),
            None => compile(),
        })
        .as_deref()
        .map_err(Clone::clone)
}

static CACHE_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Where [`program`] keeps compiled programs (a directory only msb's user can write: the
/// filter is what confines every sandbox). Set once, before the first [`program`].
pub fn set_cache_dir(dir: std::path::PathBuf) {
    let _ = CACHE_DIR.set(dir);
}

/// Architectures the filter covers besides the native one, so that 32-bit callers meet the same
/// allow-list instead of an unfiltered or killing path. x32 only where the kernel runs x32
/// calls at all (most kernels are built or booted without: `syscall.x32=n`): a section nobody
/// can use would only lengthen the program every PID 1 installs (its x32 part is a fifth of
/// the kernel's time to take the filter). Without it, x32 calls meet the filter's bad-arch
/// action, `ENOSYS`, what such a kernel answers them anyway.
fn compat_architectures() -> &'static [ScmpArch] {
    if cfg!(target_arch = "x86_64") {
        if crate::sys::kernel_runs_x32() {
            &[ScmpArch::X86, ScmpArch::X32]
        } else {
            &[ScmpArch::X86]
        }
    } else if cfg!(target_arch = "aarch64") {
        &[ScmpArch::Arm]
    } else {
        &[]
    }
}

fn context(what: &str, e: libseccomp::error::SeccompError) -> String {
    format!("seccomp {what}: {e}")
}

/// `name` as libseccomp knows it, or, `by_number`, by its number when it is newer than
/// libseccomp; `None` when neither knows it (it then stays denied).
fn resolve(name: &str, by_number: bool) -> Option<ScmpSyscall> {
    if let Ok(syscall) = ScmpSyscall::from_name(name) {
        return Some(syscall);
    }
    if !by_number || !cfg!(target_arch = "x86_64") {
        return None;
    }
    listed(NEWER_SYSCALLS, name).map(ScmpSyscall::from)
}

/// `name`'s number in a table of (name, number).
fn listed(table: &[(&str, i32)], name: &str) -> Option<i32> {
    table
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, number)| *number)
}

/// The native architecture's filter merged with the compat architectures' one. They are built
/// apart because libseccomp 2.5 adds a rule by number (for [`NEWER_SYSCALLS`]) only to a filter
/// of the native architecture alone; 32-bit callers do without those newer calls.
fn compile() -> Result<Vec<u8>, String> {
    match compact()? {
        Some(program) => Ok(program),
        None => compile_with_libseccomp(),
    }
}

/// The i386 numbers of the socket and System V IPC calls that libseccomp 2.5 knows only as
/// multiplexed (through `socketcall` and `ipc`) though the kernel has direct calls for them
/// (since Linux 4.3 and 5.1): libseccomp's program allows the direct calls too.
const I386_DIRECT_CALLS: &[(&str, i32)] = &[
    ("socket", 359),
    ("socketpair", 360),
    ("bind", 361),
    ("connect", 362),
    ("listen", 363),
    ("accept4", 364),
    ("getsockopt", 365),
    ("setsockopt", 366),
    ("getsockname", 367),
    ("getpeername", 368),
    ("sendto", 369),
    ("sendmsg", 370),
    ("recvfrom", 371),
    ("recvmsg", 372),
    ("shutdown", 373),
    ("recvmmsg", 337),
    ("sendmmsg", 345),
    ("semget", 393),
    ("semctl", 394),
    ("shmget", 395),
    ("shmctl", 396),
    ("shmat", 397),
    ("shmdt", 398),
    ("msgget", 399),
    ("msgsnd", 400),
    ("msgrcv", 401),
    ("msgctl", 402),
];

/// `AUDIT_ARCH_X86_64` and `AUDIT_ARCH_I386`, as `seccomp_data.arch` carries them.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 calls are x86_64 calls with this bit in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What the program returns: `SECCOMP_RET_ALLOW`, and `SECCOMP_RET_ERRNO` with `EPERM` (the
/// default) or `ENOSYS` (the fallback calls, another architecture).
fn actions() -> crate::seccomp_bpf::Actions {
    const RET_ERRNO: u32 = 0x0005_0000;
    crate::seccomp_bpf::Actions {
        allow: 0x7fff_0000,
        default: RET_ERRNO | libc::EPERM as u32,
        fallback: RET_ERRNO | libc::ENOSYS as u32,
        bad_arch: RET_ERRNO | libc::ENOSYS as u32,
    }
}

/// The same rules as a compact program ([`crate::seccomp_bpf`]) where msb builds one: x86_64
/// with its i386 section, on a kernel without x32 (libseccomp compiles the other cases).
fn compact() -> Result<Option<Vec<u8>>, String> {
    if !cfg!(target_arch = "x86_64") || crate::sys::kernel_runs_x32() {
        return Ok(None);
    }
    let native = arch_rules(ScmpArch::X8664, AUDIT_ARCH_X86_64, true)?;
    let i386 = arch_rules(ScmpArch::X86, AUDIT_ARCH_I386, false)?;
    Ok(Some(crate::seccomp_bpf::program(
        &[native, i386],
        actions(),
    )))
}

/// One architecture's rules by number, resolved as [`rules`] resolves them for libseccomp.
fn arch_rules(
    arch: ScmpArch,
    audit_arch: u32,
    native: bool,
) -> Result<crate::seccomp_bpf::ArchRules, String> {
    use crate::seccomp_bpf::ArgCheck;
    let number = |name: &str| -> Option<u32> {
        let known = ScmpSyscall::from_name_by_arch(name, arch)
            .ok()
            .map(i32::from)
            .filter(|n| *n >= 0);
        let n = match known {
            Some(n) => Some(n),
            None if native => listed(NEWER_SYSCALLS, name),
            None if arch == ScmpArch::X86 => listed(I386_DIRECT_CALLS, name),
            None => None,
        };
        n.map(|n| n as u32)
    };
    let required =
        |name: &str| number(name).ok_or_else(|| format!("seccomp: no {name} on {arch:?}"));
    let allowed = ALLOWED_SYSCALLS
        .iter()
        .filter_map(|name| number(name))
        .collect();
    let fallback = FALLBACK_SYSCALLS
        .iter()
        .filter_map(|name| number(name))
        .collect();
    let mut conditional = vec![
        (required("clone")?, ArgCheck::MaskedZero(NAMESPACE_FLAGS)),
        (
            required("unshare")?,
            ArgCheck::MaskedZero(NAMESPACE_FLAGS | CLONE_NEWTIME),
        ),
        (
            required("personality")?,
            ArgCheck::OneOf(PERSONALITIES.to_vec()),
        ),
    ];
    for name in ["socket", "socketpair"] {
        if let Some(nr) = number(name) {
            conditional.push((nr, ArgCheck::NotEqual(AF_VSOCK)));
        }
    }
    Ok(crate::seccomp_bpf::ArchRules {
        audit_arch,
        wide_args: native,
        numbers_below: native.then_some(X32_SYSCALL_BIT),
        allowed,
        fallback,
        conditional,
    })
}

/// The filter as libseccomp compiles it (the reference the compact program is tested against).
fn compile_with_libseccomp() -> Result<Vec<u8>, String> {
    let mut filter = rules(None)?;
    if !compat_architectures().is_empty() {
        filter
            .merge(rules(Some(compat_architectures()))?)
            .map_err(|e| context("merge the compat architectures' filter", e))?;
    }
    export(&filter)
}

/// The filter for the native architecture (`compat` `None`) or for the given others.
fn rules(compat: Option<&[ScmpArch]>) -> Result<ScmpFilterContext, String> {
    let mut filter = ScmpFilterContext::new(ScmpAction::Errno(libc::EPERM))
        .map_err(|e| context("new filter", e))?;
    if let Some(arches) = compat {
        for arch in arches {
            filter
                .add_arch(*arch)
                .map_err(|e| context(&format!("add arch {arch:?}"), e))?;
        }
        filter
            .remove_arch(ScmpArch::native())
            .map_err(|e| context("remove the native arch", e))?;
    }
    // A call of an architecture the filter does not cover (x32 where the kernel runs none)
    // fails as the kernel would fail it, instead of killing the caller.
    filter
        .set_act_badarch(ScmpAction::Errno(libc::ENOSYS))
        .map_err(|e| context("bad-arch action", e))?;
    // PID 1 sets no_new_privs itself, before the filter, as the last step of dropping privileges.
    filter
        .set_ctl_nnp(false)
        .map_err(|e| context("clear nnp attribute", e))?;
    let required = |name: &str| {
        ScmpSyscall::from_name(name).map_err(|e| context(&format!("syscall {name}"), e))
    };
    for name in ALLOWED_SYSCALLS {
        if let Some(syscall) = resolve(name, compat.is_none()) {
            filter
                .add_rule(ScmpAction::Allow, syscall)
                .map_err(|e| context(&format!("allow {name}"), e))?;
        }
    }
    let masked_zero = |mask: u64| ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(mask), 0);
    filter
        .add_rule_conditional(
            ScmpAction::Allow,
            required("clone")?,
            &[masked_zero(NAMESPACE_FLAGS)],
        )
        .map_err(|e| context("allow clone", e))?;
    filter
        .add_rule_conditional(
            ScmpAction::Allow,
            required("unshare")?,
            &[masked_zero(NAMESPACE_FLAGS | CLONE_NEWTIME)],
        )
        .map_err(|e| context("allow unshare", e))?;
    for name in ["socket", "socketpair"] {
        let family = ScmpArgCompare::new(0, ScmpCompareOp::NotEqual, AF_VSOCK);
        filter
            .add_rule_conditional(ScmpAction::Allow, required(name)?, &[family])
            .map_err(|e| context(&format!("allow {name}"), e))?;
    }
    for persona in PERSONALITIES {
        let value = ScmpArgCompare::new(0, ScmpCompareOp::Equal, persona);
        filter
            .add_rule_conditional(ScmpAction::Allow, required("personality")?, &[value])
            .map_err(|e| context("allow personality", e))?;
    }
    for name in FALLBACK_SYSCALLS {
        filter
            .add_rule(ScmpAction::Errno(libc::ENOSYS), required(name)?)
            .map_err(|e| context(&format!("make {name} fail with ENOSYS"), e))?;
    }
    Ok(filter)
}

fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, String> {
    // libseccomp of Debian 12 (2.5) cannot export to memory; a memfd stands in.
    let memfd = nix::sys::memfd::memfd_create(
        c"msb-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| format!("seccomp memfd: {e}"))?;
    filter
        .export_bpf(&memfd)
        .map_err(|e| context("export", e))?;
    let mut file = std::fs::File::from(memfd);
    let mut program = Vec::new();
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut program))
        .map_err(|e| format!("reading the exported seccomp program: {e}"))?;
    if program.is_empty() || program.len() % 8 != 0 {
        return Err(format!(
            "seccomp program of {} bytes is not a sock_filter array",
            program.len()
        ));
    }
    Ok(program)
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
