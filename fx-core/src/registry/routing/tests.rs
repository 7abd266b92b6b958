use cloudevents::AttributesWriter;
use proptest::prelude::*;

use super::*;
use crate::event::new_json_event;
use crate::handler::Handler;
use crate::testsupport::HandlerBuilder;

fn m(attribute: &str, value: &str) -> AttributeMatch {
    AttributeMatch {
        attribute: attribute.into(),
        value: value.into(),
    }
}

fn exact(attribute: &str, value: &str) -> Filter {
    Filter::Exact(m(attribute, value))
}

fn prefix(attribute: &str, value: &str) -> Filter {
    Filter::Prefix(m(attribute, value))
}

fn suffix(attribute: &str, value: &str) -> Filter {
    Filter::Suffix(m(attribute, value))
}

/// Where a handler with `filter` is filed: `exact type=a`, `prefix source=/x`, or `always`.
fn filed(filter: &Filter) -> Vec<String> {
    let Some(leaves) = cover(filter) else {
        return vec!["always".to_string()];
    };
    leaves
        .iter()
        .map(|leaf| {
            let kind = match leaf.kind {
                LeafKind::Exact => "exact",
                LeafKind::Prefix => "prefix",
            };
            format!("{kind} {}={}", leaf.on.attribute, leaf.on.value)
        })
        .collect()
}

/// A table of handlers `h0`, `h1`, … (sorted by name) with these filters.
fn table(filters: Vec<Filter>) -> HandlerTable {
    HandlerTable {
        revision: 1,
        handlers: filters
            .into_iter()
            .enumerate()
            .map(|(i, filter)| {
                HandlerBuilder::new(format!("h{i:02}"))
                    .filter(filter)
                    .stored(1)
            })
            .collect(),
        invalid: vec![],
    }
}

fn event(ty: &str, source: &str) -> Event {
    new_json_event("1", source, ty, serde_json::json!({})).unwrap()
}

fn names<'t>(matched: impl Iterator<Item = &'t StoredHandler>) -> Vec<&'t str> {
    matched.map(|stored| stored.handler.name.as_str()).collect()
}

#[test]
fn an_any_with_a_branch_the_index_cannot_use_is_tried_on_every_event() {
    let filter = Filter::Any(vec![exact("type", "a"), suffix("source", "/eu")]);
    assert_eq!(filed(&filter), ["always"]);
    for filter in [
        Filter::Not(Box::new(exact("type", "a"))),
        suffix("type", ".created"),
        Filter::All(vec![]),
        Filter::All(vec![
            suffix("type", "x"),
            Filter::Not(Box::new(exact("type", "a"))),
        ]),
    ] {
        assert_eq!(filed(&filter), ["always"], "{filter:?}");
    }
}

#[test]
fn an_all_with_an_exact_type_is_filed_under_the_type() {
    let filter = Filter::All(vec![
        prefix("source", "/shop/"),
        exact("tenant", "acme"),
        exact("type", "com.example.order.created"),
        suffix("subject", ".json"),
    ]);
    assert_eq!(filed(&filter), ["exact type=com.example.order.created"]);
    assert_eq!(filed(&exact("type", "a")), ["exact type=a"]);
}

#[test]
fn exact_comes_before_prefix_and_type_before_source_before_the_rest() {
    let filed_all = |filters: Vec<Filter>| filed(&Filter::All(filters));
    assert_eq!(
        filed_all(vec![prefix("type", "com."), exact("tenant", "acme")]),
        ["exact tenant=acme"]
    );
    assert_eq!(
        filed_all(vec![exact("tenant", "acme"), exact("source", "/s")]),
        ["exact source=/s"]
    );
    assert_eq!(
        filed_all(vec![prefix("tenant", "ac"), prefix("source", "/s")]),
        ["prefix source=/s"]
    );
    assert_eq!(
        filed_all(vec![exact("subject", "x"), exact("tenant", "acme")]),
        ["exact subject=x"],
        "among equals, the first"
    );
    assert_eq!(
        filed_all(vec![
            Filter::All(vec![suffix("id", "1"), exact("type", "a")]),
            exact("source", "/s"),
        ]),
        ["exact type=a"],
        "an all inside an all"
    );
}

#[test]
fn an_any_whose_branches_all_have_a_cover_is_filed_under_each() {
    let filter = Filter::Any(vec![
        exact("type", "a"),
        Filter::All(vec![exact("tenant", "acme"), prefix("source", "/shop/")]),
    ]);
    assert_eq!(filed(&filter), ["exact type=a", "exact tenant=acme"]);
    assert_eq!(
        filed(&Filter::Any(vec![])),
        Vec::<String>::new(),
        "an empty any matches nothing: it is never a candidate"
    );
}

