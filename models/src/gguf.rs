//! A reader for GGUF files (versions 2 and 3, little-endian), the llama.cpp model format.
//!
//! [`Gguf::open`] reads the whole file, parses the header, the metadata key/values
//! ([`Value`], including nested arrays) and the tensor infos ([`TensorInfo`]), and checks every
//! tensor's byte range against the file. [`Gguf::tensor_f32`] dequantizes one tensor
//! (`F32`, `F16`, `BF16`, `Q8_0`, `Q4_0`, `Q4_1`; other encodings give
//! [`Error::UnsupportedTensorType`]).
//!
//! Nothing in the file is trusted: string lengths, array lengths, nesting, key and tensor counts
//! and dimensions are capped ([`limits`]) and checked against the bytes that remain before any
//! allocation, and offsets are computed with checked arithmetic. A truncated or corrupt file
//! gives [`Error::Format`], never a panic.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 key/value count; key/values
//! (u64-length key, u32 value type, value); tensor infos (name, u32 n_dims, u64 dims innermost
//! first, u32 ggml type, u64 offset relative to the data section); the data section starts at the
//! next multiple of `general.alignment` (default 32).
//!
//! ```no_run
//! # fn main() -> hearth_models::Result<()> {
//! let gguf = hearth_models::Gguf::open("assets/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = gguf.get_u32("llama.block_count")?;
//! let embedding = gguf.tensor_f32("token_embd.weight")?; // dims [49152, 576]
//! # Ok(()) }
//! ```

mod dequant;
mod llama;
mod reader;
#[cfg(test)]
pub(crate) mod testutil;
pub(crate) mod writer;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub use dequant::GgmlType;
pub use llama::{GgufWeights, canonical_to_gguf, gguf_to_canonical};
use reader::{Cursor, malformed};

use crate::{Error, Result, TensorData};

/// The caps applied to counts and sizes read from a GGUF file.
pub mod limits {
    /// Longest metadata string (chat templates are a few KiB), bytes.
    pub const MAX_STRING_LEN: u64 = 16 << 20;
    /// Longest metadata key or tensor name, bytes.
    pub const MAX_NAME_LEN: u64 = 1024;
    /// Most elements in one metadata array (vocabularies and merge lists are ~10^5).
    pub const MAX_ARRAY_LEN: u64 = 1 << 22;
    /// Most array elements in all metadata arrays together.
    pub const MAX_TOTAL_ARRAY_ELEMENTS: u64 = 1 << 23;
    /// Deepest nesting of arrays.
    pub const MAX_ARRAY_DEPTH: usize = 4;
    /// Most metadata key/values.
    pub const MAX_KV_COUNT: u64 = 1 << 16;
    /// Most tensors.
    pub const MAX_TENSOR_COUNT: u64 = 1 << 16;
    /// Most dimensions of a tensor (GGML's `GGML_MAX_DIMS`).
    pub const MAX_DIMS: u32 = 4;
    /// Largest `general.alignment`.
    pub const MAX_ALIGNMENT: u64 = 1 << 20;
}

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer of any width that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// Where a tensor is and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The name in the file (`blk.0.attn_q.weight`).
    pub name: String,
    /// The shape, outermost first (GGUF stores it innermost first): `[out, in]` for matrices.
    pub dims: Vec<usize>,
    /// The encoding.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    /// Length of the data in bytes.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// The number of values.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file held in memory.
#[derive(Debug)]
pub struct Gguf {
    bytes: Vec<u8>,
    path: Option<PathBuf>,
    version: u32,
    alignment: u64,
    data_offset: usize,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    sha256: OnceLock<String>,
}

