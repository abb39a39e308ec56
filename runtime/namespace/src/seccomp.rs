//! The seccomp filter of a namespace sandbox: allow by default, deny a fixed list.
//!
//! A deny-list (not Docker's allow-list) because the sandbox runs arbitrary Linux programs and
//! msb already drops every capability that guards the dangerous half of the kernel; seccomp
//! here removes the syscalls that are dangerous *without* a capability or whose kernel code has
//! a history of exploitable bugs, and blocks the one way back to full capabilities, creating a
//! user namespace. Every denied call returns `EPERM`, except `clone3`, which returns `ENOSYS` so
//! that libc falls back to `clone`, whose flags seccomp can inspect. libseccomp compiles the
//! rules once per process ([`program`]); PID 1 installs the program as its last step before exec. The reasons for each entry
//! are in `docs/adr/002-namespace-backend.md`.

use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

/// Syscalls that always fail with `EPERM` in a sandbox.
pub const DENIED_SYSCALLS: &[&str] = &[
    // Loading, replacing or rebooting the kernel.
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    // Host-wide resources that no namespace covers.
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "syslog",
    // Kernel keyrings are not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    // Large kernel attack surface, rarely needed by sandboxed programs.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // Inspecting or writing other processes' memory.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // File handles bypass the mount namespace (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
    // Raw I/O port access.
    "iopl",
    "ioperm",
    // Namespace and root changes: the sandbox keeps the ones it was given.
    "setns",
    "pivot_root",
    // Obsolete interfaces.
    "uselib",
    "_sysctl",
    "lookup_dcookie",
];

/// Denied only when called with `CLONE_NEWUSER` in their flags argument (argument 0).
pub const DENIED_WITH_NEW_USER_NAMESPACE: &[&str] = &["unshare", "clone"];

/// Fails with `ENOSYS`: its flags live in a struct seccomp cannot read.
pub const UNSUPPORTED_SYSCALLS: &[&str] = &["clone3"];

/// The filter as a classic BPF program (`struct sock_filter` array, native endian), compiled by
/// libseccomp once per process and installed in each PID 1 just before its exec.
pub fn program() -> Result<&'static [u8], String> {
    static PROGRAM: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    PROGRAM
        .get_or_init(compile)
        .as_deref()
        .map_err(Clone::clone)
}

/// Architectures the filter covers besides the native one. Listing the compat ABIs makes the
/// deny-list apply to 32-bit callers too (instead of leaving them unfiltered or killing them).
fn compat_architectures() -> &'static [ScmpArch] {
    if cfg!(target_arch = "x86_64") {
        &[ScmpArch::X86, ScmpArch::X32]
    } else if cfg!(target_arch = "aarch64") {
        &[ScmpArch::Arm]
    } else {
        &[]
    }
}

fn compile() -> Result<Vec<u8>, String> {
    let context = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp {what}: {e}");
    let mut filter =
        ScmpFilterContext::new(ScmpAction::Allow).map_err(|e| context("new filter", e))?;
    for arch in compat_architectures() {
        filter
            .add_arch(*arch)
            .map_err(|e| context(&format!("add arch {arch:?}"), e))?;
    }
    // PID 1 sets no_new_privs itself, before the filter, as the last step of dropping privileges.
    filter
        .set_ctl_nnp(false)
        .map_err(|e| context("clear nnp attribute", e))?;
    let syscall = |name: &str| {
        ScmpSyscall::from_name(name).map_err(|e| context(&format!("syscall {name}"), e))
    };
    for name in DENIED_SYSCALLS {
        filter
            .add_rule(ScmpAction::Errno(libc::EPERM), syscall(name)?)
            .map_err(|e| context(&format!("deny {name}"), e))?;
    }
    let new_user = libc::CLONE_NEWUSER as u64;
    for name in DENIED_WITH_NEW_USER_NAMESPACE {
        let flags = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(new_user), new_user);
        filter
            .add_rule_conditional(ScmpAction::Errno(libc::EPERM), syscall(name)?, &[flags])
            .map_err(|e| context(&format!("deny {name} with CLONE_NEWUSER"), e))?;
    }
    for name in UNSUPPORTED_SYSCALLS {
        filter
            .add_rule(ScmpAction::Errno(libc::ENOSYS), syscall(name)?)
            .map_err(|e| context(&format!("deny {name}"), e))?;
    }
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
mod tests {
    use super::*;

    #[test]
    fn filter_compiles_to_a_bpf_program() {
        let program = program().expect("filter compiles");
        // One instruction is 8 bytes; a deny-list over three ABIs is some hundred of them.
        assert_eq!(program.len() % 8, 0);
        assert!(
            program.len() / 8 > DENIED_SYSCALLS.len(),
            "{}",
            program.len()
        );
        assert!(
            std::ptr::eq(program, super::program().unwrap()),
            "compiled once"
        );
    }

    #[test]
    fn deny_list_has_no_duplicates_and_keeps_what_processes_need() {
        let mut names: Vec<&str> = DENIED_SYSCALLS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DENIED_SYSCALLS.len());
        for needed in ["execve", "clone", "unshare", "mount", "chroot", "kill"] {
            assert!(
                !DENIED_SYSCALLS.contains(&needed),
                "{needed} must stay allowed"
            );
        }
    }
}
