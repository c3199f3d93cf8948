//! The metrics store (issue 5, DESIGN §7). So far: [`chunk`], Gorilla-style compressed
//! chunks (delta-of-delta timestamps, XOR values). The in-memory head, its write-ahead log,
//! on-disk blocks and retention come next.

pub mod chunk;
