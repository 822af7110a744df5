//! Secure-aggregation cost per member and per observer, next to plain aggregation.
//!
//! Runs whole rounds in one process (every member, then one observer computing the sum) for
//! cohorts of 8 to 128 and two vector sizes, and prints a Markdown table: graph degree and
//! threshold, bytes each member sends (real signed envelopes), CPU time each member spends, and
//! the time any node takes to unmask the sum with no dropouts and with a third of the cohort
//! dropped after sharing (the expensive case: their mask keys are rebuilt and their pairwise
//! masks recomputed). Plain aggregation sends the bare vector.
//!
//! `cargo run --release -p hearth-federation --example bench_secagg [-- --quick]`

use std::time::{Duration, Instant};

use hearth_federation::secagg::{Aggregator, Cohort, Config, Member};
use hearth_protocol::{Hash32, Keypair, Limits, MaskedInput, Payload, Stamp, encode};

/// One measured configuration.
struct Row {
    n: usize,
    len: usize,
    degree: usize,
    threshold: usize,
    plain_bytes: usize,
    member_bytes: usize,
    member_cpu: Duration,
    unmask_all: Duration,
    unmask_dropped: Duration,
}

fn envelope_len(key: &Keypair, payload: &Payload, limits: &Limits) -> usize {
    let stamp = Stamp {
        community: Hash32::digest(b"bench"),
        round: 1,
        nonce: 1,
        timestamp: 1_700_000_000,
    };
    encode(key, stamp, payload, limits).map_or(0, |b| b.len())
}

