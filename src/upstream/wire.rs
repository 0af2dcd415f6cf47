//! Messages from an upstream as they arrive, before rmcp reads them. serde_json refuses
//! JSON nested deeper than 128 levels and rmcp then drops the whole message: one tool with
//! a schema nested that deep in a `tools/list` answer would leave the request to time out
//! and the upstream to count as down, its other tools with it. Here such tools are cut out
//! of the answer, each with a warning, and the rest goes on; any other message passes as
//! it came. The scan keeps its own stack of nothing but counters: no input can make it
//! recurse.

use std::borrow::Cow;

use futures::{Stream, StreamExt};

use crate::catalog::{MAX_SCHEMA_DEPTH, SchemaLimit};

/// Nesting serde_json reads whole (its limit is 128); a deeper message is looked into.
const READABLE_DEPTH: usize = 120;

/// `message` (one JSON-RPC message from `upstream`), less the tools of a `tools/list`
/// answer that nest deeper than the catalog takes.
pub(super) fn admit<'a>(upstream: &str, message: &'a [u8]) -> Cow<'a, [u8]> {
    let mut scan = Scan {
        bytes: message,
        at: 0,
    };
    if scan
        .skip_value()
        .is_none_or(|depth| depth <= READABLE_DEPTH)
    {
        return Cow::Borrowed(message);
    }
    let Some(list) = find_tool_list(message) else {
        return Cow::Borrowed(message);
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    for tool in &list.tools {
        match &tool.too_deep {
            None => kept.push(&message[tool.start..tool.end]),
            Some(field) => {
                let limit = SchemaLimit::Depth {
                    field: field.clone(),
                };
                tracing::warn!(
                    upstream = %upstream,
                    tool = %tool.name.as_deref().unwrap_or("(unnamed)"),
                    "tool left out of the catalog: {limit}"
                );
            }
        }
    }
    if kept.len() == list.tools.len() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&message[..list.start]);
    out.push(b'[');
    out.extend_from_slice(&kept.join(&b','));
    out.push(b']');
    out.extend_from_slice(&message[list.end..]);
    Cow::Owned(out)
}

/// Bytes of the start and of the end of an over-long message kept to find its `id` (the
/// Python SDK writes it first, the TypeScript SDK last).
const ID_WINDOW: usize = 4 << 10;

/// A message past the cap, being dropped: its first and last bytes, for its `id`.
#[derive(Default)]
pub(super) struct Dropping {
    head: Vec<u8>,
    tail: Vec<u8>,
    bytes: usize,
}

impl Dropping {
    pub(super) fn take(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len();
        if self.head.len() < ID_WINDOW {
            let room = ID_WINDOW - self.head.len();
            self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        self.tail
            .extend_from_slice(&chunk[chunk.len().saturating_sub(ID_WINDOW)..]);
        if self.tail.len() > ID_WINDOW {
            self.tail.drain(..self.tail.len() - ID_WINDOW);
        }
    }
}

/// The error that answers the request an over-long message answered; nothing if it
/// answered none that can be found (a notification).
pub(super) fn too_large(upstream: &str, dropped: &Dropping, max_bytes: usize) -> Vec<u8> {
    // A request from the server (it names a method) shares ids with nothing of ours: an
    // error in its name would answer one of our own requests.
    // Only a `method` key before any `result` or `error` makes it a request: a result may
    // hold a `method` key of its own.
    let find = |key: &[u8]| dropped.head.windows(key.len()).position(|w| w == key);
    let payload = [find(b"\"result\""), find(b"\"error\"")]
        .into_iter()
        .flatten()
        .min();
    let is_request = find(b"\"method\"").is_some_and(|m| payload.is_none_or(|p| m < p));
    let id = if is_request {
        None
    } else {
        response_id(&dropped.head, &dropped.tail)
    };
    let Some(id) = id else {
        tracing::warn!(
            upstream,
            bytes = dropped.bytes,
            "an upstream message past {} KiB was dropped (it answered no request)",
            max_bytes >> 10
        );
        return Vec::new();
    };
    tracing::warn!(
        upstream,
        bytes = dropped.bytes,
        "an upstream answer past {} KiB was dropped unread",
        max_bytes >> 10
    );
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": format!(
                "upstream result exceeds {} KiB (it sent {} bytes), the most one answer may be (codemode.upstream.maxResultKiB); it was dropped unread. Ask the tool for less (a page, a filter, fewer fields)",
                max_bytes >> 10,
                dropped.bytes
            ),
        },
    });
    serde_json::to_vec(&error).unwrap_or_default()
}

