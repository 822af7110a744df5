//! [`Checkpoint`]: everything a fine-tuning run needs to resume exactly where it was — the
//! adapter's factors, AdamW's state (Burn's [`OptimizerRecord`](burn::optim::OptimizerRecord) in
//! its burnpack bytes), the step, the tokens seen, the loss curve so far and the figures measured
//! before the first step. The example order needs no stored generator state: the order of epoch
//! `e` is drawn from `Prng::stream(seed, e)`, and the position in it follows from the step.
//!
//! # File format and atomicity
//!
//! One file per checkpoint, `step-<step, 10 digits>.ckpt` in the checkpoint folder:
//!
//! ```text
//! magic "HRTHCKP1" | u64 header length | header (JSON) | u64 length | adapter f32 values (LE)
//!                  | u64 length | optimizer record (burnpack) | SHA-256 of all the bytes before
//! ```
//!
//! It is written to a temporary name, fsynced, renamed into place, and the folder fsynced, so a
//! crash leaves either the previous checkpoint or the new one, never half a file. The two newest
//! checkpoints are kept.
//!
//! # A corrupt checkpoint is an error
//!
//! [`Checkpoint::load`] checks the size limit, the magic, every length and the SHA-256 before it
//! decodes anything. A checkpoint that fails is an error naming the file and what is wrong; the
//! trainer does not fall back to an older one on its own, since with atomic writes a damaged
//! newest file means the disk or someone changed it. Deleting the file resumes from the previous
//! checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hearth_models::{AdapterWeights, Factor, LoraConfig, LoraKey, LoraTensor, Target};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::curve::CurvePoint;
use crate::error::{Error, Result};

/// Largest checkpoint file read (1 GiB).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;
/// Checkpoints kept in the folder; older ones are deleted after a successful write.
pub const KEEP: usize = 2;

const MAGIC: &[u8; 8] = b"HRTHCKP1";
const DIGEST: usize = 32;

/// The state of a run after `step` optimizer steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens predicted so far.
    pub tokens: u64,
    /// The run's fingerprint (configuration, data, initial adapter); see the trainer.
    pub fingerprint: String,
    /// The adapter's factors.
    pub adapter: AdapterWeights,
    /// AdamW's state as burnpack bytes.
    pub optimizer: Vec<u8>,
    /// The loss curve up to `step`.
    pub curve: Vec<CurvePoint>,
    /// Mean held-out loss before the first step, if there was held-out data.
    pub held_out_before: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    step: u64,
    tokens: u64,
    fingerprint: String,
    lora: LoraConfig,
    tensors: Vec<TensorMeta>,
    curve: Vec<CurvePoint>,
    held_out_before: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct TensorMeta {
    layer: usize,
    target: Target,
    b: bool,
    dims: [usize; 2],
}

impl Checkpoint {
    /// The file name of the checkpoint after `step` steps.
    pub fn file_name(step: u64) -> String {
        format!("step-{step:010}.ckpt")
    }

    /// Encodes the checkpoint (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = Header {
            step: self.step,
            tokens: self.tokens,
            fingerprint: self.fingerprint.clone(),
            lora: self.adapter.config.clone(),
            tensors: self
                .adapter
                .tensors
                .iter()
                .map(|t| TensorMeta {
                    layer: t.key.layer,
                    target: t.key.target,
                    b: t.key.factor == Factor::B,
                    dims: t.dims,
                })
                .collect(),
            curve: self.curve.clone(),
            held_out_before: self.held_out_before,
        };
        let header = serde_json::to_vec(&header).map_err(|e| Error::Data {
            reason: format!("cannot encode checkpoint header: {e}"),
        })?;
        let values: Vec<u8> = self
            .adapter
            .tensors
            .iter()
            .flat_map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let mut out = Vec::with_capacity(header.len() + values.len() + self.optimizer.len() + 64);
        out.extend_from_slice(MAGIC);
        for part in [&header[..], &values[..], &self.optimizer[..]] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Decodes a checkpoint; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(bad(format!(
                "{} bytes exceed the limit of {MAX_CHECKPOINT_BYTES}",
                bytes.len()
            )));
        }
        if bytes.len() < MAGIC.len() + 3 * 8 + DIGEST || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not a hearth checkpoint (bad magic or too short)".into()
            ));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad(
                "checksum mismatch: the file is truncated or corrupt (delete it to resume from the previous checkpoint)"
                    .into(),
            ));
        }
        let mut rest = &body[MAGIC.len()..];
        let mut parts = Vec::with_capacity(3);
        for name in ["header", "adapter", "optimizer"] {
            let len = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| bad(format!("{name} length is missing")))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= rest.len() - 8)
                .ok_or_else(|| bad(format!("{name} length {len} runs past the end")))?;
            parts.push(&rest[8..8 + len]);
            rest = &rest[8 + len..];
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        let header: Header =
            serde_json::from_slice(parts[0]).map_err(|e| bad(format!("malformed header: {e}")))?;
        let values = parts[1];
        if values.len() % 4 != 0 {
            return Err(bad("adapter values are not whole f32s".into()));
        }
        let mut floats = values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut tensors = Vec::with_capacity(header.tensors.len());
        let mut used = 0usize;
        for meta in &header.tensors {
            let n = meta
                .dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| used.checked_add(n).is_some_and(|u| u <= values.len() / 4))
                .ok_or_else(|| bad("adapter tensor sizes exceed the stored values".into()))?;
            used += n;
            tensors.push(LoraTensor {
                key: LoraKey {
                    layer: meta.layer,
                    target: meta.target,
                    factor: if meta.b { Factor::B } else { Factor::A },
                },
                dims: meta.dims,
                values: floats.by_ref().take(n).collect(),
            });
        }
        if used != values.len() / 4 {
            return Err(bad(format!(
                "{} stored adapter values, the tensors need {used}",
                values.len() / 4
            )));
        }
        let adapter = AdapterWeights::new(header.lora, tensors)
            .map_err(|e| bad(format!("invalid adapter: {e}")))?;
        Ok(Self {
            step: header.step,
            tokens: header.tokens,
            fingerprint: header.fingerprint,
            adapter,
            optimizer: parts[2].to_vec(),
            curve: header.curve,
            held_out_before: header.held_out_before,
        })
    }

    /// Writes the checkpoint atomically into `dir` (created if needed), deletes all but the
    /// [`KEEP`] newest, and returns the file written.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(Self::file_name(self.step));
        let tmp = dir.join(format!(".{}.tmp", Self::file_name(self.step)));
        let bytes = self.to_bytes()?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            #[cfg(unix)]
            fs::File::open(dir)?.sync_all()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        let all = list(dir)?;
        for (_, old) in all.iter().rev().skip(KEEP) {
            fs::remove_file(old).map_err(|e| Error::io(old, e))?;
        }
        Ok(path)
    }

    /// Reads and checks one checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let size = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if size > MAX_CHECKPOINT_BYTES {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("{size} bytes exceed the limit of {MAX_CHECKPOINT_BYTES}"),
            });
        }
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// The newest checkpoint file in `dir`, `None` if there is none (or no folder).
    pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
        if !dir.exists() {
            return Ok(None);
        }
        Ok(list(dir)?.pop().map(|(_, p)| p))
    }
}

