//! Prints the wire size and the encode/decode cost of a realistic delta submission: FFA-LoRA
//! rank 8 on `attn_q` (576) and `attn_v` (192) of SmolLM2-135M's 30 layers, 184,320 values.
//!
//! Run with `cargo run --release -p hearth-protocol --example delta_size`.

use std::time::Instant;

use hearth_protocol::{
    DeltaSubmission, DpParams, Hash32, Keypair, LayerDelta, Limits, LoraShape, Payload,
    PrivacyMode, Stamp, Target, decode_untrusted, encode,
};

/// A small deterministic generator (xorshift64*), so the example needs no RNG crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Roughly Gaussian (sum of 4 uniforms), scaled to a 16-bit-ish quantization range.
    fn quantized(&mut self) -> i32 {
        let sum: i64 = (0..4).map(|_| (self.next() >> 48) as i64 - 32_768).sum();
        (sum / 8) as i32
    }
}

fn main() -> Result<(), hearth_protocol::Error> {
    let shape = LoraShape {
        rank: 8,
        alpha: 16.0,
        layers: 30,
        targets: vec![
            Target {
                module: "attn_q".into(),
                in_dim: 576,
                out_dim: 576,
            },
            Target {
                module: "attn_v".into(),
                in_dim: 576,
                out_dim: 192,
            },
        ],
        ffa_seed: 1,
    };
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let layers: Vec<LayerDelta> = shape
        .tensors()
        .into_iter()
        .map(|t| LayerDelta {
            values: (0..t.rows * t.cols).map(|_| rng.quantized()).collect(),
            name: t.name,
            rows: t.rows,
            cols: t.cols,
        })
        .collect();
    let dp = DpParams {
        mode: PrivacyMode::Distributed,
        clip_norm: 1.0,
        noise_multiplier: 1.0,
        noise_std: 0.14,
    };

    let key = Keypair::from_seed([3; 32]);
    let community = Hash32::digest(b"community");
    let limits = Limits::default();
    let stamp = Stamp {
        community,
        round: 1,
        nonce: 1,
        timestamp: 1_700_000_000,
    };

    let start = Instant::now();
    let delta = DeltaSubmission::new(1, Hash32::ZERO, layers, 3.0e-5, 250, dp);
    let hash_time = start.elapsed();
    let values = delta.elements();
    let payload = Payload::Delta(delta);

    let runs = 20;
    let start = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..runs {
        bytes = encode(&key, stamp, &payload, &limits)?;
    }
    let encode_time = start.elapsed() / runs;

    let start = Instant::now();
    for _ in 0..runs {
        let message = decode_untrusted(&bytes, &limits, &community)?;
        assert_eq!(message.payload, payload);
    }
    let decode_time = start.elapsed() / runs;

    println!("values:              {values}");
    println!("raw i32 bytes:       {}", values * 4);
    println!("encoded envelope:    {} bytes", bytes.len());
    println!("overhead:            {} bytes", bytes.len() - values * 4);
    println!("content hash:        {hash_time:?}");
    println!("encode (validate + hash check + cbor + sign): {encode_time:?}");
    println!("decode_untrusted (canonical + verify + decode + validate): {decode_time:?}");
    Ok(())
}
