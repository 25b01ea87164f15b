//! The `connect_unix` program as BPF instructions. aya 0.14 cannot load it (its object parser
//! rejects the `cgroup/connect_unix` section and it resolves no kfunc calls), so it is written
//! here, small and straight-line, and loaded with `bpf(BPF_PROG_LOAD)` by the parent module.
//!
//! What it does, for a `connect()` on an AF_UNIX socket by a task of an attached cgroup:
//! 1. not an agent (uid not in `AGENT_UIDS`, no ancestor cgroup in `AGENT_CGROUPS`): allow;
//! 2. read the path asked for (`bpf_cast_to_kern_ctx` -> `uaddr`, `uaddrlen`), cut it at its
//!    first NUL or at `uaddrlen`, and zero the rest, so one path has one map key;
//! 3. not in `UNIX_PATHS`: allow; otherwise point the connect at the gateway's socket named by
//!    the map value (`bpf_sock_addr_set_sun_path`). Anything that fails for an agent refuses
//!    the connect (EPERM): never let through.
//!
//! Unlike `connect4`/`connect6` it does not look at the bypass mark: the gateway itself never
//! connects to a protected unix socket (it reaches the server over TCP).

use gateway_common::{MAX_CGROUP_DEPTH, UNIX_PATH_LEN};

/// One BPF instruction as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// What the program needs from the running kernel and the loaded maps.
pub struct Inputs {
    pub agent_uids_fd: i32,
    pub agent_cgroups_fd: i32,
    pub unix_paths_fd: i32,
    /// vmlinux BTF ids of the kfuncs.
    pub cast_to_kern_ctx: u32,
    pub set_sun_path: u32,
}

// Offsets in `struct bpf_sock_addr_kern` (include/linux/filter.h, 6.7+): sk, uaddr, tmp_reg,
// t_ctx, uaddrlen. The verifier checks both loads against the kernel's BTF for that struct.
const KERN_UADDR: i16 = 8;
const KERN_UADDRLEN: i16 = 32;

/// `sun_path` follows the 2-byte `sun_family`.
const SUN_PATH_OFFSET: i32 = 2;

// Stack layout (r10 = frame end): the map key buffer, then 8-byte scratch slots.
const KEY: i16 = -128;
const SCRATCH_U32: i16 = -4;
const SCRATCH_U64: i16 = -16;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// Helper ids (include/uapi/linux/bpf.h).
const MAP_LOOKUP_ELEM: i32 = 1;
const GET_CURRENT_UID_GID: i32 = 15;
const GET_CURRENT_ANCESTOR_CGROUP_ID: i32 = 123;
const PROBE_READ_KERNEL: i32 = 113;

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Jump targets are resolved once the whole program is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Agent,
    Allow,
    Refuse,
}

