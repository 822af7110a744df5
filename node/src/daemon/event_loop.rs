//! The daemon's event loop: see the [module docs](super) for what happens in a round.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use burn::tensor::Device;
use hearth_federation::secagg::Engine;
use hearth_federation::{Accepted, Community, Config, Output, Phase, PhaseClock, Reason, State};
use hearth_models::{AdapterWeights, Llama};
use hearth_protocol::{
    Certificate, Hash32, Kind, Manifest, MemberId, Payload, Period, PrivacyMode, Signed, Stamp,
    decode_untrusted, encode,
};
use hearth_training::data::{Dataset, HELD_OUT_FRACTION};
use hearth_training::{Budget, Ledger, Noise};
use libp2p::{Multiaddr, PeerId};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::contribute::{self, Contribution, Job, Trained};
use super::fork::{self, Fork};
use super::persist::{self, WireRecord};
use super::serving::Serving;
use super::sync::{self, MAX_CERTIFICATES, Request, Response};
use super::{Options, Summary};
use crate::home::{Home, unix_now};
use crate::network::{self, Client, NetConfig, NetEvent, Topic, Validation};
use crate::report::{self, NodeReport, PrivacyReport};
use crate::{bridge, documents};

/// Records of past versions kept in memory.
const KEEP_RECORDS: usize = 1024;
/// How often bootstrap peers are dialed again while no peer is connected.
const REDIAL: Duration = Duration::from_secs(3);
/// How often the API's member list is rebuilt from the store.
const MEMBERS_REPORT: Duration = Duration::from_secs(5);
/// Rounds of signed deltas kept to serve peers that catch up.
const KEEP_DELTA_ROUNDS: u64 = 64;

/// Results of work done off the loop.
enum Internal {
    Status(PeerId, anyhow::Result<Response>),
    Fetched {
        peer: PeerId,
        round: u64,
        target: u64,
        result: anyhow::Result<Option<(WireRecord, Vec<Vec<u8>>)>>,
    },
    Missing {
        round: u64,
        envelopes: Vec<Vec<u8>>,
    },
    /// A distributed-mode job trained a delta (released later, at the round's calibration).
    Trained(Box<anyhow::Result<Trained>>),
    /// A contribution was released (local mode: right after training).
    Released(Box<anyhow::Result<Contribution>>),
    /// A peer's chain was walked back to where it left ours.
    Fork(PeerId, anyhow::Result<Option<Fork>>),
}

/// What the node trains with, when it contributes.
struct Trainable {
    model: Llama,
    seeded: AdapterWeights,
    data: Arc<Dataset>,
}

struct Node {
    opts: Options,
    home: Home,
    manifest: Manifest,
    certificate: Signed<Certificate>,
    me: MemberId,
    community: Community,
    client: Client,
    internal: mpsc::Sender<Internal>,
    trainable: Option<Trainable>,
    ledger: Ledger,
    rho_per_release: f64,
    training: bool,
    releasing: bool,
    trained: Option<Trained>,
    ready: Option<Contribution>,
    submitted: BTreeSet<u64>,
    nonce: u64,
    syncing: bool,
    peer_heads: HashMap<PeerId, u64>,
    connected: BTreeSet<PeerId>,
    cancel: Arc<AtomicBool>,
    capture: Option<std::fs::File>,
    summary: Summary,
    published_certificate_round: Option<u64>,
    wrong_source: u64,
    bootstrap: Vec<Multiaddr>,
    last_dial: Instant,
    last_release_secs: f64,
    serving: Option<Serving>,
    reported_releases: Option<usize>,
    last_members_report: Instant,
    forking: bool,
    /// Peer heads already checked for a fork (bounded; cleared when full).
    fork_checked: BTreeSet<(PeerId, Hash32)>,
}

fn peer_of(member: &MemberId) -> Option<PeerId> {
    PeerId::from_bytes(&member.to_peer_id_bytes()).ok()
}

fn topic_of(kind: Kind) -> Topic {
    match kind {
        Kind::Delta | Kind::Masked => Topic::Deltas,
        Kind::Version => Topic::Versions,
        _ => Topic::Rounds,
    }
}

/// Runs the daemon until `shutdown` completes, the `--rounds` limit is reached or the runtime
/// limit passes; returns (and writes, if asked) the summary.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let home = Home::open(&opts.home, &opts.unlock)?;
    let me = home.member_id();
    let span = info_span!("node", member = %me.short());
    async move {
        let (mut node, mut events, mut internal) = Node::start(opts, home)?;
        if let Some(api) = node.opts.api.clone() {
            let serving = Serving::start(
                &node.home,
                &api,
                node.opts.model.as_deref(),
                &node.manifest.lora,
                node.community.head(),
            )
            .await?;
            node.serving = Some(serving);
        }
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down");
                    break;
                }
                _ = ticker.tick() => {
                    let now = unix_now();
                    node.on_tick(now).await?;
                    if node.done(now) || node.opts.max_runtime.is_some_and(|d| started.elapsed() >= d) {
                        info!("stopping: run limit reached");
                        break;
                    }
                }
                Some(event) = events.recv() => node.on_event(event).await,
                Some(msg) = internal.recv() => node.on_internal(msg).await?,
            }
        }
        node.cancel.store(true, Ordering::Relaxed);
        node.finish()
    }
    .instrument(span)
    .await
}

