//! The models a member can talk to: the base model alone ([`BASE`]), with the community adapter
//! ([`COMMUNITY`]) and with the personal adapter on top ([`PERSONAL`]).
//!
//! The variants share the base weights (Burn tensors are reference-counted and the adapters stay
//! unmerged), so three variants cost one model's memory plus the adapters. [`Models::load_member`]
//! builds them from a member's home; the daemon swaps in a new community version with
//! [`Models::with_community`] and [`super::State::set_models`].

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use burn::tensor::Device;
use hearth_models::{AdapterWeights, Llama, Tokenizer};
use serde::Serialize;

use crate::home::Home;
use crate::local;

/// Id of the base model alone.
pub const BASE: &str = "base";
/// Id of the base model with the community adapter.
pub const COMMUNITY: &str = "hearth-community";
/// Id of the base model with the community and personal adapters.
pub const PERSONAL: &str = "hearth-personal";

/// One servable model.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id in `/v1/models` and requests.
    pub id: String,
    /// The model with its adapters attached.
    pub model: Arc<Llama>,
    /// What is stacked on the base, bottom first (e.g. `community (round 3)`, `personal`).
    pub layers: Vec<String>,
}

/// What is known of the community and base model, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// `serve` (the API alone) or `node` (the daemon).
    pub mode: String,
    /// This member's id.
    pub member: Option<String>,
    /// The community, if the member joined one.
    pub community: Option<CommunityStatus>,
    /// The base model.
    pub base_model: Option<BaseModelStatus>,
    /// Whether a personal adapter is served.
    pub personal_adapter: bool,
    /// Connected peers (the daemon sets it).
    pub peers: Option<u64>,
    /// Anything the member should know (e.g. an adapter that does not fit).
    pub notes: Vec<String>,
    /// What the daemon is doing (`hearth node` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::report::NodeReport>,
    /// The member's privacy ledger (`hearth node` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<crate::report::PrivacyReport>,
    /// Members known from their certificates (`hearth node` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<crate::report::MemberReport>,
}

/// The community as this node knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommunityStatus {
    /// Community id (hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Round of the head version (0: genesis).
    pub head_round: u64,
    /// The head version (hex), once a round produced one.
    pub head_version: Option<String>,
}

/// The base model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaseModelStatus {
    /// Its name in the manifest, or its file name.
    pub name: String,
    /// SHA-256 of its weights (hex).
    pub sha256: String,
    /// Context length served, in tokens.
    pub context: usize,
}

/// The servable variants of one base model.
#[derive(Debug, Clone)]
pub struct Models {
    tokenizer: Arc<Tokenizer>,
    base: Llama,
    community: Option<(u64, AdapterWeights)>,
    personal: Option<AdapterWeights>,
    entries: Vec<Entry>,
}

impl Models {
    /// The base model alone (no adapters attached) with its tokenizer.
    pub fn new(base: Llama, tokenizer: Tokenizer) -> anyhow::Result<Self> {
        anyhow::ensure!(
            base.adapters().is_empty(),
            "the base model must come without adapters"
        );
        let mut models = Self {
            tokenizer: Arc::new(tokenizer),
            base,
            community: None,
            personal: None,
            entries: Vec::new(),
        };
        models.rebuild()?;
        Ok(models)
    }

    /// These models with the community adapter at `round` (replacing any earlier version).
    pub fn with_community(mut self, round: u64, weights: AdapterWeights) -> anyhow::Result<Self> {
        self.community = Some((round, weights));
        self.rebuild()?;
        Ok(self)
    }

    /// These models with a personal adapter on top of the community one; fails, leaving nothing
    /// changed, when it does not fit the base model.
    pub fn with_personal(mut self, weights: AdapterWeights) -> anyhow::Result<Self> {
        let previous = self.personal.replace(weights);
        if let Err(e) = self.rebuild() {
            self.personal = previous;
            self.rebuild()?;
            return Err(e);
        }
        Ok(self)
    }

