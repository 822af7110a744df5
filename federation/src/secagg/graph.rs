//! The masking graph: a Harary graph `H(k, n)` over a random ring order of the cohort.
//!
//! The cohort (sorted by member id) is shuffled with a ChaCha20 generator keyed from the round
//! seed, and placed on a ring; each member's neighbours are the `k/2` members on either side.
//! Everyone derives the same graph from public data; nobody can pick their neighbours as long as
//! the round seed is unpredictable when the cohort is fixed. With `k = n − 1` the graph is
//! complete.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Neighbour lists, by index into the sorted cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    /// `neighbours[i]`: the indices of member `i`'s neighbours, ascending, without `i`.
    neighbours: Vec<Vec<usize>>,
}

impl Graph {
    /// The Harary graph of even degree `k` (or the complete graph when `k + 1 == n`) over the ring
    /// order drawn from `key`.
    pub(crate) fn new(n: usize, k: usize, key: [u8; 32]) -> Graph {
        if k + 1 >= n {
            let neighbours = (0..n)
                .map(|i| (0..n).filter(|&j| j != i).collect())
                .collect();
            return Graph { neighbours };
        }
        let mut ring: Vec<usize> = (0..n).collect();
        let mut rng = ChaCha20Rng::from_seed(key);
        for i in (1..n).rev() {
            ring.swap(i, below(&mut rng, i as u64 + 1) as usize);
        }
        let mut neighbours = vec![Vec::with_capacity(k); n];
        for pos in 0..n {
            for step in 1..=k / 2 {
                let member = ring[pos];
                neighbours[member].push(ring[(pos + step) % n]);
                neighbours[member].push(ring[(pos + n - step) % n]);
            }
        }
        for list in &mut neighbours {
            list.sort_unstable();
        }
        Graph { neighbours }
    }

    /// Neighbours of member `i`, ascending.
    pub(crate) fn neighbours(&self, i: usize) -> &[usize] {
        &self.neighbours[i]
    }

    /// Whether `i` and `j` are neighbours.
    pub(crate) fn adjacent(&self, i: usize, j: usize) -> bool {
        self.neighbours[i].binary_search(&j).is_ok()
    }

    /// The owner's shareholders: its neighbours and itself, ascending. Holder number `p` (from 0)
    /// in this list holds the share at x = p + 1.
    pub(crate) fn holders(&self, owner: usize) -> Vec<usize> {
        let mut list = self.neighbours[owner].clone();
        let at = list.partition_point(|&j| j < owner);
        list.insert(at, owner);
        list
    }
}

/// A uniform integer in `0..bound` (`bound >= 1`) by rejection, identical on every platform.
fn below(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % bound) - 1;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harary_graph_is_regular_symmetric_and_seeded() {
        for (n, k) in [(8, 4), (16, 8), (40, 16), (128, 32), (7, 2)] {
            let g = Graph::new(n, k, [1; 32]);
            for i in 0..n {
                assert_eq!(g.neighbours(i).len(), k, "n={n} k={k} i={i}");
                assert!(!g.adjacent(i, i));
                for &j in g.neighbours(i) {
                    assert!(g.adjacent(j, i));
                }
                let holders = g.holders(i);
                assert_eq!(holders.len(), k + 1);
                assert!(holders.windows(2).all(|w| w[0] < w[1]) && holders.contains(&i));
            }
            assert_eq!(g, Graph::new(n, k, [1; 32]));
            assert_ne!(g, Graph::new(n, k, [2; 32]));
        }
    }

    #[test]
    fn complete_graph() {
        let g = Graph::new(5, 4, [0; 32]);
        assert_eq!(g.neighbours(2), &[0, 1, 3, 4]);
        assert_eq!(g.holders(2), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn uniform_below_covers_the_range() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
    }
}