/// One message that came whole (the data of an SSE event): past `max_bytes`, the cap's
/// error answering the request it answered, as over stdio (empty if it answered none);
/// otherwise [`admit`]ted.
pub(super) fn admit_whole<'a>(
    upstream: &str,
    message: &'a [u8],
    max_bytes: usize,
) -> Cow<'a, [u8]> {
    if message.len() <= max_bytes {
        return admit(upstream, message);
    }
    let mut dropped = Dropping::default();
    dropped.take(message);
    Cow::Owned(too_large(upstream, &dropped, max_bytes))
}

/// The most bytes one SSE event may run to before its stream is closed.
pub(super) fn event_limit(max_bytes: usize) -> usize {
    max_bytes.saturating_mul(4).saturating_add(64 << 10)
}

/// An event stream's bytes, ended once one event passes [`event_limit`]: sse-stream holds
/// an event whole before it yields it, so one endless event would grow this process
/// without bound. Below that, an event past `max_bytes` is answered with the cap's error
/// ([`admit_whole`]) and the stream goes on. Past it, the event is ended where it was cut
/// (a blank line), so that it too reaches [`admit_whole`] and the call waiting on it is
/// answered with the cap's error, and then the stream ends: a bare end would read as a
/// close the client may resume from, the call still waiting.
pub(super) fn capped<S, E>(
    upstream: &str,
    bytes: S,
    max_bytes: usize,
) -> impl Stream<Item = Result<bytes::Bytes, E>> + use<S, E>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
{
    let limit = event_limit(max_bytes);
    let upstream = upstream.to_string();
    let mut in_event = 0usize;
    let mut last = 0u8;
    let mut after_cr = false;
    // Whether the line so far is a field's name (no `:` yet).
    let mut in_name = true;
    let mut cut = false;
    bytes.scan((), move |(), chunk| {
        if cut {
            return std::future::ready(None);
        }
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => return std::future::ready(Some(Err(error))),
        };
        let mut over = None;
        for (at, &byte) in chunk.iter().enumerate() {
            // Lines end in CRLF, LF or CR alone (the SSE grammar), here all read as LF; a
            // blank line ends an event.
            let byte = match byte {
                b'\n' if after_cr => {
                    after_cr = false;
                    continue;
                }
                b'\r' => {
                    after_cr = true;
                    b'\n'
                }
                other => {
                    after_cr = false;
                    other
                }
            };
            in_event = if byte == b'\n' && last == b'\n' { 0 } else { in_event + 1 };
            last = byte;
            if in_event > limit {
                over = Some(at);
                break;
            }
            match byte {
                b'\n' => in_name = true,
                b':' => in_name = false,
                _ => {}
            }
        }
        let Some(at) = over else {
            return std::future::ready(Some(Ok(chunk)));
        };
        cut = true;
        tracing::warn!(
            upstream = %upstream,
            "an event of the upstream's SSE stream passed {} KiB (4 x codemode.upstream.maxResultKiB); it was cut there and the stream closed",
            limit >> 10
        );
        // The reader takes each line as UTF-8: a character the cut would split goes, or,
        // begun in an earlier chunk (so already passed on), is completed.
        let continues = |at: usize| chunk.get(at).is_some_and(|b| b & 0xC0 == 0x80);
        let mut start = at;
        while start > 0 && continues(start) {
            start -= 1;
        }
        let mut at = start;
        if continues(at) {
            while continues(at) {
                at += 1;
            }
        }
        let mut ended = Vec::with_capacity(at + 3);
        ended.extend_from_slice(&chunk[..at]);
        // A cut field name becomes a field nobody reads; a cut value ends where it is.
        if in_name {
            ended.push(b':');
        }
        ended.extend_from_slice(b"\n\n");
        std::future::ready(Some(Ok(bytes::Bytes::from(ended))))
    })
}

