//! Matching events to handlers through an index of their filters, so that the cost of routing
//! one event does not grow with the number of handlers.
//!
//! When a [`RoutingTable`] is built (once per table, then shared read-only), each enabled
//! handler's filter gives its *cover*: leaves of which any event the filter matches satisfies at
//! least one. An `exact` leaf is filed in a hash map by attribute and value, a `prefix` leaf in a
//! trie of the attribute's prefixes; a handler whose filter has no cover (a `not`, a `suffix`,
//! an empty `all`, an `any` with such a branch) is tried on every event. Matching an event looks up its attributes in the
//! maps and walks its values through the tries, then runs each candidate's whole filter
//! ([`Handler::matches`](crate::handler::Handler::matches)): the index only prunes, the meaning
//! of a filter stays in one place, and the answer is exactly
//! [`HandlerTable::scan_matching`]'s, in table order.

use std::collections::HashMap;

use super::{HandlerTable, StoredHandler};
use crate::event::{attribute_text, Event};
use crate::handler::{AttributeMatch, Filter};

/// A handler table with its filters indexed. Reads as the [`HandlerTable`] it indexes (it
/// derefs to it); it cannot be changed, so the index never goes stale.
#[derive(Debug, Default)]
pub struct RoutingTable {
    table: HandlerTable,
    index: FilterIndex,
}

impl RoutingTable {
    /// Indexes `table`'s enabled handlers.
    pub fn new(table: HandlerTable) -> Self {
        let index = FilterIndex::build(&table);
        RoutingTable { table, index }
    }

    /// The table indexed.
    pub fn table(&self) -> &HandlerTable {
        &self.table
    }

    /// The handlers that run on `event`, in table order (by name): the same as
    /// [`HandlerTable::scan_matching`], without trying every handler.
    pub fn matching(&self, event: &Event) -> impl Iterator<Item = &StoredHandler> {
        let mut hits = Vec::new();
        self.index.candidates(event, |i| {
            if self
                .table
                .handlers
                .get(i)
                .is_some_and(|stored| stored.handler.matches(event))
            {
                hits.push(i);
            }
        });
        // Candidates come bucket by bucket; a handler filed under two keys the event both
        // satisfies comes twice.
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().filter_map(|i| self.table.handlers.get(i))
    }
}

impl std::ops::Deref for RoutingTable {
    type Target = HandlerTable;

    fn deref(&self) -> &HandlerTable {
        &self.table
    }
}

/// Where each enabled handler is filed, by position in the table's `handlers`.
#[derive(Debug, Default)]
struct FilterIndex {
    /// Per attribute (few: mostly `type` and `source`), handlers by the value it must equal.
    exact: Vec<(String, HashMap<String, Vec<usize>>)>,
    /// Per attribute, handlers by a prefix its value must start with.
    prefix: Vec<(String, PrefixTrie)>,
    /// Handlers whose filter has no cover: tried on every event.
    always: Vec<usize>,
}

impl FilterIndex {
    fn build(table: &HandlerTable) -> Self {
        let mut index = FilterIndex::default();
        for (i, stored) in table.handlers.iter().enumerate() {
            // A disabled handler matches nothing: it is never a candidate.
            if !stored.handler.enabled {
                continue;
            }
            let Some(cover) = cover(&stored.handler.filter) else {
                index.always.push(i);
                continue;
            };
            for leaf in cover {
                let m = leaf.on;
                match leaf.kind {
                    LeafKind::Exact => {
                        let by_value = of_attribute(&mut index.exact, &m.attribute);
                        push_once(by_value.entry(m.value.clone()).or_default(), i);
                    }
                    LeafKind::Prefix => {
                        of_attribute(&mut index.prefix, &m.attribute).insert(&m.value, i);
                    }
                }
            }
        }
        index
    }

    /// Calls `f` with every handler `event` may match (some more than once).
    fn candidates(&self, event: &Event, mut f: impl FnMut(usize)) {
        for (name, by_value) in &self.exact {
            let Some(value) = attribute_text(event, name) else {
                continue;
            };
            if let Some(handlers) = by_value.get(value.as_ref()) {
                handlers.iter().for_each(|&i| f(i));
            }
        }
        for (name, trie) in &self.prefix {
            if let Some(value) = attribute_text(event, name) {
                trie.visit(&value, &mut f);
            }
        }
        self.always.iter().for_each(|&i| f(i));
    }
}

