//! How a block stores a chunk: whichever of two encodings is smaller.
//!
//! - Tag 1, Gorilla: the head's XOR chunk as is (any value, NaNs and staleness markers
//!   bit for bit).
//! - Tag 2, decimal: when every value is an integer `m` over `10^e` exactly (what
//!   exporters print: `12345.67`, `4096`), the values are stored as the integers'
//!   deltas or delta-of-deltas (whichever is smaller for the chunk), and timestamps as
//!   delta-of-deltas; both in buckets sized for the small numbers scrapes produce (a
//!   few milliseconds of jitter take 6 bits instead of Gorilla's 16). A counter that
//!   moves by similar amounts takes about a byte a sample instead of three.
//!
//! Layout of tag 2: `2`, varint count, zig-zag varint first timestamp, zig-zag varint
//! first delta, `e`, mode (`0` delta, `1` delta-of-delta, `2` constant: no value bits),
//! zig-zag varint first integer, then the bit stream: per sample from the third a
//! timestamp bucket, per sample from the second a value bucket. Buckets (zig-zag `n`): `0` → `0`; `< 2^4` → `10`+4 bits;
//! `< 2^8` → `110`+8; `< 2^16` → `1110`+16; `< 2^32` → `11110`+32; else `11111`+64.
//! Hand-written like the chunks: no crate offers this layout.

use super::chunk::{Chunk, ChunkIter};

const GORILLA: u8 = 1;
const DECIMAL: u8 = 2;
/// Largest integer an f64 holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

struct BitWriter {
    bytes: Vec<u8>,
    used: u8,
}

impl BitWriter {
    fn write(&mut self, value: u64, bits: u8) {
        for bit in (0..bits).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            if (value >> bit) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> self.used;
            }
            self.used = (self.used + 1) % 8;
        }
    }

    fn bucket(&mut self, value: i64) {
        let n = zigzag(value);
        match n {
            0 => self.write(0, 1),
            _ if n < 1 << 4 => {
                self.write(0b10, 2);
                self.write(n, 4);
            }
            _ if n < 1 << 8 => {
                self.write(0b110, 3);
                self.write(n, 8);
            }
            _ if n < 1 << 16 => {
                self.write(0b1110, 4);
                self.write(n, 16);
            }
            _ if n < 1 << 32 => {
                self.write(0b11110, 5);
                self.write(n, 32);
            }
            _ => {
                self.write(0b11111, 5);
                self.write(n, 64);
            }
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    /// Reads `bits` bits, a byte's worth at a time.
    fn read(&mut self, bits: u8) -> Option<u64> {
        let mut value = 0u64;
        let mut remaining = bits as usize;
        while remaining > 0 {
            let byte = *self.bytes.get(self.bit / 8)?;
            let available = 8 - self.bit % 8;
            let take = available.min(remaining);
            let chunk = (u64::from(byte) >> (available - take)) & ((1 << take) - 1);
            value = (value << take) | chunk;
            self.bit += take;
            remaining -= take;
        }
        Some(value)
    }

    fn bucket(&mut self) -> Option<i64> {
        let mut ones = 0;
        while ones < 5 && self.read(1)? == 1 {
            ones += 1;
        }
        let bits = [0, 4, 8, 16, 32, 64][ones];
        Some(unzigzag(if bits == 0 { 0 } else { self.read(bits)? }))
    }
}

/// The smallest power of ten that makes every value an exact integer, if any.
fn decimal_scale(samples: &[(i64, f64)]) -> Option<(u8, Vec<i64>)> {
    'exponent: for exponent in 0..=9u8 {
        let scale = 10f64.powi(i32::from(exponent));
        let mut integers = Vec::with_capacity(samples.len());
        for (_, value) in samples {
            let scaled = (value * scale).round();
            if !scaled.is_finite()
                || scaled.abs() >= EXACT
                || (scaled / scale).to_bits() != value.to_bits()
            {
                continue 'exponent;
            }
            integers.push(scaled as i64);
        }
        return Some((exponent, integers));
    }
    None
}

/// How the integers are written: deltas, delta-of-deltas, or nothing (all equal).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Delta = 0,
    DeltaOfDelta = 1,
    Constant = 2,
}

fn encode_decimal(samples: &[(i64, f64)], exponent: u8, integers: &[i64], mode: Mode) -> Vec<u8> {
    let mut out = vec![DECIMAL];
    put_varint(&mut out, samples.len() as u64);
    put_varint(&mut out, zigzag(samples[0].0));
    let first_delta = samples.get(1).map_or(0, |second| second.0 - samples[0].0);
    put_varint(&mut out, zigzag(first_delta));
    out.push(exponent);
    out.push(mode as u8);
    put_varint(&mut out, zigzag(integers[0]));
    let mut bits = BitWriter {
        bytes: Vec::new(),
        used: 0,
    };
    let (mut time_delta, mut value_delta) = (first_delta, 0i64);
    for i in 1..samples.len() {
        if i >= 2 {
            let delta = samples[i].0 - samples[i - 1].0;
            bits.bucket(delta.wrapping_sub(time_delta));
            time_delta = delta;
        }
        let delta = integers[i].wrapping_sub(integers[i - 1]);
        match mode {
            Mode::Constant => {}
            Mode::DeltaOfDelta if i >= 2 => bits.bucket(delta.wrapping_sub(value_delta)),
            _ => bits.bucket(delta),
        }
        value_delta = delta;
    }
    out.extend_from_slice(&bits.bytes);
    out
}

