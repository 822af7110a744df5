//! A minimal GGUF v3 writer: header, key/values, tensor infos, aligned data. It builds the
//! synthetic models of [`crate::tiny`] and the files of the reader's tests.

use super::{GgmlType, Value};

/// Builds GGUF bytes from key/values and already-encoded tensors.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) kvs: Vec<(String, Value)>,
    /// (name, dims innermost first, type, encoded bytes).
    pub(crate) tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            ..Self::default()
        }
    }

    pub(crate) fn kv(mut self, key: &str, value: Value) -> Self {
        self.kvs.push((key.to_owned(), value));
        self
    }

    /// Adds an F32 tensor with `dims` outermost first (like [`crate::TensorData`]).
    pub(crate) fn f32_tensor(self, name: &str, dims: &[usize], values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_tensor(name, dims, GgmlType::F32, bytes)
    }

    /// Adds a tensor with `dims` outermost first and its encoded bytes.
    pub(crate) fn raw_tensor(
        mut self,
        name: &str,
        dims: &[usize],
        ty: GgmlType,
        bytes: Vec<u8>,
    ) -> Self {
        let ggml_dims = dims.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_owned(), ggml_dims, ty, bytes));
        self
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            put_str(&mut out, key);
            out.extend(type_id(value).to_le_bytes());
            put_value(&mut out, value);
        }
        let align = |n: u64| n.next_multiple_of(self.alignment);
        let mut offset = 0u64;
        for (name, dims, ty, bytes) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.0.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = align(offset + bytes.len() as u64);
        }
        // The data section starts aligned and every tensor starts aligned within it.
        out.resize(align(out.len() as u64) as usize, 0);
        for (_, _, _, bytes) in &self.tensors {
            out.resize(align(out.len() as u64) as usize, 0);
            out.extend(bytes);
        }
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            // Empty arrays are written as arrays of u8.
            let elem = items.first().map_or(0, type_id);
            out.extend(elem.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// `Value::Array` of strings.
pub(crate) fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String(s.as_ref().to_owned()))
            .collect(),
    )
}