impl Node {
    fn start(
        opts: Options,
        home: Home,
    ) -> anyhow::Result<(Self, mpsc::Receiver<NetEvent>, mpsc::Receiver<Internal>)> {
        let signed = home.manifest()?.context(
            "this node is in no community: `hearth join <invite>` or `hearth community create` first",
        )?;
        let certificate = home
            .certificate()?
            .context("this node has no member certificate")?;
        let manifest = signed.body.clone();
        if !matches!(manifest.schedule.period, Period::Every { .. }) {
            bail!(
                "`hearth node` needs a community with a round period (created with --round-secs > 0)"
            );
        }
        let now = unix_now();
        let me = home.member_id();
        let mut community =
            Community::new(&signed, bridge::genesis(&manifest.lora), Config::default())?;
        if manifest.privacy.mode == PrivacyMode::Distributed {
            // Secrets of this node's secure-aggregation members; fresh at every start (a node that
            // restarts mid-round has dropped out of that round anyway).
            let mut secret = [0u8; 32];
            crate::secrets::random_fill(&mut secret)?;
            community = community.with_secure_aggregation(Box::new(Engine::new(me, secret)));
        }
        if let Some(set) = &manifest.aggregation.probe {
            // Every candidate version is evaluated on the probe text before it is applied, so a
            // node of such a community needs the base model even when it does not train.
            let path = crate::model::resolve_model_path(opts.model.as_deref()).context(
                "this community checks every version on its probe set: the node needs the base model",
            )?;
            if let Some(probe) = crate::probe::ModelProbe::load(&manifest, &path)? {
                info!(
                    tokens = probe.tokens(),
                    max_increase = set.max_increase,
                    "community probe set loaded"
                );
                community = community.with_probe(Box::new(probe));
            }
        }
        community
            .add_certificate(&certificate, now)
            .context("this node's own certificate is not valid")?;
        persist::put_certificate(&home.store, &certificate)?;
        for c in persist::certificates(&home.store)? {
            if let Err(e) = community.add_certificate(&c, now) {
                debug!(member = %c.body.member, error = %e, "stored certificate no longer valid");
            }
        }
        if let Some(list) = report::load_revocations(&home.store)? {
            community
                .apply_revocations(&list)
                .context("the stored revocation list is not valid")?;
        }
        if let Some((round, state, recent)) =
            persist::load_head(&home.store, &manifest.lora, KEEP_RECORDS)?
        {
            info!(round, version = %state.version().short(), "restored the community head");
            community.restore(round, state, recent)?;
        }
        let p = &manifest.privacy;
        let budget = Budget {
            rho: p.budget_rho,
            delta: p.delta,
        };
        let ledger = persist::load_ledger(&home.store, budget)?;
        // The distributed share is calibrated so that the group's sum carries the same noise: the
        // local ρ is the check before training; the release checks the exact cost.
        let rho_per_release = contribute::local_noise(&manifest)?.rho()?;
        let trainable = if opts.contribute {
            load_trainable(&opts, &home, &manifest)?
        } else {
            None
        };

        let key = libp2p::identity::Keypair::ed25519_from_bytes(home.key.seed())
            .context("converting the identity key")?;
        let mut bootstrap: Vec<Multiaddr> = opts.bootstrap.clone();
        for a in home.bootstrap()? {
            match a.parse() {
                Ok(addr) => bootstrap.push(addr),
                Err(e) => warn!(address = %a, error = %e, "ignoring a bad bootstrap address"),
            }
        }
        let max = manifest.limits.message_bytes();
        let config = NetConfig {
            listen: opts.listen.clone(),
            bootstrap: bootstrap.clone(),
            mdns: opts.mdns,
            max_transmit_size: max,
            max_sync_response: (max + 64 * 1024) as u64,
            max_sync_request: sync::MAX_REQUEST as u64,
            ..NetConfig::default()
        };
        let (client, events, _task) = network::spawn(key, &community.id().to_string(), config)
            .context("starting the network")?;
        let (tx, rx) = mpsc::channel(64);
        let capture = match &opts.capture {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            None => None,
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let summary = Summary {
            member: me.to_string(),
            community: community.id().to_string(),
            delta: p.delta,
            ..Summary::default()
        };
        info!(community = %community.id().short(), round = community.head_round(), contribute = trainable.is_some(), "node started");
        Ok((
            Node {
                opts,
                home,
                manifest,
                certificate,
                me,
                community,
                client,
                internal: tx,
                trainable,
                ledger,
                rho_per_release,
                training: false,
                releasing: false,
                trained: None,
                ready: None,
                submitted: BTreeSet::new(),
                nonce,
                syncing: false,
                peer_heads: HashMap::new(),
                connected: BTreeSet::new(),
                cancel: Arc::new(AtomicBool::new(false)),
                capture,
                summary,
                published_certificate_round: None,
                wrong_source: 0,
                bootstrap,
                last_dial: Instant::now(),
                last_release_secs: 0.0,
                serving: None,
                reported_releases: None,
                forking: false,
                fork_checked: BTreeSet::new(),
                last_members_report: Instant::now() - MEMBERS_REPORT,
            },
            events,
            rx,
        ))
    }

    fn capture(&mut self, bytes: &[u8]) {
        if let Some(f) = self.capture.as_mut() {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes();
            if let Err(e) = f.write_all(&len).and_then(|()| f.write_all(bytes)) {
                warn!(error = %e, "capture write failed");
            }
        }
    }

    fn clock(&self, round: u64) -> Option<PhaseClock> {
        let start =
            PhaseClock::scheduled_start(&self.manifest.schedule, self.manifest.created, round)?;
        Some(PhaseClock::new(
            &self.manifest.schedule,
            start,
            self.community.secure(),
        ))
    }

    /// Whether the `--rounds` limit is reached: the announce phase of the last round is over.
    fn done(&self, now: u64) -> bool {
        let Some(n) = self.opts.rounds else {
            return false;
        };
        self.clock(n).is_some_and(|c| now >= c.announce_end)
    }

    fn last_started(&self) -> u64 {
        self.community.round().map_or(0, |r| r.number())
    }

    fn round_open(&self) -> bool {
        self.community
            .round()
            .is_some_and(|r| r.outcome().is_none())
    }

    /// Dials the bootstrap peers again every few seconds while no peer is connected (a peer that
    /// was not listening yet when the node started, or a lost connection).
    async fn redial(&mut self) {
        if !self.connected.is_empty()
            || self.bootstrap.is_empty()
            || self.last_dial.elapsed() < REDIAL
        {
            return;
        }
        self.last_dial = Instant::now();
        for addr in self.bootstrap.clone() {
            if let Err(e) = self.client.dial(addr.clone()).await {
                debug!(%addr, error = %e, "dial failed");
            }
        }
    }

    /// The round to open now, if any: the next one after the head and the last one opened,
    /// once its start is at most [`start_lead`] away, unless its submit deadline has already
    /// passed (taking part is then impossible: peers' versions come by sync) or a catch-up is
    /// running (a round opened on a stale head is useless).
    fn due_round(&self, now: u64) -> Option<u64> {
        if self.round_open() || self.syncing || self.forking {
            return None;
        }
        let current = self.community.scheduled_round(now)?;
        let mut r = current
            .max(self.last_started() + 1)
            .max(self.community.head_round() + 1);
        if self.clock(r)?.submit_end <= now {
            r += 1;
        }
        let start = self.clock(r)?.start;
        // A node whose head is more than one round behind opens the round only at its start, not
        // early: peers that just closed the round before say so meanwhile (their hello when they
        // open this one) and it catches up first, instead of opening on a stale head.
        let lead = if self.community.head_round() + 1 < r {
            0
        } else {
            start_lead(&self.manifest)
        };
        let ok = now + lead >= start && self.opts.rounds.is_none_or(|n| r <= n);
        ok.then_some(r)
    }

    async fn start_due_round(&mut self, now: u64) -> anyhow::Result<()> {
        let Some(round) = self.due_round(now) else {
            return Ok(());
        };
        match self.community.start_round(round, now) {
            Ok(outputs) => {
                info!(round, parent = %self.community.head().version().short(), "round started");
                self.handle_outputs(outputs, now).await?;
                self.publish_certificate(round).await;
                self.hello_all().await;
            }
            Err(e) => warn!(round, error = %e, "could not start the round"),
        }
        Ok(())
    }

    async fn on_tick(&mut self, now: u64) -> anyhow::Result<()> {
        // A refused or failed store write (a full disk) stops the node with its cause, also when
        // the write was one whose failure is only logged (a peer's delta or certificate).
        self.home
            .store
            .check_writable()
            .context("stopping the node")?;
        self.redial().await;
        let ahead = self
            .peer_heads
            .iter()
            .max_by_key(|(_, h)| **h)
            .map(|(p, h)| (*p, *h));
        if let Some((peer, head)) = ahead {
            self.maybe_sync(peer, head);
        }
        self.start_due_round(now).await?;
        self.try_release(now);
        self.try_submit(now).await?;
        let outputs = self.community.tick(now);
        self.handle_outputs(outputs, now).await?;
        self.maybe_train(now);
        self.update_serving();
        Ok(())
    }

    /// Keeps the local API's metrics, status and community model up to date.
    fn update_serving(&mut self) {
        if self.serving.is_none() {
            return;
        }
        self.fill_summary();
        let peers: Vec<String> = self.connected.iter().map(ToString::to_string).collect();
        let node = NodeReport {
            peers,
            round: self.community.round().map(|r| r.number()),
            round_open: self.round_open(),
            training: self.training || self.releasing,
            contributions: self.summary.contributions,
            rounds_closed: self.summary.rounds_closed,
            rounds_adopted: self.summary.rounds_adopted,
            rounds_failed: self.summary.rounds_failed,
        };
        // The ledger and member list change rarely: rebuilt when they may have.
        let releases = self.ledger.records().len();
        let privacy = (self.reported_releases != Some(releases)).then(|| {
            self.reported_releases = Some(releases);
            PrivacyReport::new(report::mode_name(&self.manifest), &self.ledger)
        });
        let members = (self.last_members_report.elapsed() >= MEMBERS_REPORT).then(|| {
            self.last_members_report = Instant::now();
            report::members(&self.home, &node.peers.iter().cloned().collect())
        });
        let members = match members {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                warn!(error = %format!("{e:#}"), "listing members failed");
                None
            }
            None => None,
        };
        let round = self.community.head_round();
        let head = self.community.head();
        if let Some(serving) = self.serving.as_mut() {
            serving.update(&self.summary, node, privacy, members);
            serving.serve_head(round, head);
        }
    }

