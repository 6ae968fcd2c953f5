//! Routing of topics to the products that read them.

use hookline_core::Product;
use std::collections::{BTreeMap, BTreeSet};

/// Product names by topic, read from the product list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    products_by_topic: BTreeMap<String, Vec<String>>,
}

impl Routes {
    /// Groups products by topic. Products whose topic is not a legal Kafka
    /// topic name are left out with a warning, so that one bad product does
    /// not stop the subscription of the others.
    pub(crate) fn from_products(products: &[Product]) -> Self {
        let mut products_by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for product in products {
            if !is_legal_topic_name(&product.topic) {
                tracing::warn!(
                    product = %product.name,
                    topic = %product.topic,
                    "Product topic is not a legal Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'); its events are not consumed"
                );
                continue;
            }
            products_by_topic
                .entry(product.topic.clone())
                .or_default()
                .push(product.name.clone());
        }
        for names in products_by_topic.values_mut() {
            names.sort();
            names.dedup();
        }
        Self { products_by_topic }
    }

    pub(crate) fn topics(&self) -> BTreeSet<String> {
        self.products_by_topic.keys().cloned().collect()
    }

    /// Returns the products fed by `topic`, or an empty slice when no product
    /// reads it.
    pub(crate) fn products(&self, topic: &str) -> &[String] {
        self.products_by_topic
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Kafka's rule for topic names. Checking it here also keeps names that
/// librdkafka would read as a regular expression (a leading `^`) out of the
/// subscription.
fn is_legal_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::ContentType;
    use time::OffsetDateTime;

    fn product(name: &str, topic: &str) -> Product {
        Product {
            name: name.to_owned(),
            topic: topic.to_owned(),
            content_type: ContentType::Json,
            schema: None,
            validate: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn shared_topic_feeds_every_product() {
        let routes = Routes::from_products(&[
            product("order-shipped", "orders"),
            product("order-created", "orders"),
            product("invoice-paid", "invoices"),
        ]);
        assert_eq!(
            routes.products("orders"),
            ["order-created", "order-shipped"]
        );
        assert_eq!(routes.products("invoices"), ["invoice-paid"]);
        assert!(routes.products("payments").is_empty());
        let topics: Vec<String> = routes.topics().into_iter().collect();
        assert_eq!(topics, ["invoices", "orders"]);
    }

    #[test]
    fn illegal_topic_names_are_skipped() {
        let routes = Routes::from_products(&[
            product("a", "^orders.*"),
            product("b", "has space"),
            product("c", ""),
            product("d", ".."),
            product("e", &"x".repeat(250)),
            product("f", "orders_v2.eu-1"),
        ]);
        let topics: Vec<String> = routes.topics().into_iter().collect();
        assert_eq!(topics, ["orders_v2.eu-1"]);
    }
}
