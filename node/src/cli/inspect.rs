//! `hearth status`, `hearth peers`, `hearth budget` and `hearth revoke`.
//!
//! A running node holds its store's lock, so the first three ask its local API (`/status`)
//! first; when no node answers they open the store and say the node is stopped.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hearth_protocol::MemberId;
use serde::Deserialize;

use super::HomeArgs;
use super::serve::ConfigArgs;
use crate::daemon::persist;
use crate::home::{Home, unix_now, unlock_from};
use crate::report::{self, MemberReport, NodeReport, PrivacyReport};

/// Arguments of `hearth status`, `hearth peers` and `hearth budget`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// The configuration file (for the API address of a running node).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address of the running node's API [default: the config file's api.addr].
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<std::net::SocketAddr>,
    /// Bearer token of the running node's API.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HEARTH_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the reports are made from.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct Snapshot {
    #[serde(default)]
    running: bool,
    member: Option<String>,
    community: Option<CommunitySnapshot>,
    node: Option<NodeReport>,
    privacy: Option<PrivacyReport>,
    #[serde(default)]
    members: Vec<MemberReport>,
    #[serde(default)]
    personal_adapter: bool,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct CommunitySnapshot {
    id: String,
    name: String,
    head_round: u64,
    head_version: Option<String>,
}

impl InspectArgs {
    /// The running node's status, else the stored one.
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let path = self.home.path()?;
        let file = self.config.load(&path)?;
        let addr = match self.api_addr {
            Some(a) => a,
            None => file.api_config(None).map(|c| c.addr)?,
        };
        let token = self.api_token.clone().or(file.api.token.clone());
        // The node answering at the API address is taken to be this home's (one node per
        // address; `--api-addr` picks another).
        if let Some(mut live) = ask_node(addr, token.as_deref())
            && live.node.is_some()
        {
            live.running = true;
            return Ok(live);
        }
        let home = Home::open(&path, &unlock_from(self.home.key_file.as_deref(), false)?)?;
        stored(&home)
    }
}

/// `/status` of a node at `addr`, if one answers within a second.
fn ask_node(addr: std::net::SocketAddr, token: Option<&str>) -> Option<Snapshot> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut request = agent.get(format!("http://{addr}/status"));
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let mut response = request.call().ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    serde_json::from_str(&body).ok()
}

