//! A minimal eBPF toolchain: an assembler with labels, the XDP redirect program
//! of the gateway generated from a filter description, and thin `bpf(2)`
//! wrappers to create the XSKMAP, load the program and attach it with a
//! `bpf_link` (detached automatically when the process exits). No clang, no
//! libbpf, no C at build time.

mod asm;
mod program;
mod sys;

pub use asm::{Asm, Insn, Reg};
pub use program::{XdpFilter, xdp_redirect_program};
pub use sys::{BpfError, XdpAttachment, XdpMode, ifindex, load_xdp, test_run};