    /// Submits the ready contribution when the open round is in its submit phase, this member is
    /// in the cohort, and the contribution was trained from the round's parent.
    async fn try_submit(&mut self, now: u64) -> anyhow::Result<()> {
        let Some(round) = self.community.round() else {
            return Ok(());
        };
        let number = round.number();
        if round.outcome().is_some()
            || round.clock().phase_at(now) != Phase::Submit
            || !round.in_cohort(&self.me)
            || self.submitted.contains(&number)
        {
            return Ok(());
        }
        let parent = round.parent();
        let secure = self.community.secure();
        let Some(ready) = self
            .ready
            .take_if(|c| c.base_version == parent && (!secure || c.round == number))
        else {
            return Ok(());
        };
        self.submitted.insert(number);
        // The charge is on disk before anything is published.
        // The ledger names the round the release is published in: a contribution trained for a
        // later round goes out in the first round on its base version.
        let ledger = relabel_last(ready.ledger.clone(), number)?;
        persist::save_ledger(&self.home.store, &ledger)?;
        self.ledger = ledger;
        let delta = bridge::submission(
            &self.manifest,
            number,
            parent,
            &ready.quantized,
            ready.sample_count,
            ready.noise_std,
        )?;
        match self.community.submit_own(self.me, delta, now) {
            Ok(outputs) => {
                info!(
                    round = number,
                    steps = ready.steps,
                    tokens_per_sec = format!("{:.0}", ready.tokens_per_sec),
                    loss = ready.final_loss.map(|l| format!("{l:.3}")),
                    rho = ready.rho,
                    epsilon = format!("{:.2}", epsilon(&self.ledger)),
                    "contribution submitted"
                );
                self.summary.contributions += 1;
                self.handle_outputs(outputs, now).await?;
            }
            Err(rejection) => warn!(round = number, %rejection, "own contribution not accepted"),
        }
        Ok(())
    }

