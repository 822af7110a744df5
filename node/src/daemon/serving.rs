//! The local API next to the daemon: `hearth node` serves the member's models over the same
//! OpenAI-compatible API as `hearth serve`, switches to each new community version as it is
//! committed, and exports its round, delta, privacy and traffic counters at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use hearth_federation::State;
use hearth_models::AdapterWeights;
use hearth_protocol::{Hash32, LoraShape};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::Summary;
use crate::api::{self, Metrics, Models};
use crate::bridge;
use crate::home::Home;
use crate::report::{MemberReport, NodeReport, PrivacyReport};

/// How the daemon's API runs.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Address, token and limits.
    pub config: api::Config,
    /// Context length served, in tokens.
    pub context: usize,
}

/// The running API: its shared state, and what it needs to serve a new community version.
pub(super) struct Serving {
    state: Arc<api::State>,
    models: Models,
    /// The community adapter as first attached: its `A` (from the manifest's seed) and layout
    /// are those of every version; only `B` changes.
    seeded: Option<AdapterWeights>,
    shape: LoraShape,
    served: Hash32,
    _stop: oneshot::Sender<()>,
}

impl Serving {
    /// Loads the member's models (base, community head, personal), binds the address and starts
    /// serving. The API stops when this value is dropped.
    pub(super) async fn start(
        home: &Home,
        options: &ApiOptions,
        model: Option<&std::path::Path>,
        shape: &LoraShape,
        head: &State,
    ) -> anyhow::Result<Self> {
        let listener = api::bind(&options.config).await?;
        let addr = listener.local_addr()?;
        let (models, mut status) = Models::load_member(home, model, options.context)
            .context("loading the models to serve")?;
        status.mode = "node".into();
        let seeded = models.community_weights().cloned();
        let state = api::State::new(
            options.config.clone(),
            models.clone(),
            status,
            Arc::new(Metrics::new()),
        )?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = state.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = api::serve(listener, server, shutdown).await {
                warn!(error = %format!("{e:#}"), "the local API stopped");
            }
        });
        info!(%addr, "local API at http://{addr}/v1");
        Ok(Self {
            state,
            models,
            seeded,
            shape: shape.clone(),
            served: head.version(),
            _stop: stop,
        })
    }

    /// The metrics the API exports.
    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        self.state.metrics()
    }

    /// Copies the daemon's counters into the metrics and status.
    pub(super) fn update(
        &self,
        summary: &Summary,
        node: NodeReport,
        privacy: Option<PrivacyReport>,
        members: Option<Vec<MemberReport>>,
    ) {
        let peers = node.peers.len();
        let m = self.metrics();
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&m.rounds_closed, summary.rounds_closed);
        set(&m.rounds_adopted, summary.rounds_adopted);
        set(&m.rounds_failed, summary.rounds_failed);
        set(&m.probe_checked, summary.probe_checked);
        set(&m.probe_refused, summary.probe_refused);
        set(&m.contributions, summary.contributions);
        set(&m.deltas_accepted, summary.accepted);
        set(&m.bytes_sent, summary.bytes_sent);
        set(&m.bytes_received, summary.bytes_received);
        set(&m.peers, peers as u64);
        set(&m.head_round, summary.head_round);
        for (reason, n) in &summary.rejected {
            m.set_rejected(reason, *n);
        }
        m.set_privacy_spent(summary.epsilon, summary.rho_spent);
        self.state.update_status(|s| {
            s.peers = Some(peers as u64);
            if let Some(c) = s.community.as_mut() {
                c.head_round = summary.head_round;
                c.head_version = Some(summary.head_version.clone());
            }
            s.node = Some(node);
            if let Some(p) = privacy {
                s.privacy = Some(p);
            }
            if let Some(m) = members {
                s.members = m;
            }
        });
    }

    /// Serves the community version `head` (round `round`) from the next request on, when it
    /// is not the one served. The models are rebuilt on a blocking thread; requests already
    /// running finish on the version they started with.
    pub(super) fn serve_head(&mut self, round: u64, head: &State) {
        let version = head.version();
        if version == self.served {
            return;
        }
        let Some(seeded) = &self.seeded else {
            return;
        };
        let weights = match bridge::weights_from_state(seeded, head, &self.shape) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot serve the new community version");
                return;
            }
        };
        self.served = version;
        let models = self.models.clone();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || match models.with_community(round, weights) {
            Ok(models) => {
                state.set_models(models);
                info!(round, version = %version.short(), "serving the new community version");
            }
            Err(e) => warn!(error = %format!("{e:#}"), "cannot serve the new community version"),
        });
    }
}
