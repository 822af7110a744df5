//! `hearth export` and `hearth import`: adapters in the Hugging Face PEFT layout
//! (`adapter_config.json` + `adapter_model.safetensors`), loadable with
//! `PeftModel.from_pretrained(base, DIR)`.
//!
//! Import sets the personal adapter, after checking that it fits the community's base model on
//! top of the community adapter; when it does not (another base model, other widths or layer
//! count), nothing changes and the error says why.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use hearth_models::{AdapterWeights, LlamaConfig, peft};

use super::HomeArgs;
use crate::home::{Home, unlock_from};
use crate::local;

/// Context used when loading the base model only to check shapes.
const CHECK_CONTEXT: usize = 16;

/// Which adapter to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The community adapter at its head version (shared with the community anyway).
    Community,
    /// Your personal adapter (private: it may reveal what it was trained on).
    Personal,
}

/// Arguments of `hearth export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Folder to write `adapter_config.json` and `adapter_model.safetensors` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Which adapter.
    #[arg(long, value_enum, default_value_t = Which::Community)]
    pub adapter: Which,
    /// Overwrite an adapter already in the folder.
    #[arg(long)]
    pub force: bool,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Arguments of `hearth import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A folder in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`).
    pub dir: PathBuf,
    /// Replace the personal adapter you have.
    #[arg(long)]
    pub force: bool,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

fn describe(w: &AdapterWeights) -> String {
    let targets: Vec<&str> = w.config.targets.iter().map(|t| t.name()).collect();
    format!(
        "rank {}, alpha {}, on {} ({} parameters)",
        w.config.rank,
        w.config.alpha,
        targets.join(", "),
        w.num_params()
    )
}

/// Runs `hearth export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let has_adapter = [peft::CONFIG_FILE, peft::WEIGHTS_FILE]
        .iter()
        .any(|f| args.out.join(f).exists());
    anyhow::ensure!(
        !has_adapter || args.force,
        "{} already holds an adapter: choose another --out or pass --force to overwrite it",
        args.out.display()
    );
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let (mut model, _, manifest) =
        local::load_community_base(&home, args.model.as_deref(), CHECK_CONTEXT, &Device::flex())?;
    let (weights, what) = match args.adapter {
        Which::Community => {
            let (round, slot) = local::attach_community(&home, &manifest, &mut model)?;
            (model.adapter_weights(slot)?, format!("community adapter (round {round})"))
        }
        Which::Personal => (
            local::load_personal(&home)?.context(
                "you have no personal adapter yet: train one with `hearth train` or import one with `hearth import DIR`",
            )?,
            "personal adapter".to_string(),
        ),
    };
    peft::save(
        &args.out,
        &weights,
        model.config(),
        &manifest.base_model.name,
    )
    .with_context(|| format!("writing the adapter to {}", args.out.display()))?;
    println!(
        "wrote the {what} to {}: {}, in the PEFT layout ({} + {}) for base model {}",
        args.out.display(),
        describe(&weights),
        peft::CONFIG_FILE,
        peft::WEIGHTS_FILE,
        manifest.base_model.name
    );
    if args.adapter == Which::Personal {
        eprintln!(
            "note: this is your private adapter; it may reveal what you trained it on, so share it only if you mean to"
        );
    }
    Ok(())
}

/// The `base_model_name_or_path` of an adapter folder, if it says.
fn made_for(dir: &Path) -> Option<String> {
    let len = std::fs::metadata(dir.join(peft::CONFIG_FILE)).ok()?.len();
    if len > peft::MAX_CONFIG_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(peft::CONFIG_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("base_model_name_or_path")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Why an adapter does not fit a model, for the error message.
fn does_not_fit(
    dir: &Path,
    base: &str,
    config: &LlamaConfig,
    reason: impl std::fmt::Display,
) -> anyhow::Error {
    let origin = made_for(dir).map_or(String::new(), |m| format!(" (it was made for {m})"));
    anyhow::anyhow!(
        "{} does not fit the community's base model {base}{origin}: {reason}. \
         An adapter carries over to another base model only when its layer count ({}) and the widths of \
         the adapted projections (hidden {}, key/value {}, feed-forward {}) match; nothing was changed",
        dir.display(),
        config.layers,
        config.hidden,
        config.kv_dim(),
        config.intermediate
    )
}

/// Runs `hearth import`.
pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.dir.join(peft::CONFIG_FILE).is_file(),
        "{} holds no {}: point at a folder in the PEFT layout ({} + {}), such as one `hearth export` wrote",
        args.dir.display(),
        peft::CONFIG_FILE,
        peft::CONFIG_FILE,
        peft::WEIGHTS_FILE
    );
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let replaced = local::load_personal(&home)?.is_some();
    anyhow::ensure!(
        !replaced || args.force,
        "you already have a personal adapter: keep a copy with `hearth export --adapter personal --out DIR`, \
         then pass --force to replace it"
    );
    let (mut model, _, manifest) =
        local::load_community_base(&home, args.model.as_deref(), CHECK_CONTEXT, &Device::flex())?;
    let config = model.config().clone();
    let base = &manifest.base_model.name;
    let weights =
        peft::load(&args.dir, &config).map_err(|e| does_not_fit(&args.dir, base, &config, e))?;
    // It is served on top of the community adapter: check it attaches there.
    local::attach_community(&home, &manifest, &mut model)?;
    let slot = model
        .add_adapter(weights.config.clone())
        .map_err(|e| does_not_fit(&args.dir, base, &config, e))?;
    model
        .set_adapter_weights(slot, &weights)
        .map_err(|e| does_not_fit(&args.dir, base, &config, e))?;
    local::save_personal(&home, &weights)?;
    println!(
        "imported {} as your personal adapter: {}{}; `hearth chat` and the API's hearth-personal model use it, \
         sealed in your store and never shared",
        args.dir.display(),
        describe(&weights),
        if replaced {
            " (it replaced the previous one)"
        } else {
            ""
        }
    );
    Ok(())
}
