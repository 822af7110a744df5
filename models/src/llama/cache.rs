//! [`KvCache`]: keys and values of the positions already processed, for incremental decoding.
//!
//! Each layer keeps one key and one value buffer `[batch, kv_heads, capacity, head_dim]`. New
//! positions are written in place (`slice_assign` on a uniquely owned buffer does not copy on the
//! CPU backend) and attention reads the prefix `0..len` as a view, so a decoding step allocates
//! nothing per token except when the buffer doubles.

use burn::tensor::Tensor;

use crate::{Error, Result};

/// Smallest buffer allocated, in positions.
const MIN_CAPACITY: usize = 64;

#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor<4>,
    v: Tensor<4>,
}

/// Cached keys and values for every layer of one model and one batch of sequences.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
    max_len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers that accepts up to `max_len` positions.
    pub fn new(layers: usize, max_len: usize) -> Self {
        Self {
            layers: vec![None; layers],
            len: 0,
            max_len,
        }
    }

    /// Number of positions already cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets every cached position, keeping the buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops the positions from `len` on (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Checks that `batch` sequences fit the cache (the batch size cannot change while positions
    /// are cached) and that `new` more positions fit.
    pub(crate) fn check(&self, batch: usize, new: usize) -> Result<()> {
        let cached_batch = self.layers.iter().flatten().next().map(|e| e.k.dims()[0]);
        if let Some(cached) = cached_batch
            && cached != batch
            && self.len > 0
        {
            return Err(Error::Config {
                reason: format!("the cache holds {cached} sequences, the input has {batch}"),
            });
        }
        self.check_room(new)
    }

    /// Checks that `new` more positions fit.
    pub(crate) fn check_room(&self, new: usize) -> Result<()> {
        let len = self.len.saturating_add(new);
        if len > self.max_len {
            return Err(Error::SequenceTooLong {
                len,
                limit: self.max_len,
            });
        }
        Ok(())
    }

    /// Number of layers the cache was made for.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Writes `k`, `v` (`[batch, kv_heads, seq, head_dim]`) at positions `len..len+seq` of `layer`
    /// and returns the keys and values of positions `0..len+seq`.
    ///
    /// The caller has checked [`KvCache::check_room`] and calls [`KvCache::advance`] once all layers
    /// are written.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, h, s, d] = k.dims();
        let start = self.len;
        let end = start + s;
        let slot = &mut self.layers[layer];
        let entry = match slot.take() {
            Some(e) if e.k.dims()[0] == b && e.k.dims()[2] >= end => e,
            Some(e) if e.k.dims()[0] == b => {
                let cap = grow(e.k.dims()[2], end, self.max_len);
                LayerKv {
                    k: regrow(e.k, start, cap),
                    v: regrow(e.v, start, cap),
                }
            }
            _ => {
                let cap = grow(0, end, self.max_len);
                let device = k.device();
                LayerKv {
                    k: Tensor::zeros([b, h, cap, d], &device),
                    v: Tensor::zeros([b, h, cap, d], &device),
                }
            }
        };
        let k_all = entry.k.slice_assign([0..b, 0..h, start..end, 0..d], k);
        let v_all = entry.v.slice_assign([0..b, 0..h, start..end, 0..d], v);
        let k_view = k_all.clone().narrow(2, 0, end);
        let v_view = v_all.clone().narrow(2, 0, end);
        *slot = Some(LayerKv { k: k_all, v: v_all });
        (k_view, v_view)
    }

    /// Records that `new` positions were written to every layer.
    pub(crate) fn advance(&mut self, new: usize) {
        self.len += new;
    }
}

/// The new capacity for `needed` positions: doubling from `old` (at least [`MIN_CAPACITY`]),
/// capped at `max`.
fn grow(old: usize, needed: usize, max: usize) -> usize {
    let mut cap = old.max(MIN_CAPACITY);
    while cap < needed {
        cap *= 2;
    }
    cap.min(max).max(needed)
}

/// A buffer of `cap` positions holding the first `keep` positions of `old`.
fn regrow(old: Tensor<4>, keep: usize, cap: usize) -> Tensor<4> {
    let [b, h, _, d] = old.dims();
    let fresh = Tensor::zeros([b, h, cap, d], &old.device());
    if keep == 0 {
        return fresh;
    }
    fresh.slice_assign([0..b, 0..h, 0..keep, 0..d], old.narrow(2, 0, keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn growth_doubles_and_caps() {
        assert_eq!(grow(0, 1, 256), 64);
        assert_eq!(grow(64, 65, 256), 128);
        assert_eq!(grow(128, 200, 256), 256);
        assert_eq!(grow(256, 256, 256), 256);
        assert_eq!(grow(0, 10, 8), 10);
    }

    #[test]
    fn append_returns_prefix_and_survives_regrowth() {
        let device = Device::flex();
        let mut cache = KvCache::new(1, 200);
        let mut expected = Vec::new();
        for step in 0..100 {
            let val = step as f32;
            let k = Tensor::<4>::full([1, 2, 1, 3], val, &device);
            cache.check_room(1).unwrap();
            let (kv, vv) = cache.append(0, k.clone(), k);
            cache.advance(1);
            expected.extend(std::iter::repeat_n(val, 3));
            assert_eq!(kv.dims(), [1, 2, step + 1, 3]);
            let got: Vec<f32> = vv.narrow(1, 1, 1).into_data().try_into_vec().unwrap();
            assert_eq!(got, expected);
        }
        assert_eq!(cache.len(), 100);
    }

    #[test]
    fn room_is_checked_at_and_past_the_limit() {
        let mut cache = KvCache::new(1, 4);
        assert!(cache.check_room(4).is_ok());
        assert!(cache.check_room(5).is_err());
        cache.advance(3);
        assert!(cache.check_room(1).is_ok());
        assert!(matches!(
            cache.check_room(2),
            Err(Error::SequenceTooLong { len: 5, limit: 4 })
        ));
    }
}
