//! Which chunks to ask which holder for.
//!
//! Policy: rarest first, ties broken by position counted from a random
//! starting chunk.
//!
//! * Rarest first (fewest connected holders have it): a chunk that only
//!   the original sharer has is fetched before chunks that other downloaders
//!   could also serve, so copies spread through the swarm and a flash crowd
//!   draws on each other instead of all pulling the same chunks from the
//!   first holder. It also fetches a chunk that may soon vanish (its only
//!   holder leaving) while it still can.
//! * A random start per download: downloaders that begin together with the
//!   same single seeder ask it for different chunks, which they then trade.
//! * Sequential order is not needed for display: content is shown only once
//!   every chunk is verified. The first few chunks still come first, along
//!   with the manifest (`Request::Manifest::prefetch`), so a small page
//!   arrives in one round trip.

use crate::availability::Availability;

/// Picks up to `want` chunks for a holder that has `has`, among those
/// `open(i)` says still need a holder, rarest first by `rarity` (how many
/// connected holders have each chunk), ties in order from `start`.
pub fn pick(
    has: &Availability,
    rarity: &[u16],
    start: u32,
    want: usize,
    open: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let n = has.len();
    if want == 0 || n == 0 {
        return Vec::new();
    }
    let mut candidates: Vec<(u16, u32)> = (0..n)
        .filter(|&i| has.contains(i) && open(i))
        .map(|i| (rarity[i as usize], (i + n - start % n) % n))
        .collect();
    if candidates.len() > want {
        candidates.select_nth_unstable(want - 1);
        candidates.truncate(want);
    }
    candidates.sort_unstable();
    candidates
        .into_iter()
        .map(|(_, rotated)| (rotated + start % n) % n)
        .collect()
}

/// Merges chunk indices (ascending) into `[start, end)` ranges.
pub fn ranges(indices: impl IntoIterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for i in indices {
        match out.last_mut() {
            Some((_, end)) if *end == i => *end += 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(len: u32, members: &[u32]) -> Availability {
        let mut a = Availability::none(len);
        for &i in members {
            a.insert(i);
        }
        a
    }

    #[test]
    fn rarest_chunks_come_first() {
        let has = Availability::all(6);
        // Chunks 4 and 1 are held by one holder only.
        let rarity = [3, 1, 2, 2, 1, 3];
        assert_eq!(pick(&has, &rarity, 0, 3, |_| true), vec![1, 4, 2]);
    }

    #[test]
    fn ties_follow_the_random_start() {
        let has = Availability::all(8);
        let rarity = [1; 8];
        assert_eq!(pick(&has, &rarity, 5, 4, |_| true), vec![5, 6, 7, 0]);
        assert_eq!(pick(&has, &rarity, 13, 2, |_| true), vec![5, 6]);
    }

    #[test]
    fn only_chunks_the_holder_has_and_that_are_still_needed() {
        let has = set(8, &[1, 2, 3, 6]);
        let rarity = [1; 8];
        assert_eq!(pick(&has, &rarity, 0, 8, |i| i != 2), vec![1, 3, 6]);
        assert!(pick(&has, &rarity, 0, 0, |_| true).is_empty());
        assert!(pick(&set(8, &[]), &rarity, 0, 4, |_| true).is_empty());
    }

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges([0, 1, 2, 5, 7, 8]), vec![(0, 3), (5, 6), (7, 9)]);
        assert!(ranges([]).is_empty());
    }
}
