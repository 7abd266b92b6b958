//! Example producer: emits `com.example.order.created` events, keyed by customer so each
//! customer's orders keep their order.
//!
//! ```sh
//! cargo run -p ferrisfx-producer --example emit_orders -- kafka 127.0.0.1:9092 10
//! cargo run -p ferrisfx-producer --example emit_orders -- http http://127.0.0.1:8080 10
//! ```

use cloudevents::{EventBuilder, EventBuilderV10};
use ferrisfx_producer::{HttpProducer, KafkaProducer, ProducerError};

#[tokio::main]
async fn main() -> Result<(), ProducerError> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(target)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: emit_orders kafka BROKERS [COUNT] | http SERVER_URL [COUNT]");
        std::process::exit(2);
    };
    let count: usize = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(10);
    let kafka = if mode == "kafka" {
        Some(KafkaProducer::new(target)?)
    } else {
        None
    };
    let http = HttpProducer::new(target);
    for i in 0..count {
        let customer = format!("customer-{}", i % 3);
        let event = EventBuilderV10::new()
            .id(format!("order-{i}"))
            .source("/examples/shop")
            .ty("com.example.order.created")
            .subject(format!("o-{i}"))
            .extension("partitionkey", customer)
            .data(
                "application/json",
                serde_json::json!({"order_id": format!("o-{i}"), "currency": "EUR",
                    "items": [{"sku": "mug", "qty": 1 + i % 3, "unit_price": 9.5}]}),
            )
            .build()
            .map_err(|e| ProducerError::Invalid(e.to_string()))?;
        match &kafka {
            Some(producer) => producer.emit(&event).await?,
            None => http.emit(&event).await?,
        }
    }
    eprintln!("emitted {count} events");
    Ok(())
}
