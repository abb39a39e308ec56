//! The seccomp filter of a namespace sandbox: allow by default, deny a fixed list.
//!
//! A deny-list (not Docker's allow-list) because the sandbox runs arbitrary Linux programs and
//! msb already drops every capability that guards the dangerous half of the kernel; seccomp
//! here removes the syscalls that are dangerous *without* a capability or whose kernel code has
//! a history of exploitable bugs, and blocks the one way back to full capabilities, creating a
//! user namespace. Every denied call returns `EPERM`, except `clone3`, which returns `ENOSYS` so
//! that libc falls back to `clone`, whose flags seccomp can inspect. The reasons for each entry
//! are in `docs/adr/002-namespace-backend.md`.

use serde_json::{json, Value};

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

/// Architectures the filter covers. Listing the compat ABIs makes the deny-list apply to 32-bit
/// callers too (instead of leaving them unfiltered or killing them outright).
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec!["SCMP_ARCH_NATIVE"]
    }
}

/// The OCI `linux.seccomp` object.
pub fn oci_seccomp() -> Value {
    let new_user = libc::CLONE_NEWUSER as u64;
    let mut rules = vec![json!({
        "names": DENIED_SYSCALLS,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::EPERM,
    })];
    for name in DENIED_WITH_NEW_USER_NAMESPACE {
        // libcontainer reads `value` as the expected result and `valueTwo` as the mask; runc
        // reads them the other way round. With both equal, the rule means the same to either.
        rules.push(json!({
            "names": [name],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "args": [{
                "index": 0,
                "value": new_user,
                "valueTwo": new_user,
                "op": "SCMP_CMP_MASKED_EQ",
            }],
        }));
    }
    rules.push(json!({
        "names": UNSUPPORTED_SYSCALLS,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::ENOSYS,
    }));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_as_oci_and_denies_with_eperm() {
        let seccomp: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(oci_seccomp()).expect("valid OCI seccomp");
        let syscalls = seccomp.syscalls().as_ref().unwrap();
        assert_eq!(syscalls.len(), 4);
        let first = &syscalls[0];
        assert_eq!(first.errno_ret(), Some(libc::EPERM as u32));
        for name in ["kexec_load", "bpf", "keyctl", "ptrace", "open_by_handle_at"] {
            assert!(first.names().iter().any(|n| n == name), "{name} denied");
        }
        let clone = &syscalls[2];
        assert_eq!(clone.names(), &vec!["clone".to_owned()]);
        let arg = &clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.value(), 0x1000_0000);
        assert_eq!(arg.value_two(), Some(0x1000_0000));
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
