//! What a caught panic says: the one helper every place that contains a panic (a request
//! handler, a rule evaluation, an ingest worker, a query pool) uses to log it.

/// The message a panic was raised with (`panic!("…")` carries a `&str` or a `String`).
pub fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
