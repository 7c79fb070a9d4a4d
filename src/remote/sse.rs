//! Server-sent events, read with caps: a streamed reply is split into lines as it
//! arrives, and a line or an event larger than [`MAX_LINE`] is an error at once, so a
//! server that sends one endless line (or endless `data:` lines without the blank line
//! that ends an event) cannot fill memory.

use super::pool::Endpoint;
use crate::net::describe;

/// Most bytes of one line, and of one event's data. A streamed chat piece is a few
/// hundred bytes (llama-server's, with its timings, under 2 kB); 1 MiB leaves room for
/// any real event and still stops a runaway one long before it matters for memory.
pub(crate) const MAX_LINE: usize = 1 << 20;

#[derive(Debug, PartialEq)]
pub(crate) enum SseError {
    /// A line or an event grew past [`MAX_LINE`].
    TooLong,
    /// The connection broke off (the transport's reason).
    Broke(String),
}

/// Splits bytes into events, as the server-sent events format has it: lines end in
/// `\n`, `\r\n` or `\r`; `data:` lines are joined with `\n`; a blank line ends an
/// event; comments (`:`) and other fields are skipped.
#[derive(Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How far `buf` was searched for a line end (so a long line is searched once).
    scanned: usize,
    /// The last line ended in `\r`: a `\n` right after it belongs to it.
    skip_lf: bool,
    data: Vec<u8>,
    has_data: bool,
}

impl Parser {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start.min(self.scanned);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event's data, `None` until more bytes are needed.
    pub(crate) fn next_event(&mut self) -> Result<Option<String>, SseError> {
        loop {
            if self.skip_lf {
                if self.start == self.buf.len() {
                    return Ok(None);
                }
                if self.buf[self.start] == b'\n' {
                    self.start += 1;
                }
                self.skip_lf = false;
            }
            let from = self.scanned.max(self.start);
            let Some(rel) = self.buf[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                self.scanned = self.buf.len();
                if self.buf.len() - self.start > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                return Ok(None);
            };
            let end = from + rel;
            if end - self.start > MAX_LINE {
                return Err(SseError::TooLong);
            }
            let (start, ending) = (self.start, self.buf[end]);
            self.start = end + 1;
            self.scanned = self.start;
            self.skip_lf = ending == b'\r';
            let line = &self.buf[start..end];
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    self.data.pop();
                    let data = String::from_utf8_lossy(&self.data).into_owned();
                    self.data.clear();
                    return Ok(Some(data));
                }
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(0) => continue,
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &[][..]),
            };
            if field == b"data" {
                if self.data.len() + value.len() + 1 > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
        }
    }

    /// The stream ended: a last line without its end, and a last event without its
    /// blank line, still count (some servers end so).
    pub(crate) fn end(&mut self) {
        self.feed(b"\n\n");
    }
}

/// The events of a streamed reply; dropping it closes the connection.
pub(crate) struct Events {
    resp: reqwest::Response,
    parser: Parser,
    ended: bool,
}

impl Events {
    pub(crate) fn new(resp: reqwest::Response) -> Self {
        Self {
            resp,
            parser: Parser::default(),
            ended: false,
        }
    }

    /// The next event's data; `None` at the end of the stream. Bytes are counted on
    /// `ep` as they arrive.
    pub(crate) async fn next(&mut self, ep: &Endpoint) -> Result<Option<String>, SseError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => {
                    ep.record(0, c.len() as u64);
                    self.parser.feed(&c);
                }
                Ok(None) => {
                    self.ended = true;
                    self.parser.end();
                }
                Err(e) => return Err(SseError::Broke(describe(&e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Result<Vec<String>, SseError> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c);
            while let Some(e) = p.next_event()? {
                out.push(e);
            }
        }
        p.end();
        while let Some(e) = p.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn events_are_split_whatever_the_chunks_and_line_ends() {
        let want = vec!["{\"a\":1}".to_string(), "x\ny".into(), "[DONE]".into()];
        let text =
            b"data: {\"a\":1}\n\n: keep-alive\n\nevent: m\ndata: x\r\ndata:y\r\rdata: [DONE]\n\n";
        assert_eq!(events(&[text]).unwrap(), want);
        // One byte at a time: `\r` and `\n` of one line end arrive apart.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events(&bytes).unwrap(), want);
        // A last event without its blank line still counts.
        assert_eq!(events(&[b"data: end"]).unwrap(), vec!["end".to_string()]);
    }

    #[test]
    fn an_endless_line_or_event_is_refused_at_the_cap() {
        let mut p = Parser::default();
        p.feed(b"data: ");
        let chunk = vec![b'x'; 64 * 1024];
        let mut fed = 6;
        let err = loop {
            match p.next_event() {
                Ok(None) => {}
                other => break other,
            }
            p.feed(&chunk);
            fed += chunk.len();
            assert!(fed < 2 * MAX_LINE, "never refused");
        };
        assert_eq!(err, Err(SseError::TooLong));
        // Short lines, but one event that never ends.
        let line = format!("data: {}\n", "y".repeat(1000));
        let mut p = Parser::default();
        let err = loop {
            p.feed(line.as_bytes());
            match p.next_event() {
                Ok(None) => {}
                other => break other,
            }
        };
        assert_eq!(err, Err(SseError::TooLong));
    }
}
