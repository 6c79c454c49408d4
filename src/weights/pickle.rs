//! A pickle interpreter restricted to what `torch.save` writes for state dicts.
//!
//! Safety by construction: the machine never calls anything. `GLOBAL`/`STACK_GLOBAL`
//! resolve names against a fixed allow-list into an enum; any other name is refused
//! with an error naming it. `REDUCE` only "applies" those enum values, each of which
//! builds plain data (a dict, a set, a tensor descriptor). Containers live in an
//! arena addressed by index, so shared references behave as in Python, cycles cannot
//! leak, and dropping a deeply nested value cannot overflow the stack.

use super::error::{Result, WeightsError};
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

/// Element types of PyTorch storages this reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl StorageType {
    pub fn size_bytes(self) -> usize {
        match self {
            StorageType::F64 | StorageType::I64 => 8,
            StorageType::F32 | StorageType::I32 => 4,
            StorageType::F16 | StorageType::BF16 => 2,
            StorageType::U8 | StorageType::Bool => 1,
        }
    }

    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => StorageType::F32,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::BF16,
            "DoubleStorage" => StorageType::F64,
            "LongStorage" => StorageType::I64,
            "IntStorage" => StorageType::I32,
            "ByteStorage" => StorageType::U8,
            "BoolStorage" => StorageType::Bool,
            _ => return None,
        })
    }
}

/// The only globals a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    Set,
    FrozenSet,
    RebuildTensorV2,
    RebuildParameter,
    Storage(StorageType),
}

/// Maps `module.name` to an allowed global, `None` for everything else.
pub fn resolve_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("builtins" | "__builtin__", "set") => Some(Global::Set),
        ("builtins" | "__builtin__", "frozenset") => Some(Global::FrozenSet),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", class) => StorageType::from_class(class).map(Global::Storage),
        _ => None,
    }
}

pub type ObjId = usize;

/// A pickle value. Containers are `Obj` indices into the arena.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// LONG1 may carry up to 16 bytes here (the legacy magic number needs 10).
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(Global),
    Obj(ObjId),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Global(_) => "global",
            Value::Obj(_) => "object",
        }
    }
}

/// Hashable dict keys (what state dicts use).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    None,
    Bool(bool),
    Int(i128),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

/// An ordered dict (Python dicts keep insertion order).
#[derive(Debug, Default)]
pub struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

impl Dict {
    fn set(&mut self, k: Value, v: Value) -> std::result::Result<(), String> {
        let key = match &k {
            Value::None => Key::None,
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bytes(b) => Key::Bytes(b.clone()),
            other => return Err(format!("unsupported dict key of type {}", other.kind())),
        };
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = v,
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((k, v));
            }
        }
        Ok(())
    }

    /// The value for a string key.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.index
            .get(&Key::Str(Rc::from(key)))
            .map(|&i| &self.entries[i].1)
    }
}