struct Builder {
    code: Vec<Insn>,
    /// (index of a jump, where it goes)
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Builder {
    fn push(&mut self, insn: Insn) {
        self.code.push(insn);
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(insn(0xbf, dst, src, 0, 0));
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(insn(0xb7, dst, 0, 0, imm));
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.push(insn(0x07, dst, 0, 0, imm));
    }
    fn call(&mut self, helper: i32) {
        self.push(insn(0x85, 0, 0, 0, helper));
    }
    /// A kernel function named by its vmlinux BTF id (src_reg = BPF_PSEUDO_KFUNC_CALL).
    fn call_kfunc(&mut self, btf_id: u32) {
        self.push(insn(0x85, 0, 2, 0, btf_id as i32));
    }
    /// `dst = map` by file descriptor (BPF_LD_IMM64 with src_reg = BPF_PSEUDO_MAP_FD).
    fn load_map(&mut self, dst: u8, fd: i32) {
        self.push(insn(0x18, dst, 1, 0, fd));
        self.push(insn(0, 0, 0, 0, 0));
    }
    /// A conditional jump (`code` with BPF_K) to a label.
    fn jump_imm(&mut self, code: u8, reg: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.push(insn(code, reg, 0, 0, imm));
    }
    fn goto(&mut self, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.push(insn(0x05, 0, 0, 0, 0));
    }
    fn label(&mut self, label: Label) {
        self.labels.push((label, self.code.len()));
    }
    fn exit_with(&mut self, verdict: i32) {
        self.mov_imm(R0, verdict);
        self.push(insn(0x95, 0, 0, 0, 0));
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.fixups {
            // Every label is placed by `build`; a missing one would jump to itself, which the
            // verifier refuses (and the unit tests catch).
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(at, |(_, index)| *index);
            // Offsets count from the instruction after the jump.
            self.code[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.code
    }
}

const JEQ: u8 = 0x15;
const JNE: u8 = 0x55;
const JGT: u8 = 0x25;
const JLE: u8 = 0xb5;

pub fn build(inputs: &Inputs) -> Vec<Insn> {
    let mut b = Builder {
        code: Vec::new(),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    b.mov_reg(R6, R1);

    // 1. Agent by uid.
    b.call(GET_CURRENT_UID_GID);
    b.push(insn(0x63, R10, R0, SCRATCH_U32, 0)); // *(u32 *)(r10 - 4) = r0 (the uid half)
    b.load_map(R1, inputs.agent_uids_fd);
    b.mov_reg(R2, R10);
    b.add_imm(R2, SCRATCH_U32.into());
    b.call(MAP_LOOKUP_ELEM);
    b.jump_imm(JNE, R0, 0, Label::Agent);
    // ... or by an agent cgroup among the task's ancestors, from just below the root down
    // (unrolled, as in gateway-ebpf's agent.rs).
    for level in 1..=MAX_CGROUP_DEPTH {
        b.mov_imm(R1, level);
        b.call(GET_CURRENT_ANCESTOR_CGROUP_ID);
        b.jump_imm(JEQ, R0, 0, Label::Allow);
        b.push(insn(0x7b, R10, R0, SCRATCH_U64, 0)); // *(u64 *)(r10 - 16) = r0
        b.load_map(R1, inputs.agent_cgroups_fd);
        b.mov_reg(R2, R10);
        b.add_imm(R2, SCRATCH_U64.into());
        b.call(MAP_LOOKUP_ELEM);
        b.jump_imm(JNE, R0, 0, Label::Agent);
    }
    b.goto(Label::Allow);

    // 2. The path, as one map key.
    b.label(Label::Agent);
    b.mov_reg(R1, R6);
    b.call_kfunc(inputs.cast_to_kern_ctx);
    b.push(insn(0x79, R9, R0, KERN_UADDR, 0)); // r9 = kern->uaddr
    b.push(insn(0x61, R8, R0, KERN_UADDRLEN, 0)); // r8 = kern->uaddrlen
    b.mov_reg(R1, R10);
    b.add_imm(R1, KEY.into());
    b.mov_imm(R2, UNIX_PATH_LEN as i32);
    b.mov_reg(R3, R9);
    b.add_imm(R3, SUN_PATH_OFFSET);
    b.call(PROBE_READ_KERNEL);
    b.jump_imm(JNE, R0, 0, Label::Refuse);
    b.add_imm(R8, -SUN_PATH_OFFSET); // bytes of sun_path the caller passed
    b.mov_imm(R7, 0); // set once the path has ended
    for index in 0..UNIX_PATH_LEN {
        let at = KEY + index as i16;
        // if ended: zero; else if len <= index: end and zero; else if byte == 0: end.
        b.push(insn(JNE, R7, 0, 4, 0));
        b.push(insn(JLE, R8, 0, 2, index as i32));
        b.push(insn(0x71, R3, R10, at, 0)); // r3 = *(u8 *)(r10 + at)
        b.push(insn(JNE, R3, 0, 2, 0));
        b.mov_imm(R7, 1);
        b.push(insn(0x72, R10, 0, at, 0)); // *(u8 *)(r10 + at) = 0
    }

    // 3. Protected? Then to the gateway's socket.
    b.load_map(R1, inputs.unix_paths_fd);
    b.mov_reg(R2, R10);
    b.add_imm(R2, KEY.into());
    b.call(MAP_LOOKUP_ELEM);
    b.jump_imm(JEQ, R0, 0, Label::Allow);
    b.mov_reg(R7, R0); // the map value: the gateway's socket path and its length
                       // The kfunc takes the kernel context (a trusted pointer), not the program's view of it:
                       // passing r6 fails with "arg#0 pointer type STRUCT bpf_sock_addr_kern must point to
                       // scalar, or struct with scalar".
    b.mov_reg(R1, R6);
    b.call_kfunc(inputs.cast_to_kern_ctx);
    b.mov_reg(R1, R0);
    b.mov_reg(R2, R7);
    b.push(insn(0x61, R3, R7, UNIX_PATH_LEN as i16, 0)); // r3 = value->len
                                                         // The size argument must be bounded and non-zero for the verifier.
    b.jump_imm(JEQ, R3, 0, Label::Refuse);
    b.jump_imm(JGT, R3, UNIX_PATH_LEN as i32 - 1, Label::Refuse);
    b.call_kfunc(inputs.set_sun_path);
    b.jump_imm(JNE, R0, 0, Label::Refuse);

    b.label(Label::Allow);
    b.exit_with(ALLOW);
    b.label(Label::Refuse);
    b.exit_with(REFUSE);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            agent_uids_fd: 3,
            agent_cgroups_fd: 4,
            unix_paths_fd: 5,
            cast_to_kern_ctx: 100,
            set_sun_path: 200,
        }
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let code = build(&inputs());
        for (at, i) in code.iter().enumerate() {
            let is_jump = i.code & 0x07 == 0x05 && i.code != 0x85 && i.code != 0x95;
            if is_jump {
                let target = at as i64 + 1 + i64::from(i.off);
                assert!(
                    (0..code.len() as i64).contains(&target) && target > at as i64,
                    "jump at {at} to {target}: outside, or backwards (an unplaced label)"
                );
            }
        }
        assert_eq!(code.last().map(|i| i.code), Some(0x95), "ends with exit");
    }

    #[test]
    fn kfunc_calls_name_the_btf_ids() {
        let code = build(&inputs());
        let kfuncs: Vec<i32> = code
            .iter()
            .filter(|i| i.code == 0x85 && i.regs >> 4 == 2)
            .map(|i| i.imm)
            .collect();
        assert_eq!(kfuncs, [100, 100, 200]);
        let maps: Vec<i32> = code
            .iter()
            .filter(|i| i.code == 0x18 && i.regs >> 4 == 1)
            .map(|i| i.imm)
            .collect();
        assert!(maps.contains(&3) && maps.contains(&4) && maps.contains(&5));
    }
}