impl Gguf {
    /// Reads and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut gguf = Self::from_bytes(bytes)?;
        gguf.path = Some(path.to_owned());
        Ok(gguf)
    }

    /// Parses a GGUF file from its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let (version, metadata, raw_tensors, header_end) = parse_header(&bytes)?;
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= limits::MAX_ALIGNMENT)
                .ok_or_else(|| malformed(format!("general.alignment {v:?} is invalid")))?,
        };
        let data_offset = (header_end as u64)
            .checked_next_multiple_of(alignment)
            .filter(|&o| o <= bytes.len() as u64)
            .ok_or_else(|| malformed("truncated before the tensor data section"))?
            as usize;
        let mut tensors = Vec::with_capacity(raw_tensors.len());
        let mut by_name = HashMap::with_capacity(raw_tensors.len());
        for raw in raw_tensors {
            let info = raw.locate(data_offset, alignment, bytes.len())?;
            if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(malformed(format!("duplicate tensor {}", info.name)));
            }
            tensors.push(info);
        }
        Ok(Self {
            bytes,
            path: None,
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            by_name,
            sha256: OnceLock::new(),
        })
    }

    /// The file this was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data section's alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the tensor data section.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Lower-case hex SHA-256 of the file's bytes (the model identity), computed once.
    pub fn sha256(&self) -> &str {
        self.sha256
            .get_or_init(|| hex::encode(Sha256::digest(&self.bytes)))
    }

    /// All metadata, sorted by key.
    pub fn metadata_iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        get: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T> {
        let v = self.metadata(key).ok_or_else(|| Error::Metadata {
            key: key.to_owned(),
            reason: "missing".to_owned(),
        })?;
        get(v).ok_or_else(|| Error::Metadata {
            key: key.to_owned(),
            reason: format!("expected {expected}, found {}", v.type_name()),
        })
    }

    /// An integer value that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, "u32", |v| {
            v.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    }

    /// A non-negative integer value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "unsigned integer", Value::as_u64)
    }

    /// A float (or integer) value as `f32`.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "float", |v| v.as_f64().map(|v| v as f32))
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "bool", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "string", Value::as_str)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.typed(key, "array of strings", |v| {
            v.as_array()?.iter().map(Value::as_str).collect()
        })
    }

    /// An array of integers that fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.typed(key, "array of integers", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_i64().and_then(|x| i32::try_from(x).ok()))
                .collect()
        })
    }

    /// The tensor infos, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor named `name` (as in the file).
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw encoded bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
        })?;
        // In range: checked when the file was parsed.
        Ok(&self.bytes[info.offset..info.offset + info.n_bytes])
    }

    /// The tensor named `name` (as in the file), dequantized to `f32`, dims outermost first.
    pub fn tensor_f32(&self, name: &str) -> Result<TensorData> {
        let bytes = self.tensor_bytes(name)?;
        let info = self.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
        })?;
        let values = dequant::dequantize(info.ggml_type, bytes).ok_or_else(|| {
            Error::UnsupportedTensorType {
                tensor: name.to_owned(),
                dtype: info.ggml_type.name(),
            }
        })?;
        TensorData::new(info.dims.clone(), values)
    }
}

/// A tensor info as read, before its offset is checked against the data section.
struct RawTensor {
    name: String,
    ggml_dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
}

impl RawTensor {
    fn locate(self, data_offset: usize, alignment: u64, file_len: usize) -> Result<TensorInfo> {
        let name = self.name;
        let bad = |reason: String| malformed(format!("tensor {name}: {reason}"));
        let (per_block, block_bytes) = self
            .ggml_type
            .block()
            .ok_or_else(|| bad(format!("unknown ggml type {}", self.ggml_type.0)))?;
        let n_elements = self
            .ggml_dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("dims {:?} overflow", self.ggml_dims)))?;
        let inner = self.ggml_dims.first().copied().unwrap_or(1);
        if !inner.is_multiple_of(per_block) {
            return Err(bad(format!(
                "innermost dim {inner} is not a multiple of the {} block size {per_block}",
                self.ggml_type
            )));
        }
        let n_bytes = (n_elements / per_block)
            .checked_mul(block_bytes)
            .ok_or_else(|| bad("size overflows".to_owned()))?;
        if !self.offset.is_multiple_of(alignment) {
            return Err(bad(format!(
                "offset {} is not a multiple of the alignment {alignment}",
                self.offset
            )));
        }
        let start = (data_offset as u64).checked_add(self.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(bad("offset overflows".to_owned()));
        };
        if end > file_len as u64 {
            return Err(bad(format!(
                "data [{start}, {end}) extends past the end of the file ({file_len} bytes)"
            )));
        }
        let dims = self
            .ggml_dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("dims do not fit in memory".to_owned()))?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type: self.ggml_type,
            offset: start as usize,
            n_bytes: n_bytes as usize,
        })
    }
}

type Header = (u32, BTreeMap<String, Value>, Vec<RawTensor>, usize);

fn parse_header(bytes: &[u8]) -> Result<Header> {
    let mut c = Cursor::new(bytes);
    let magic = c.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(malformed(format!(
            "bad magic {magic:02x?}, expected \"GGUF\""
        )));
    }
    let version = c.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(malformed("big-endian gguf files are not supported"));
    }
    if version != 2 && version != 3 {
        return Err(malformed(format!(
            "version {version} is not supported (only 2 and 3)"
        )));
    }
    // A tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    let n_tensors = c.count("tensor count", limits::MAX_TENSOR_COUNT, 24)?;
    // A key/value takes at least 8 (key) + 4 (type) + 1 (value) bytes.
    let n_kv = c.count("key/value count", limits::MAX_KV_COUNT, 13)?;

    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key", limits::MAX_NAME_LEN)?;
        let ty = c.u32("value type")?;
        let value = c.value(ty, 0, &key)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(malformed(format!("duplicate metadata key {key}")));
        }
    }

    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string("tensor name", limits::MAX_NAME_LEN)?;
        let n_dims = c.u32("n_dims")?;
        if n_dims > limits::MAX_DIMS {
            return Err(malformed(format!(
                "tensor {name}: {n_dims} dims exceed the limit {}",
                limits::MAX_DIMS
            )));
        }
        let ggml_dims = (0..n_dims)
            .map(|_| c.u64("tensor dim"))
            .collect::<Result<Vec<_>>>()?;
        let ggml_type = GgmlType(c.u32("tensor type")?);
        let offset = c.u64("tensor offset")?;
        tensors.push(RawTensor {
            name,
            ggml_dims,
            ggml_type,
            offset,
        });
    }
    Ok((version, metadata, tensors, c.pos()))
}

/// Lower-case hex SHA-256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
