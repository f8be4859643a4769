//! An eBPF assembler: instructions, registers, and forward/backward labels
//! resolved at `finish`.

/// One eBPF instruction (8 bytes, kernel layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst_reg (low 4 bits) | src_reg (high 4 bits).
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// Registers r0..r10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

// Instruction classes and fields.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;

/// ALU operations.
#[derive(Clone, Copy, Debug)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Mov = 0xb0,
}

/// Conditional jumps.
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// A label: a position in the program, bound once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Assembles a program.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

/// Assembly errors (a bug in the program generator, reported, not panicked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A label was used but never bound.
    #[error("bpf asm: unbound label {0}")]
    Unbound(usize),
    /// A jump is further than an i16 offset allows.
    #[error("bpf asm: jump too far")]
    TooFar,
}

fn regs(dst: Reg, src: Reg) -> u8 {
    (dst as u8) | ((src as u8) << 4)
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }
    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
        self
    }
    /// A fresh unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) -> &mut Self {
        self.labels[l.0] = Some(self.insns.len());
        self
    }
    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | op as u8 | K, dst, Reg::R0, 0, imm)
    }
    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | op as u8 | X, dst, src, 0, 0)
    }
    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_reg(Alu::Mov, dst, src)
    }
    /// `dst = imm`.
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu_imm(Alu::Mov, dst, imm)
    }
    /// `dst = *(u32 *)(src + off)`.
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | W, dst, src, off, 0)
    }
    /// `dst = *(u16 *)(src + off)`.
    pub fn ldx_h(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | H, dst, src, off, 0)
    }
    /// `dst = *(u8 *)(src + off)`.
    pub fn ldx_b(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | B, dst, src, off, 0)
    }
    /// `dst = map fd` (a 64-bit immediate the kernel replaces by the map).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        // src_reg = BPF_PSEUDO_MAP_FD (1).
        self.push(LD | DW | IMM, dst, Reg::R1, 0, fd);
        self.push(0, Reg::R0, Reg::R0, 0, 0)
    }
    /// `if (u32)dst cond imm goto l`.
    pub fn jmp32_imm(&mut self, c: Cond, dst: Reg, imm: i32, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP32 | c as u8 | K, dst, Reg::R0, 0, imm)
    }
    /// `if dst cond src goto l` (64-bit: pointer comparisons).
    pub fn jmp_reg(&mut self, c: Cond, dst: Reg, src: Reg, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP | c as u8 | X, dst, src, 0, 0)
    }
    /// `goto l`.
    pub fn ja(&mut self, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP, Reg::R0, Reg::R0, 0, 0)
    }
    /// Calls helper `id`.
    pub fn call(&mut self, id: i32) -> &mut Self {
        self.push(JMP | 0x80, Reg::R0, Reg::R0, 0, id)
    }
    /// `return r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | 0x90, Reg::R0, Reg::R0, 0, 0)
    }
    /// Resolves labels and returns the instructions.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].ok_or(AsmError::Unbound(l.0))?;
            let rel = i64::try_from(target).map_err(|_| AsmError::TooFar)?
                - i64::try_from(at).map_err(|_| AsmError::TooFar)?
                - 1;
            self.insns[at].off = i16::try_from(rel).map_err(|_| AsmError::TooFar)?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_instructions() {
        let mut a = Asm::new();
        let l = a.label();
        a.mov_imm(Reg::R0, 2)
            .ldx_w(Reg::R2, Reg::R1, 4)
            .jmp32_imm(Cond::Eq, Reg::R2, 8, l)
            .bind(l)
            .exit();
        let p = a.finish().unwrap();
        // mov r0, 2  => b7 00 0000 02000000
        assert_eq!(
            p[0],
            Insn {
                code: 0xb7,
                regs: 0x00,
                off: 0,
                imm: 2
            }
        );
        // ldxw r2, [r1+4] => 61 12 0400 00000000
        assert_eq!(
            p[1],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 4,
                imm: 0
            }
        );
        // jeq32 r2, 8, +0 => 16 02 0000 08000000
        assert_eq!(
            p[2],
            Insn {
                code: 0x16,
                regs: 0x02,
                off: 0,
                imm: 8
            }
        );
        assert_eq!(p[3].code, 0x95);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(0)));
    }

    #[test]
    fn backward_jump() {
        let mut a = Asm::new();
        let l = a.label();
        a.bind(l).mov_imm(Reg::R0, 0).ja(l);
        let p = a.finish().unwrap();
        assert_eq!(p[1].off, -2);
    }
}
