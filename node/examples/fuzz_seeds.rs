//! Writes the seed corpus of the fuzz targets in `fuzz/` that need the model and node crates
//! (`gguf`, `gguf_tokenizer`, `hf_config`, `hf_checkpoint`, `peft`, `sync`, `invite`, `api`,
//! `ingest`, `config`); the protocol targets' seeds come from `hearth-protocol`'s `fuzz_seeds` example.
//! Every seed but the `api` request bodies (built as JSON values, not sent to a server here) is
//! checked to decode as its target decodes it, so the fuzzers start from valid inputs.
//!
//! `cargo run -p hearth-node --example fuzz_seeds -- fuzz/corpus`
//!
//! The facts below match `fuzz/src/lib.rs` (the `peft` model shape, the invite's member and
//! clock): keep the two in step.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use hearth_models::peft;
use hearth_models::{
    AdapterWeights, Factor, Gguf, GgufWeights, HfCheckpoint, Llama, LlamaConfig, LlamaHparams,
    LoraConfig, LoraKey, LoraTensor, Target, Tokenizer, WeightSource, names,
    permute_interleaved_to_rotate_half, tiny,
};
use hearth_node::daemon::persist::WireRecord;
use hearth_node::daemon::sync::{Request, Response, decode_request, decode_response, encode};
use hearth_node::home::Invite;
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, Hash32, Keypair, Limits, LoraShape, Manifest, Privacy,
    Role, Schedule, Signed,
};
use serde_bytes::ByteBuf;

/// `hearth_fuzz::peft_model()`: the smallest valid Llama.
fn small_model() -> LlamaConfig {
    LlamaConfig::new(267, 8, 16, 1, 2, 1, 4)
}
/// `hearth_fuzz::INVITE_MEMBER_SEED`.
const INVITE_MEMBER_SEED: [u8; 32] = [0x11; 32];
/// `hearth_fuzz::INVITE_NOW`.
const INVITE_NOW: u64 = 1_700_000_500;

/// `hearth_fuzz::join2`: a little-endian `u16` length, the first part, the second part.
fn join2(first: &[u8], second: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(first.len()).context("first part over 64 KiB")?;
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    Ok(out)
}

/// A GGUF file built field by field, to hold every value type and tensor encoding.
#[derive(Default)]
struct GgufFile {
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgufFile {
    /// Adds a key/value: `ty` is the GGUF value type, `value` its encoding.
    fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        put_str(&mut self.kvs, key);
        self.kvs.extend(ty.to_le_bytes());
        self.kvs.extend(value);
        self.n_kv += 1;
        self
    }

    /// Adds a tensor: dims innermost first, `ggml` its type, `bytes` its encoded data.
    fn tensor(mut self, name: &str, dims: &[u64], ggml: u32, bytes: &[u8]) -> Self {
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ggml.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }

    fn bytes(&self, version: u32) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend(&self.data);
        out
    }
}

/// A GGUF value: a string.
fn gguf_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, s);
    out
}

/// A GGUF value: an array of `ty` holding `items` (each already encoded).
fn gguf_array(ty: u32, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = ty.to_le_bytes().to_vec();
    out.extend((items.len() as u64).to_le_bytes());
    for item in items {
        out.extend(item);
    }
    out
}