/// Runs one round; `dropped` members stop after sending their shares.
fn round(n: usize, len: usize, dropped: usize) -> (Row, Vec<u32>) {
    let limits = Limits::default();
    let keys: Vec<Keypair> = (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let ids: Vec<_> = keys.iter().map(Keypair::member_id).collect();
    let cohort = Cohort::new(1, Hash32::digest(b"seed"), &ids, &Config::default()).expect("cohort");
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| ids[i]);
    let key_of = |member: usize| &keys[order[member]];
    let sorted = cohort.members().to_vec();
    let inputs: Vec<Vec<u32>> = (0..n)
        .map(|i| (0..len).map(|j| (i * 7 + j) as u32).collect())
        .collect();

    let mut cpu = vec![Duration::ZERO; n];
    let mut bytes = vec![0usize; n];
    let timed = |i: usize, cpu: &mut [Duration], f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        cpu[i] += t.elapsed();
    };

    let mut members = Vec::with_capacity(n);
    let mut adverts = Vec::with_capacity(n);
    for (i, id) in sorted.iter().enumerate() {
        let mut out = None;
        timed(i, &mut cpu, &mut || {
            out = Some(Member::new(cohort.clone(), id, [i as u8; 32]).expect("member"));
        });
        let (m, k) = out.expect("member");
        bytes[i] += envelope_len(key_of(i), &Payload::Keys(k.clone()), &limits);
        members.push(m);
        adverts.push(k);
    }
    let mut observer = Aggregator::new(cohort.clone());
    for (from, k) in sorted.iter().zip(&adverts) {
        observer.on_keys(from, k).expect("keys");
    }
    for (i, m) in members.iter_mut().enumerate() {
        timed(i, &mut cpu, &mut || {
            for (from, k) in sorted.iter().zip(&adverts) {
                m.on_keys(from, k).expect("keys");
            }
        });
    }
    let mut shares = Vec::with_capacity(n);
    for (i, m) in members.iter_mut().enumerate() {
        let mut out = None;
        timed(i, &mut cpu, &mut || out = Some(m.share().expect("share")));
        let s = out.expect("share");
        bytes[i] += envelope_len(key_of(i), &Payload::Shares(s.clone()), &limits);
        shares.push(s);
    }
    for (i, m) in members.iter_mut().enumerate() {
        timed(i, &mut cpu, &mut || {
            for (from, s) in sorted.iter().zip(&shares) {
                m.on_shares(from, s).expect("shares");
            }
        });
    }
    let alive = n - dropped;
    let mut masked = Vec::with_capacity(alive);
    for (i, m) in members.iter_mut().enumerate().take(alive) {
        let mut out = None;
        timed(i, &mut cpu, &mut || {
            out = Some(m.mask(&inputs[i]).expect("mask"))
        });
        let y = out.expect("mask");
        bytes[i] += envelope_len(key_of(i), &Payload::Masked(y.clone()), &limits);
        masked.push(y);
    }
    for (from, y) in sorted.iter().zip(&masked) {
        observer.on_masked_input(from, y.clone()).expect("input");
    }
    for (i, m) in members.iter_mut().enumerate().take(alive) {
        timed(i, &mut cpu, &mut || {
            for (from, y) in sorted.iter().zip(&masked) {
                m.on_masked_input(from, y).expect("input");
            }
        });
    }
    let mut sets = Vec::with_capacity(alive);
    for (i, m) in members.iter_mut().enumerate().take(alive) {
        let mut out = None;
        timed(i, &mut cpu, &mut || {
            out = Some(m.announce().expect("announce"))
        });
        let s = out.expect("announce");
        bytes[i] += envelope_len(key_of(i), &Payload::Survivors(s.clone()), &limits);
        sets.push(s);
    }
    for (from, s) in sorted.iter().zip(&sets) {
        observer.on_survivor_set(from, s).expect("set");
    }
    for (i, m) in members.iter_mut().enumerate().take(alive) {
        timed(i, &mut cpu, &mut || {
            for (from, s) in sorted.iter().zip(&sets) {
                m.on_survivor_set(from, s).expect("set");
            }
        });
        let mut out = None;
        timed(i, &mut cpu, &mut || out = Some(m.unmask().expect("unmask")));
        let u = out.expect("unmask");
        bytes[i] += envelope_len(key_of(i), &Payload::Unmasking(u.clone()), &limits);
        observer.on_unmasking(&sorted[i], &u).expect("unmasking");
    }
    let t = Instant::now();
    let (sum, survivors) = observer.sum().expect("sum");
    let unmask = t.elapsed();
    assert_eq!(survivors.len(), alive);
    let mut expected = vec![0u32; len];
    for x in inputs.iter().take(alive) {
        for (e, v) in expected.iter_mut().zip(x) {
            *e = e.wrapping_add(*v);
        }
    }
    assert_eq!(sum, expected, "the unmasked sum is exact");

    let plain = MaskedInput {
        round: 1,
        values: inputs[0].clone(),
        peers: vec![],
    };
    let params = cohort.params();
    let row = Row {
        n,
        len,
        degree: params.degree,
        threshold: params.threshold,
        plain_bytes: envelope_len(&keys[0], &Payload::Masked(plain), &limits),
        member_bytes: bytes[..alive].iter().sum::<usize>() / alive,
        member_cpu: cpu[..alive].iter().sum::<Duration>() / alive as u32,
        unmask_all: unmask,
        unmask_dropped: Duration::ZERO,
    };
    (row, sum)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[8, 16]
    } else {
        &[8, 16, 32, 64, 128]
    };
    let lengths: &[usize] = if quick { &[4_096] } else { &[4_096, 184_320] };
    println!(
        "| values | n | k | t | plain bytes | secagg bytes/member | overhead | member CPU ms | unmask ms (0 dropped) | unmask ms (n/3 dropped) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &len in lengths {
        for &n in sizes {
            let (mut row, _) = round(n, len, 0);
            let (dropped, _) = round(n, len, n / 3);
            row.unmask_dropped = dropped.unmask_all;
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.4}x | {} | {} | {} |",
                row.len,
                row.n,
                row.degree,
                row.threshold,
                row.plain_bytes,
                row.member_bytes,
                row.member_bytes as f64 / row.plain_bytes as f64,
                ms(row.member_cpu),
                ms(row.unmask_all),
                ms(row.unmask_dropped),
            );
        }
    }
}
