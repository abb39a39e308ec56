//! The seccomp filter's rules as a compact classic BPF program.
//!
//! libseccomp compiles one comparison per allowed syscall (991 instructions for the x86_64,
//! i386 and x32 sections, 698 without x32), and the kernel converts and JITs every instruction
//! of the program each PID 1 installs: about a millisecond on a start's path. The allowed
//! numbers form a few dozen runs of consecutive numbers, so [`program`] tests ranges instead
//! (two instructions per range), with the few calls whose arguments matter checked first. The
//! decisions are libseccomp's to the instruction's result: a test runs both programs over every
//! syscall number of every architecture with the arguments the rules look at
//! (`seccomp::tests`).

use std::collections::BTreeSet;

/// What one architecture's section decides, by syscall number.
#[derive(Debug, Clone)]
pub(crate) struct ArchRules {
    /// `AUDIT_ARCH_*`, as `seccomp_data.arch` carries it.
    pub audit_arch: u32,
    /// Arguments are 64 bits wide (both halves are compared), else 32.
    pub wide_args: bool,
    /// Numbers at or above this are another ABI's (x32's on x86_64): the bad-arch action.
    pub numbers_below: Option<u32>,
    /// Allowed whatever their arguments.
    pub allowed: BTreeSet<u32>,
    /// Fail with the fallback errno (`ENOSYS`).
    pub fallback: BTreeSet<u32>,
    /// Allowed when their first argument passes the check, else the default action.
    pub conditional: Vec<(u32, ArgCheck)>,
}

/// A check of a call's first argument.
#[derive(Debug, Clone)]
pub(crate) enum ArgCheck {
    /// `arg & mask == 0`.
    MaskedZero(u64),
    /// `arg != value`.
    NotEqual(u64),
    /// `arg` is one of these.
    OneOf(Vec<u64>),
}

/// The return values the program uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actions {
    pub allow: u32,
    /// For numbers no rule names.
    pub default: u32,
    /// For [`ArchRules::fallback`].
    pub fallback: u32,
    /// For an architecture no section covers, and another ABI's numbers.
    pub bad_arch: u32,
}