/// Every metadata value type (nested arrays too) and every supported tensor encoding.
fn gguf_every_type() -> GgufFile {
    let f16_one = 0x3c00u16.to_le_bytes(); // 1.0
    let q8_0: Vec<u8> = f16_one
        .iter()
        .copied()
        .chain((0..32).map(|i| i as u8))
        .collect();
    let q4_0: Vec<u8> = f16_one.iter().copied().chain(0..16).collect();
    let q4_1: Vec<u8> = f16_one
        .iter()
        .chain(&f16_one)
        .copied()
        .chain(0..16)
        .collect();
    let f32s: Vec<u8> = [1.0f32, -2.0, 0.5, 3.25, 0.0, -0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    GgufFile::default()
        .kv("general.architecture", 8, &gguf_string("llama"))
        .kv("general.alignment", 4, &32u32.to_le_bytes())
        .kv("u8", 0, &[7])
        .kv("i8", 1, &[0xff])
        .kv("u16", 2, &7u16.to_le_bytes())
        .kv("i16", 3, &(-7i16).to_le_bytes())
        .kv("i32", 5, &(-7i32).to_le_bytes())
        .kv("f32", 6, &1.5f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("u64", 10, &7u64.to_le_bytes())
        .kv("i64", 11, &(-7i64).to_le_bytes())
        .kv("f64", 12, &1.5f64.to_le_bytes())
        .kv(
            "strings",
            9,
            &gguf_array(8, &[gguf_string("a"), gguf_string("b c")]),
        )
        .kv(
            "ints",
            9,
            &gguf_array(
                5,
                &[1i32.to_le_bytes().to_vec(), 3i32.to_le_bytes().to_vec()],
            ),
        )
        .kv(
            "nested",
            9,
            &gguf_array(
                9,
                &[
                    gguf_array(0, &[vec![1], vec![2]]),
                    gguf_array(7, &[vec![0]]),
                ],
            ),
        )
        .tensor("f32", &[3, 2], 0, &f32s[..24])
        .tensor("f16", &[2], 1, &[0x00, 0x3c, 0x00, 0xc0])
        .tensor("bf16", &[2], 30, &[0x80, 0x3f, 0x00, 0xc0])
        .tensor("q8_0", &[32], 8, &q8_0)
        .tensor("q4_0", &[32], 2, &q4_0)
        .tensor("q4_1", &[32], 3, &q4_1)
}

/// The tokenizer part of a tiny GGUF: its header with the tensor count set to zero.
fn gguf_tokenizer_only(model: &[u8]) -> Result<Vec<u8>> {
    let gguf = Gguf::from_bytes(model.to_vec())?;
    let mut bytes = model[..gguf.data_offset()].to_vec();
    bytes[8..16].copy_from_slice(&0u64.to_le_bytes());
    Ok(bytes)
}

/// A safetensors file by hand (F32 and BF16 tensors, in the given order).
fn safetensors(tensors: &[(String, Vec<usize>, bool, Vec<f32>)]) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, bf16, values) in tensors {
        let start = data.len();
        for v in values {
            if *bf16 {
                data.extend(&v.to_le_bytes()[2..]);
            } else {
                data.extend(v.to_le_bytes());
            }
        }
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": if *bf16 { "BF16" } else { "F32" },
                "shape": shape,
                "data_offsets": [start, data.len()],
            }),
        );
    }
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    Ok(out)
}

/// A Hugging Face checkpoint of `model` (from its GGUF weights): `config.json` and safetensors.
fn hf_checkpoint(model: &LlamaConfig, gguf: &[u8]) -> Result<(String, Vec<u8>)> {
    let weights = GgufWeights::new(Gguf::from_bytes(gguf.to_vec())?)?;
    let mut names = vec![names::EMBED_TOKENS.to_owned(), names::FINAL_NORM.to_owned()];
    for layer in 0..model.layers {
        names.extend(names::LAYER_SUFFIXES.iter().map(|s| names::layer(layer, s)));
    }
    let mut tensors = Vec::new();
    for name in names {
        let mut t = weights.tensor(&name)?;
        if name.ends_with("q_proj.weight") {
            t = permute_interleaved_to_rotate_half(&t, model.heads)?;
        } else if name.ends_with("k_proj.weight") {
            t = permute_interleaved_to_rotate_half(&t, model.kv_heads)?;
        }
        let bf16 = name.ends_with("norm.weight");
        tensors.push((name, t.dims, bf16, t.values));
    }
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab,
        "hidden_size": model.hidden,
        "intermediate_size": model.intermediate,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "num_key_value_heads": model.kv_heads,
        "head_dim": model.head_dim,
        "rope_theta": model.rope_theta,
        "rms_norm_eps": model.rms_eps,
        "max_position_embeddings": 64,
        "tie_word_embeddings": true,
        "bos_token_id": 1,
        "eos_token_id": [2, 0],
        "rope_scaling": null,
        "torch_dtype": "float32"
    });
    Ok((
        serde_json::to_string_pretty(&config)?,
        safetensors(&tensors)?,
    ))
}

/// `(d_in, d_out)` of a target in `model`.
fn target_dims(model: &LlamaConfig, target: Target) -> (usize, usize) {
    let (h, q, kv, f) = (
        model.hidden,
        model.q_dim(),
        model.kv_dim(),
        model.intermediate,
    );
    match target {
        Target::Q => (h, q),
        Target::K | Target::V => (h, kv),
        Target::O => (q, h),
        Target::Gate | Target::Up => (h, f),
        Target::Down => (f, h),
    }
}