/// The `id` of a JSON-RPC response, from its first bytes (where it comes before the result)
/// or its last (where it follows it).
fn response_id(head: &[u8], tail: &[u8]) -> Option<serde_json::Value> {
    let find = |text: &[u8], from_end: bool| -> Option<usize> {
        let key = b"\"id\"";
        let mut found = text
            .windows(key.len())
            .enumerate()
            .filter(|(_, w)| *w == key);
        if from_end {
            found.next_back().map(|(i, _)| i + key.len())
        } else {
            found.next().map(|(i, _)| i + key.len())
        }
    };
    let value_after = |text: &[u8], at: usize| -> Option<serde_json::Value> {
        let rest = text.get(at..)?;
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = rest[colon..].strip_prefix(b":")?;
        let value = serde_json::Deserializer::from_slice(rest)
            .into_iter::<serde_json::Value>()
            .next()?
            .ok()?;
        (value.is_number() || value.is_string()).then_some(value)
    };
    let before_payload = |text: &[u8], at: usize| {
        let payload = [&b"\"result\""[..], &b"\"error\""[..]]
            .iter()
            .filter_map(|key| text.windows(key.len()).position(|w| w == *key))
            .min();
        payload.is_none_or(|p| at < p)
    };
    if let Some(at) = find(head, false)
        && before_payload(head, at)
        && let Some(id) = value_after(head, at)
    {
        return Some(id);
    }
    find(tail, true).and_then(|at| value_after(tail, at))
}

/// Where `result.tools` is in a message, and its elements.
#[derive(Debug)]
struct ToolList {
    /// The array's `[`.
    start: usize,
    /// Just past its `]`.
    end: usize,
    tools: Vec<ListedTool>,
}

#[derive(Debug)]
struct ListedTool {
    start: usize,
    end: usize,
    name: Option<String>,
    /// The member nesting deeper than [`MAX_SCHEMA_DEPTH`], if one does.
    too_deep: Option<String>,
}

/// `result.tools` of a JSON-RPC answer, `None` if the message has none or is not JSON.
fn find_tool_list(message: &[u8]) -> Option<ToolList> {
    let mut scan = Scan {
        bytes: message,
        at: 0,
    };
    let mut list = None;
    scan.members(|scan, key| {
        if key != "result" {
            return scan.skip_value().map(drop);
        }
        scan.members(|scan, key| {
            if key != "tools" || scan.peek() != Some(b'[') {
                return scan.skip_value().map(drop);
            }
            let start = scan.at;
            let mut tools = Vec::new();
            scan.elements(|scan| {
                tools.push(scan.tool()?);
                Some(())
            })?;
            list = Some(ToolList {
                start,
                end: scan.at,
                tools,
            });
            Some(())
        })
    })?;
    list
}

