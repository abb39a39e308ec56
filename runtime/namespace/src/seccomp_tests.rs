//! Tests of the seccomp filter: the kept program, the compact program against libseccomp's,
//! the rule tables.

use super::*;

/// Every decision of the compact program is libseccomp's: every number below 1100 of the
/// x86_64 and i386 sections, x32 numbers, an unknown architecture, each with first arguments
/// around every value a rule compares (both halves on x86_64).
#[test]
fn the_compact_program_decides_as_libseccomps() {
    let Some(compact) = compact().unwrap() else {
        eprintln!("skipped: no compact program here (not x86_64, or x32 runs)");
        return;
    };
    let reference = compile_with_libseccomp().unwrap();
    let mut args: Vec<u64> = vec![0, 1, 2, 0xffff_ffff, u64::MAX, 1 << 32, 1 << 63];
    for bit in 0..64 {
        args.push(1 << bit);
    }
    for value in [NAMESPACE_FLAGS, NAMESPACE_FLAGS | CLONE_NEWTIME, AF_VSOCK]
        .into_iter()
        .chain(PERSONALITIES)
    {
        for high in [0, 1, 0xffff_ffff] {
            args.push(value | high << 32);
            args.push((value ^ 1) | high << 32);
        }
    }
    let data = |arch: u32, nr: u32, arg: u64| {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg.to_ne_bytes());
        data
    };
    let mut cases = 0;
    for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0xc000_00b7, 0] {
        let numbers = (0..1100)
            .chain((0..1100).map(|n| n | X32_SYSCALL_BIT))
            .chain([u32::MAX, 0x7fff_ffff, 0x8000_0000]);
        for nr in numbers {
            for &arg in &args {
                let input = data(arch, nr, arg);
                let (ours, theirs) = (
                    crate::seccomp_bpf::run(&compact, &input),
                    crate::seccomp_bpf::run(&reference, &input),
                );
                assert_eq!(
                    ours, theirs,
                    "arch {arch:#x} nr {nr} arg {arg:#x}: compact {ours:#x}, libseccomp {theirs:#x}"
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 1_000_000);
    assert!(
        compact.len() * 2 < reference.len(),
        "{} instructions against libseccomp's {}",
        compact.len() / 8,
        reference.len() / 8
    );
}

#[test]
fn a_kept_program_is_the_compiled_one_and_a_damaged_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let compiled = compile().unwrap();
    assert_eq!(
        crate::seccomp_cache::cached(&cache, compile).unwrap(),
        compiled
    );
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one program, no temporary file left");
    let kept = files[0].path();
    assert_eq!(std::fs::read(&kept).unwrap(), compiled);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Read back as it is (no compilation: a marker instruction survives)...
    let mut marked = compiled.clone();
    marked[0] ^= 0xff;
    std::fs::write(&kept, &marked).unwrap();
    assert_eq!(
        crate::seccomp_cache::cached(&cache, compile).unwrap(),
        marked
    );
    // ...unless it is not a whole program, which is compiled and kept again.
    std::fs::write(&kept, &compiled[..compiled.len() - 3]).unwrap();
    assert_eq!(
        crate::seccomp_cache::cached(&cache, compile).unwrap(),
        compiled
    );
    assert_eq!(std::fs::read(&kept).unwrap(), compiled);
}

#[test]
fn filter_compiles_to_a_bpf_program() {
    let program = program().expect("filter compiles");
    // One instruction is 8 bytes; an allow-list over two or three ABIs is some hundreds of
    // them (277 as ranges on x86_64, 698 from libseccomp).
    assert_eq!(program.len() % 8, 0);
    assert!(program.len() / 8 > 200, "{}", program.len() / 8);
    assert!(
        std::ptr::eq(program, super::program().unwrap()),
        "compiled once"
    );
}

#[test]
fn the_allow_list_has_no_duplicates_and_leaves_out_what_reaches_past_the_sandbox() {
    let mut names: Vec<&str> = ALLOWED_SYSCALLS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALLOWED_SYSCALLS.len());
    for denied in [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "kcmp",
        "process_madvise",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "keyctl",
        "add_key",
        "mount",
        "umount2",
        "move_mount",
        "open_tree",
        "fsopen",
        "setns",
        "pivot_root",
        "open_by_handle_at",
        "init_module",
        "kexec_load",
        "reboot",
        "swapon",
        "settimeofday",
        "clock_settime",
        "syslog",
        "sethostname",
        "socket",
        "clone",
        "unshare",
        "personality",
    ] {
        assert!(!ALLOWED_SYSCALLS.contains(&denied), "{denied} is allowed");
    }
}

#[test]
fn every_allowed_name_is_known_to_libseccomp_or_listed_by_number() {
    let unknown: Vec<&str> = ALLOWED_SYSCALLS
        .iter()
        .copied()
        .filter(|name| resolve(name, true).is_none())
        .collect();
    assert!(unknown.is_empty(), "unknown syscalls: {unknown:?}");
}
