//! Which invocations may be committed: the executor takes deliveries in order and finishes
//! them in any order; a commit covers everything before it on its partition.

use std::collections::{BTreeMap, HashMap};

use fx_core::bus::{Delivery, Position};

/// Whether a delivery's work was published onward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Everything it owes was published: it may be committed.
    Done,
    /// Something could not be published: it must be delivered again.
    Abandoned,
}

/// Which deliveries may be committed: per partition, the offsets taken and whether each is
/// done. A commit covers everything before it, so only the end of the run of done deliveries
/// at the front of a partition is committed.
#[derive(Debug, Default)]
pub struct CommitTracker {
    partitions: HashMap<(String, i32), BTreeMap<i64, Option<Handled>>>,
}

impl CommitTracker {
    /// Records that `delivery` was taken.
    pub fn taken(&mut self, delivery: &Delivery) {
        self.partitions
            .entry((delivery.topic.clone(), delivery.partition))
            .or_default()
            .insert(delivery.offset, None);
    }

    /// Records that `delivery` finished; returns the delivery to commit, if any.
    pub fn finished(&mut self, delivery: &Delivery, handled: Handled) -> Option<Position> {
        let key = (delivery.topic.clone(), delivery.partition);
        let offsets = self.partitions.get_mut(&key)?;
        offsets.insert(delivery.offset, Some(handled));
        let mut commit = None;
        while let Some(entry) = offsets.first_entry() {
            if *entry.get() != Some(Handled::Done) {
                break;
            }
            commit = Some(*entry.key());
            entry.remove();
        }
        if offsets.is_empty() {
            self.partitions.remove(&key);
        }
        commit.map(|offset| Position {
            topic: delivery.topic.clone(),
            partition: delivery.partition,
            offset,
        })
    }

    /// Deliveries taken and not finished.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|offsets| offsets.values())
            .filter(|state| state.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fx_core::event::Message;

    fn delivery(partition: i32, offset: i64) -> Delivery {
        Delivery {
            message: Message::default(),
            topic: "fx.invocations.default".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn out_of_order_completions_commit_only_the_done_prefix() {
        let mut tracker = CommitTracker::default();
        for offset in 0..4 {
            tracker.taken(&delivery(0, offset));
        }
        tracker.taken(&delivery(1, 0));
        assert_eq!(tracker.finished(&delivery(0, 2), Handled::Done), None);
        assert_eq!(tracker.finished(&delivery(0, 1), Handled::Done), None);
        let commit = tracker.finished(&delivery(0, 0), Handled::Done);
        assert_eq!(commit.map(|d| d.offset), Some(2));
        let other = tracker.finished(&delivery(1, 0), Handled::Done);
        assert_eq!(other.map(|d| (d.partition, d.offset)), Some((1, 0)));
        assert_eq!(tracker.in_flight(), 1);
    }

    #[test]
    fn an_abandoned_delivery_holds_back_its_partition() {
        let mut tracker = CommitTracker::default();
        for offset in 10..13 {
            tracker.taken(&delivery(0, offset));
        }
        let first = tracker.finished(&delivery(0, 10), Handled::Done);
        assert_eq!(first.map(|d| d.offset), Some(10));
        assert_eq!(tracker.finished(&delivery(0, 11), Handled::Abandoned), None);
        assert_eq!(tracker.finished(&delivery(0, 12), Handled::Done), None);
        assert_eq!(tracker.in_flight(), 0);
    }
}
