//! The metrics store (issue 5, DESIGN §7). So far: [`chunk`], Gorilla-style compressed
//! chunks (delta-of-delta timestamps, XOR values), and [`head`], the in-memory series with
//! an inverted index and out-of-order rejection. The head's write-ahead log, on-disk
//! blocks and retention come next.

pub mod chunk;
pub mod head;