    /// Starts a contribution job when none is running or ready for the head, no round is
    /// waiting to close, the budget allows another release, and there is enough time before the
    /// next submit deadline.
    fn maybe_train(&mut self, now: u64) {
        if self.training || self.round_open() || self.cancel.load(Ordering::Relaxed) {
            return;
        }
        let Some(t) = self.trainable.as_ref() else {
            return;
        };
        let head = self.community.head().clone();
        let version = head.version();
        if self.releasing
            || self
                .ready
                .as_ref()
                .is_some_and(|c| c.base_version == version)
            || self
                .trained
                .as_ref()
                .is_some_and(|t| t.base_version == version)
        {
            return;
        }
        if self.ledger.check(self.rho_per_release).is_err() {
            return;
        }
        if let Some(max) = self.opts.train.max_memory_bytes
            && contribute::resident_bytes().is_some_and(|rss| rss > max)
        {
            return;
        }
        let Some(current) = self.community.scheduled_round(now) else {
            return;
        };
        // What the last release took, with room to spare, or the estimate before the first.
        let margin = release_margin(&self.manifest)
            .max(1.5 * self.last_release_secs)
            .min(self.manifest.schedule.submit_secs as f64 / 2.0);
        let first = current.max(self.last_started() + 1);
        let secure = self.community.secure();
        let Some((round, seconds)) = (first..first + 2).find_map(|r| {
            // Secure rounds release at the round's calibration, during its shares phase.
            let c = self.clock(r)?;
            let end = if secure { c.keys_end } else { c.submit_end };
            let secs = end.saturating_sub(now) as f64 - margin;
            (secs >= self.opts.train.min_seconds).then_some((r, secs))
        }) else {
            return;
        };
        if self.opts.rounds.is_some_and(|n| round > n) {
            return;
        }
        let job = Job {
            model: t.model.clone(),
            seeded: t.seeded.clone(),
            data: t.data.clone(),
            manifest: self.manifest.clone(),
            state: head,
            round,
            seconds: seconds.min(self.opts.train.max_seconds),
            settings: self.opts.train.clone(),
            ledger: self.ledger.clone(),
            cancel: self.cancel.clone(),
        };
        info!(
            round,
            seconds = format!("{:.0}", job.seconds),
            "training a contribution"
        );
        self.training = true;
        let tx = self.internal.clone();
        let secure = self.community.secure();
        tokio::task::spawn_blocking(move || {
            let msg = if secure {
                Internal::Trained(Box::new(contribute::train(job)))
            } else {
                Internal::Released(Box::new(contribute::run_local(job)))
            };
            let _ = tx.blocking_send(msg);
        });
    }

    /// Distributed mode: once the open round knows this member's group and its noise
    /// calibration, releases the trained delta with that share (off the loop).
    fn try_release(&mut self, now: u64) {
        if self.releasing || !self.community.secure() {
            return;
        }
        let Some(round) = self.community.round() else {
            return;
        };
        let (number, parent) = (round.number(), round.parent());
        if round.outcome().is_some()
            || round.clock().phase_at(now) > Phase::Submit
            || self.submitted.contains(&number)
            || self.ready.as_ref().is_some_and(|c| c.round == number)
        {
            return;
        }
        let Some(calibration) = self.community.calibration(&self.me) else {
            return;
        };
        let Some(trained) = self.trained.take_if(|t| t.base_version == parent) else {
            return;
        };
        self.releasing = true;
        let noise = Noise::Distributed(calibration.noise);
        let rate = self.manifest.schedule.sampling_rate;
        let ledger = self.ledger.clone();
        let tx = self.internal.clone();
        debug!(
            round = number,
            group = calibration.group.len(),
            "releasing with the group's noise share"
        );
        tokio::task::spawn_blocking(move || {
            let result = contribute::release_trained(trained, number, &noise, rate, ledger);
            let _ = tx.blocking_send(Internal::Released(Box::new(result)));
        });
    }

    async fn handle_outputs(&mut self, outputs: Vec<Output>, now: u64) -> anyhow::Result<()> {
        for output in outputs {
            match output {
                Output::Publish { round, payload } => self.publish(round, &payload, now).await?,
                Output::Closed(record) => {
                    self.commit_if_head(&record)?;
                    self.summary.rounds_closed += 1;
                    info!(round = record.round, version = %record.version.short(), inputs = record.inputs.len(), "round closed: new community version");
                    self.prune(record.round);
                }
                Output::Adopted { replaced, record } => {
                    self.commit_if_head(&record)?;
                    self.summary.rounds_adopted += 1;
                    info!(round = record.round, version = %record.version.short(), replaced = ?replaced.map(|h| h.short()), "adopted a peer's version");
                }
                Output::Failed { round, reason } => {
                    self.summary.rounds_failed += 1;
                    warn!(round, %reason, "round closed without an update");
                    // Peers that closed it may be ahead now: ask them (catch-up runs between
                    // rounds, before the next one opens on a stale head).
                    self.hello_all().await;
                }
                Output::Phase { round, phase } => debug!(round, phase = phase.name(), "phase"),
                Output::Rejected(rejection) => warn!(%rejection, "misbehaviour found later"),
                Output::Missing {
                    round,
                    version,
                    inputs,
                } => {
                    debug!(round, version = %version.short(), missing = inputs.len(), "fetching deltas of a peer's version");
                    self.fetch_missing(round, inputs).await;
                }
            }
        }
        Ok(())
    }

    /// Commits `record` with the head. A version superseded within the same step (a round
    /// closed and a peer's preferred version adopted at once, or two rounds adopted) is not the
    /// head any more: it is skipped, the later output commits the head (storing it with the
    /// wrong state used to stop the node).
    fn commit_if_head(&self, record: &hearth_federation::VersionRecord) -> anyhow::Result<()> {
        let head = self.community.head();
        if head.version() != record.version {
            warn!(round = record.round, version = %record.version.short(), head = %head.version().short(), "version superseded in the same step: not stored");
            return Ok(());
        }
        persist::commit_version(&self.home.store, record, head)
    }

    fn prune(&self, round: u64) {
        if round > KEEP_DELTA_ROUNDS
            && let Err(e) = persist::prune_deltas(&self.home.store, round - KEEP_DELTA_ROUNDS)
        {
            warn!(error = %e, "pruning old deltas failed");
        }
    }

    async fn publish(&mut self, round: u64, payload: &Payload, now: u64) -> anyhow::Result<()> {
        self.nonce = self.nonce.wrapping_add(1);
        let stamp = Stamp {
            community: self.community.id(),
            round,
            nonce: self.nonce,
            timestamp: now,
        };
        let bytes = encode(&self.home.key, stamp, payload, &self.manifest.limits)?;
        if let Payload::Delta(d) = payload {
            persist::put_delta(&self.home.store, round, &d.hash, &bytes)?;
        } else if sync::is_round_message(payload.kind()) {
            persist::put_round_message(&self.home.store, round, &bytes)?;
        }
        self.capture(&bytes);
        if let Err(e) = self.client.publish(topic_of(payload.kind()), bytes).await {
            warn!(kind = ?payload.kind(), error = %e, "publish failed");
        }
        Ok(())
    }

