//! JSON bodies for the errors hyper answers by itself.
//!
//! A request hyper cannot parse never reaches the router: hyper writes a
//! bare `400 Bad Request` (a malformed request line or header), `414 URI Too
//! Long` (a target over 64 KiB) or `431 Request Header Fields Too Large`
//! (a head over its read buffer), each with `content-length: 0`, and closes
//! the connection. hyper has no hook for those bodies, so the connection's
//! writer recognises exactly that response — one of these three statuses
//! with an empty body, which no handler of ours ever sends (every error we
//! build carries `{code, message}`) — and sends the same head with a JSON
//! body instead.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's automatic responses and the `{code, message}` each gets.
const AUTOMATIC: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 400 ",
        r#"{"code":"bad_request","message":"the request is not valid HTTP/1.1"}"#,
    ),
    (
        b"HTTP/1.1 414 ",
        r#"{"code":"uri_too_long","message":"the request target is over 64 KiB"}"#,
    ),
    (
        b"HTTP/1.1 431 ",
        r#"{"code":"headers_too_large","message":"the request head is larger than the server reads"}"#,
    ),
];

const EMPTY_BODY: &[u8] = b"\r\ncontent-length: 0\r\n";

/// The JSON version of `head` if it is one of hyper's bodiless automatic
/// error responses (the whole head and nothing after it), else `None`.
pub(crate) fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    let (_, body) = AUTOMATIC.iter().find(|(status, _)| head.starts_with(status))?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let at = head.windows(EMPTY_BODY.len()).position(|window| window == EMPTY_BODY)?;
    let mut out = Vec::with_capacity(head.len() + body.len() + 64);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY_BODY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// A connection's byte stream whose writer replaces hyper's bodiless
/// automatic error responses (see the module doc); everything else passes
/// through untouched.
pub(crate) struct JsonParseErrors<S> {
    inner: S,
    /// A replacement response and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, pending: None }
    }
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` as written when it is replaced: the replacement goes out
    /// now and on the next writes or flush.
    fn replace(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let replacement = with_json_body(head)?;
        self.pending = Some((replacement, 0));
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(done) = this.replace(cx, buf) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let mut non_empty = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next())
            && let Some(done) = this.replace(cx, only)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_431: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\r\n";

    #[test]
    fn a_bodiless_automatic_error_gets_its_json_body_and_keeps_its_head() {
        let out = String::from_utf8(with_json_body(HYPER_431).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        assert!(!head.contains("content-length: 0"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "headers_too_large");
    }

    #[test]
    fn every_replacement_body_is_code_and_message_json() {
        for (status, body) in AUTOMATIC {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(body["code"].is_string() && body["message"].is_string(), "{status:?}");
        }
    }

    #[test]
    fn responses_with_a_body_or_another_status_pass_through() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n";
        assert!(with_json_body(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(ok).is_none());
        // a head followed by part of a body is not a bodiless response
        let mut continued = HYPER_431.to_vec();
        continued.extend_from_slice(b"{");
        assert!(with_json_body(&continued).is_none());
    }
}
