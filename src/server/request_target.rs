//! Accepting what curl users type: `?q=status:>500` with a raw `>`.
//!
//! Elasticsearch (Netty) takes `<`, `>`, `"` and DEL raw in a request's target, and curl
//! sends them as typed, so `curl 'localhost:9200/logs/_search?q=latency:>500'` is a normal
//! thing to run. hyper refuses such a request line before any handler sees it (the `http`
//! crate's URI grammar follows RFC 3986 strictly), with an empty `400`. hyper has no
//! option for this, so [`LenientTarget`] wraps each connection's socket and
//! percent-encodes exactly those four bytes inside request targets (`>` becomes `%3E`,
//! which the handlers decode back to `>`); nothing else is ever changed.
//!
//! To know where each request line starts on a keep-alive connection it follows HTTP/1.1
//! framing the way hyper does: the head ends at an empty line, then `Content-Length`
//! bytes of body. Anything it does not follow exactly — a `Transfer-Encoding`, a
//! malformed or repeated `Content-Length`, an over-long line — makes it step aside for the
//! rest of the connection (bytes pass unchanged, so hyper alone decides), never guess.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of a header line kept to recognise `Content-Length` and `Transfer-Encoding`:
/// enough for the name, the colon and a 20-digit length with some spaces.
const HEADER_PREFIX_BYTES: usize = 64;

/// The bytes hyper refuses in a request target that Elasticsearch accepts.
fn needs_escape(byte: u8) -> bool {
    matches!(byte, b'<' | b'>' | b'"' | 0x7F)
}

/// Where the scanner is in the incoming byte stream.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Before a request line (empty lines there are allowed and skipped).
    LineStart,
    Method,
    Target,
    /// The protocol version, up to the end of the request line.
    Version,
    /// Inside the head's header lines.
    Headers,
    /// `remaining` bytes of a request body.
    Body {
        remaining: u64,
    },
    /// Framing this scanner does not follow: bytes pass unchanged from here on.
    Opaque,
}

/// Follows requests through a connection's bytes and finds target bytes to escape.
#[derive(Debug)]
pub struct TargetScanner {
    phase: Phase,
    /// The start of the current header line (at most [`HEADER_PREFIX_BYTES`]).
    line: Vec<u8>,
    line_overflowed: bool,
    content_length: Option<u64>,
}

impl Default for TargetScanner {
    fn default() -> Self {
        TargetScanner {
            phase: Phase::LineStart,
            line: Vec::with_capacity(HEADER_PREFIX_BYTES),
            line_overflowed: false,
            content_length: None,
        }
    }
}

impl TargetScanner {
    /// Consumes `input` up to the first byte that must be escaped and returns how many
    /// bytes that is (`input.len()` when none must). The caller writes that byte's escape
    /// instead of it and goes on after it (the byte changes nothing in the framing).
    pub fn advance(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        while at < input.len() {
            match &mut self.phase {
                Phase::Opaque => return input.len(),
                Phase::Body { remaining } => {
                    let available = (input.len() - at) as u64;
                    let taken = (*remaining).min(available);
                    *remaining -= taken;
                    // `taken` ≤ what is left of `input`, so it fits in usize
                    at += usize::try_from(taken).expect("bounded by the input's length");
                    if *remaining == 0 {
                        self.phase = Phase::LineStart;
                    }
                    continue;
                }
                Phase::Target if needs_escape(input[at]) => return at,
                _ => self.step(input[at]),
            }
            at += 1;
        }
        input.len()
    }

    fn step(&mut self, byte: u8) {
        self.phase = match (&self.phase, byte) {
            (Phase::LineStart, b'\r' | b'\n') => Phase::LineStart,
            (Phase::LineStart, b' ') => Phase::Opaque,
            (Phase::LineStart, _) => Phase::Method,
            (Phase::Method, b' ') => Phase::Target,
            (Phase::Method, b'\r' | b'\n') => Phase::Opaque,
            (Phase::Target, b' ') => Phase::Version,
            // a request line without a version (HTTP/0.9) is not ours to follow
            (Phase::Target, b'\r' | b'\n') => Phase::Opaque,
            (Phase::Version, b'\n') => {
                self.start_head();
                Phase::Headers
            }
            (Phase::Headers, b'\n') => self.end_header_line(),
            (Phase::Headers, _) => {
                if self.line.len() < HEADER_PREFIX_BYTES {
                    self.line.push(byte);
                } else {
                    self.line_overflowed = true;
                }
                Phase::Headers
            }
            (phase, _) => phase.clone(),
        };
    }