/// A storage named by a persistent id: its data lives outside the pickle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: StorageType,
    pub key: String,
    pub location: String,
    pub numel: u64,
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)` as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Debug)]
pub enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Set(Vec<Value>),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// Bounds that keep a hostile pickle from exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct PickleLimits {
    pub max_objects: usize,
    pub max_stack: usize,
    pub max_memo: usize,
    pub max_marks: usize,
    /// Longest single string/bytes value.
    pub max_string: u64,
}

impl Default for PickleLimits {
    fn default() -> Self {
        PickleLimits {
            max_objects: 4_000_000,
            max_stack: 1 << 20,
            max_memo: 4_000_000,
            max_marks: 1 << 16,
            max_string: 1 << 30,
        }
    }
}

/// The result of one pickle: the root value and the arena it points into.
#[derive(Debug)]
pub struct Unpickled {
    pub root: Value,
    pub objs: Vec<Obj>,
}

impl Unpickled {
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(id) => self.objs.get(*id),
            _ => None,
        }
    }
}

/// Byte source with a position (for messages) and a hard end (the bytes the
/// container says exist), so a length field can never make us allocate past it.
pub struct Input<'a> {
    reader: &'a mut dyn Read,
    pub pos: u64,
    end: u64,
}

impl<'a> Input<'a> {
    pub fn new(reader: &'a mut dyn Read, available: u64) -> Self {
        Input {
            reader,
            pos: 0,
            end: available,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    pub fn bytes(&mut self, n: u64) -> std::result::Result<Vec<u8>, String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read error at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(buf)
    }

    /// Advances past `n` bytes without keeping them.
    pub fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let copied = std::io::copy(&mut Read::take(&mut *self.reader, n), &mut std::io::sink())
            .map_err(|e| format!("read error at offset {}: {e}", self.pos))?;
        if copied != n {
            return Err(format!(
                "truncated: data ends at offset {}",
                self.pos + copied
            ));
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        if (N as u64) > self.remaining() {
            return Err(format!(
                "truncated: unexpected end of data at offset {}",
                self.pos
            ));
        }
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read error at offset {}: {e}", self.pos))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let mut out = Vec::new();
        loop {
            let b = self.u8()?;
            if b == b'\n' {
                break;
            }
            if out.len() >= 256 {
                return Err(format!(
                    "text line longer than 256 bytes at offset {}",
                    self.pos
                ));
            }
            out.push(b);
        }
        String::from_utf8(out).map_err(|_| format!("non-UTF-8 text line at offset {}", self.pos))
    }
}

struct Machine<'a, 'b> {
    input: &'a mut Input<'b>,
    limits: PickleLimits,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objs: Vec<Obj>,
}

/// Runs one pickle from `input` (which may hold more data after STOP).
/// `origin` names the file in error messages.
pub fn unpickle(input: &mut Input<'_>, origin: &str, limits: PickleLimits) -> Result<Unpickled> {
    let start = input.pos;
    let mut m = Machine {
        input,
        limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
    };
    match m.run() {
        Ok(root) => Ok(Unpickled { root, objs: m.objs }),
        Err(Fail::Forbidden(global)) => Err(WeightsError::ForbiddenGlobal {
            file: origin.to_string(),
            global,
        }),
        Err(Fail::Msg(msg)) => Err(WeightsError::Format(format!(
            "{origin}: invalid pickle (started at byte {start}, failed near byte {}): {msg}",
            m.input.pos
        ))),
    }
}

enum Fail {
    Forbidden(String),
    Msg(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Msg(s)
    }
}

type R<T> = std::result::Result<T, Fail>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(Fail::Msg(msg.into()))
}

impl Machine<'_, '_> {
    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() >= self.limits.max_stack {
            return err(format!(
                "stack deeper than {} entries",
                self.limits.max_stack
            ));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> R<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return err("stack underflow");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&mut self) -> R<&Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return err("stack underflow");
        }
        Ok(self.stack.last().expect("checked above"))
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return err("MARK expected but none is open");
        };
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, o: Obj) -> R<Value> {
        if self.objs.len() >= self.limits.max_objects {
            return err(format!("more than {} objects", self.limits.max_objects));
        }
        self.objs.push(o);
        Ok(Value::Obj(self.objs.len() - 1))
    }

    fn memo_put(&mut self, idx: u32, v: Value) -> R<()> {
        if !self.memo.contains_key(&idx) && self.memo.len() >= self.limits.max_memo {
            return err(format!("memo larger than {} entries", self.limits.max_memo));
        }
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> R<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| Fail::Msg(format!("memo key {idx} was never stored")))?;
        self.push(v)
    }

    fn string(&mut self, n: u64) -> R<Value> {
        if n > self.limits.max_string {
            return err(format!("string of {n} bytes exceeds the limit"));
        }
        let b = self.input.bytes(n)?;
        let s = String::from_utf8(b).map_err(|_| Fail::Msg("string is not valid UTF-8".into()))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn bytes(&mut self, n: u64) -> R<Value> {
        if n > self.limits.max_string {
            return err(format!("bytes of {n} bytes exceed the limit"));
        }
        Ok(Value::Bytes(Rc::from(self.input.bytes(n)?)))
    }

    /// Python 2 `str`: bytes whose text meaning is latin-1.
    fn py2_string(&mut self, n: u64) -> R<Value> {
        if n > self.limits.max_string {
            return err(format!("string of {n} bytes exceeds the limit"));
        }
        let b = self.input.bytes(n)?;
        let s: String = b.iter().map(|&c| c as char).collect();
        Ok(Value::Str(Rc::from(s)))
    }

    fn global(&mut self, module: &str, name: &str) -> R<Value> {
        match resolve_global(module, name) {
            Some(g) => Ok(Value::Global(g)),
            None => Err(Fail::Forbidden(format!("{module}.{name}"))),
        }
    }

    fn obj_mut(&mut self, v: &Value) -> R<&mut Obj> {
        match v {
            Value::Obj(id) => Ok(&mut self.objs[*id]),
            other => err(format!("expected a container, found {}", other.kind())),
        }
    }

    fn tuple_items(&self, v: &Value) -> R<Vec<Value>> {
        match v {
            Value::Obj(id) => match &self.objs[*id] {
                Obj::Tuple(items) | Obj::List(items) => Ok(items.clone()),
                _ => err("expected a tuple"),
            },
            other => err(format!("expected a tuple, found {}", other.kind())),
        }
    }

    fn set_items(&mut self, target: &Value, items: Vec<Value>) -> R<()> {
        if !items.len().is_multiple_of(2) {
            return err("SETITEMS with an odd number of items");
        }
        let Obj::Dict(d) = self.obj_mut(target)? else {
            return err("SETITEM(S) on something that is not a dict");
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.set(k, v)?;
        }
        Ok(())
    }

    fn append_items(&mut self, target: &Value, items: Vec<Value>) -> R<()> {
        match self.obj_mut(target)? {
            Obj::List(l) | Obj::Set(l) => {
                l.extend(items);
                Ok(())
            }
            _ => err("APPEND(S)/ADDITEMS on something that is not a list or set"),
        }
    }

    fn int_arg(v: &Value, what: &str) -> R<u64> {
        match v {
            Value::Int(i) if *i >= 0 && *i <= u64::MAX as i128 => Ok(*i as u64),
            Value::Int(i) => err(format!(
                "{what} is {i}, must be a non-negative 64-bit integer"
            )),
            other => err(format!("{what} must be an int, found {}", other.kind())),
        }
    }

    fn int_list(&self, v: &Value, what: &str) -> R<Vec<u64>> {
        self.tuple_items(v)?
            .iter()
            .map(|x| Self::int_arg(x, what))
            .collect()
    }

    /// `REDUCE`/`NEWOBJ`: "call" an allow-listed global by building data.
    fn apply(&mut self, callee: Value, args: Value) -> R<Value> {
        let Value::Global(g) = callee else {
            return err(format!(
                "REDUCE on a {}, which is not callable here",
                callee.kind()
            ));
        };
        let args = self.tuple_items(&args)?;
        match g {
            Global::OrderedDict => {
                let mut d = Dict::default();
                if let Some(pairs) = args.first() {
                    for p in self.tuple_items(pairs)? {
                        let kv = self.tuple_items(&p)?;
                        if kv.len() != 2 {
                            return err("OrderedDict item is not a pair");
                        }
                        d.set(kv[0].clone(), kv[1].clone())?;
                    }
                }
                self.alloc(Obj::Dict(d))
            }
            Global::Set | Global::FrozenSet => {
                let items = match args.first() {
                    Some(v) => self.tuple_items(v)?,
                    None => Vec::new(),
                };
                self.alloc(Obj::Set(items))
            }
            Global::RebuildTensorV2 => {
                if args.len() < 4 {
                    return err("_rebuild_tensor_v2 needs at least 4 arguments");
                }
                let storage = match self.obj_of(&args[0]) {
                    Some(Obj::Storage(s)) => s.clone(),
                    _ => return err("_rebuild_tensor_v2: first argument is not a storage"),
                };
                let offset = Self::int_arg(&args[1], "storage offset")?;
                let shape = self.int_list(&args[2], "tensor size")?;
                let stride = self.int_list(&args[3], "tensor stride")?;
                if shape.len() != stride.len() {
                    return err(format!(
                        "tensor size {shape:?} and stride {stride:?} differ in rank"
                    ));
                }
                self.alloc(Obj::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                }))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Obj(id)) if matches!(self.objs[*id], Obj::Tensor(_)) => {
                    Ok(t.clone())
                }
                _ => err("_rebuild_parameter: first argument is not a tensor"),
            },
            Global::Storage(_) => err("a storage class cannot be called"),
        }
    }

    fn obj_of(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(id) => self.objs.get(*id),
            _ => None,
        }
    }

    /// `BINPERSID`: torch's id is `('storage', StorageClass, key, location, numel[, view])`.
    fn persistent(&mut self, pid: Value) -> R<Value> {
        let t = self.tuple_items(&pid)?;
        if t.len() < 5 || t[0] != Value::Str(Rc::from("storage")) {
            return err("persistent id is not a ('storage', ...) tuple");
        }
        let Value::Global(Global::Storage(dtype)) = t[1] else {
            return err("persistent id does not name a storage class");
        };
        let key = match &t[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => return err(format!("storage key of type {}", other.kind())),
        };
        let location = match &t[3] {
            Value::Str(s) => s.to_string(),
            _ => String::new(),
        };
        let numel = Self::int_arg(&t[4], "storage size")?;
        if t.len() > 5 && t[5] != Value::None {
            return err(format!(
                "storage `{key}` is a view of another storage (pre-1.0 legacy format); not supported"
            ));
        }
        self.alloc(Obj::Storage(StorageRef {
            dtype,
            key,
            location,
            numel,
        }))
    }

    fn run(&mut self) -> R<Value> {
        loop {
            let op = self.input.u8()?;
            match op {
                0x80 => {
                    let p = self.input.u8()?;
                    if p > 5 {
                        return err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.input.array::<8>()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= self.limits.max_marks {
                        return err("too many nested MARKs");
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.input.array::<4>()?);
                    self.push(Value::Int(v as i128))?;
                }
                b'K' => {
                    let v = self.input.u8()?;
                    self.push(Value::Int(v as i128))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.input.array::<2>()?);
                    self.push(Value::Int(v as i128))?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.input.u8()? as u64
                    } else {
                        i32::from_le_bytes(self.input.array::<4>()?).max(-1) as u64
                    };
                    if n > 16 {
                        return err(format!("integer of {n} bytes is too large"));
                    }
                    let b = self.input.bytes(n)?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.input.array::<8>()?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.input.array::<4>()?) as u64;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.input.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.input.array::<8>()?);
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.input.array::<4>()?) as u64;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                b'C' => {
                    let n = self.input.u8()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.input.array::<8>()?);
                    let v = self.bytes(n)?;
                    self.push(v)?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.input.array::<4>()?);
                    if n < 0 {
                        return err("negative string length");
                    }
                    let v = self.py2_string(n as u64)?;
                    self.push(v)?;
                }
                b'U' => {
                    let n = self.input.u8()? as u64;
                    let v = self.py2_string(n)?;
                    self.push(v)?;
                }
                b')' => {
                    let v = self.alloc(Obj::Tuple(Vec::new()))?;
                    self.push(v)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return err("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                b']' => {
                    let v = self.alloc(Obj::List(Vec::new()))?;
                    self.push(v)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::List(items))?;
                    self.push(v)?;
                }
                b'}' => {
                    let v = self.alloc(Obj::Dict(Dict::default()))?;
                    self.push(v)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Dict(Dict::default()))?;
                    self.set_items(&v, items)?;
                    self.push(v)?;
                }
                0x8f => {
                    let v = self.alloc(Obj::Set(Vec::new()))?;
                    self.push(v)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Set(items))?;
                    self.push(v)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?.clone();
                    self.append_items(&target, vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.append_items(&target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, items)?;
                }
                b'c' => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    let v = self.global(&module, &name)?;
                    self.push(v)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            let v = self.global(&m, &n)?;
                            self.push(v)?;
                        }
                        _ => return err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'i' => {
                    // INST instantiates a class directly; name the global if it is foreign.
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    self.global(&module, &name)?;
                    return err("INST opcode is not supported");
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    let v = self.apply(callee, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    let _state = self.pop()?;
                    let target = self.top()?.clone();
                    // OrderedDict state (`_metadata`) and tensor state carry nothing we need.
                    match self.obj_of(&target) {
                        Some(Obj::Dict(_)) | Some(Obj::Tensor(_)) => {}
                        _ => return err(format!("BUILD on a {}", target.kind())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.push(v)?;
                }
                b'q' => {
                    let i = self.input.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.input.array::<4>()?);
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'p' => {
                    let line = self.input.line()?;
                    let i: u32 = line
                        .trim()
                        .parse()
                        .map_err(|_| Fail::Msg(format!("PUT with bad index `{line}`")))?;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| Fail::Msg("memo overflow".into()))?;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'h' => {
                    let i = self.input.u8()? as u32;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.input.array::<4>()?);
                    self.memo_get(i)?;
                }
                b'g' => {
                    let line = self.input.line()?;
                    let i: u32 = line
                        .trim()
                        .parse()
                        .map_err(|_| Fail::Msg(format!("GET with bad index `{line}`")))?;
                    self.memo_get(i)?;
                }
                other => {
                    return err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.input.pos - 1
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Unpickled> {
        let mut r = bytes;
        let mut input = Input::new(&mut r, bytes.len() as u64);
        unpickle(&mut input, "test.pkl", PickleLimits::default())
    }

    #[test]
    fn forbidden_global_is_named_and_nothing_runs() {
        // protocol 2: GLOBAL 'posix system', args ('echo hi',), REDUCE, STOP
        let p = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
        let e = run(p).unwrap_err();
        assert!(
            matches!(&e, WeightsError::ForbiddenGlobal { global, .. } if global == "posix.system"),
            "{e}"
        );
        assert!(e.to_string().contains("posix.system"));
        // STACK_GLOBAL variant, protocol 4.
        let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
        let e = run(p).unwrap_err();
        assert!(e.to_string().contains("`os.system`"), "{e}");
        // _load_from_bytes is explicitly not allowed.
        let p = b"\x80\x02ctorch.storage\n_load_from_bytes\n.";
        assert!(run(p)
            .unwrap_err()
            .to_string()
            .contains("torch.storage._load_from_bytes"));
    }

    #[test]
    fn shared_dict_is_aliased_like_python() {
        // d = {}; outer = [d, d]; d['k'] = 1  (memo get after mutation must see 'k')
        // EMPTY_LIST, BINPUT0, EMPTY_DICT, BINPUT1, APPEND, BINGET1, APPEND,
        // BINGET1, 'k', 1, SETITEM, POP, STOP
        let p = b"\x80\x02]q\x00}q\x01ah\x01ah\x01\x8c\x01kK\x01s0.";
        let u = run(p).unwrap();
        let Some(Obj::List(items)) = u.obj(&u.root) else {
            panic!("root is not a list")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        let Some(Obj::Dict(d)) = u.obj(&items[1]) else {
            panic!("not a dict")
        };
        assert_eq!(d.get_str("k"), Some(&Value::Int(1)));
    }

    #[test]
    fn long1_and_truncation() {
        // LONG1 of the legacy magic number 0x1950a86a20f9469cfc6c.
        let p = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        assert_eq!(run(p).unwrap().root, Value::Int(0x1950a86a20f9469cfc6c));
        let neg = b"\x80\x02\x8a\x01\xff.";
        assert_eq!(run(neg).unwrap().root, Value::Int(-1));
        for cut in 0..p.len() {
            let e = run(&p[..cut]).unwrap_err().to_string();
            assert!(
                e.contains("test.pkl") && e.contains("truncated"),
                "{cut}: {e}"
            );
        }
        // A string length that claims far more than the input holds is refused up front.
        let e = run(b"\x80\x02X\x00\x00\x00\x10").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_and_mark_bounds() {
        let limits = PickleLimits {
            max_memo: 3,
            ..PickleLimits::default()
        };
        let p = b"\x80\x02K\x01q\x00q\x01q\x02q\x03.";
        let mut r = &p[..];
        let mut input = Input::new(&mut r, p.len() as u64);
        let e = unpickle(&mut input, "m.pkl", limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memo larger than 3"), "{e}");
        assert!(run(b"\x80\x02h\x05.")
            .unwrap_err()
            .to_string()
            .contains("never stored"));
        assert!(run(b"\x80\x02(.").is_err());
        assert!(run(b"\x80\x02\x01.")
            .unwrap_err()
            .to_string()
            .contains("opcode 0x01"));
    }
}
