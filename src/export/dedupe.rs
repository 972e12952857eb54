//! The dedupe set: one [`Winner`] per distinct `SessionId`, the only state of
//! an export that grows with the number of sessions.
//!
//! A `HashMap<Box<str>, Winner>` costs about 240 bytes per session at a
//! million (the table doubles to 2^21 buckets of 64 bytes, both tables live
//! while it grows, and every id is its own allocation). Here the ids are
//! appended to one string arena, the winners to one vector in the same
//! order, and the hash table holds only 4-byte indexes into them: about 90
//! bytes per session, and a resize moves the small index table only.
//! Lookups hash the id with std's randomly keyed SipHash, so ids chosen to
//! collide (the API's data is written by whoever opens a session) cannot
//! turn the table into a list.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::dataset::record::Rank;

/// Where the winning observation of one session is, and what it won with.
/// One per distinct session: its fields are laid out to fit 40 bytes (a
/// [`Rank`] field would pad it to 48), which is most of an export's memory.
#[derive(Debug, Clone, Copy)]
pub struct Winner {
    pub start_date: i64,
    /// The winning observation's [`Rank::observed_at`].
    pub observed_at: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    /// Index into [`crate::export::stage::Staged::parts`].
    pub part: u32,
    /// The row within its part: a part is one page, of at most
    /// [`MAX_PAGE_ROWS`] sessions.
    pub row: u16,
    /// The winning observation's [`Rank::ended`].
    pub ended: bool,
}

/// The most sessions one staged page may hold (the API's pages hold 200).
pub const MAX_PAGE_ROWS: usize = u16::MAX as usize + 1;

impl Winner {
    pub fn rank(&self) -> Rank {
        Rank {
            ended: self.ended,
            observed_at: self.observed_at,
        }
    }
}

/// Distinct sessions and the winning observation of each, as the crawl
/// finds them. Publishing keeps the lookup table, to find sessions whose
/// start date moved since an earlier run.
#[derive(Debug, Default)]
pub struct DedupeSet {
    winners: Winners,
    /// Indexes into `winners`, by the hash of their id.
    table: HashTable<u32>,
    hasher: RandomState,
}

/// Every session a crawl found and its winner, in the order first seen.
#[derive(Debug, Default)]
pub struct Winners {
    /// Every id, back to back.
    ids: String,
    /// Where each id ends in `ids`; it starts where the previous one ends.
    id_ends: Vec<u32>,
    winners: Vec<Winner>,
}

impl Winners {
    pub fn len(&self) -> usize {
        self.winners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.winners.is_empty()
    }

    /// The id of the session at `index` (below [`Winners::len`]).
    pub fn id(&self, index: usize) -> &str {
        let start = if index == 0 {
            0
        } else {
            self.id_ends[index - 1]
        };
        &self.ids[start as usize..self.id_ends[index] as usize]
    }

    /// The winner of the session at `index` (below [`Winners::len`]).
    pub fn winner(&self, index: usize) -> &Winner {
        &self.winners[index]
    }

    /// The winner of `id`, by a linear search: for tests.
    #[cfg(test)]
    pub fn find(&self, id: &str) -> Option<&Winner> {
        self.iter().find(|(seen, _)| *seen == id).map(|(_, w)| w)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Winner)> {
        self.winners
            .iter()
            .enumerate()
            .map(|(index, winner)| (self.id(index), winner))
    }
}

impl DedupeSet {
    pub fn new() -> DedupeSet {
        DedupeSet::default()
    }

    pub fn len(&self) -> usize {
        self.winners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.winners.is_empty()
    }

    /// The winner of `id`, if the set has seen it.
    pub fn find(&self, id: &str) -> Option<&Winner> {
        let hash = self.hasher.hash_one(id);
        let winners = &self.winners;
        let index = *self.table.find(hash, |&i| winners.id(i as usize) == id)?;
        Some(self.winners.winner(index as usize))
    }

    /// Every session and its winner, by index.
    pub fn winners(&self) -> &Winners {
        &self.winners
    }

    /// The winner of `id`, if the set has seen it, to update.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Winner> {
        let hash = self.hasher.hash_one(id);
        let winners = &self.winners;
        let index = *self.table.find(hash, |&i| winners.id(i as usize) == id)?;
        self.winners.winners.get_mut(index as usize)
    }

    /// Adds `id`, which the set must not hold yet (see [`DedupeSet::get_mut`]).
    ///
    /// # Panics
    /// Past 4 GiB of session ids (about 100 million sessions), which no
    /// account's 30 days approach.
    pub fn insert_new(&mut self, id: &str, winner: Winner) {
        let index = u32::try_from(self.winners.len()).expect("fewer than 2^32 sessions");
        let end =
            u32::try_from(self.winners.ids.len() + id.len()).expect("session ids under 4 GiB");
        let hash = self.hasher.hash_one(id);
        let (winners, hasher) = (&self.winners, &self.hasher);
        self.table
            .insert_unique(hash, index, |&i| hasher.hash_one(winners.id(i as usize)));
        let list = &mut self.winners;
        list.ids.push_str(id);
        list.id_ends.push(end);
        list.winners.push(winner);
    }

    /// Every session and its winner, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Winner)> {
        self.winners.iter()
    }

    /// The winners without the lookup table, their spare capacity (up to
    /// half of what grew by doubling) given back.
    pub fn into_winners(self) -> Winners {
        let mut winners = self.winners;
        winners.ids.shrink_to_fit();
        winners.id_ends.shrink_to_fit();
        winners.winners.shrink_to_fit();
        winners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn winner(part: u32) -> Winner {
        Winner {
            start_date: 1,
            observed_at: 2,
            ended: false,
            first_seen_at: 3,
            last_seen_at: 4,
            part,
            row: 0,
        }
    }

    #[test]
    fn a_winner_fits_40_bytes() {
        assert_eq!(std::mem::size_of::<Winner>(), 40);
    }

    #[test]
    fn finds_every_id_after_the_table_grows_and_keeps_first_seen_order() {
        let mut set = DedupeSet::new();
        let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i:017x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(set.get_mut(id).is_none());
            set.insert_new(id, winner(i as u32));
        }
        // Ids that are prefixes of one another stay apart.
        set.insert_new("", winner(u32::MAX - 1));
        set.insert_new("user-", winner(u32::MAX));
        assert_eq!(set.len(), 10_002);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(set.get_mut(id).map(|w| w.part), Some(i as u32), "{id}");
        }
        assert_eq!(set.get_mut("user-").map(|w| w.part), Some(u32::MAX));
        assert_eq!(set.get_mut("").map(|w| w.part), Some(u32::MAX - 1));
        assert!(set.get_mut("user-x").is_none());
        let listed: Vec<&str> = set.iter().map(|(id, _)| id).take(3).collect();
        assert_eq!(
            listed,
            [
                "user-00000000000000000",
                "user-00000000000000001",
                "user-00000000000000002"
            ]
        );
        if let Some(w) = set.get_mut(&ids[7]) {
            w.row = 99;
        }
        assert_eq!(set.iter().nth(7).map(|(_, w)| w.row), Some(99));
        let winners = set.into_winners();
        assert_eq!(
            (winners.ids.capacity(), winners.winners.capacity()),
            (winners.ids.len(), winners.winners.len()),
            "publishing holds no capacity the crawl grew into and left unused"
        );
        assert_eq!(
            (winners.len(), winners.id(7), winners.winner(7).row),
            (10_002, ids[7].as_str(), 99)
        );
    }
}