#[test]
fn a_prefix_on_source_is_found_by_a_longer_source() {
    let routing = RoutingTable::new(table(vec![
        prefix("source", "/shop/"),
        prefix("source", "/shop/eu/"),
        prefix("source", "/shopping"),
    ]));
    assert_eq!(
        names(routing.matching(&event("t", "/shop/eu/orders"))),
        ["h00", "h01"]
    );
    assert_eq!(names(routing.matching(&event("t", "/shop/"))), ["h00"]);
    assert!(names(routing.matching(&event("t", "/sho"))).is_empty());
}

#[test]
fn matches_come_in_table_order_once_each_whatever_the_bucket() {
    let routing = RoutingTable::new(table(vec![
        Filter::Not(Box::new(exact("type", "other"))),
        exact("type", "a"),
        prefix("source", "/s"),
        // Filed under two keys the event satisfies both.
        Filter::Any(vec![exact("type", "a"), prefix("source", "/s")]),
        exact("type", "b"),
        Filter::All(vec![]),
    ]));
    let e = event("a", "/s/1");
    assert_eq!(
        names(routing.matching(&e)),
        ["h00", "h01", "h02", "h03", "h05"]
    );
    assert_eq!(
        names(routing.matching(&e)),
        names(routing.scan_matching(&e))
    );
}

#[test]
fn disabled_handlers_match_nothing() {
    let mut handlers = table(vec![
        exact("type", "a"),
        Filter::All(vec![]),
        exact("type", "a"),
    ]);
    handlers.handlers[0].handler.enabled = false;
    handlers.handlers[1].handler.enabled = false;
    let routing = RoutingTable::new(handlers);
    assert_eq!(names(routing.matching(&event("a", "/s"))), ["h02"]);
    assert!(routing.index.always.is_empty(), "{:?}", routing.index);
}

#[test]
fn extensions_and_missing_attributes_are_looked_up_like_the_filter_does() {
    let routing = RoutingTable::new(table(vec![
        exact("tenant", "acme"),
        exact("count", "3"),
        prefix("subject", "orders/"),
    ]));
    let mut e = event("t", "/s");
    assert!(names(routing.matching(&e)).is_empty());
    e.set_extension("tenant", "acme");
    e.set_extension("count", 3i64);
    e.set_subject(Some("orders/17"));
    assert_eq!(names(routing.matching(&e)), ["h00", "h01", "h02"]);
}

#[test]
fn the_routing_table_reads_as_the_table_it_indexes() {
    let handlers = table(vec![exact("type", "a")]);
    let routing = RoutingTable::new(handlers.clone());
    assert_eq!(routing.table(), &handlers);
    assert_eq!((routing.revision, routing.handlers.len()), (1, 1));
}

/// Attribute names of filters and events: the indexed ones, others, and extensions (`count`
/// holds an integer).
fn attribute_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("type"),
        2 => Just("source"),
        1 => prop::sample::select(vec!["subject", "id", "tenant", "count", "time"]),
    ]
    .prop_map(str::to_string)
}

/// Short texts over a small alphabet, so that filters and events often meet.
fn text() -> impl Strategy<Value = String> {
    "[ab/1]{0,3}"
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = (0..3u8, attribute_name(), text()).prop_map(|(kind, attribute, value)| {
        let on = AttributeMatch { attribute, value };
        match kind {
            0 => Filter::Exact(on),
            1 => Filter::Prefix(on),
            _ => Filter::Suffix(on),
        }
    });
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::All),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::Any),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn handlers() -> impl Strategy<Value = Vec<Handler>> {
    prop::collection::vec((filter(), prop::bool::weighted(0.85)), 0..40).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (filter, enabled))| {
                let mut handler = HandlerBuilder::new(format!("h{i:02}"))
                    .filter(filter)
                    .build();
                handler.enabled = enabled;
                handler
            })
            .collect()
    })
}

fn any_event() -> impl Strategy<Value = Event> {
    (
        text(),
        "/[ab/1]{0,3}",
        "[ab1]{1,2}",
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(0..4i64),
    )
        .prop_map(|(ty, source, id, subject, tenant, count)| {
            let mut e = new_json_event(id, source, ty, serde_json::json!({})).unwrap();
            e.set_subject(subject);
            if let Some(tenant) = tenant {
                e.set_extension("tenant", tenant);
            }
            if let Some(count) = count {
                e.set_extension("count", count);
            }
            e
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn the_index_matches_what_trying_every_handler_matches(
        handlers in handlers(),
        events in prop::collection::vec(any_event(), 1..8),
    ) {
        let table = HandlerTable {
            revision: 1,
            handlers: handlers.into_iter().map(|handler| StoredHandler { handler, revision: 1 }).collect(),
            invalid: vec![],
        };
        let routing = RoutingTable::new(table);
        for e in &events {
            prop_assert_eq!(names(routing.matching(e)), names(routing.scan_matching(e)), "{:?}", e);
        }
    }
}
