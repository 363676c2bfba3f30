//! Parser of the MIR text form written by [`super::print`]. Ids are kept as written
//! (`v7` is value 7, `block2` block 2), so a pass's output reads like its input; blocks
//! and slots must be numbered densely, values may skip numbers. `;` starts a comment;
//! top-level `test ...` lines (filetest directives) are skipped.

use std::collections::HashMap;

use super::entities::{Block, FuncId, MapId, Slot, Value};
use super::func::{
    BlockCall, BlockData, Function, InstData, MapDef, Module, Op, Operand, SlotData, Term,
    ValueData, ValueDef,
};
use super::helpers;
use super::types::{BinOp, Cond, ExtOp, Hook, IntTy, MapKind, PtrKind, Type};
use super::Inst;

/// A syntax error, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Num(i128),
    Punct(char),
    Arrow,
}

fn lex(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == ';' {
            break;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push(Tok::Arrow);
            i += 2;
        } else if c.is_ascii_digit() {
            let start = i;
            while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
                i += 1;
            }
            let s: String = chars.get(start..i).unwrap_or_default().iter().collect();
            let n = match s.strip_prefix("0x") {
                Some(hex) => i128::from_str_radix(hex, 16),
                None => s.parse::<i128>(),
            }
            .map_err(|_| format!("bad number {s:?}"))?;
            out.push(Tok::Num(n));
        } else if c.is_ascii_alphabetic() || c == '_' || c == '%' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '?' | '%'))
            {
                i += 1;
            }
            out.push(Tok::Word(
                chars.get(start..i).unwrap_or_default().iter().collect(),
            ));
        } else if "(),:=[]+-{}".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

struct Cur {
    toks: Vec<Tok>,
    pos: usize,
}

impl Cur {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn punct(&mut self, c: char) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(p)) if p == c => Ok(()),
            t => Err(format!("expected {c:?}, found {}", show(t.as_ref()))),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            t => Err(format!("expected a name, found {}", show(t.as_ref()))),
        }
    }

    fn keyword(&mut self, k: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Word(w)) if w == k => Ok(()),
            t => Err(format!("expected {k:?}, found {}", show(t.as_ref()))),
        }
    }

    /// A possibly negative number that fits in 64 bits, signed or not.
    fn num(&mut self) -> Result<i64, String> {
        let neg = self.eat('-');
        match self.next() {
            Some(Tok::Num(n)) => {
                let n = if neg { -n } else { n };
                if n > i128::from(u64::MAX) || n < i128::from(i64::MIN) {
                    return Err(format!("{n} does not fit in 64 bits"));
                }
                Ok(n as i64)
            }
            t => Err(format!("expected a number, found {}", show(t.as_ref()))),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        let n = self.num()?;
        u32::try_from(n).map_err(|_| format!("{n} is not a u32"))
    }

    fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            t => Err(format!("unexpected {} at end of line", show(t))),
        }
    }
}

fn show(t: Option<&Tok>) -> String {
    match t {
        None => "end of line".into(),
        Some(Tok::Word(w)) => format!("{w:?}"),
        Some(Tok::Num(n)) => n.to_string(),
        Some(Tok::Punct(c)) => format!("{c:?}"),
        Some(Tok::Arrow) => "\"->\"".into(),
    }
}

fn numbered(w: &str, prefix: &str) -> Option<u32> {
    w.strip_prefix(prefix)?.parse().ok()
}

/// Parses a whole module.
pub fn parse_module(text: &str) -> Result<Module, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, message: String| ParseError {
        line: line + 1,
        message,
    };
    // Pass 1: map definitions and function names, so that bodies may refer forward.
    let mut module = Module::default();
    let mut func_names = HashMap::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("map ") {
            let map = parse_map(t).map_err(|e| err(n, e))?;
            if module.map_by_name(&map.name).is_some() {
                return Err(err(n, format!("map {} is defined twice", map.name)));
            }
            module.maps.push(map);
        } else if let Some(rest) = t.strip_prefix("func ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if func_names.contains_key(&name) {
                return Err(err(n, format!("function {name} is defined twice")));
            }
            func_names.insert(name, FuncId::from_index(func_names.len()));
        }
    }
    let names = Names {
        maps: module
            .maps
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), MapId::from_index(i)))
            .collect(),
        funcs: func_names,
    };
    // Pass 2: function bodies.
    let mut n = 0;
    while let Some(line) = lines.get(n) {
        let t = line.trim();
        if t.starts_with("func ") {
            let (f, next) = parse_function(&names, &lines, n)?;
            module.funcs.push(f);
            n = next;
        } else if t.is_empty()
            || t.starts_with(';')
            || t.starts_with("map ")
            || t.starts_with("test ")
        {
            n += 1;
        } else {
            return Err(err(n, format!("expected `map` or `func`, found {t:?}")));
        }
    }
    Ok(module)
}