/// A cursor over JSON text that understands as much of it as the tool list needs.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn skip_whitespace(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Skips a string (the cursor on its `"`), returning its text with the quotes.
    fn skip_string(&mut self) -> Option<&[u8]> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.bytes.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        serde_json::from_slice(self.skip_string()?).ok()
    }

    /// Skips one value, returning how many levels of objects and arrays it nests.
    fn skip_value(&mut self) -> Option<usize> {
        match self.peek()? {
            b'"' => self.skip_string().map(|_| 0),
            b'{' | b'[' => {
                let (mut depth, mut deepest) = (0usize, 0usize);
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                        }
                        b'{' | b'[' => {
                            self.at += 1;
                            depth += 1;
                            deepest = deepest.max(depth);
                        }
                        b'}' | b']' => {
                            self.at += 1;
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(deepest);
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                // A number or literal: up to the next delimiter.
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| !b",}] \t\r\n".contains(b))
                {
                    self.at += 1;
                }
                (self.at > start).then_some(0)
            }
        }
    }

    /// Calls `member` with each key of an object (the cursor on its `{`); `member` must
    /// consume the value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, String) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `element` for each element of an array (the cursor on its `[`); `element`
    /// must consume it.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// One element of `tools`: where it is, its name, and the member that nests too deep.
    fn tool(&mut self) -> Option<ListedTool> {
        self.skip_whitespace();
        let start = self.at;
        let mut tool = ListedTool {
            start,
            end: start,
            name: None,
            too_deep: None,
        };
        if self.peek()? == b'{' {
            self.members(|scan, key| {
                if key == "name" && scan.peek() == Some(b'"') {
                    tool.name = Some(scan.string()?);
                    return Some(());
                }
                // The member's value is what the catalog measures (`inputSchema` = level 1).
                if scan.skip_value()? > MAX_SCHEMA_DEPTH && tool.too_deep.is_none() {
                    tool.too_deep = Some(key);
                }
                Some(())
            })?;
        } else {
            self.skip_value()?;
        }
        tool.end = self.at;
        Some(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`capped`] lets through of `stream`, given in chunks of 1 KiB.
    fn through(stream: &[u8], max_bytes: usize) -> Vec<u8> {
        let chunks: Vec<Result<bytes::Bytes, ()>> = stream
            .chunks(1024)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let capped = capped("u", futures::stream::iter(chunks), max_bytes);
        futures::executor::block_on(futures::StreamExt::collect::<Vec<_>>(capped))
            .into_iter()
            .flat_map(|c| c.map_or_else(|()| Vec::new(), |c| c.to_vec()))
            .collect()
    }

    fn passed(stream: &[u8], max_bytes: usize) -> usize {
        through(stream, max_bytes).len()
    }

    #[test]
    fn the_event_cap_counts_each_event_whatever_its_line_endings() {
        let max = 1024;
        let total = 4 * event_limit(max);
        for end in ["\n\n", "\r\n\r\n", "\r\r"] {
            let event = format!("data: {}{end}", "x".repeat(200));
            let stream = event.repeat(total / event.len() + 1);
            assert_eq!(
                passed(stream.as_bytes(), max),
                stream.len(),
                "{end:?}: small events pass"
            );
        }
        let endless = format!("data: {}", "x".repeat(total));
        assert!(
            passed(endless.as_bytes(), max) < endless.len(),
            "one endless event is cut"
        );
    }

    /// A cut never splits a character, nor leaves a field name without its colon: the
    /// reader would refuse either line, and the call would wait on.
    #[test]
    fn the_cut_keeps_characters_whole_and_lines_readable() {
        let max = 1024;
        let limit = event_limit(max);
        for pad in 0..4 {
            let endless = format!("data: {}{}", "x".repeat(pad), "é€😀".repeat(limit));
            let cut = through(endless.as_bytes(), max);
            assert!(
                std::str::from_utf8(&cut).is_ok(),
                "pad {pad}: a character was split"
            );
        }
        let names = "a".repeat(2 * limit);
        let cut = through(names.as_bytes(), max);
        assert!(cut.ends_with(b":\n\n"), "a cut name gets its colon");
    }

    /// An answer cut past the stream's bound still answers its call: the cut event ends
    /// (so the SSE reader yields it), too large, and is answered with the cap's error.
    #[test]
    fn an_answer_cut_at_the_streams_bound_is_answered_with_the_caps_error() {
        let max = 1024;
        let endless = format!(
            "id: 7\ndata: {{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{{\"text\":\"{}",
            "x".repeat(4 * event_limit(max))
        );
        let cut = through(endless.as_bytes(), max);
        assert!(cut.ends_with(b"\n\n"), "the cut event is ended");
        let data = cut
            .strip_prefix(b"id: 7\ndata: ".as_slice())
            .and_then(|rest| rest.strip_suffix(b"\n\n".as_slice()))
            .expect("one event");
        let answer = String::from_utf8(admit_whole("u", data, max).into_owned()).unwrap();
        assert!(
            answer.contains("\"id\":5") && answer.contains("\"error\""),
            "{answer}"
        );
    }

    #[test]
    fn an_over_long_answer_holding_a_method_key_is_still_answered() {
        let mut answer = Dropping::default();
        answer.take(br#"{"jsonrpc":"2.0","id":3,"result":{"structuredContent":{"method":"GET"},"content":[{"text":"xx"#);
        let error = String::from_utf8(too_large("u", &answer, 1024)).unwrap();
        assert!(
            error.contains("\"id\":3") && error.contains("exceeds 1 KiB"),
            "{error}"
        );
        let mut request = Dropping::default();
        request
            .take(br#"{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","params":{"x":"#);
        assert!(
            too_large("u", &request, 1024).is_empty(),
            "a server's request answers nothing of ours"
        );
    }

    #[test]
    fn the_id_is_found_before_or_after_the_payload() {
        assert_eq!(
            response_id(
                br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"text":"xx"#,
                b"xx\"}]}}"
            ),
            Some(serde_json::json!(7))
        );
        assert_eq!(
            response_id(
                br#"{"result":{"content":[{"text":"{\"id\":1"#,
                br#"xxx"}]},"jsonrpc":"2.0","id":"a-9"}"#
            ),
            Some(serde_json::json!("a-9"))
        );
        assert_eq!(
            response_id(b"{\"method\":\"x\",\"params\":{\"v\":\"", b"\"}}"),
            None
        );
    }

    fn nested(levels: usize) -> String {
        format!(
            "{}{{\"type\":\"string\"}}{}",
            "{\"type\":\"object\",\"properties\":{\"a\":".repeat(levels),
            "}}".repeat(levels)
        )
    }

    fn list(tools: &[String]) -> String {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"tools\":[{}],\"nextCursor\":\"x\"}}}}",
            tools.join(",")
        )
    }

    fn tool(name: &str, schema: &str) -> String {
        format!(
            "{{\"name\":{},\"description\":\"a \\\" }} ] quote\",\"inputSchema\":{schema}}}",
            serde_json::Value::from(name)
        )
    }

    #[test]
    fn a_tool_too_deep_for_the_parser_is_cut_out_alone() {
        let message = list(&[
            tool("ok", &nested(3)),
            tool("bomb", &nested(300)),
            tool("also ok", "{}"),
        ]);
        // As it came, rmcp could not read the answer at all.
        assert!(serde_json::from_str::<rmcp::model::ServerJsonRpcMessage>(&message).is_err());
        let admitted = admit("up", message.as_bytes());
        let parsed: rmcp::model::ServerJsonRpcMessage =
            serde_json::from_slice(&admitted).expect("readable now");
        let value = serde_json::to_value(parsed).unwrap();
        let names: Vec<&str> = value["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ok", "also ok"]);
        assert_eq!(value["result"]["nextCursor"], "x");
    }

    #[test]
    fn other_messages_pass_as_they_came() {
        let shallow = list(&[tool("ok", &nested(10))]);
        assert!(matches!(
            admit("up", shallow.as_bytes()),
            Cow::Borrowed(b) if b == shallow.as_bytes()
        ));
        // Deep, but not a tool list: nothing to cut.
        let deep_result = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}}",
            nested(200)
        );
        assert!(matches!(
            admit("up", deep_result.as_bytes()),
            Cow::Borrowed(_)
        ));
        // Not JSON at all.
        let broken = format!("{{\"result\":{{\"tools\":[{}", nested(100));
        assert!(matches!(admit("up", broken.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn the_scan_does_not_recurse() {
        let depth = 1_000_000;
        let message = format!(
            "{{\"result\":{{\"tools\":[{{\"name\":\"x\",\"inputSchema\":{}{}}}]}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let admitted = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || admit("up", message.as_bytes()).into_owned())
            .expect("thread starts")
            .join()
            .expect("no overflow");
        assert_eq!(admitted, b"{\"result\":{\"tools\":[]}}");
    }
}