/// Encodes time-ordered samples the smaller way.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut gorilla = Chunk::new();
    for (time, value) in samples {
        gorilla.append(*time, *value);
    }
    let mut best = Vec::with_capacity(gorilla.bytes().len() + 1);
    best.push(GORILLA);
    best.extend_from_slice(gorilla.bytes());
    if samples.is_empty() {
        return best;
    }
    if let Some((exponent, integers)) = decimal_scale(samples) {
        let modes: &[Mode] = if integers.iter().all(|integer| *integer == integers[0]) {
            &[Mode::Constant]
        } else {
            &[Mode::Delta, Mode::DeltaOfDelta]
        };
        for &mode in modes {
            let candidate = encode_decimal(samples, exponent, &integers, mode);
            if candidate.len() < best.len() {
                best = candidate;
            }
        }
    }
    best
}

/// Decodes what [`encode`] wrote; `None` when the bytes are damaged.
pub fn decode(bytes: &[u8]) -> Option<Vec<(i64, f64)>> {
    match *bytes.first()? {
        GORILLA => Some(ChunkIter::new(&bytes[1..]).collect()),
        DECIMAL => {
            let mut at = 1;
            let count = get_varint(bytes, &mut at)? as usize;
            let mut time = unzigzag(get_varint(bytes, &mut at)?);
            let mut time_delta = unzigzag(get_varint(bytes, &mut at)?);
            let exponent = *bytes.get(at)?;
            let mode = *bytes.get(at + 1)?;
            if mode > Mode::Constant as u8 {
                return None;
            }
            at += 2;
            let mut integer = unzigzag(get_varint(bytes, &mut at)?);
            let scale = 10f64.powi(i32::from(exponent));
            let mut reader = BitReader {
                bytes: &bytes[at..],
                bit: 0,
            };
            let mut out = Vec::with_capacity(count);
            out.push((time, integer as f64 / scale));
            let mut value_delta = 0i64;
            for i in 1..count {
                if i >= 2 {
                    time_delta = time_delta.wrapping_add(reader.bucket()?);
                }
                time = time.wrapping_add(time_delta);
                let delta = match mode {
                    2 => 0,
                    1 if i >= 2 => value_delta.wrapping_add(reader.bucket()?),
                    _ => reader.bucket()?,
                };
                integer = integer.wrapping_add(delta);
                value_delta = delta;
                out.push((time, integer as f64 / scale));
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let bytes = encode(samples);
        let back = decode(&bytes).expect("decode");
        assert_eq!(back.len(), samples.len());
        for (got, want) in back.iter().zip(samples) {
            assert_eq!(got.0, want.0);
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "{} vs {}", got.1, want.1);
        }
        bytes.len()
    }

    #[test]
    fn every_value_comes_back_bit_for_bit_and_decimals_take_less_room() {
        let mut random = 0x1234_5678_u64;
        let mut next = || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        // a cpu-seconds counter with jittered scrapes: two decimals, uneven increments
        let mut value = 123_456.78;
        let counter: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                value = ((value + 0.6 + (next() % 40) as f64 / 100.0) * 100.0_f64).round() / 100.0;
                (1_700_000_000_000 + i * 15_000 + (next() % 4) as i64, value)
            })
            .collect();
        let decimal = round_trip(&counter);
        let mut gorilla = Chunk::new();
        for (time, value) in &counter {
            gorilla.append(*time, *value);
        }
        assert!(
            decimal * 2 < gorilla.bytes().len(),
            "decimal {decimal} B vs Gorilla {} B",
            gorilla.bytes().len()
        );
        // anything else falls back to Gorilla, bit for bit
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        round_trip(&[
            (0, 1.0),
            (15_000, stale),
            (30_000, f64::NAN),
            (45_000, -0.0),
            (60_000, f64::INFINITY),
        ]);
        round_trip(&[(0, 0.1), (1, 1e300), (2, -7.25), (3, 1.0 / 3.0)]);
        round_trip(&[(5, 42.0)]);
        round_trip(&[(0, 1e15), (15_000, -1e15), (30_000, 0.0)]);
        assert!(
            round_trip(&(0..480).map(|i| (i * 15_000, 7.0)).collect::<Vec<_>>()) < 80,
            "a constant costs a bit a sample"
        );
        assert!(decode(&[9, 1, 2]).is_none());
    }
}