/// Checkpoint files in `dir`, oldest first.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.strip_suffix(".ckpt"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((step, entry.path()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use hearth_models::{Llama, LlamaConfig};

    use super::*;

    fn sample(step: u64) -> Checkpoint {
        let mut model = Llama::init_random(&LlamaConfig::tiny(16), 1, &Device::flex()).unwrap();
        let slot = model
            .add_adapter(LoraConfig::new(2, 4.0, vec![Target::Q, Target::V]).with_seed(3))
            .unwrap();
        let mut adapter = model.adapter_weights(slot).unwrap();
        let b: Vec<f32> = (0..adapter.b_len()).map(|i| i as f32 * 0.25).collect();
        adapter.set_flat_b(&b).unwrap();
        Checkpoint {
            step,
            tokens: 40 * step,
            fingerprint: "abc".into(),
            adapter,
            optimizer: vec![1, 2, 3, 4, 5],
            curve: vec![CurvePoint {
                step: 1,
                loss: 2.5,
                lr: 1e-3,
                tokens_per_sec: 100.0,
            }],
            held_out_before: Some(3.0),
        }
    }

    #[test]
    fn round_trips_and_keeps_the_newest_two() {
        let dir = tempfile::tempdir().unwrap();
        for step in [2, 4, 6] {
            sample(step).save(dir.path()).unwrap();
        }
        let latest = Checkpoint::latest(dir.path()).unwrap().unwrap();
        assert_eq!(latest, dir.path().join("step-0000000006.ckpt"));
        assert_eq!(Checkpoint::load(&latest).unwrap(), sample(6));
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(names, [4, 6]);
        assert_eq!(Checkpoint::latest(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn corrupt_and_truncated_files_are_clear_errors() {
        let bytes = sample(1).to_bytes().unwrap();
        let p = Path::new("step-0000000001.ckpt");
        for cut in [0, 7, 8, 40, bytes.len() / 2, bytes.len() - 1] {
            let err = Checkpoint::from_bytes(&bytes[..cut], p).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("checkpoint step-0000000001.ckpt: "),
                "{err}"
            );
        }
        for i in [0, 9, 30, bytes.len() / 2, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(Checkpoint::from_bytes(&flipped, p).is_err(), "flip at {i}");
        }
        let err = Checkpoint::from_bytes(&bytes[..bytes.len() - 1], p).unwrap_err();
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Checkpoint::from_bytes(&extra, p).is_err());
    }

    #[test]
    fn lengths_are_checked_even_with_a_valid_digest() {
        // A well-formed digest over a body whose lengths lie must still be refused.
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        body.extend_from_slice(&[0; 16]);
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        let err = Checkpoint::from_bytes(&body, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("header length"), "{err}");
    }

    #[test]
    fn size_limit_is_checked_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step-0000000001.ckpt");
        let f = fs::File::create(&path).unwrap();
        f.set_len(MAX_CHECKPOINT_BYTES + 1).unwrap();
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(err.to_string().contains("exceed the limit"), "{err}");
        f.set_len(MAX_CHECKPOINT_BYTES).unwrap();
        // At the limit the file is read, and refused for its content.
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }
}
