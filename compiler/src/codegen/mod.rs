//! Code generation from MIR to eBPF (issue 8). The passes, in order, per function:
//!
//! 1. `mir::verify` — the module must satisfy the kernel verifier's rules;
//! 2. [`lower`] — instruction selection into VCode (virtual registers, fixed ABI registers);
//! 3. [`regalloc`] — liveness, linear scan over whole functions, spills;
//! 4. [`frame`] — stack layout, measured and limited to 512 bytes;
//! 5. [`check`] — the allocation re-verified symbolically;
//! 6. [`emit`] — instructions, jumps resolved, relocations recorded;
//!
//! then, per module, the combined stack of every call chain is checked and
//! [`object`] writes the ELF. An internal failure is a [`CodegenError::Internal`] carrying
//! the function's MIR, never wrong code.

pub mod check;
pub mod emit;
pub mod frame;
pub mod lower;
pub mod object;
pub mod regalloc;
pub mod vcode;

use std::fmt::Write as _;

use crate::bpf::disasm;
use crate::mir::{self, print, FuncId, Function, Module, Op};

pub use emit::Emitted;
pub use frame::{Frame, MAX_STACK};

/// Why a module could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// The module breaks an invariant of the IR (a bug in whoever built it).
    #[error("MIR does not verify:\n{}", mir::verify::render(.0))]
    Verify(Vec<mir::VerifyError>),
    /// An implementation limit: the frame does not fit the kernel's stack.
    #[error("function {func}: stack frame of {bytes} bytes exceeds {MAX_STACK}")]
    StackTooLarge { func: String, bytes: u32 },
    #[error("call chain {chain}: combined stack of {bytes} bytes exceeds {MAX_STACK}")]
    CallChainStack { chain: String, bytes: u32 },
    /// An implementation limit: a jump longer than eBPF's 16-bit offsets reach.
    #[error(
        "function {func}: the jump from instruction {from} to {to} is out of eBPF's 16-bit range"
    )]
    JumpOutOfRange {
        func: String,
        from: usize,
        to: usize,
    },
    /// A bug in the code generator, with the function's MIR.
    #[error("internal error in {stage} of {func}: {message}\n{ir}")]
    Internal {
        func: String,
        stage: &'static str,
        message: String,
        ir: String,
    },
    #[error("object: {0}")]
    Object(#[from] crate::obj::ObjError),
}

/// One compiled function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFunc {
    pub name: String,
    pub code: Emitted,
    pub frame: Frame,
}

/// Every function of a module, in module order, with its stack use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub funcs: Vec<CompiledFunc>,
    /// Largest combined stack of any call chain starting at each program (in module
    /// order; 0 for subprograms), rounded per frame as the kernel counts it.
    pub chain_stack: Vec<u32>,
}

/// VCode after allocation, for `test regalloc` and for [`compile_function`].
pub struct Allocated {
    pub vcode: vcode::VCode,
    pub alloc: regalloc::Allocation,
    pub frame: Frame,
}

fn internal(m: &Module, f: &Function, stage: &'static str, message: String) -> CodegenError {
    CodegenError::Internal {
        func: f.name.clone(),
        stage,
        message,
        ir: print::function(m, f),
    }
}

/// Passes 2–5 for one function of a verified module.
pub fn allocate_function(m: &Module, f: &Function) -> Result<Allocated, CodegenError> {
    let mut vc = lower::lower(m, f).map_err(|e| internal(m, f, "instruction selection", e))?;
    let alloc =
        regalloc::allocate(&mut vc).map_err(|e| internal(m, f, "register allocation", e))?;
    let frame = frame::layout(f, &vc);
    if frame.size > MAX_STACK {
        return Err(CodegenError::StackTooLarge {
            func: f.name.clone(),
            bytes: frame.size,
        });
    }
    check::check(&vc, &alloc).map_err(|e| internal(m, f, "allocation check", e))?;
    Ok(Allocated {
        vcode: vc,
        alloc,
        frame,
    })
}

/// Passes 2–6 for one function of a verified module.
pub fn compile_function(m: &Module, f: &Function) -> Result<CompiledFunc, CodegenError> {
    let a = allocate_function(m, f)?;
    let code = emit::emit(m, &a.vcode, &a.alloc, &a.frame).map_err(|e| match e {
        emit::EmitError::JumpOutOfRange { from, to } => CodegenError::JumpOutOfRange {
            func: f.name.clone(),
            from,
            to,
        },
        emit::EmitError::Internal(e) => internal(m, f, "emission", e),
    })?;
    Ok(CompiledFunc {
        name: f.name.clone(),
        code,
        frame: a.frame,
    })
}

/// Verifies and compiles every function of `m`.
pub fn compile(m: &Module) -> Result<Compiled, CodegenError> {
    mir::verify_module(m).map_err(CodegenError::Verify)?;
    let funcs = m
        .funcs
        .iter()
        .map(|f| compile_function(m, f))
        .collect::<Result<Vec<_>, _>>()?;
    let chain_stack = chain_stacks(m, &funcs)?;
    Ok(Compiled { funcs, chain_stack })
}