/// A PEFT adapter for `model`, encoded as (`adapter_config.json`, `adapter_model.safetensors`).
fn peft_adapter(model: &LlamaConfig, config: LoraConfig) -> Result<(String, Vec<u8>)> {
    let mut tensors = Vec::new();
    let mut next = 0.0f32;
    for layer in 0..model.layers {
        for &target in &config.targets {
            let (d_in, d_out) = target_dims(model, target);
            for (factor, dims) in [
                (Factor::A, [d_in, config.rank]),
                (Factor::B, [config.rank, d_out]),
            ] {
                let values = (0..dims[0] * dims[1])
                    .map(|_| {
                        next += 0.125;
                        next.sin()
                    })
                    .collect();
                tensors.push(LoraTensor {
                    key: LoraKey {
                        layer,
                        target,
                        factor,
                    },
                    dims,
                    values,
                });
            }
        }
    }
    let weights = AdapterWeights::new(config, tensors)?;
    Ok(peft::encode(&weights, model, "hearth-fuzz-seed")?)
}

/// A community manifest signed by `admin`.
fn manifest(admin: &Keypair) -> Result<Signed<Manifest>> {
    let manifest = Manifest {
        name: "fuzz seeds".into(),
        admin: admin.member_id(),
        created: 1_700_000_000,
        base_model: BaseModel {
            name: "tiny".into(),
            sha256: Hash32::digest(b"weights"),
        },
        lora: LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: 1,
            targets: vec![hearth_protocol::Target {
                module: "attn_q".into(),
                in_dim: 8,
                out_dim: 8,
            }],
            ffa_seed: 7,
        },
        privacy: Privacy::default(),
        aggregation: Aggregation::default(),
        schedule: Schedule::default(),
        limits: Limits::default(),
    };
    Ok(Signed::sign(manifest, admin)?)
}

/// A certificate for `member` in the community of `manifest`.
fn certificate(
    admin: &Keypair,
    manifest: &Signed<Manifest>,
    member: &Keypair,
    roles: Vec<Role>,
) -> Result<Signed<Certificate>> {
    let certificate = Certificate {
        member: member.member_id(),
        community: manifest.body.community_id()?,
        issued: INVITE_NOW - 100,
        expires: INVITE_NOW + 1_000_000,
        roles,
    };
    Ok(Signed::sign(certificate, admin)?)
}

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(name), bytes)?;
        self.count += 1;
        Ok(())
    }
}

fn gguf_seeds(seeds: &mut Seeds, model: &LlamaConfig) -> Result<Vec<u8>> {
    let tiny = tiny::gguf_bytes(model, 1)?;
    let loaded = Llama::load(
        &GgufWeights::new(Gguf::from_bytes(tiny.clone())?)?,
        &Device::flex(),
    );
    ensure!(loaded.is_ok(), "the tiny gguf does not load");
    seeds.write("gguf", "tiny-model", &tiny)?;
    let every = gguf_every_type();
    for version in [2, 3] {
        let bytes = every.bytes(version);
        let gguf = Gguf::from_bytes(bytes.clone())?;
        for info in gguf.tensor_infos() {
            gguf.tensor_f32(&info.name)?;
        }
        seeds.write("gguf", &format!("every-type-v{version}"), &bytes)?;
    }

    let tokenizer = gguf_tokenizer_only(&tiny)?;
    let t = Tokenizer::from_gguf(&Gguf::from_bytes(tokenizer.clone())?)?;
    ensure!(t.decode(&t.encode("the inner heart")?)? == "the inner heart");
    seeds.write("gguf_tokenizer", "tiny-tokenizer", &tokenizer)?;
    Ok(tiny)
}