    fn start_head(&mut self) {
        self.line.clear();
        self.line_overflowed = false;
        self.content_length = None;
    }

    /// A header line ended: note the framing it sets, or end the head.
    fn end_header_line(&mut self) -> Phase {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.is_empty() && !self.line_overflowed {
            return match self.content_length {
                Some(remaining) if remaining > 0 => Phase::Body { remaining },
                _ => Phase::LineStart,
            };
        }
        let next = match header_framing(line, self.line_overflowed) {
            Framing::None => Phase::Headers,
            Framing::Length(length) if self.content_length.is_none() => {
                self.content_length = Some(length);
                Phase::Headers
            }
            Framing::Length(_) | Framing::Unfollowed => Phase::Opaque,
        };
        self.line.clear();
        self.line_overflowed = false;
        next
    }
}

/// What one header line says about where the body ends.
enum Framing {
    /// Nothing: not a framing header.
    None,
    Length(u64),
    /// `Transfer-Encoding`, or a `Content-Length` that is not one plain number.
    Unfollowed,
}

fn header_framing(line: &[u8], overflowed: bool) -> Framing {
    let Some(colon) = line.iter().position(|&byte| byte == b':') else {
        return if overflowed {
            Framing::Unfollowed
        } else {
            Framing::None
        };
    };
    let name = line[..colon].trim_ascii();
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Framing::Unfollowed;
    }
    if !name.eq_ignore_ascii_case(b"content-length") {
        return Framing::None;
    }
    let value = line[colon + 1..].trim_ascii();
    if overflowed || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Framing::Unfollowed;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|value| value.parse().ok())
        .map_or(Framing::Unfollowed, Framing::Length)
}

/// Escapes what `scanner` finds in `input`, appending the result to `out`.
pub fn escape_into(scanner: &mut TargetScanner, mut input: &[u8], out: &mut Vec<u8>) {
    while !input.is_empty() {
        let clean = scanner.advance(input);
        out.extend_from_slice(&input[..clean]);
        let Some(&byte) = input.get(clean) else {
            break;
        };
        out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        input = &input[clean + 1..];
    }
}

/// A connection's socket whose reads have raw `<`, `>`, `"` and DEL in request targets
/// percent-encoded; writes pass through.
pub struct LenientTarget<S> {
    inner: S,
    scanner: TargetScanner,
    /// Escaped bytes not yet handed to the reader.
    pending: Vec<u8>,
    pending_at: usize,
}