    async fn publish_certificate(&mut self, round: u64) {
        if self.published_certificate_round == Some(round) {
            return;
        }
        self.published_certificate_round = Some(round);
        let payload = Payload::Certificate(self.certificate.clone());
        if let Err(e) = self.publish(round, &payload, unix_now()).await {
            debug!(error = %e, "publishing the certificate failed");
        }
        // Every member relays the newest revocation list it holds, so it reaches the whole
        // community even while the admin is offline.
        match report::load_revocations(&self.home.store) {
            Ok(Some(list)) => {
                let payload = Payload::Revocations(list);
                if let Err(e) = self.publish(round, &payload, unix_now()).await {
                    debug!(error = %e, "publishing the revocation list failed");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %format!("{e:#}"), "reading the revocation list failed"),
        }
    }

    async fn on_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                id,
                propagation_source,
                source,
                data,
                ..
            } => {
                // A peer's tick may open the round a moment before ours.
                if let Err(e) = self.start_due_round(unix_now()).await {
                    warn!(error = %e, "starting a round failed");
                }
                let verdict = self.on_gossip(&data, propagation_source, source);
                if let Err(e) = self.client.validate(id, propagation_source, verdict).await {
                    warn!(error = %e, "reporting a validation failed");
                }
            }
            NetEvent::SyncRequest {
                peer,
                request,
                channel,
            } => {
                let response = self.answer(peer, &request);
                match sync::encode(&response) {
                    Ok(bytes) => {
                        self.capture(&bytes);
                        if let Err(e) = self.client.respond(channel, bytes).await {
                            debug!(error = %e, "answering a sync request failed");
                        }
                    }
                    Err(e) => warn!(error = %e, "encoding a sync answer failed"),
                }
            }
            NetEvent::PeerConnected(peer) => {
                self.connected.insert(peer);
                self.hello(peer);
                let round = self.last_started();
                self.publish_certificate(round).await;
            }
            NetEvent::PeerDisconnected(peer) => {
                self.connected.remove(&peer);
                self.peer_heads.remove(&peer);
            }
            NetEvent::Listening(addr) => {
                info!(%addr, peer = %self.client.peer_id(), "listening");
            }
        }
    }

    fn on_gossip(
        &mut self,
        data: &[u8],
        propagation_source: PeerId,
        source: Option<PeerId>,
    ) -> Validation {
        let now = unix_now();
        let message = match decode_untrusted(data, &self.manifest.limits, &self.community.id()) {
            Ok(m) => m,
            Err(_) => {
                // Counted (and explained) by the community.
                if let Err(r) = self.community.on_bytes(data, now) {
                    debug!(%propagation_source, rejection = %r, "undecodable gossip");
                }
                return Validation::Reject;
            }
        };
        let sender = message.header.sender;
        if source != peer_of(&sender) {
            self.wrong_source += 1;
            warn!(%sender, ?source, "envelope signer is not the gossip source");
            return Validation::Reject;
        }
        match self.community.on_message(&message, now) {
            Ok(Accepted::Delta { hash, .. }) => {
                if let Err(e) =
                    persist::put_delta(&self.home.store, message.header.round, &hash, data)
                {
                    warn!(error = %e, "storing a delta failed");
                }
                Validation::Accept
            }
            Ok(Accepted::Certificate { .. }) => {
                if let Payload::Certificate(c) = &message.payload
                    && let Err(e) = persist::put_certificate(&self.home.store, c)
                {
                    warn!(error = %e, "storing a certificate failed");
                }
                Validation::Accept
            }
            Ok(Accepted::Revocations { sequence }) => {
                if let Payload::Revocations(list) = &message.payload {
                    match report::store_revocations(&self.home.store, list) {
                        Ok(true) => info!(
                            sequence,
                            revoked = list.body.revoked.len(),
                            "new revocation list in force"
                        ),
                        Ok(false) => {}
                        Err(e) => {
                            warn!(error = %format!("{e:#}"), "storing a revocation list failed")
                        }
                    }
                }
                Validation::Accept
            }
            Ok(Accepted::SecureAggregation { .. }) => {
                if let Err(e) =
                    persist::put_round_message(&self.home.store, message.header.round, data)
                {
                    warn!(error = %e, "storing a secure-aggregation message failed");
                }
                Validation::Accept
            }
            Ok(_) => Validation::Accept,
            Err(rejection) => {
                let direct = Some(propagation_source) == peer_of(&sender);
                let reject = rejection.reason.is_misbehaviour()
                    || (direct
                        && matches!(rejection.reason, Reason::NotMember | Reason::WrongCommunity));
                if reject {
                    warn!(%rejection, "gossip rejected");
                    Validation::Reject
                } else {
                    debug!(%rejection, "gossip ignored");
                    Validation::Ignore
                }
            }
        }
    }

    fn answer(&mut self, peer: PeerId, bytes: &[u8]) -> Response {
        let request = match sync::decode_request(bytes) {
            Ok(r) => r,
            Err(e) => return Response::Error(e.to_string()),
        };
        let result: anyhow::Result<Response> = match request {
            Request::Hello {
                certificate,
                head_round,
            } => self.on_hello(peer, &certificate, head_round),
            Request::Record { round } => {
                persist::record(&self.home.store, round).map(Response::Record)
            }
            Request::Delta { round, hash } => persist::delta(&self.home.store, round, &hash)
                .map(|d| Response::Delta(d.map(ByteBuf::from))),
            Request::RoundMessages { round, from } => {
                persist::round_messages(&self.home.store, round)
                    .map(|all| sync::page(&all, from, self.manifest.limits.message_bytes()))
            }
        };
        result.unwrap_or_else(|e| Response::Error(e.to_string()))
    }

    fn on_hello(
        &mut self,
        peer: PeerId,
        certificate: &Signed<Certificate>,
        head_round: u64,
    ) -> anyhow::Result<Response> {
        if peer_of(&certificate.body.member) != Some(peer) {
            bail!("the certificate is not the asking peer's");
        }
        self.learn_certificate(certificate);
        self.peer_heads.insert(peer, head_round);
        let mut certificates = vec![self.certificate.clone()];
        certificates.extend(
            persist::certificates(&self.home.store)?
                .into_iter()
                .filter(|c| c.body.member != self.me)
                .take(MAX_CERTIFICATES - 1),
        );
        Ok(Response::Status {
            head_round: self.community.head_round(),
            head_version: self.community.head().version(),
            certificates,
        })
    }

    fn learn_certificate(&mut self, certificate: &Signed<Certificate>) {
        match self.community.add_certificate(certificate, unix_now()) {
            Ok(()) => {
                if let Err(e) = persist::put_certificate(&self.home.store, certificate) {
                    warn!(error = %e, "storing a certificate failed");
                }
            }
            Err(e) => debug!(member = %certificate.body.member, error = %e, "certificate refused"),
        }
    }

    fn hello(&mut self, peer: PeerId) {
        let request = Request::Hello {
            certificate: self.certificate.clone(),
            head_round: self.community.head_round(),
        };
        let Ok(bytes) = sync::encode(&request) else {
            return;
        };
        self.capture(&bytes);
        let client = self.client.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let result = match client.request(peer, bytes).await {
                Ok(b) => sync::decode_response(&b),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(Internal::Status(peer, result)).await;
        });
    }

    async fn hello_all(&mut self) {
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        for p in peers {
            self.hello(p);
        }
    }

    async fn on_internal(&mut self, msg: Internal) -> anyhow::Result<()> {
        match msg {
            Internal::Status(
                peer,
                Ok(Response::Status {
                    head_round,
                    head_version,
                    certificates,
                }),
            ) => {
                for c in certificates.iter().take(MAX_CERTIFICATES) {
                    self.learn_certificate(c);
                }
                self.peer_heads.insert(peer, head_round);
                self.maybe_sync(peer, head_round);
                self.check_fork(peer, head_round, head_version);
            }
            Internal::Fork(peer, result) => {
                self.forking = false;
                match result {
                    Ok(Some(fork)) => self.resolve_fork(fork)?,
                    Ok(None) => debug!(%peer, "the peer's head is on our chain"),
                    Err(e) => debug!(%peer, error = %e, "walking the peer's chain failed"),
                }
            }
            Internal::Status(peer, Ok(other)) => {
                debug!(%peer, answer = ?other, "unexpected answer to hello")
            }
            Internal::Status(peer, Err(e)) => debug!(%peer, error = %e, "hello failed"),
            Internal::Fetched {
                peer,
                round,
                target,
                result,
            } => {
                self.syncing = false;
                match result {
                    Ok(found) => self.apply_fetched(peer, round, target, found)?,
                    Err(e) => warn!(%peer, round, error = %e, "sync failed"),
                }
            }
            Internal::Missing { round, envelopes } => {
                let now = unix_now();
                for bytes in envelopes {
                    match self.community.on_bytes(&bytes, now) {
                        Ok(Accepted::Delta { hash, .. }) => {
                            persist::put_delta(&self.home.store, round, &hash, &bytes)?;
                        }
                        Ok(_) => {}
                        Err(r) => debug!(rejection = %r, "fetched delta refused"),
                    }
                }
                let outputs = self.community.tick(now);
                self.handle_outputs(outputs, now).await?;
            }
            Internal::Trained(result) => {
                self.training = false;
                match *result {
                    Ok(t) if t.base_version == self.community.head().version() => {
                        debug!(
                            round = t.round,
                            "contribution trained; released at the round's calibration"
                        );
                        self.trained = Some(t);
                    }
                    Ok(t) => debug!(
                        round = t.round,
                        "contribution trained on an old version: dropped"
                    ),
                    Err(e) => self.training_failed(&e),
                }
            }
            Internal::Released(result) => {
                self.training = false;
                self.releasing = false;
                match *result {
                    Ok(c) if c.base_version == self.community.head().version() => {
                        self.last_release_secs = c.release_secs;
                        debug!(
                            round = c.round,
                            release_secs = c.release_secs,
                            norm = c.norm,
                            clip = self.manifest.privacy.clip_norm,
                            "contribution ready"
                        );
                        self.ready = Some(c);
                    }
                    Ok(c) => {
                        self.last_release_secs = c.release_secs;
                        debug!(
                            round = c.round,
                            "contribution made on an old version: dropped, nothing charged"
                        );
                    }
                    Err(e) => self.training_failed(&e),
                }
            }
        }
        Ok(())
    }

    fn training_failed(&mut self, e: &anyhow::Error) {
        if self.cancel.load(Ordering::Relaxed) {
            debug!(error = %e, "training stopped");
        } else if let Some(m) = e.downcast_ref::<contribute::MemoryLimit>() {
            warn!(
                rss = m.rss,
                "over the memory limit: this round's contribution is abandoned"
            );
        } else if e
            .downcast_ref::<hearth_training::Error>()
            .is_some_and(|e| matches!(e, hearth_training::Error::BudgetExceeded { .. }))
        {
            info!("privacy budget spent: following the community without contributing");
        } else {
            warn!(
                error = format!("{e:#}"),
                "training failed; not contributing any more"
            );
            self.trainable = None;
        }
    }

    /// Starts fetching the next missed round from `peer` when it is ahead of us.
    fn maybe_sync(&mut self, peer: PeerId, peer_head: u64) {
        let ours = self.community.head_round();
        if self.syncing || peer_head <= ours || self.round_open() {
            return;
        }
        self.syncing = true;
        let round = ours + 1;
        info!(%peer, from = round, to = peer_head, "catching up");
        let client = self.client.clone();
        let tx = self.internal.clone();
        let capture = self.opts.capture.clone();
        let secure = self.community.secure().then_some(self.manifest.limits);
        tokio::spawn(async move {
            let result = fetch_round(&client, peer, round, capture, secure).await;
            let _ = tx
                .send(Internal::Fetched {
                    peer,
                    round,
                    target: peer_head,
                    result,
                })
                .await;
        });
    }

    fn apply_fetched(
        &mut self,
        peer: PeerId,
        round: u64,
        target: u64,
        found: Option<(WireRecord, Vec<Vec<u8>>)>,
    ) -> anyhow::Result<()> {
        if let Some((record, envelopes)) = found {
            let at = self.clock(round).map_or(unix_now(), |c| c.start);
            let parent: State = self.community.head().clone();
            let announcement =
                hearth_federation::VersionRecord::from(record.clone()).announcement();
            // Secure rounds are recomputed from their signed secure-aggregation messages.
            let secure = self.community.secure();
            let verified = if secure {
                self.community
                    .verify_secure_round(&parent, &envelopes, &announcement, at)
            } else {
                self.community
                    .verify_version(&parent, &envelopes, &announcement, at)
            };
            match verified {
                Ok((verified, state)) if verified.optimizer == record.optimizer => {
                    self.community.adopt(&verified, state)?;
                    for bytes in &envelopes {
                        if secure {
                            persist::put_round_message(&self.home.store, round, bytes)?;
                        } else if let Ok(m) =
                            decode_untrusted(bytes, &self.manifest.limits, &self.community.id())
                            && let Payload::Delta(d) = &m.payload
                        {
                            persist::put_delta(&self.home.store, round, &d.hash, bytes)?;
                        }
                    }
                    persist::commit_version(&self.home.store, &verified, self.community.head())?;
                    self.summary.rounds_adopted += 1;
                    info!(round, version = %verified.version.short(), "caught up: version fetched and verified");
                }
                Ok(_) => {
                    warn!(%peer, round, "fetched version's optimizer state does not match");
                    return Ok(());
                }
                Err(hearth_federation::Error::WrongParent { .. }) => {
                    // The peer's chain left ours before this round: a fork (§14.8).
                    self.start_fork_search(peer, target);
                    return Ok(());
                }
                Err(e) => {
                    warn!(%peer, round, error = %e, "fetched version does not verify");
                    return Ok(());
                }
            }
        }
        if round < target {
            self.maybe_sync(peer, target);
        }
        Ok(())
    }

    /// Looks for a fork when a peer's head is not the version this node holds for that round.
    fn check_fork(&mut self, peer: PeerId, head_round: u64, head_version: Hash32) {
        if head_round > self.community.head_round()
            || (head_round, head_version)
                == (self.community.head_round(), self.community.head().version())
        {
            // Ahead: the usual catch-up runs, and finds a fork if the parents do not match.
            return;
        }
        let ours = if head_round == 0 {
            Some(bridge::genesis(&self.manifest.lora).version())
        } else {
            self.community
                .chain()
                .find(|r| r.round == head_round)
                .map(|r| r.version)
        };
        if ours == Some(head_version) {
            return;
        }
        if self.fork_checked.len() >= 1024 {
            self.fork_checked.clear();
        }
        if self.fork_checked.insert((peer, head_version)) {
            self.start_fork_search(peer, head_round);
        }
    }

    /// Walks `peer`'s chain back from `peer_head` to where it left ours, off the loop.
    fn start_fork_search(&mut self, peer: PeerId, peer_head: u64) {
        if self.forking {
            return;
        }
        self.forking = true;
        let mut ours: std::collections::BTreeMap<Hash32, u64> = self
            .community
            .chain()
            .map(|r| (r.version, r.round))
            .collect();
        ours.insert(bridge::genesis(&self.manifest.lora).version(), 0);
        ours.insert(self.community.head().version(), self.community.head_round());
        let client = self.client.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let result = fork::find(&client, peer, peer_head, &ours).await;
            let _ = tx.send(Internal::Fork(peer, result)).await;
        });
    }

    /// Applies the fork rule: when the peer's chain wins, goes back to the fork point (its
    /// kept state) and catches up on the peer's chain, verifying each round.
    fn resolve_fork(&mut self, fork: Fork) -> anyhow::Result<()> {
        let (at, ancestor) = fork.ancestor;
        let Some(ours) = self.community.chain().find(|r| r.round > at).cloned() else {
            // This node is at the fork point itself: plain catch-up.
            self.maybe_sync(fork.peer, fork.peer_head);
            return Ok(());
        };
        if !fork.theirs.preferred_to(&ours) {
            info!(peer = %fork.peer, fork_round = at, ours = %ours.version.short(), theirs = %fork.theirs.version.short(), "a peer is on another chain; ours is preferred");
            return Ok(());
        }
        let state = if at == 0 {
            Some(bridge::genesis(&self.manifest.lora))
        } else {
            persist::state_at(&self.home.store, &self.manifest.lora, at)?
        };
        let Some(state) = state.filter(|s| s.version() == ancestor) else {
            warn!(
                fork_round = at,
                "the preferred chain left ours before the heads this node keeps; it stays on its chain (docs/PROTOCOL.md §14.8)"
            );
            return Ok(());
        };
        let recent: Vec<_> = self
            .community
            .chain()
            .filter(|r| r.round <= at)
            .cloned()
            .collect();
        warn!(peer = %fork.peer, fork_round = at, leaving = %ours.version.short(), joining = %fork.theirs.version.short(), "leaving our chain for the preferred one");
        self.community.restore(at, state, recent)?;
        persist::rollback(&self.home.store, at, self.community.head())?;
        self.summary.forks_left += 1;
        self.maybe_sync(fork.peer, fork.peer_head);
        Ok(())
    }

    async fn fetch_missing(&mut self, round: u64, inputs: Vec<Hash32>) {
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        let client = self.client.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let mut envelopes = Vec::new();
            for hash in inputs {
                for peer in &peers {
                    let Ok(bytes) = sync::encode(&Request::Delta { round, hash }) else {
                        continue;
                    };
                    if let Ok(answer) = client.request(*peer, bytes).await
                        && let Ok(Response::Delta(Some(d))) = sync::decode_response(&answer)
                    {
                        envelopes.push(d.into_vec());
                        break;
                    }
                }
            }
            let _ = tx.send(Internal::Missing { round, envelopes }).await;
        });
    }

    fn finish(mut self) -> anyhow::Result<Summary> {
        self.fill_summary();
        if let Some(path) = &self.opts.summary {
            std::fs::write(path, serde_json::to_vec_pretty(&self.summary)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        info!(
            head_round = self.summary.head_round,
            version = %self.community.head().version().short(),
            epsilon = format!("{:.2}", self.summary.epsilon),
            bytes_sent = self.summary.bytes_sent,
            "node stopped"
        );
        Ok(self.summary)
    }

    /// Brings the summary's totals up to date.
    fn fill_summary(&mut self) {
        let stats = self.client.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        self.summary.head_round = self.community.head_round();
        self.summary.head_version = self.community.head().version().to_string();
        self.summary.rho_spent = self.ledger.spent();
        self.summary.epsilon = epsilon(&self.ledger);
        self.summary.bytes_sent = load(&stats.gossip_bytes_sent) + load(&stats.sync_bytes_sent);
        self.summary.bytes_received =
            load(&stats.gossip_bytes_received) + load(&stats.sync_bytes_received);
        (self.summary.probe_checked, self.summary.probe_refused) = self.community.probe_counts();
        let counters = self.community.counters();
        self.summary.accepted = counters.accepted();
        self.summary.rejected = counters
            .iter()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect();
        if self.wrong_source > 0 {
            self.summary
                .rejected
                .push(("wrong_source".into(), self.wrong_source));
        }
    }
}

/// `ledger` with its last record (the release about to be published) labelled `round`.
fn relabel_last(ledger: Ledger, round: u64) -> anyhow::Result<Ledger> {
    let mut records = ledger.records().to_vec();
    match records.last_mut() {
        Some(last) if last.round != round => last.round = round,
        _ => return Ok(ledger),
    }
    Ok(Ledger::restore(ledger.budget(), records)?)
}

/// ε spent at the ledger's δ: OpenDP's conversion, or where it gives up (very large ρ) the
/// standard bound `ρ + 2√(ρ·ln(1/δ))`, which is never smaller.
fn epsilon(ledger: &Ledger) -> f64 {
    ledger.epsilon().unwrap_or_else(|_| {
        hearth_training::standard_epsilon(ledger.spent(), ledger.budget().delta)
    })
}

/// How long before its scheduled start a round is opened (so that a peer whose clock or timer
/// runs a little ahead does not see its first messages refused as future ones).
fn start_lead(m: &Manifest) -> u64 {
    match m.schedule.period {
        Period::Every { secs } => (secs / 4).clamp(1, 30),
        Period::OnDemand => 0,
    }
}

/// Seconds kept free before a submit deadline for the release (noise on every value).
/// OpenDP's exact samplers cost tens of microseconds per value on a busy machine; a training step
/// can overrun the time limit by one step. At most half the submit window.
fn release_margin(m: &Manifest) -> f64 {
    let estimate = 2.0 + m.lora.elements() as f64 * 80e-6;
    estimate.min(m.schedule.submit_secs as f64 / 2.0)
}

/// Fetches round `round`'s record and the signed deltas behind it from `peer` — or, for a
/// secure round (`secure` holds the community's limits), the round's signed secure-aggregation
/// messages.
async fn fetch_round(
    client: &Client,
    peer: PeerId,
    round: u64,
    capture: Option<std::path::PathBuf>,
    secure: Option<hearth_protocol::Limits>,
) -> anyhow::Result<Option<(WireRecord, Vec<Vec<u8>>)>> {
    let ask = |request: Request| {
        let client = client.clone();
        let capture = capture.clone();
        async move {
            let bytes = sync::encode(&request)?;
            if let Some(path) = capture {
                append_capture(&path, &bytes);
            }
            let answer = client.request(peer, bytes).await?;
            sync::decode_response(&answer)
        }
    };
    let record = match ask(Request::Record { round }).await? {
        Response::Record(r) => r,
        other => bail!("unexpected answer {other:?}"),
    };
    let Some(record) = record else {
        return Ok(None);
    };
    if record.round != round {
        bail!("asked for round {round}, got round {}", record.round);
    }
    if let Some(limits) = secure {
        let envelopes = sync::fetch_round_messages(ask, round, &limits).await?;
        return Ok(Some((record, envelopes)));
    }
    let mut envelopes = Vec::with_capacity(record.inputs.len());
    for hash in &record.inputs {
        match ask(Request::Delta { round, hash: *hash }).await? {
            Response::Delta(Some(d)) => envelopes.push(d.into_vec()),
            Response::Delta(None) => bail!("the peer does not hold delta {}", hash.short()),
            other => bail!("unexpected answer {other:?}"),
        }
    }
    Ok(Some((record, envelopes)))
}

fn append_capture(path: &std::path::Path, bytes: &[u8]) {
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes();
        let _ = f.write_all(&len).and_then(|()| f.write_all(bytes));
    }
}