const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`: the number, the architecture, the first argument's low
/// and high halves (little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const ARG0_HIGH: u32 = 20;

/// Ranges tested before their shared returns (a conditional jump reaches 255 instructions).
const RANGES_PER_BLOCK: usize = 100;

#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> Insn {
    Insn {
        code,
        jt: u8::try_from(jt).expect("a short jump"),
        jf: u8::try_from(jf).expect("a short jump"),
        k,
    }
}

/// The program for `arches` (`struct sock_filter` array, native endian).
pub(crate) fn program(arches: &[ArchRules], actions: Actions) -> Vec<u8> {
    let sections: Vec<Vec<Insn>> = arches.iter().map(|a| section(a, actions)).collect();
    let mut out = vec![stmt(LD_W_ABS, ARCH)];
    // One `jeq` and one `ja` per architecture, then the bad-arch return, then the sections.
    let mut distance = 2 * (arches.len() - 1) + 1;
    for (index, arch) in arches.iter().enumerate() {
        out.push(jump(JMP_JEQ_K, arch.audit_arch, 0, 1));
        out.push(stmt(JMP_JA, u32::try_from(distance).expect("a program")));
        distance += sections[index].len();
        distance -= 2;
    }
    out.push(stmt(RET_K, actions.bad_arch));
    for section in sections {
        out.extend(section);
    }
    out.iter()
        .flat_map(|i| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.push(i.jt);
            bytes.push(i.jf);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
            bytes
        })
        .collect()
}

/// One architecture's section: loads the number, then the other ABI's numbers, the calls with
/// their own action, the allowed ranges.
fn section(rules: &ArchRules, actions: Actions) -> Vec<Insn> {
    let mut out = vec![stmt(LD_W_ABS, NR)];
    if let Some(limit) = rules.numbers_below {
        // Except -1, which a tracer sets to skip a call: it meets the default.
        out.push(jump(JMP_JGE_K, limit, 0, 2));
        out.push(jump(JMP_JEQ_K, u32::MAX, 1, 0));
        out.push(stmt(RET_K, actions.bad_arch));
    }
    for nr in &rules.fallback {
        out.push(jump(JMP_JEQ_K, *nr, 0, 1));
        out.push(stmt(RET_K, actions.fallback));
    }
    for (nr, check) in &rules.conditional {
        let block = arg_check(check, rules.wide_args, actions);
        out.push(jump(JMP_JEQ_K, *nr, 0, block.len()));
        out.extend(block);
        // `A` holds an argument after a block, but every block ends in returns.
    }
    let ranges = ranges(&rules.allowed);
    for block in ranges.chunks(RANGES_PER_BLOCK) {
        // Ascending: past a range's end, on to the next; inside, allowed; before its start
        // (and past the previous end), a gap.
        for (index, (low, high)) in block.iter().enumerate() {
            let after = 2 * (block.len() - index - 1);
            out.push(jump(JMP_JGT_K, *high, 1, 0));
            out.push(jump(JMP_JGE_K, *low, after + 1, after + 2));
        }
        out.push(stmt(JMP_JA, 2));
        out.push(stmt(RET_K, actions.allow));
        out.push(stmt(RET_K, actions.default));
    }
    out.push(stmt(RET_K, actions.default));
    out
}

/// Consecutive runs of `numbers`, as (first, last).
fn ranges(numbers: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in numbers {
        match out.last_mut() {
            Some((_, high)) if high.checked_add(1) == Some(n) => *high = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// A block that returns allow when the first argument passes `check`, else the default: with
/// wide arguments a test of the high half (its jumps counted from just after it), then the low
/// half loaded and tested, then the two returns.
fn arg_check(check: &ArgCheck, wide: bool, actions: Actions) -> Vec<Insn> {
    let halves = |v: u64| (v as u32, (v >> 32) as u32);
    let (high, low): (Insn, Vec<Insn>) = match check {
        ArgCheck::MaskedZero(mask) => {
            let (mask_low, mask_high) = halves(*mask);
            (
                // Any bit of the mask set: the default (3 ahead: ld, jset, allow).
                jump(JMP_JSET_K, mask_high, 3, 0),
                vec![jump(JMP_JSET_K, mask_low, 1, 0)],
            )
        }
        ArgCheck::NotEqual(value) => {
            let (value_low, value_high) = halves(*value);
            (
                // Another high half: not equal, allowed (2 ahead: ld, jeq).
                jump(JMP_JEQ_K, value_high, 0, 2),
                vec![jump(JMP_JEQ_K, value_low, 1, 0)],
            )
        }
        ArgCheck::OneOf(values) => {
            let count = values.len();
            // Every value has a zero high half; another one is none of them.
            assert!(values.iter().all(|v| v >> 32 == 0), "32-bit values");
            let mut low: Vec<Insn> = values
                .iter()
                .enumerate()
                .map(|(index, value)| jump(JMP_JEQ_K, *value as u32, count - index, 0))
                .collect();
            low.push(stmt(JMP_JA, 1));
            (jump(JMP_JEQ_K, 0, 0, count + 3), low)
        }
    };
    let mut out = Vec::new();
    if wide {
        out.push(stmt(LD_W_ABS, ARG0_HIGH));
        out.push(high);
    }
    out.push(stmt(LD_W_ABS, ARG0_LOW));
    out.extend(low);
    out.push(stmt(RET_K, actions.allow));
    out.push(stmt(RET_K, actions.default));
    out
}

/// A classic BPF interpreter for the instructions seccomp programs use (libseccomp's and
/// [`program`]'s), for the tests that compare them.
#[cfg(test)]
pub(crate) fn run(program: &[u8], data: &[u8; 64]) -> u32 {
    let insns: Vec<Insn> = program
        .chunks_exact(8)
        .map(|c| Insn {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut mem = [0u32; 16];
    let word = |k: u32| {
        let k = k as usize;
        u32::from_ne_bytes(data[k..k + 4].try_into().unwrap())
    };
    loop {
        let i = insns[pc];
        pc += 1;
        let cond = |taken: bool| if taken { i.jt as usize } else { i.jf as usize };
        match i.code {
            0x20 => a = word(i.k),
            0x00 => a = i.k,
            0x01 => x = i.k,
            0x60 => a = mem[i.k as usize],
            0x61 => x = mem[i.k as usize],
            0x02 => mem[i.k as usize] = a,
            0x03 => mem[i.k as usize] = x,
            0x07 => x = a,
            0x87 => a = x,
            0x54 => a &= i.k,
            0x44 => a |= i.k,
            0x5c => a &= x,
            0x05 => pc += i.k as usize,
            0x15 => pc += cond(a == i.k),
            0x25 => pc += cond(a > i.k),
            0x35 => pc += cond(a >= i.k),
            0x45 => pc += cond(a & i.k != 0),
            0x1d => pc += cond(a == x),
            0x2d => pc += cond(a > x),
            0x3d => pc += cond(a >= x),
            0x06 => return i.k,
            0x16 => return a,
            other => panic!("instruction {other:#x} at {}", pc - 1),
        }
    }
}