struct Names {
    maps: HashMap<String, MapId>,
    funcs: HashMap<String, FuncId>,
}

fn parse_map(line: &str) -> Result<MapDef, String> {
    let mut c = Cur {
        toks: lex(line)?,
        pos: 0,
    };
    c.keyword("map")?;
    let name = c.word()?;
    c.punct(':')?;
    let kind_name = c.word()?;
    let kind = MapKind::ALL
        .into_iter()
        .find(|k| k.name() == kind_name)
        .ok_or_else(|| format!("unknown map kind {kind_name:?}"))?;
    let mut map = MapDef {
        name,
        kind,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        flags: 0,
    };
    while c.eat(',') {
        let attr = c.word()?;
        let v = c.u32()?;
        match attr.as_str() {
            "key" => map.key_size = v,
            "value" => map.value_size = v,
            "max" => map.max_entries = v,
            "flags" => map.flags = v,
            _ => return Err(format!("unknown map attribute {attr:?}")),
        }
    }
    c.end()?;
    Ok(map)
}

fn parse_type(names: &Names, c: &mut Cur) -> Result<Type, String> {
    let w = c.word()?;
    if let Some(i) = IntTy::parse(&w) {
        return Ok(Type::Int(i));
    }
    let kind = match w.as_str() {
        "ctx" => PtrKind::Ctx,
        "pkt" => PtrKind::Packet,
        "pkt_end" => PtrKind::PacketEnd,
        "stack" if c.eat('(') => {
            let n = c.u32()?;
            c.punct(')')?;
            PtrKind::StackArg(n)
        }
        "stack" => PtrKind::Stack,
        "val" | "val?" | "map" => {
            c.punct('(')?;
            let name = c.word()?;
            c.punct(')')?;
            let id = *names
                .maps
                .get(&name)
                .ok_or_else(|| format!("unknown map {name:?}"))?;
            match w.as_str() {
                "val" => PtrKind::MapValue(id),
                "val?" => PtrKind::MapValueOrNull(id),
                _ => PtrKind::Map(id),
            }
        }
        "mem" | "mem?" => {
            c.punct('(')?;
            let n = c.u32()?;
            c.punct(')')?;
            if w == "mem" {
                PtrKind::Mem(n)
            } else {
                PtrKind::MemOrNull(n)
            }
        }
        "fn" => {
            c.punct('(')?;
            let name = c.word()?;
            c.punct(')')?;
            PtrKind::Func(
                *names
                    .funcs
                    .get(&name)
                    .ok_or_else(|| format!("unknown function {name:?}"))?,
            )
        }
        _ => return Err(format!("unknown type {w:?}")),
    };
    Ok(Type::Ptr(kind))
}

fn parse_hook(words: &[&str]) -> Result<Option<Hook>, String> {
    let arg = || {
        words
            .get(1)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("hook {:?} needs a target", words.first()))
    };
    let hook = match words.first() {
        None => return Ok(None),
        Some(&"xdp") => Hook::Xdp,
        Some(&"tc") => Hook::Tc,
        Some(&"perf_event") => Hook::PerfEvent,
        Some(&"tracepoint") => {
            let a = arg()?;
            let (category, name) = a
                .split_once('/')
                .ok_or_else(|| format!("tracepoint {a:?} is not CATEGORY/NAME"))?;
            Hook::Tracepoint {
                category: category.into(),
                name: name.into(),
            }
        }
        Some(&"raw_tp") => Hook::RawTp(arg()?),
        Some(&"tp_btf") => Hook::TpBtf(arg()?),
        Some(&"cgroup_sock_addr") => Hook::CgroupSockAddr(arg()?),
        Some(&"uprobe") => Hook::Uprobe(words.get(1).map(|s| s.to_string()).unwrap_or_default()),
        Some(&"uretprobe") => {
            Hook::Uretprobe(words.get(1).map(|s| s.to_string()).unwrap_or_default())
        }
        Some(w) => return Err(format!("unknown hook {w:?}")),
    };
    if words.len() > 2 {
        return Err(format!("unexpected {:?} after the hook", words.get(2)));
    }
    Ok(Some(hook))
}