fn model_file_seeds(seeds: &mut Seeds, model: &LlamaConfig, tiny: &[u8]) -> Result<()> {
    let (config, tensors) = hf_checkpoint(model, tiny)?;
    LlamaHparams::from_hf_config(config.as_bytes())?;
    seeds.write("hf_config", "tiny", config.as_bytes())?;
    let smollm2 = r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,
"attention_dropout":0.0,"bos_token_id":1,"eos_token_id":2,"head_dim":64,"hidden_act":"silu",
"hidden_size":576,"initializer_range":0.041666666666666664,"intermediate_size":1536,
"is_llama_config":true,"max_position_embeddings":8192,"mlp_bias":false,"model_type":"llama",
"num_attention_heads":9,"num_hidden_layers":30,"num_key_value_heads":3,"pretraining_tp":1,
"rms_norm_eps":1e-05,"rope_interleaved":false,"rope_scaling":null,"rope_theta":100000,
"tie_word_embeddings":true,"torch_dtype":"bfloat16","transformers_version":"4.42.3",
"use_cache":true,"vocab_size":49152}"#;
    LlamaHparams::from_hf_config(smollm2.as_bytes())?;
    seeds.write("hf_config", "smollm2-135m", smollm2.as_bytes())?;

    let dir = std::env::temp_dir().join(format!("hearth-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.json"), &config)?;
    std::fs::write(dir.join("model.safetensors"), &tensors)?;
    let opened = HfCheckpoint::open(&dir).map(|c| Llama::load(&c, &Device::flex()).is_ok());
    std::fs::remove_dir_all(&dir)?;
    ensure!(opened?, "the tiny checkpoint does not load");
    seeds.write(
        "hf_checkpoint",
        "tiny",
        &join2(config.as_bytes(), &tensors)?,
    )?;

    for (name, config) in [
        (
            "rank2-qv",
            LoraConfig::new(2, 4.0, vec![Target::Q, Target::V]),
        ),
        (
            "rank1-all-ffa",
            LoraConfig::new(1, 2.0, Target::ALL.to_vec())
                .with_ffa(true)
                .with_seed(7),
        ),
    ] {
        let (json, tensors) = peft_adapter(model, config)?;
        peft::decode(&json, &tensors, model)?;
        seeds.write("peft", name, &join2(json.as_bytes(), &tensors)?)?;
    }
    Ok(())
}