impl<S> LenientTarget<S> {
    pub fn new(inner: S) -> LenientTarget<S> {
        LenientTarget {
            inner,
            scanner: TargetScanner::default(),
            pending: Vec::new(),
            pending_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientTarget<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_at < this.pending.len() {
            let available = &this.pending[this.pending_at..];
            let taken = available.len().min(buf.remaining());
            buf.put_slice(&available[..taken]);
            this.pending_at += taken;
            if this.pending_at == this.pending.len() {
                this.pending.clear();
                this.pending_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // read straight into the caller's buffer; only a read holding a byte to escape
        // is copied (from that byte on) into `pending`
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(context, buf))?;
        let read = &buf.filled()[before..];
        let clean = this.scanner.advance(read);
        if clean < read.len() {
            let rest = read[clean..].to_vec();
            buf.set_filled(before + clean);
            let mut escaped = std::mem::take(&mut this.pending);
            let byte = rest[0];
            escaped.extend_from_slice(format!("%{byte:02X}").as_bytes());
            escape_into(&mut this.scanner, &rest[1..], &mut escaped);
            this.pending = escaped;
            this.pending_at = 0;
            if clean == 0 {
                // hand over at least one byte so the read is not mistaken for an end
                let taken = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..taken]);
                this.pending_at = taken;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientTarget<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(context, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape_into(&mut TargetScanner::default(), input, &mut out);
        out
    }

    #[test]
    fn raw_comparison_operators_in_a_target_are_percent_encoded() {
        assert_eq!(
            escaped(b"GET /logs/_search?q=latency:>500+msg:\"a<b\" HTTP/1.1\r\nHost: x\r\n\r\n"),
            b"GET /logs/_search?q=latency:%3E500+msg:%22a%3Cb%22 HTTP/1.1\r\nHost: x\r\n\r\n"
        );
    }

    #[test]
    fn headers_and_bodies_are_never_changed() {
        let request =
            b"POST /_bulk?x=> HTTP/1.1\r\nX-Note: a>b\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let out = escaped(request);
        assert_eq!(
            out,
            b"POST /_bulk?x=%3E HTTP/1.1\r\nX-Note: a>b\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn pipelined_requests_are_each_followed_through_their_bodies() {
        let first = b"POST /a?q=> HTTP/1.1\r\ncontent-length: 12\r\n\r\nGET /b?q=> x";
        let second = b"\r\nGET /c?q=\" HTTP/1.1\r\n\r\n";
        let out = escaped(&[&first[..], &second[..]].concat());
        assert_eq!(
            out,
            [
                &b"POST /a?q=%3E HTTP/1.1\r\ncontent-length: 12\r\n\r\nGET /b?q=> x"[..],
                &b"\r\nGET /c?q=%22 HTTP/1.1\r\n\r\n"[..],
            ]
            .concat()
        );
    }

    #[test]
    fn framing_it_does_not_follow_makes_it_step_aside() {
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            let input = [head, &b"GET /?q=> HTTP/1.1\r\n\r\n"[..]].concat();
            assert_eq!(escaped(&input), input, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_long_header_line_is_skipped_unless_it_could_frame_the_body() {
        let cookie = format!("Cookie: {}\r\n", "c".repeat(500));
        let input = format!("GET /a HTTP/1.1\r\n{cookie}\r\nGET /b?q=> HTTP/1.1\r\n\r\n");
        assert_eq!(
            escaped(input.as_bytes()),
            input.replace("q=>", "q=%3E").as_bytes()
        );
        let long_length = format!("Content-Length: {}1\r\n", " ".repeat(80));
        let input = format!("GET /a HTTP/1.1\r\n{long_length}\r\nx GET /b?q=> HTTP/1.1\r\n\r\n");
        assert_eq!(escaped(input.as_bytes()), input.as_bytes());
    }

    #[test]
    fn the_result_does_not_depend_on_how_reads_split_the_stream() {
        let stream = b"\r\nGET /x?q=a>1&b=\"c\" HTTP/1.1\r\nContent-Length: 3\r\n\r\n>>>DELETE /y<\x7f HTTP/1.1\r\n\r\n";
        let whole = escaped(stream);
        assert_eq!(
            whole,
            b"\r\nGET /x?q=a%3E1&b=%22c%22 HTTP/1.1\r\nContent-Length: 3\r\n\r\n>>>DELETE /y%3C%7F HTTP/1.1\r\n\r\n"
        );
        for split in 0..=stream.len() {
            let mut scanner = TargetScanner::default();
            let mut out = Vec::new();
            escape_into(&mut scanner, &stream[..split], &mut out);
            escape_into(&mut scanner, &stream[split..], &mut out);
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[tokio::test]
    async fn reads_through_the_wrapper_see_the_escaped_stream() {
        use tokio::io::AsyncReadExt;
        let stream: &[u8] = b"GET /_search?q=>5 HTTP/1.1\r\n\r\nGET /?q=< HTTP/1.1\r\n\r\n";
        let mut reader = LenientTarget::new(stream);
        let mut out = Vec::new();
        let mut chunk = [0_u8; 3];
        loop {
            let read = reader.read(&mut chunk).await.expect("read");
            if read == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..read]);
        }
        assert_eq!(
            out,
            b"GET /_search?q=%3E5 HTTP/1.1\r\n\r\nGET /?q=%3C HTTP/1.1\r\n\r\n"
        );
    }
}