/// Parses the function starting at line `start`; returns it and the line after its `}`.
fn parse_function(
    names: &Names,
    lines: &[&str],
    start: usize,
) -> Result<(Function, usize), ParseError> {
    let err = |line: usize, message: String| ParseError {
        line: line + 1,
        message,
    };
    let header = lines.get(start).copied().unwrap_or_default();
    let header = header.split(';').next().unwrap_or_default().trim();
    let (sig, rest) = header.split_once("->").ok_or_else(|| {
        err(
            start,
            "expected `-> RETURN_TYPE` in the function header".into(),
        )
    })?;
    let rest = rest.trim().strip_suffix('{').ok_or_else(|| {
        err(
            start,
            "expected `{` at the end of the function header".into(),
        )
    })?;
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let global = words.last() == Some(&"global");
    if global {
        words.pop();
    }
    let mut words = words.into_iter();
    let ret_word = words.next().unwrap_or_default();
    let ret = IntTy::parse(ret_word)
        .ok_or_else(|| err(start, format!("return type {ret_word:?} is not an integer")))?;
    let hook = parse_hook(&words.collect::<Vec<_>>()).map_err(|e| err(start, e))?;
    let mut c = Cur {
        toks: lex(sig).map_err(|e| err(start, e))?,
        pos: 0,
    };
    let (name, params) = (|| {
        c.keyword("func")?;
        let name = c.word()?;
        c.punct('(')?;
        let mut params = Vec::new();
        if !c.eat(')') {
            loop {
                params.push(parse_type(names, &mut c)?);
                if c.eat(')') {
                    break;
                }
                c.punct(',')?;
            }
        }
        c.end()?;
        Ok::<_, String>((name, params))
    })()
    .map_err(|e| err(start, e))?;

    let mut b = Body {
        f: Function {
            name,
            hook,
            global,
            params,
            ret,
            slots: Vec::new(),
            blocks: Vec::new(),
            insts: Vec::new(),
            values: Vec::new(),
        },
        names,
        seen_blocks: Vec::new(),
        seen_slots: Vec::new(),
        current: None,
        used: Vec::new(),
    };
    let mut n = start + 1;
    loop {
        let Some(line) = lines.get(n) else {
            return Err(err(n, "missing `}` at the end of the function".into()));
        };
        let t = line.split(';').next().unwrap_or_default().trim();
        if t == "}" {
            break;
        }
        if !t.is_empty() {
            b.line(t).map_err(|e| err(n, e))?;
        }
        n += 1;
    }
    b.finish().map_err(|e| err(start, e))?;
    Ok((b.f, n + 1))
}

struct Body<'a> {
    f: Function,
    names: &'a Names,
    seen_blocks: Vec<bool>,
    seen_slots: Vec<bool>,
    current: Option<Block>,
    /// Values referenced, to report one that is never defined.
    used: Vec<Value>,
}