/// Loads the base model for training, checks it is the community's, and reads the member's
/// documents. `None` (with a warning) when there is nothing to train on.
fn load_trainable(
    opts: &Options,
    home: &Home,
    manifest: &Manifest,
) -> anyhow::Result<Option<Trainable>> {
    let docs = documents::load(&home.store)?;
    if docs.is_empty() {
        warn!(
            "no private documents: run `hearth ingest <folder>`; following the community without contributing"
        );
        return Ok(None);
    }
    let path = crate::model::resolve_model_path(opts.model.as_deref())?;
    let device = Device::flex().autodiff();
    let (model, tokenizer, id) = crate::model::load_base(&path, opts.train.seq_len + 1, &device)?;
    if id != manifest.base_model.sha256 {
        bail!(
            "{} (sha256 {}) is not the community's base model {:?} (sha256 {})",
            path.display(),
            id,
            manifest.base_model.name,
            manifest.base_model.sha256
        );
    }
    bridge::check_model(&manifest.lora, model.config())?;
    let mut probe = model.clone();
    let slot = probe.add_adapter(bridge::lora_config(&manifest.lora)?)?;
    let seeded = probe.adapter_weights(slot)?;
    let full = Dataset::from_documents(&docs, &tokenizer, HELD_OUT_FRACTION)?;
    let data = Dataset::new(full.train().to_vec(), Vec::new());
    let windows = data.num_windows(opts.train.seq_len);
    if windows == 0 {
        warn!(
            tokens = data.train().len(),
            "too little private text for one training window; not contributing"
        );
        return Ok(None);
    }
    info!(
        documents = docs.len(),
        tokens = data.train().len(),
        windows,
        "private training data loaded"
    );
    Ok(Some(Trainable {
        model,
        seeded,
        data: Arc::new(data),
    }))
}
