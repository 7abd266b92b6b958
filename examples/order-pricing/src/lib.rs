//! `order-pricing`: prices an order and emits the result.
//!
//! Input: `com.example.order.created` with JSON data
//! `{"order_id": "o-1", "items": [{"sku": "A", "qty": 2, "unit_price": 9.5}], "currency": "EUR"}`.
//!
//! It computes the subtotal, a 20% tax and the total (in cents, rounded half up, then shown as
//! decimal amounts) and the item count (the sum of the quantities), logs them, and *emits* (through
//! the host, not as a return value) one `com.example.order.priced` event with subject `order_id`.
//! It returns no events. Data that is not JSON, has no items, or has a negative quantity or
//! price fails the execution with a message saying what is wrong.

use ferrisfx_guest::{log, Error, Event};
use serde::{Deserialize, Serialize};

/// The source of the events this function produces.
const SOURCE: &str = "/functions/order-pricing";

/// The type of the event this function emits.
const PRICED: &str = "com.example.order.priced";

/// The tax rate, in percent.
const TAX_PERCENT: i64 = 20;

/// The data of `com.example.order.created`.
#[derive(Debug, Deserialize)]
struct Order {
    /// The order's id; becomes the subject of the priced event.
    order_id: String,
    /// The order lines.
    items: Vec<Item>,
    /// ISO 4217 currency code of the prices.
    currency: String,
}

/// One line of an order.
#[derive(Debug, Deserialize)]
struct Item {
    /// Stock keeping unit.
    sku: String,
    /// How many; signed so that a negative quantity is reported rather than unreadable.
    qty: i64,
    /// Price of one unit.
    unit_price: f64,
}

/// The data of `com.example.order.priced`.
#[derive(Debug, Serialize)]
struct PricedOrder {
    order_id: String,
    currency: String,
    item_count: i64,
    subtotal: f64,
    tax_rate: f64,
    tax: f64,
    total: f64,
}

fn handle(event: Event) -> Result<Vec<Event>, Error> {
    let order: Order = event.json()?;
    let priced = price(order)?;
    let (total, count) = (priced.total.to_string(), priced.item_count.to_string());
    log::info_with(
        "order priced",
        &[
            ("order_id", &priced.order_id),
            ("item_count", &count),
            ("total", &total),
            ("currency", &priced.currency),
        ],
    );
    let out = Event::new(format!("{}-priced", event.id()), SOURCE, PRICED)
        .with_subject(priced.order_id.as_str())
        .with_json(&priced)?;
    ferrisfx_guest::emit(out);
    Ok(Vec::new())
}

/// Validates `order` and computes its amounts.
fn price(order: Order) -> Result<PricedOrder, Error> {
    let id = &order.order_id;
    if order.items.is_empty() {
        return Err(Error::new(format!("order {id} has no items")));
    }
    let overflow = || Error::new(format!("order {id} amounts overflow"));
    let mut subtotal_cents: i64 = 0;
    let mut item_count: i64 = 0;
    for (n, item) in order.items.iter().enumerate() {
        if item.qty < 0 {
            return Err(Error::new(format!(
                "order {id} item {n} (sku {}) has a negative qty {}",
                item.sku, item.qty
            )));
        }
        if !item.unit_price.is_finite() || item.unit_price < 0.0 {
            return Err(Error::new(format!(
                "order {id} item {n} (sku {}) has an invalid unit_price {}",
                item.sku, item.unit_price
            )));
        }
        let unit_cents = to_cents(item.unit_price).ok_or_else(overflow)?;
        let line = unit_cents.checked_mul(item.qty).ok_or_else(overflow)?;
        subtotal_cents = subtotal_cents.checked_add(line).ok_or_else(overflow)?;
        item_count = item_count.checked_add(item.qty).ok_or_else(overflow)?;
    }
    // Rounded half up: amounts are non-negative.
    let tax_cents = subtotal_cents
        .checked_mul(TAX_PERCENT)
        .map(|t| (t + 50) / 100)
        .ok_or_else(overflow)?;
    let total_cents = subtotal_cents.checked_add(tax_cents).ok_or_else(overflow)?;
    Ok(PricedOrder {
        order_id: order.order_id,
        currency: order.currency,
        item_count,
        subtotal: from_cents(subtotal_cents),
        tax_rate: TAX_PERCENT as f64 / 100.0,
        tax: from_cents(tax_cents),
        total: from_cents(total_cents),
    })
}

/// `amount` in whole cents, rounded; `None` when it does not fit.
fn to_cents(amount: f64) -> Option<i64> {
    let cents = (amount * 100.0).round();
    (cents < i64::MAX as f64).then_some(cents as i64)
}

/// `cents` as a decimal amount.
fn from_cents(cents: i64) -> f64 {
    cents as f64 / 100.0
}

ferrisfx_guest::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> Result<PricedOrder, Error> {
        price(serde_json::from_str(json).map_err(Error::from)?)
    }

    #[test]
    fn prices_an_order_with_tax_in_cents() {
        let priced = order(
            r#"{"order_id": "o-1", "currency": "EUR", "items": [
                {"sku": "A", "qty": 2, "unit_price": 9.5},
                {"sku": "B", "qty": 1, "unit_price": 0.99}]}"#,
        )
        .unwrap();
        assert_eq!(priced.item_count, 3);
        assert_eq!(priced.subtotal, 19.99);
        assert_eq!(priced.tax, 4.0);
        assert_eq!(priced.total, 23.99);
    }

    #[test]
    fn a_negative_quantity_is_refused() {
        let err = order(
            r#"{"order_id": "o-1", "currency": "EUR", "items": [{"sku": "A", "qty": -1, "unit_price": 1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "order o-1 item 0 (sku A) has a negative qty -1"
        );
    }

    #[test]
    fn an_order_without_items_is_refused() {
        let err = order(r#"{"order_id": "o-1", "currency": "EUR", "items": []}"#).unwrap_err();
        assert_eq!(err.message(), "order o-1 has no items");
    }
}