fn node_seeds(seeds: &mut Seeds) -> Result<()> {
    let admin = Keypair::from_seed([0xad; 32]);
    let member = Keypair::from_seed(INVITE_MEMBER_SEED);
    let manifest = manifest(&admin)?;
    let roles = vec![Role::Contributor, Role::Announcer];
    let cert = certificate(&admin, &manifest, &member, roles)?;
    let invite = Invite {
        version: Invite::VERSION,
        manifest: manifest.clone(),
        certificate: cert.clone(),
        bootstrap: vec![
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
                .into(),
        ],
    };
    let dir = std::env::temp_dir().join(format!("hearth-fuzz-invite-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("invite.cbor");
    invite.write(&path)?;
    let read = Invite::read(&path, &member.member_id(), INVITE_NOW);
    let bytes = std::fs::read(&path)?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(read? == invite, "the seed invite does not read back");
    seeds.write("invite", "valid", &bytes)?;
    let other = Keypair::from_seed([0x22; 32]);
    let other_invite = Invite {
        certificate: certificate(&admin, &manifest, &other, vec![Role::Contributor])?,
        bootstrap: vec![],
        ..invite
    };
    seeds.write(
        "invite",
        "other-member",
        &serde_cbor::to_vec(&other_invite)?,
    )?;

    let requests = [
        (
            "hello",
            Request::Hello {
                certificate: cert.clone(),
                head_round: 12,
            },
        ),
        ("record", Request::Record { round: 3 }),
        (
            "delta",
            Request::Delta {
                round: 3,
                hash: Hash32::digest(b"delta"),
            },
        ),
    ];
    for (name, request) in requests {
        let bytes = [&[0u8][..], &encode(&request)?].concat();
        ensure!(decode_request(&bytes[1..])? == request);
        seeds.write("sync", &format!("request-{name}"), &bytes)?;
    }
    let record = WireRecord {
        round: 3,
        parent: Hash32::digest(b"v2"),
        version: Hash32::digest(b"v3"),
        inputs: vec![Hash32::digest(b"a"), Hash32::digest(b"b")],
        optimizer: Hash32::digest(b"opt"),
    };
    let responses = [
        (
            "status",
            Response::Status {
                head_round: 12,
                head_version: Hash32::digest(b"v12"),
                certificates: vec![cert.clone(), cert],
            },
        ),
        ("record", Response::Record(Some(record))),
        ("no-record", Response::Record(None)),
        (
            "delta",
            Response::Delta(Some(ByteBuf::from(vec![0xa5; 40]))),
        ),
        ("no-delta", Response::Delta(None)),
        ("error", Response::Error("busy".into())),
    ];
    for (name, response) in responses {
        let bytes = [&[1u8][..], &encode(&response)?].concat();
        ensure!(decode_response(&bytes[1..])? == response);
        seeds.write("sync", &format!("response-{name}"), &bytes)?;
    }
    Ok(())
}

/// Request bodies of the local API, each prefixed by the endpoint selector of the `api` target
/// (0: chat completions, 1: completions).
fn api_seeds(seeds: &mut Seeds) -> Result<()> {
    let bodies = [
        (
            "chat",
            0u8,
            serde_json::json!({"model": "base", "max_tokens": 3, "temperature": 0,
                "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "the inner heart"}]}),
        ),
        (
            "chat-stream",
            0,
            serde_json::json!({"messages": [{"role": "user",
                    "content": [{"type": "text", "text": "he"}]}],
                "stream": true, "stream_options": {"include_usage": true},
                "stop": ["\n", "er"], "seed": 7, "top_p": 0.9}),
        ),
        (
            "completion",
            1,
            serde_json::json!({"prompt": "the", "max_tokens": 2, "temperature": 0.5, "seed": 3}),
        ),
        (
            "completion-tokens",
            1,
            serde_json::json!({"prompt": [[1, 2, 3]], "stream": true, "n": 1,
                "logprobs": null, "echo": false, "max_completion_tokens": 1}),
        ),
    ];
    for (name, endpoint, body) in bodies {
        let bytes = [&[endpoint][..], &serde_json::to_vec(&body)?].concat();
        seeds.write("api", name, &bytes)?;
    }
    Ok(())
}

/// Files a member may ingest, each prefixed by the kind selector of the `ingest` target (0:
/// `.jsonl` chat records, 1: `.txt`, 2: `.md`); each must ingest as one document.
fn ingest_seeds(seeds: &mut Seeds) -> Result<()> {
    let chats = concat!(
        r#"{"messages": [{"role": "system", "content": "Be kind."}, "#,
        r#"{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#,
        "\n\n",
        r#"{"messages": [{"role": "user", "content": "again"}], "meta": 1}"#,
        "\n"
    );
    let files = [
        ("chats", 0u8, "chats.jsonl", chats),
        ("text", 1, "notes.txt", "Dear diary,\nthe inner heart.\n"),
        (
            "markdown",
            2,
            "notes.md",
            "# Notes\n\n* one\n* two \u{e9}\n",
        ),
    ];
    for (name, kind, file, text) in files {
        let dir = std::env::temp_dir().join(format!("hearth-fuzz-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(file), text)?;
        let ingested = hearth_training::data::ingest(&dir);
        std::fs::remove_dir_all(&dir)?;
        let ingested = ingested?;
        ensure!(
            ingested.documents.len() == 1 && ingested.skipped.is_empty(),
            "the {name} seed does not ingest as one document: {:?}",
            ingested.skipped
        );
        seeds.write("ingest", name, &[&[kind][..], text.as_bytes()].concat())?;
    }
    Ok(())
}

/// Configuration files: the defaults as `hearth config` prints them, an empty file, the
/// documented example with every optional key set, and a partial file; each must load.
fn config_seeds(seeds: &mut Seeds) -> Result<()> {
    use hearth_node::config::Config;
    let full = concat!(
        "[model]\npath = \"/models/SmolLM2-135M-Instruct.Q4_1.gguf\"\ncontext = 2048\n\n",
        "[node]\nlisten = [\"/ip4/0.0.0.0/tcp/4011\", \"/ip4/0.0.0.0/udp/4011/quic-v1\"]\n",
        "bootstrap = [\"/ip4/127.0.0.1/tcp/4012\"]\nmdns = false\ncontribute = true\n",
        "threads = 2\nmax_memory_mb = 4096\ntrain_secs = 600.0\nseq_len = 128\nlr = 0.002\n",
        "log_format = \"json\"\n\n",
        "[api]\nenabled = true\naddr = \"127.0.0.1:11435\"\ntoken = \"s3cret\"\n",
        "max_concurrent = 2\nmax_tokens = 1024\nmax_body_bytes = 1048576\n"
    );
    let files = [
        ("defaults", Config::default().to_toml()?),
        ("empty", String::new()),
        ("full", full.to_string()),
        ("partial", "[node]\ncontribute = false\n".to_string()),
    ];
    for (name, text) in files {
        Config::parse(&text).with_context(|| format!("the {name} config seed"))?;
        seeds.write("config", name, text.as_bytes())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let mut seeds = Seeds {
        root: root.clone(),
        count: 0,
    };
    let model = small_model();
    let tiny = gguf_seeds(&mut seeds, &model)?;
    model_file_seeds(&mut seeds, &model, &tiny)?;
    node_seeds(&mut seeds)?;
    api_seeds(&mut seeds)?;
    ingest_seeds(&mut seeds)?;
    config_seeds(&mut seeds)?;
    println!("wrote {} seeds to {}", seeds.count, show(&root));
    Ok(())
}

fn show(path: &Path) -> String {
    path.display().to_string()
}