/// The entry of `attribute` in `list`, added if missing.
fn of_attribute<'l, T: Default>(list: &'l mut Vec<(String, T)>, attribute: &str) -> &'l mut T {
    let at = match list.iter().position(|(name, _)| name == attribute) {
        Some(at) => at,
        None => {
            list.push((attribute.to_string(), T::default()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// Adds `handler` to a bucket filled in table order, once (`any` of the same leaf twice).
fn push_once(bucket: &mut Vec<usize>, handler: usize) {
    if bucket.last() != Some(&handler) {
        bucket.push(handler);
    }
}

/// How a leaf compares an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LeafKind {
    Exact,
    Prefix,
}

/// An `exact` or `prefix` leaf of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leaf<'f> {
    kind: LeafKind,
    on: &'f AttributeMatch,
}

impl Leaf<'_> {
    /// How few events the leaf lets through, usually: lower is better. `exact` before
    /// `prefix`; `type`, then `source`, then the other attributes.
    fn rank(&self) -> u8 {
        let attribute = match self.on.attribute.as_str() {
            "type" => 0,
            "source" => 1,
            _ => 2,
        };
        match self.kind {
            LeafKind::Exact => attribute,
            LeafKind::Prefix => 3 + attribute,
        }
    }
}

/// Leaves of `filter` of which any event it matches satisfies at least one, or `None` when
/// there are none (the handler is tried on every event). An `all` gives its best child's cover
/// (one leaf when it has an `exact` or a `prefix` leaf), an `any` the union of its children's
/// (when each has one); `not` and `suffix` give none.
fn cover(filter: &Filter) -> Option<Vec<Leaf<'_>>> {
    match filter {
        Filter::Exact(on) => Some(vec![Leaf {
            kind: LeafKind::Exact,
            on,
        }]),
        Filter::Prefix(on) => Some(vec![Leaf {
            kind: LeafKind::Prefix,
            on,
        }]),
        Filter::Suffix(_) | Filter::Not(_) => None,
        // The first of the best: the worst leaf's rank, then the fewest leaves.
        Filter::All(filters) => filters
            .iter()
            .filter_map(cover)
            .min_by_key(|leaves| (leaves.iter().map(Leaf::rank).max(), leaves.len())),
        // An empty `any` matches nothing: an empty cover, never a candidate.
        Filter::Any(filters) => filters.iter().try_fold(Vec::new(), |mut leaves, f| {
            leaves.extend(cover(f)?);
            Some(leaves)
        }),
    }
}

/// Handlers by the prefixes their filter requires of one attribute, byte by byte: a value finds
/// the handlers of all its prefixes in one walk, whatever the number of handlers.
#[derive(Debug)]
struct PrefixTrie {
    /// The nodes; the root first.
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// The next byte and its node, sorted by byte.
    children: Vec<(u8, usize)>,
    /// Handlers whose prefix ends here.
    handlers: Vec<usize>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![TrieNode::default()],
        }
    }
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &str, handler: usize) {
        let mut at = 0;
        for byte in prefix.bytes() {
            let next = self.nodes.len();
            let Some(node) = self.nodes.get_mut(at) else {
                return;
            };
            at = match node.children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(found) => node.children[found].1,
                Err(slot) => {
                    node.children.insert(slot, (byte, next));
                    self.nodes.push(TrieNode::default());
                    next
                }
            };
        }
        if let Some(node) = self.nodes.get_mut(at) {
            push_once(&mut node.handlers, handler);
        }
    }

    /// Calls `f` with the handlers of every prefix of `value` (`str::starts_with` compares
    /// bytes too).
    fn visit(&self, value: &str, f: &mut impl FnMut(usize)) {
        let mut node = self.nodes.first();
        let mut bytes = value.bytes();
        while let Some(current) = node {
            current.handlers.iter().for_each(|&i| f(i));
            node = bytes.next().and_then(|byte| {
                let found = current
                    .children
                    .binary_search_by_key(&byte, |&(b, _)| b)
                    .ok()?;
                self.nodes.get(current.children.get(found)?.1)
            });
        }
    }
}

#[cfg(test)]
mod tests;
