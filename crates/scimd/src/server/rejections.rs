//! SCIM bodies for the answers hyper gives by itself. A request that hyper
//! cannot parse never reaches a handler: hyper answers 400 (not HTTP/1.1),
//! 414 (a request target over its limit, 65,534 bytes) or 431 (a header
//! larger than its read buffer) with an empty body and closes the
//! connection, and offers no hook to shape that answer. [`Rejecting`] wraps
//! each accepted connection (after TLS) and gives those answers the SCIM
//! error body that every other error has (RFC 7644 section 3.12).
//!
//! They are recognised by their exact head, the last thing written on the
//! connection: a status line of the three, `connection: close` and
//! `content-length: 0`. No handler writes that head (every error a handler
//! answers has a body), and a body before it cannot hold it (JSON has no raw
//! line breaks), so nothing else is ever rewritten.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_server::accept::Accept;
use memchr::memmem;
use scimd_core::ScimError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An acceptor whose connections carry SCIM bodies in hyper's own answers.
#[derive(Clone)]
pub struct Rejecting<A>(pub A);

impl<I, S, A> Accept<I, S> for Rejecting<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Rewriting<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((Rewriting::new(stream), service))
        })
    }
}

/// hyper's error answers: their status line and the error they stand for.
fn rejection(status_line: &[u8]) -> Option<ScimError> {
    Some(match status_line {
        b"HTTP/1.1 400 Bad Request" => {
            ScimError::BadRequest("the request is not valid HTTP/1.1".into())
        }
        b"HTTP/1.1 414 URI Too Long" => ScimError::UriTooLong(
            "the request target is longer than 65,534 bytes; send a long filter in the body \
             of a POST .search request (RFC 7644 section 3.4.3)"
                .into(),
        ),
        b"HTTP/1.1 431 Request Header Fields Too Large" => {
            ScimError::HeaderTooLarge("the request's header is larger than the server reads".into())
        }
        _ => return None,
    })
}

const EMPTY_AND_CLOSE: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// `written` with hyper's error answer at its end given a SCIM body, or
/// None when it ends with anything else.
fn rewrite(written: &[u8]) -> Option<Vec<u8>> {
    // Every answer's head passes here: one vectorised search for the
    // header lines every rejection has settles almost all of them.
    if !written.ends_with(b"\r\n\r\n") || memmem::find(written, EMPTY_AND_CLOSE).is_none() {
        return None;
    }
    let start = memmem::rfind(written, b"HTTP/1.1 ")?;
    let head = &written[start..];
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let error = rejection(&head[..line_end])?;
    let rest = head[line_end..].strip_prefix(EMPTY_AND_CLOSE)?;
    let body = scimd_http::error_body(&error).to_string();
    let mut out = Vec::with_capacity(written.len() + body.len() + 64);
    out.extend_from_slice(&written[..start + line_end]);
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-type: ");
    out.extend_from_slice(scimd_http::SCIM_JSON.as_bytes());
    out.extend_from_slice(format!("\r\ncontent-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(rest);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// A connection whose writes pass through unchanged, except hyper's error
/// answer (see the module).
pub struct Rewriting<I> {
    inner: I,
    /// A rewritten answer not yet all written.
    pending: Vec<u8>,
    sent: usize,
}

impl<I> Rewriting<I> {
    fn new(inner: I) -> Self {
        Rewriting {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

impl<I: AsyncWrite + Unpin> Rewriting<I> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `rewritten` in place of `len` bytes given to write: they count
    /// as written, and the rewritten ones go out now or on the next flush.
    fn substitute(
        &mut self,
        cx: &mut Context<'_>,
        rewritten: Vec<u8>,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.pending = rewritten;
        if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(len))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewriting<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewriting<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        match rewrite(buf) {
            Some(rewritten) => this.substitute(cx, rewritten, buf.len()),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // hyper's head is one slice: look at the last one before copying.
        let last = bufs.iter().rev().find(|b| !b.is_empty());
        if last.is_some_and(|b| rewrite(b).is_some()) {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(rewritten) = rewrite(&all) {
                return this.substitute(cx, rewritten, all.len());
            }
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
    use super::rewrite;

    const DATE: &str = "date: Sun, 06 Dec 2026 08:13:58 GMT\r\n\r\n";

    fn answer(written: &[u8]) -> (String, serde_json::Value) {
        let out = rewrite(written).unwrap_or_default();
        let text = String::from_utf8(out).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        (
            head.to_string(),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    #[test]
    fn hyper_answers_get_a_scim_body() {
        for (line, status) in [
            ("HTTP/1.1 414 URI Too Long", "414"),
            ("HTTP/1.1 431 Request Header Fields Too Large", "431"),
            ("HTTP/1.1 400 Bad Request", "400"),
        ] {
            let hyper = format!("{line}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}");
            let (head, body) = answer(hyper.as_bytes());
            assert!(head.starts_with(line), "{head}");
            assert!(
                head.contains("content-type: application/scim+json"),
                "{head}"
            );
            assert!(head.contains("date: "), "{head}");
            assert_eq!(body["status"], status);
            assert_eq!(
                body["schemas"][0],
                "urn:ietf:params:scim:api:messages:2.0:Error"
            );
        }
    }

    #[test]
    fn after_an_earlier_answer_only_the_last_is_rewritten() {
        let earlier = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let hyper = format!(
            "{earlier}HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}"
        );
        let out =
            String::from_utf8(rewrite(hyper.as_bytes()).unwrap_or_default()).unwrap_or_default();
        assert!(out.starts_with(earlier), "{out}");
        assert!(out.contains("\"status\":\"414\""), "{out}");
    }

    #[test]
    fn anything_else_passes_unchanged() {
        for written in [
            // A handler's 400 has a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/scim+json\r\ncontent-length: 2\r\n\r\n{}".to_string(),
            // A 204 has no body, and is no error.
            format!("HTTP/1.1 204 No Content\r\n{DATE}"),
            // An empty 414 that keeps the connection is not hyper's.
            format!("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n{DATE}"),
            // A head not yet complete.
            "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n".to_string(),
        ] {
            assert!(rewrite(written.as_bytes()).is_none(), "{written}");
        }
    }
}