impl Body<'_> {
    fn line(&mut self, t: &str) -> Result<(), String> {
        let mut c = Cur {
            toks: lex(t)?,
            pos: 0,
        };
        let first = match c.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err(format!("cannot parse {t:?}")),
        };
        if let Some(s) = numbered(&first, "ss") {
            c.next();
            c.punct('=')?;
            c.keyword("slot")?;
            let size = c.u32()?;
            c.punct(',')?;
            c.keyword("align")?;
            let align = c.u32()?;
            c.end()?;
            let i = s as usize;
            if self.f.slots.len() <= i {
                self.f.slots.resize(i + 1, SlotData { size: 0, align: 1 });
                self.seen_slots.resize(i + 1, false);
            }
            if self.seen_slots.get(i) == Some(&true) {
                return Err(format!("ss{s} is defined twice"));
            }
            self.seen_slots[i] = true;
            self.f.slots[i] = SlotData { size, align };
            return Ok(());
        }
        if let Some(bn) = numbered(&first, "block") {
            c.next();
            let b = self.block(bn)?;
            if self.seen_blocks[b.index()] {
                return Err(format!("{b} is defined twice"));
            }
            self.seen_blocks[b.index()] = true;
            if c.eat('(') && !c.eat(')') {
                loop {
                    let v = self.value_name(&mut c)?;
                    c.punct(':')?;
                    let ty = parse_type(self.names, &mut c)?;
                    let idx = self.f.blocks[b.index()].params.len() as u32;
                    self.define(v, ty, ValueDef::Param(b, idx))?;
                    self.f.blocks[b.index()].params.push(v);
                    if c.eat(')') {
                        break;
                    }
                    c.punct(',')?;
                }
            }
            c.punct(':')?;
            c.end()?;
            self.current = Some(b);
            return Ok(());
        }
        let b = self
            .current
            .ok_or_else(|| "instruction outside a block".to_string())?;
        match first.as_str() {
            "jump" | "br" | "return" => {
                c.next();
                let term = self.term(&first, &mut c)?;
                c.end()?;
                self.f.blocks[b.index()].term = term;
                self.current = None;
                Ok(())
            }
            _ => {
                let inst = self.inst(&mut c)?;
                c.end()?;
                let id = Inst::from_index(self.f.insts.len());
                if let Some(v) = inst.0 {
                    self.define(v, inst.1, ValueDef::Inst(id))?;
                }
                self.f.insts.push(InstData {
                    result: inst.0,
                    op: inst.2,
                });
                self.f.blocks[b.index()].insts.push(id);
                Ok(())
            }
        }
    }

    fn block(&mut self, n: u32) -> Result<Block, String> {
        let i = n as usize;
        if i > 100_000 {
            return Err(format!("block{n}: too many blocks"));
        }
        while self.f.blocks.len() <= i {
            self.f.blocks.push(BlockData {
                params: Vec::new(),
                insts: Vec::new(),
                term: Term::Return(Value(u32::MAX)),
            });
            self.seen_blocks.push(false);
        }
        Ok(Block(n))
    }

    fn value_name(&mut self, c: &mut Cur) -> Result<Value, String> {
        let w = c.word()?;
        let n = numbered(&w, "v").ok_or_else(|| format!("expected a value, found {w:?}"))?;
        if n > 1_000_000 {
            return Err(format!("value number {n} is too large"));
        }
        Ok(Value(n))
    }

    fn use_value(&mut self, c: &mut Cur) -> Result<Value, String> {
        let v = self.value_name(c)?;
        self.used.push(v);
        Ok(v)
    }

    fn define(&mut self, v: Value, ty: Type, def: ValueDef) -> Result<(), String> {
        let i = v.index();
        if self.f.values.len() <= i {
            self.f.values.resize(
                i + 1,
                ValueData {
                    ty: Type::U64,
                    def: ValueDef::Unused,
                },
            );
        }
        if self.f.values[i].def != ValueDef::Unused {
            return Err(format!("{v} is defined twice"));
        }
        self.f.values[i] = ValueData { ty, def };
        Ok(())
    }

    fn operand(&mut self, c: &mut Cur) -> Result<Operand, String> {
        match c.peek() {
            Some(Tok::Word(_)) => Ok(Operand::Value(self.use_value(c)?)),
            _ => Ok(Operand::Imm(c.num()?)),
        }
    }

    fn values(&mut self, c: &mut Cur) -> Result<Vec<Value>, String> {
        c.punct('(')?;
        let mut out = Vec::new();
        if c.eat(')') {
            return Ok(out);
        }
        loop {
            out.push(self.use_value(c)?);
            if c.eat(')') {
                return Ok(out);
            }
            c.punct(',')?;
        }
    }

    /// `[vN+off]` or `[vN-off]`.
    fn addr(&mut self, c: &mut Cur) -> Result<(Value, i16), String> {
        c.punct('[')?;
        let v = self.use_value(c)?;
        let off = if c.eat('+') {
            c.num()?
        } else if c.eat('-') {
            -c.num()?
        } else {
            0
        };
        c.punct(']')?;
        let off =
            i16::try_from(off).map_err(|_| format!("offset {off} does not fit in 16 bits"))?;
        Ok((v, off))
    }

    fn block_call(&mut self, c: &mut Cur) -> Result<BlockCall, String> {
        let w = c.word()?;
        let n = numbered(&w, "block").ok_or_else(|| format!("expected a block, found {w:?}"))?;
        let block = self.block(n)?;
        let args = if c.peek() == Some(&Tok::Punct('(')) {
            self.values(c)?
        } else {
            Vec::new()
        };
        Ok(BlockCall { block, args })
    }

    fn term(&mut self, kw: &str, c: &mut Cur) -> Result<Term, String> {
        Ok(match kw {
            "jump" => Term::Jump(self.block_call(c)?),
            "return" => Term::Return(self.use_value(c)?),
            _ => {
                let cw = c.word()?;
                let cond = Cond::ALL
                    .into_iter()
                    .find(|k| k.name() == cw)
                    .ok_or_else(|| format!("unknown condition {cw:?}"))?;
                let a = self.use_value(c)?;
                c.punct(',')?;
                let b = self.operand(c)?;
                c.punct(',')?;
                let then = self.block_call(c)?;
                c.punct(',')?;
                let els = self.block_call(c)?;
                Term::Br {
                    cond,
                    a,
                    b,
                    then,
                    els,
                }
            }
        })
    }

    fn map_name(&self, c: &mut Cur) -> Result<MapId, String> {
        let name = c.word()?;
        self.names
            .maps
            .get(&name)
            .copied()
            .ok_or_else(|| format!("unknown map {name:?}"))
    }

    fn func_name(&self, c: &mut Cur) -> Result<FuncId, String> {
        let name = c.word()?;
        self.names
            .funcs
            .get(&name)
            .copied()
            .ok_or_else(|| format!("unknown function {name:?}"))
    }

    /// An instruction: its result (if any), the result type and the operation.
    fn inst(&mut self, c: &mut Cur) -> Result<(Option<Value>, Type, Op), String> {
        let (result, ty) = if matches!(c.toks.get(1), Some(Tok::Punct(':'))) {
            let v = self.value_name(c)?;
            c.punct(':')?;
            let ty = parse_type(self.names, c)?;
            c.punct('=')?;
            (Some(v), ty)
        } else {
            (None, Type::U64)
        };
        let opw = c.word()?;
        if let Some(tyname) = opw.strip_prefix("store.") {
            let ity = IntTy::parse(tyname).ok_or_else(|| format!("bad store type {tyname:?}"))?;
            let (ptr, off) = self.addr(c)?;
            c.punct(',')?;
            let val = self.operand(c)?;
            return Ok((
                result,
                ty,
                Op::Store {
                    ty: ity,
                    ptr,
                    off,
                    val,
                },
            ));
        }
        if let Some(tyname) = opw.strip_prefix("atomic_add.") {
            let ity = IntTy::parse(tyname).ok_or_else(|| format!("bad atomic type {tyname:?}"))?;
            let (ptr, off) = self.addr(c)?;
            c.punct(',')?;
            let val = self.use_value(c)?;
            return Ok((
                result,
                ty,
                Op::AtomicAdd {
                    ty: ity,
                    ptr,
                    off,
                    val,
                },
            ));
        }
        let op = match opw.as_str() {
            "iconst" => Op::Iconst(c.num()?),
            "neg" => Op::Neg(self.use_value(c)?),
            "bswap" => Op::Bswap(self.use_value(c)?),
            "load" => {
                let (ptr, off) = self.addr(c)?;
                Op::Load { ptr, off }
            }
            "addr" => {
                let w = c.word()?;
                let s =
                    numbered(&w, "ss").ok_or_else(|| format!("expected a slot, found {w:?}"))?;
                Op::SlotAddr(Slot(s))
            }
            "ptradd" => {
                let p = self.use_value(c)?;
                c.punct(',')?;
                Op::PtrAdd(p, self.operand(c)?)
            }
            "mapref" => Op::MapRef(self.map_name(c)?),
            "funcref" => Op::FuncRef(self.func_name(c)?),
            "call" => {
                let name = c.word()?;
                let h =
                    helpers::by_name(&name).ok_or_else(|| format!("unknown helper {name:?}"))?;
                Op::Call(h.id, self.values(c)?)
            }
            "callfn" => {
                let id = self.func_name(c)?;
                Op::CallFn(id, self.values(c)?)
            }
            w => {
                if let Some(op) = BinOp::ALL.into_iter().find(|o| o.name() == w) {
                    let a = self.use_value(c)?;
                    c.punct(',')?;
                    Op::Binary(op, a, self.operand(c)?)
                } else if let Some(op) = [ExtOp::Zext, ExtOp::Sext, ExtOp::Trunc]
                    .into_iter()
                    .find(|o| o.name() == w)
                {
                    Op::Ext(op, self.use_value(c)?)
                } else {
                    return Err(format!("unknown instruction {w:?}"));
                }
            }
        };
        if result.is_none() && !matches!(op, Op::Call(..) | Op::CallFn(..)) {
            return Err(format!("`{opw}` needs a result: `vN: TYPE = {opw} ...`"));
        }
        Ok((result, ty, op))
    }

    fn finish(&mut self) -> Result<(), String> {
        if let Some(i) = self.seen_blocks.iter().position(|s| !s) {
            return Err(format!("block{i} is used but never defined"));
        }
        if self.f.blocks.is_empty() {
            return Err("a function needs at least one block".into());
        }
        if let Some(i) = self.seen_slots.iter().position(|s| !s) {
            return Err(format!("ss{i} is skipped: slots are numbered densely"));
        }
        for (i, b) in self.f.blocks.iter().enumerate() {
            if b.term == Term::Return(Value(u32::MAX)) {
                return Err(format!("block{i} has no terminator"));
            }
        }
        for &v in &self.used {
            if self
                .f
                .values
                .get(v.index())
                .is_none_or(|d| d.def == ValueDef::Unused)
            {
                return Err(format!("{v} is used but never defined"));
            }
        }
        Ok(())
    }
}
