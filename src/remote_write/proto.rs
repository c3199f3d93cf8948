//! Prometheus remote write 1.0 on the wire: the protobuf messages of prometheus/prometheus
//! `prompb/remote.proto` and `prompb/types.proto` (the fields remote write 1.0 sends:
//! series labels and float samples), written by hand as `prost` derive structs so no
//! `protoc` is needed at build time, and the snappy block format around them.

/// `prometheus.WriteRequest` (`remote.proto`; field 2 is reserved, 3 is metadata, unsent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (`types.proto`): labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a float value at a time in milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The request body: the protobuf encoding of `request` in snappy's block format.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let protobuf = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&protobuf)
        .expect("snappy compresses any input below 4 GiB")
}

/// A request body back (for receivers in tests and benchmarks); `None` when it is not one.
pub fn decode(body: &[u8]) -> Option<WriteRequest> {
    let protobuf = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    prost::Message::decode(protobuf.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_encoding_and_matches_the_protobuf_wire_format() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
        };
        let protobuf = prost::Message::encode_to_vec(&request);
        // field 1 (timeseries), length-delimited; inside it field 1 (labels) then field 2
        assert_eq!(protobuf[0], 0x0a);
        assert_eq!(protobuf[2], 0x0a);
        assert_eq!(decode(&encode(&request)), Some(request));
        assert_eq!(decode(b"not snappy"), None);
    }
}