/// The status of a stopped node, from its store.
fn stored(home: &Home) -> anyhow::Result<Snapshot> {
    let mut snap = Snapshot {
        member: Some(home.member_id().to_string()),
        personal_adapter: crate::local::load_personal(home)?.is_some(),
        ..Snapshot::default()
    };
    let Some(signed) = home.manifest()? else {
        return Ok(snap);
    };
    let manifest = &signed.body;
    let id = signed
        .verify()
        .context("the stored manifest does not verify")?;
    let head = persist::load_head(&home.store, &manifest.lora, 1)?;
    snap.community = Some(CommunitySnapshot {
        id: id.to_string(),
        name: manifest.name.clone(),
        head_round: head.as_ref().map_or(0, |(r, _, _)| *r),
        head_version: head.map(|(_, s, _)| s.version().to_string()),
    });
    snap.privacy = Some(PrivacyReport::load(&home.store, manifest)?);
    snap.members = report::members(home, &BTreeSet::new())?;
    Ok(snap)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs `hearth status`.
pub fn status(args: InspectArgs) -> anyhow::Result<()> {
    let snap = args.snapshot()?;
    if args.json {
        return print_json(&snap);
    }
    println!("member      {}", snap.member.as_deref().unwrap_or("?"));
    let Some(c) = &snap.community else {
        println!("community   none yet: `hearth join <invite>` or `hearth community create`");
        return Ok(());
    };
    println!("community   {} ({})", c.name, short(&c.id));
    match &c.head_version {
        Some(v) if c.head_round > 0 => {
            println!("version     round {} ({})", c.head_round, short(v));
        }
        _ => println!("version     genesis (no round closed yet)"),
    }
    match &snap.node {
        Some(n) => {
            println!(
                "node        running: {} peer(s), round {}{}, {}",
                n.peers.len(),
                n.round.map_or("-".into(), |r| r.to_string()),
                if n.round_open { " open" } else { " closed" },
                if n.training {
                    "training"
                } else {
                    "not training"
                }
            );
            println!(
                "rounds      {} closed here, {} adopted from peers, {} failed; {} contribution(s)",
                n.rounds_closed, n.rounds_adopted, n.rounds_failed, n.contributions
            );
        }
        None => println!("node        stopped (`hearth node` runs it)"),
    }
    if let Some(p) = &snap.privacy {
        println!(
            "privacy     ε {:.2} of {:.2} spent (δ = {:e}, {} mode); `hearth budget` for details",
            p.epsilon, p.epsilon_budget, p.delta, p.mode
        );
    }
    if snap.node.is_none() {
        println!(
            "personal    {}",
            if snap.personal_adapter {
                "adapter trained"
            } else {
                "no adapter yet (`hearth train`)"
            }
        );
    }
    Ok(())
}

/// Runs `hearth peers`.
pub fn peers(args: InspectArgs) -> anyhow::Result<()> {
    let snap = args.snapshot()?;
    if args.json {
        return print_json(&snap.members);
    }
    let now = unix_now();
    if let Some(n) = &snap.node {
        println!("{} peer(s) connected now", n.peers.len());
        let members: BTreeSet<&str> = snap.members.iter().map(|m| m.id.as_str()).collect();
        for p in n.peers.iter().filter(|p| !members.contains(p.as_str())) {
            println!("  {p}  (connected; no certificate seen yet)");
        }
    } else {
        println!("node stopped: the members this node knows of");
    }
    for m in &snap.members {
        let mut notes = Vec::new();
        if snap.member.as_deref() == Some(m.id.as_str()) {
            notes.push("this node".to_string());
        }
        if m.connected {
            notes.push("connected".to_string());
        }
        if m.revoked {
            notes.push("REVOKED".to_string());
        }
        if m.expires <= now {
            notes.push("certificate expired".to_string());
        } else {
            notes.push(format!(
                "certificate valid {} more day(s)",
                (m.expires - now) / 86_400
            ));
        }
        println!("  {}  [{}]  {}", m.id, m.roles.join(", "), notes.join("; "));
    }
    Ok(())
}

/// Runs `hearth budget`.
pub fn budget(args: InspectArgs) -> anyhow::Result<()> {
    let snap = args.snapshot()?;
    let p = snap
        .privacy
        .context("this node is in no community yet: there is no privacy budget to show")?;
    if args.json {
        return print_json(&p);
    }
    let left = (p.budget_rho - p.spent_rho).max(0.0);
    println!(
        "privacy budget ({} mode): ε {:.3} spent of {:.3} at δ = {:e}",
        p.mode, p.epsilon, p.epsilon_budget, p.delta
    );
    println!(
        "zCDP ρ {:.6} spent of {:.6}; {:.6} left ({:.1}%)",
        p.spent_rho,
        p.budget_rho,
        left,
        100.0 * left / p.budget_rho
    );
    if let Some(last) = p.releases.last() {
        let n = (left / last.rho).floor();
        println!(
            "{} release(s) so far; at the last one's cost (ρ {:.6}) {n} more fit",
            p.releases.len(),
            last.rho
        );
        println!("  round  ρ charged  mechanism");
        for r in &p.releases {
            println!(
                "  {:>5}  {:.6}   {}",
                r.round,
                r.rho,
                serde_json::to_string(&r.mechanism)?
            );
        }
    } else {
        println!("no release yet: nothing about your data has left this machine");
    }
    Ok(())
}

/// Arguments of `hearth revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The member to revoke (its id, as `hearth whoami` prints it).
    pub member: String,
    /// Where the admin's store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Runs `hearth revoke`: the admin signs a new revocation list; its node publishes it.
pub fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let member: MemberId = args.member.parse().map_err(|e| {
        anyhow::anyhow!(
            "{:?} is not a member id ({e}); `hearth whoami` prints one",
            args.member
        )
    })?;
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let list = report::revoke(&home, member)?;
    println!(
        "{member} is revoked (revocation list #{}, {} member(s)); your node publishes the list \
         when it next runs, and every member relays it: their deltas are refused from then on",
        list.body.sequence,
        list.body.revoked.len()
    );
    Ok(())
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}
