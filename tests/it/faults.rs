//! Network partition over real libp2p: a 6-member community split 3+3 (each side knows only its
//! own bootstrap peer, mDNS off), both sides run rounds on their own, then the partition heals
//! (the second side restarts knowing the first side's bootstrap peer too) and rounds go on.

use std::collections::BTreeSet;

use hearth_node::daemon::{Summary, run};
use hearth_protocol::PrivacyMode;

use crate::community::{Member, community, tiny_model};

/// A running daemon.
type Node = tokio::task::JoinHandle<Result<Summary, Box<dyn std::error::Error + Send + Sync>>>;

/// Runs `members` (each bootstrapping to `boot`) until `rounds`; their summaries.
async fn side(
    members: &[Member],
    model: &std::path::Path,
    boot: &[libp2p::Multiaddr],
    rounds: u64,
) -> Vec<Node> {
    members
        .iter()
        .map(|m| {
            let b = boot.iter().filter(|a| **a != m.addr()).cloned().collect();
            let opts = m.options(model, b, rounds);
            tokio::spawn(async move { Ok(run(opts, std::future::pending()).await?) })
        })
        .collect()
}

async fn summaries(tasks: Vec<Node>) -> Vec<Summary> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().unwrap());
    }
    out
}

fn heads(s: &[Summary]) -> BTreeSet<(u64, String)> {
    s.iter()
        .map(|s| (s.head_round, s.head_version.clone()))
        .collect()
}

/// Rounds 1–2 split 3+3, then healed for rounds 3–5; the summaries of side A and of side B
/// (after the heal). During the split each side must agree within itself and complete its
/// rounds.
async fn partition_and_heal() -> (Vec<Summary>, Vec<Summary>) {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, _) = community(root.path(), 6, sha, PrivacyMode::Local);
    let (a, b) = members.split_at(3);
    let (split, total) = (2, 5);
    let side_a = side(a, &model, &[a[0].addr()], total).await;
    let side_b = summaries(side(b, &model, &[b[0].addr()], split).await).await;
    for s in &side_b {
        eprintln!("B during the split: {s:?}");
        assert_eq!(s.head_round, split, "{s:?}");
    }
    assert_eq!(heads(&side_b).len(), 1, "side B disagrees within itself");
    // Heal: side B comes back knowing side A's bootstrap peer as well.
    let healed = side(b, &model, &[b[0].addr(), a[0].addr()], total).await;
    let side_a = summaries(side_a).await;
    let side_b = summaries(healed).await;
    for s in side_a.iter().chain(&side_b) {
        eprintln!("after the heal: {s:?}");
        assert_eq!(s.head_round, total, "{s:?}");
    }
    let all: Vec<Summary> = side_a.iter().chain(&side_b).cloned().collect();
    eprintln!("heads after the heal: {:?}", heads(&all));
    (side_a, side_b)
}

/// The requirement of issue 9: after the heal the whole community ends on one version chain.
/// The sides closed different versions for rounds 1–2; when they meet, the fork rule of
/// docs/PROTOCOL.md §14.8 picks one chain, the nodes of the other go back to the fork point
/// (genesis here) and catch up on the preferred chain, verifying every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_three_and_three_heals_to_one_chain() {
    let (side_a, side_b) = partition_and_heal().await;
    let all: Vec<Summary> = side_a.iter().chain(&side_b).cloned().collect();
    let ends = heads(&all);
    assert_eq!(ends.len(), 1, "the community did not converge: {ends:?}");
    let left: u64 = all.iter().map(|s| s.forks_left).sum();
    assert!(
        left >= 3,
        "the losing side's three nodes should have left their chain: {left}"
    );
}
