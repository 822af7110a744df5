//! The scenario's rules: every key checked, the error naming it.

use super::*;

impl Scenario {
    /// Checks every rule; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(Error::scenario(key, reason));
        if self.name.trim().is_empty() {
            return bad("name", "is empty".into());
        }
        if !(2..=MAX_MEMBERS).contains(&self.members) {
            return bad(
                "members",
                format!("{} is outside [2, {MAX_MEMBERS}]", self.members),
            );
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return bad(
                "rounds",
                format!("{} is outside [1, {MAX_ROUNDS}]", self.rounds),
            );
        }
        if self.arms.is_empty() {
            return bad("arms", "names no arm".into());
        }
        for (i, a) in self.arms.iter().enumerate() {
            if self.arms[..i].contains(a) {
                return bad("arms", format!("{} is listed twice", a.name()));
            }
        }
        let span = self
            .rounds
            .saturating_add(1)
            .saturating_mul(self.schedule.period_secs);
        if span >= crate::world::CERTIFICATE_DAYS * 86_400 {
            return bad(
                "rounds",
                format!(
                    "{} rounds of {} s outlast the members' certificates ({} days)",
                    self.rounds,
                    self.schedule.period_secs,
                    crate::world::CERTIFICATE_DAYS
                ),
            );
        }
        self.validate_data()?;
        self.validate_model()?;
        self.validate_training()?;
        self.validate_privacy()?;
        self.validate_federation()?;
        self.validate_network()?;
        self.validate_eval()
    }

    fn validate_data(&self) -> Result<()> {
        let d = &self.data;
        if d.source == DataSource::Dirichlet {
            positive("data.alpha", d.alpha)?;
            at_least("data.speeches_per_member", d.speeches_per_member, 2)?;
        }
        at_least("data.max_train_chars", d.max_train_chars, 1)
    }

    fn validate_model(&self) -> Result<()> {
        let m = &self.model;
        for (key, v) in [
            ("model.layers", m.layers),
            ("model.hidden", m.hidden),
            ("model.intermediate", m.intermediate),
            ("model.heads", m.heads),
            ("model.kv_heads", m.kv_heads),
            ("model.lora_rank", m.lora_rank),
        ] {
            in_range(key, v, 1, 4096)?;
        }
        in_range("model.context", m.context, 2, 8192)?;
        if !m.hidden.is_multiple_of(m.heads) || !(m.hidden / m.heads).is_multiple_of(2) {
            return Err(Error::scenario(
                "model.heads",
                format!(
                    "width {} is not a multiple of {} heads of even size",
                    m.hidden, m.heads
                ),
            ));
        }
        if !m.heads.is_multiple_of(m.kv_heads) {
            return Err(Error::scenario(
                "model.kv_heads",
                format!("{} heads are not a multiple of {}", m.heads, m.kv_heads),
            ));
        }
        positive("model.lora_alpha", m.lora_alpha)?;
        if m.targets.is_empty() {
            return Err(Error::scenario("model.targets", "names no layer"));
        }
        for (i, t) in m.targets.iter().enumerate() {
            if m.targets[..i].contains(t) {
                return Err(Error::scenario(
                    "model.targets",
                    format!("{} is listed twice", t.name()),
                ));
            }
        }
        if m.path.is_some() && m.base != BaseKind::Gguf {
            return Err(Error::scenario(
                "model.path",
                "only a `gguf` base is read from a file",
            ));
        }
        if m.base == BaseKind::Pretrained {
            let p = &m.pretrain;
            if p.plays.is_empty() {
                return Err(Error::scenario("model.pretrain.plays", "names no play"));
            }
            in_range("model.pretrain.steps", p.steps, 1, 1_000_000)?;
            in_range("model.pretrain.batch_size", p.batch_size, 1, 1024)?;
            in_range("model.pretrain.seq_len", p.seq_len, 1, m.context)?;
            positive("model.pretrain.learning_rate", p.learning_rate)?;
        }
        Ok(())
    }

    fn validate_training(&self) -> Result<()> {
        let t = &self.training;
        in_range("training.local_steps", t.local_steps, 1, 100_000)?;
        in_range("training.batch_size", t.batch_size, 1, 1024)?;
        in_range("training.seq_len", t.seq_len, 1, self.model.context)?;
        positive("training.learning_rate", t.learning_rate)?;
        if let Some(c) = t.central_steps {
            in_range("training.central_steps", c, 1, 1_000_000)?;
        }
        Ok(())
    }

    fn validate_privacy(&self) -> Result<()> {
        let p = &self.privacy;
        positive("privacy.clip_norm", p.clip_norm)?;
        if !(p.delta > 0.0 && p.delta < 0.1) {
            return Err(Error::scenario(
                "privacy.delta",
                format!("{} is outside (0, 0.1)", p.delta),
            ));
        }
        match (p.noise_multiplier, p.epsilon) {
            (Some(_), Some(_)) => Err(Error::scenario(
                "privacy.epsilon",
                "give either noise_multiplier or epsilon, not both",
            )),
            (Some(s), None) if !(s.is_finite() && (0.0..=1e6).contains(&s)) => {
                Err(Error::scenario(
                    "privacy.noise_multiplier",
                    format!("{s} is outside [0, 1e6]"),
                ))
            }
            (None, Some(e)) if e.is_nan() || e <= 0.0 => Err(Error::scenario(
                "privacy.epsilon",
                format!("{e} is not positive"),
            )),
            _ => Ok(()),
        }
    }

    fn validate_federation(&self) -> Result<()> {
        let a = &self.aggregation;
        if !(0.0..0.5).contains(&a.trim_beta) {
            return Err(Error::scenario(
                "aggregation.trim_beta",
                format!("{} is outside [0, 0.5)", a.trim_beta),
            ));
        }
        positive("aggregation.server_lr", a.server_lr)?;
        if a.probe.enabled {
            let max = hearth_protocol::MAX_PROBE_BYTES as usize;
            if !(2..=max).contains(&a.probe.bytes) {
                return Err(Error::scenario(
                    "aggregation.probe.bytes",
                    format!("{} is outside [2, {max}]", a.probe.bytes),
                ));
            }
            let top = hearth_protocol::MAX_PROBE_INCREASE;
            if !(a.probe.max_increase > 0.0 && a.probe.max_increase <= top) {
                return Err(Error::scenario(
                    "aggregation.probe.max_increase",
                    format!("{} is outside (0, {top}]", a.probe.max_increase),
                ));
            }
            if self.model.base == BaseKind::Pretrained
                && self.model.pretrain.plays.contains(&a.probe.play)
            {
                return Err(Error::scenario(
                    "aggregation.probe.play",
                    format!("{:?} is a pre-training play", a.probe.play),
                ));
            }
        }
        if !(0.0..1.0).contains(&a.momentum) {
            return Err(Error::scenario(
                "aggregation.momentum",
                format!("{} is outside [0, 1)", a.momentum),
            ));
        }
        let s = &self.schedule;
        if !(s.submit_secs > 0
            && s.submit_secs < s.unmask_secs
            && s.unmask_secs < s.announce_secs
            && s.announce_secs <= s.period_secs)
        {
            return Err(Error::scenario(
                "schedule.submit_secs",
                format!(
                    "deadlines {} < {} < {} ≤ period {} must hold",
                    s.submit_secs, s.unmask_secs, s.announce_secs, s.period_secs
                ),
            ));
        }
        probability("schedule.sampling_rate", s.sampling_rate)?;
        if s.sampling_rate == 0.0 {
            return Err(Error::scenario("schedule.sampling_rate", "is zero"));
        }
        in_range(
            "schedule.min_contributions",
            s.min_contributions as usize,
            1,
            4096,
        )?;
        let c = &self.churn;
        probability("churn.dropout", c.dropout)?;
        probability("churn.straggler", c.straggler)?;
        if c.compute_secs[0] > c.compute_secs[1] {
            return Err(Error::scenario(
                "churn.compute_secs",
                "the minimum is above the maximum",
            ));
        }
        let at = &self.attack;
        if !(0.0..=0.5).contains(&at.fraction) {
            return Err(Error::scenario(
                "attack.fraction",
                format!("{} is outside [0, 0.5]", at.fraction),
            ));
        }
        positive("attack.boost", at.boost)?;
        for (key, phrase) in [
            ("attack.trigger", &at.trigger),
            ("attack.target", &at.target),
        ] {
            in_range(key, phrase.len(), 1, MAX_PHRASE_BYTES)?;
        }
        in_range("attack.poison_every", at.poison_every, 1, 1 << 20)?;
        let probe = crate::backdoor::CONTEXT_BYTES + at.trigger.len() + at.target.len();
        if probe > self.model.context {
            return Err(Error::scenario(
                "attack.target",
                format!(
                    "context + trigger + target ({probe} bytes) exceed model.context {}",
                    self.model.context
                ),
            ));
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<()> {
        let n = &self.network;
        if let Some(f) = n.full_nodes {
            in_range("network.full_nodes", f, 1, self.members)?;
            if self.privacy.mode == PrivacyModeSpec::Distributed && f < self.members {
                return Err(Error::scenario(
                    "network.full_nodes",
                    "distributed mode runs a full node for every member",
                ));
            }
        }
        if n.latency_ms[0] > n.latency_ms[1] {
            return Err(Error::scenario(
                "network.latency_ms",
                "the minimum is above the maximum",
            ));
        }
        if n.latency_ms[1] > 1000 * self.schedule.submit_secs {
            return Err(Error::scenario(
                "network.latency_ms",
                "the maximum is past the submit deadline",
            ));
        }
        probability("network.loss", n.loss)?;
        if n.transport == TransportKind::Libp2p {
            in_range("members", self.members, 2, crate::p2p::MAX_NODES)?;
            if self.full_nodes() < self.members {
                return Err(Error::scenario(
                    "network.full_nodes",
                    "the libp2p transport runs a full node for every member",
                ));
            }
            if n.loss > 0.0 || !n.partitions.is_empty() {
                return Err(Error::scenario(
                    "network.transport",
                    "loss and partitions are modelled by the memory transport only",
                ));
            }
            in_range("network.settle_ms", n.settle_ms as usize, 1, 600_000)?;
        }
        for (i, p) in n.partitions.iter().enumerate() {
            let key = format!("network.partitions[{i}]");
            if p.rounds[0] > p.rounds[1] || p.rounds[0] == 0 {
                return Err(Error::scenario(
                    key,
                    "rounds must be [first, last] with 1 ≤ first ≤ last",
                ));
            }
            if !(2..=self.members).contains(&p.groups) {
                return Err(Error::scenario(
                    key,
                    format!("{} groups for {} members", p.groups, self.members),
                ));
            }
        }
        Ok(())
    }

    fn validate_eval(&self) -> Result<()> {
        let e = &self.eval;
        in_range("eval.every", e.every as usize, 1, MAX_ROUNDS as usize)?;
        in_range(
            "eval.max_tokens_per_member",
            e.max_tokens_per_member,
            2,
            1 << 20,
        )?;
        if let Some(m) = e.members {
            in_range("eval.members", m, 1, self.members)?;
        }
        Ok(())
    }
}

fn positive(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::scenario(
            key,
            format!("{v} is not a positive number"),
        ))
    }
}

fn probability(key: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::scenario(key, format!("{v} is outside [0, 1]")))
    }
}

fn in_range(key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(Error::scenario(key, format!("{v} is outside [{lo}, {hi}]")))
    }
}

fn at_least(key: &str, v: usize, lo: usize) -> Result<()> {
    in_range(key, v, lo, usize::MAX)
}