    fn rebuild(&mut self) -> anyhow::Result<()> {
        let mut entries = vec![Entry {
            id: BASE.into(),
            model: Arc::new(self.base.clone()),
            layers: Vec::new(),
        }];
        let mut top = self.base.clone();
        let mut layers = Vec::new();
        if let Some((round, weights)) = &self.community {
            attach(&mut top, weights)
                .context("the community adapter does not fit the base model")?;
            layers.push(format!("community (round {round})"));
            entries.push(Entry {
                id: COMMUNITY.into(),
                model: Arc::new(top.clone()),
                layers: layers.clone(),
            });
        }
        if let Some(weights) = &self.personal {
            attach(&mut top, weights)
                .context("the personal adapter does not fit the base model")?;
            layers.push("personal".into());
            entries.push(Entry {
                id: PERSONAL.into(),
                model: Arc::new(top),
                layers,
            });
        }
        self.entries = entries;
        Ok(())
    }

    /// The model with id `id`.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Every model, base first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The most complete stack: personal, else community, else base.
    pub fn default_entry(&self) -> &Entry {
        // `rebuild` always puts the base first and the fullest stack last.
        self.entries
            .last()
            .unwrap_or_else(|| unreachable!("the base entry always exists"))
    }

    /// The shared tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Context length in tokens (prompt and completion together).
    pub fn context(&self) -> usize {
        self.base.config().max_seq_len
    }

    /// The community adapter's weights, when one is attached.
    pub fn community_weights(&self) -> Option<&AdapterWeights> {
        self.community.as_ref().map(|(_, w)| w)
    }

    /// The community adapter's round, when one is attached.
    pub fn community_round(&self) -> Option<u64> {
        self.community.as_ref().map(|(r, _)| *r)
    }

    /// The member's stack from their home: the community's base model (checked against the
    /// manifest), the community adapter at the head version, and the personal adapter when one
    /// exists and fits (a note says so when it does not). A home outside any community serves
    /// the base model alone.
    pub fn load_member(
        home: &Home,
        model: Option<&Path>,
        context: usize,
    ) -> anyhow::Result<(Self, Status)> {
        let device = Device::flex();
        let mut status = Status {
            mode: "serve".into(),
            member: Some(home.member_id().to_string()),
            ..Status::default()
        };
        let Some(signed) = home.manifest()? else {
            let path = crate::model::resolve_model_path(model)?;
            let (base, tokenizer, id) = crate::model::load_base(&path, context, &device)?;
            status.base_model = Some(BaseModelStatus {
                name: file_name(&path),
                sha256: id.to_string(),
                context: base.config().max_seq_len,
            });
            status.notes.push(
                "this node is in no community yet: serving the base model alone (`hearth join <invite>` adds the community adapter)".into(),
            );
            return Ok((Self::new(base, tokenizer)?, status));
        };
        let community_id = signed
            .verify()
            .context("the stored manifest does not verify")?;
        let (base, tokenizer, manifest) =
            local::load_community_base(home, model, context, &device)?;
        let mut stacked = base.clone();
        let (round, slot) = local::attach_community(home, &manifest, &mut stacked)?;
        let community = stacked.adapter_weights(slot)?;
        let head = crate::daemon::persist::load_head(&home.store, &manifest.lora, 1)?;
        status.community = Some(CommunityStatus {
            id: community_id.to_string(),
            name: manifest.name.clone(),
            head_round: round,
            head_version: head.map(|(_, state, _)| state.version().to_string()),
        });
        status.base_model = Some(BaseModelStatus {
            name: manifest.base_model.name.clone(),
            sha256: manifest.base_model.sha256.to_string(),
            context: base.config().max_seq_len,
        });
        let mut models = Self::new(base, tokenizer)?.with_community(round, community)?;
        if let Some(personal) = local::load_personal(home)? {
            match models.clone().with_personal(personal) {
                Ok(m) => {
                    models = m;
                    status.personal_adapter = true;
                }
                Err(e) => status.notes.push(format!(
                    "your personal adapter is not served: {e:#}; import one that fits with `hearth import DIR`"
                )),
            }
        }
        Ok((models, status))
    }
}

/// Attaches `weights` as a new adapter slot, unmerged (so the base weights stay shared).
fn attach(model: &mut Llama, weights: &AdapterWeights) -> anyhow::Result<()> {
    let slot = model.add_adapter(weights.config.clone())?;
    model.set_adapter_weights(slot, weights)?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