/// The kernel adds up the frames of a call chain, each rounded up to 32 bytes, and
/// refuses more than 512 (`check_max_stack_depth`; callbacks count as calls).
fn chain_stacks(m: &Module, funcs: &[CompiledFunc]) -> Result<Vec<u32>, CodegenError> {
    let frame = |i: usize| {
        funcs
            .get(i)
            .map_or(0, |c| c.frame.size.max(1).div_ceil(32) * 32)
    };
    let callees = |i: usize| -> Vec<usize> {
        m.funcs.get(i).map_or(vec![], |f| {
            f.insts
                .iter()
                .filter_map(|d| match d.op {
                    Op::CallFn(g, _) | Op::FuncRef(g) => Some(g.index()),
                    _ => None,
                })
                .collect()
        })
    };
    // The call graph is acyclic (verified), so plain recursion terminates.
    fn deepest(
        i: usize,
        frame: &dyn Fn(usize) -> u32,
        callees: &dyn Fn(usize) -> Vec<usize>,
        path: &mut Vec<usize>,
    ) -> (u32, Vec<usize>) {
        path.push(i);
        let mut best = (0, Vec::new());
        for c in callees(i) {
            if path.contains(&c) {
                continue;
            }
            let d = deepest(c, frame, callees, path);
            if d.0 > best.0 {
                best = d;
            }
        }
        path.pop();
        let mut chain = vec![i];
        chain.extend(best.1);
        (frame(i) + best.0, chain)
    }
    let mut out = Vec::with_capacity(m.funcs.len());
    for (i, f) in m.funcs.iter().enumerate() {
        if f.hook.is_none() {
            out.push(0);
            continue;
        }
        let (bytes, chain) = deepest(i, &frame, &callees, &mut Vec::new());
        if bytes > MAX_STACK {
            let names: Vec<String> = chain
                .iter()
                .filter_map(|&c| m.func(FuncId::from_index(c)).map(|f| f.name.clone()))
                .collect();
            return Err(CodegenError::CallChainStack {
                chain: names.join(" -> "),
                bytes,
            });
        }
        out.push(bytes);
    }
    Ok(out)
}

/// The resource report `pol build` prints, per function: instructions, frame bytes (MIR
/// slots and spills) and, for programs, the deepest call chain's stack against 512.
pub fn report(m: &Module, c: &Compiled) -> String {
    let mut out = String::new();
    for ((f, cf), chain) in m.funcs.iter().zip(&c.funcs).zip(&c.chain_stack) {
        let _ = write!(
            out,
            "{}: {} insns, stack {} bytes (slots {}, spills {})",
            f.name,
            cf.code.insns.len(),
            cf.frame.size,
            cf.frame.slot_bytes,
            cf.frame.spill_bytes
        );
        if f.hook.is_some() {
            let _ = write!(out, ", call chain {chain} of {MAX_STACK} bytes");
        }
        out.push('\n');
    }
    out
}

/// Filetest output of `test regalloc`: each function's VCode with registers assigned.
pub fn filetest_regalloc(m: &Module) -> String {
    if let Err(e) = mir::verify_module(m) {
        return mir::verify::render(&e);
    }
    let mut out = String::new();
    for f in &m.funcs {
        let mut vc = match lower::lower(m, f) {
            Ok(vc) => vc,
            Err(e) => {
                let _ = writeln!(out, "{}: instruction selection: {e}", f.name);
                continue;
            }
        };
        match regalloc::allocate(&mut vc) {
            Err(e) => {
                let _ = writeln!(out, "{}: register allocation: {e}", f.name);
            }
            Ok(alloc) => {
                let frame = frame::layout(f, &vc);
                let _ = writeln!(
                    out,
                    "{}: frame {} bytes (slots {}, spills {})",
                    f.name, frame.size, frame.slot_bytes, frame.spill_bytes
                );
                out.push_str(&vcode::listing(&vc, &alloc));
                if let Err(e) = check::check(&vc, &alloc) {
                    let _ = writeln!(out, "allocation check failed: {e}");
                }
            }
        }
    }
    out
}

/// Filetest output of `test codegen`: each function's instructions and stack use.
pub fn filetest_codegen(m: &Module) -> String {
    let compiled = match compile(m) {
        Ok(c) => c,
        Err(e) => return format!("{e}\n"),
    };
    let mut out = String::new();
    for (c, chain) in compiled.funcs.iter().zip(&compiled.chain_stack) {
        let _ = write!(
            out,
            "{}: {} insns, frame {} bytes",
            c.name,
            c.code.insns.len(),
            c.frame.size
        );
        if *chain > 0 {
            let _ = write!(out, ", call chain {chain} bytes");
        }
        out.push('\n');
        let calls = &c.code.calls;
        let text = disasm::disassemble(&c.code.insns, &c.code.map_relocs, &[], &|_| String::new());
        for line in text.lines() {
            out.push_str(line);
            let at = |slot: &usize| line.trim_start().starts_with(&format!("{slot}:"));
            if let Some((_, g)) = calls
                .iter()
                .chain(&c.code.func_addrs)
                .find(|(slot, _)| at(slot))
            {
                let _ = write!(out, "  ; {}", m.func(*g).map_or("?", |f| f.name.as_str()));
            }
            out.push('\n');
        }
    }
    out
}
