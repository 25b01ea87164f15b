//! Framing: whole messages cut out of a byte stream by PostgreSQL's length rules and limits,
//! before any decoding, so an oversized or malformed length is refused without buffering it.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// PostgreSQL's own limit on startup-phase packets (and so on anything before authentication).
pub const PRE_AUTH_LIMIT: usize = 10_000;

const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message length {len} exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Startup-phase packets have no type byte; every later message has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Untagged,
    Tagged,
}

impl FrameKind {
    fn header_len(self) -> usize {
        match self {
            Self::Untagged => 4,
            Self::Tagged => 5,
        }
    }
}

/// Length of the whole frame at the start of `buf` (header included) once all of it is there.
pub fn complete_frame_len(
    buf: &[u8],
    kind: FrameKind,
    limit: usize,
) -> Result<Option<usize>, FrameError> {
    let header = kind.header_len();
    if buf.len() < header {
        return Ok(None);
    }
    let len_bytes: [u8; 4] = buf[header - 4..header].try_into().expect("four bytes");
    let len = i32::from_be_bytes(len_bytes);
    // The length counts itself; untagged packets also carry a 4-byte code.
    let minimum = match kind {
        FrameKind::Untagged => 8,
        FrameKind::Tagged => 4,
    };
    if len < minimum {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let total = header - 4 + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Exactly one frame, read without buffering past it: during startup and login what follows
/// may be a TLS handshake or must not be consumed yet. `None` when the stream ends first.
pub async fn read_exact_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    kind: FrameKind,
    limit: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let header = kind.header_len();
    let mut frame = BytesMut::zeroed(header);
    match stream.read_exact(&mut frame).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let len_bytes: [u8; 4] = frame[header - 4..].try_into().expect("four bytes");
    // Validates the length; the body is not read yet, so the frame is never complete here
    // unless it has no body.
    let total = complete_frame_len(&frame, kind, limit)?
        .unwrap_or(header - 4 + i32::from_be_bytes(len_bytes) as usize);
    frame.resize(total, 0);
    stream
        .read_exact(&mut frame[header..])
        .await
        .map_err(|_| FrameError::Truncated)?;
    Ok(Some(frame))
}

/// Reads whole frames; bytes past the current frame stay buffered for the next call.
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
}

impl<R> FrameReader<R> {
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Continues a stream of which `buffered` was already read (e.g. during a login).
    pub fn with_buffered(reader: R, buffered: BytesMut) -> Self {
        Self {
            reader,
            buf: buffered,
        }
    }

    /// The first `len` buffered bytes (whole frames the caller has checked), removed.
    pub fn take(&mut self, len: usize) -> BytesMut {
        self.buf.split_to(len)
    }

    /// Drops the first `len` buffered bytes (whole frames the caller has handled in place).
    pub fn skip(&mut self, len: usize) {
        self.buf.advance(len);
    }

    pub fn into_parts(self) -> (R, BytesMut) {
        (self.reader, self.buf)
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: BytesMut::new(),
        }
    }

    /// The next frame, or `None` on a clean end of stream between frames. Cancel-safe: all
    /// partial state lives in the buffer.
    pub async fn next(
        &mut self,
        kind: FrameKind,
        limit: usize,
    ) -> Result<Option<BytesMut>, FrameError> {
        self.next_with_limit(kind, || limit).await
    }

    /// Like [`Self::next`], with the limit asked again whenever bytes arrive: a read that
    /// starts before authentication must apply the post-authentication limit to a message
    /// that arrives after it.
    pub async fn next_with_limit(
        &mut self,
        kind: FrameKind,
        limit: impl Fn() -> usize,
    ) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(frame) = self.buffered(kind, limit())? {
                return Ok(Some(frame));
            }
            let wanted = self.missing_bytes(kind).max(READ_CHUNK);
            self.buf.reserve(wanted);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// Reads whatever arrives next into the buffer, for the next frames; false once the
    /// stream has ended (or failed). Cancel-safe, like [`Self::next`].
    pub async fn read_more(&mut self) -> bool {
        self.buf.reserve(READ_CHUNK);
        matches!(self.reader.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// A frame that is already complete in the buffer, without reading.
    pub fn buffered(
        &mut self,
        kind: FrameKind,
        limit: usize,
    ) -> Result<Option<BytesMut>, FrameError> {
        Ok(complete_frame_len(&self.buf, kind, limit)?.map(|total| self.buf.split_to(total)))
    }

    /// Bytes still missing from a frame whose header is already buffered.
    fn missing_bytes(&self, kind: FrameKind) -> usize {
        let header = kind.header_len();
        if self.buf.len() < header {
            return 0;
        }
        let len_bytes: [u8; 4] = self.buf[header - 4..header].try_into().expect("four bytes");
        (header - 4 + i32::from_be_bytes(len_bytes).max(0) as usize).saturating_sub(self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_before_buffering() {
        let tagged = FrameKind::Tagged;
        assert_eq!(complete_frame_len(b"Q\0\0\0", tagged, 100).unwrap(), None);
        assert_eq!(
            complete_frame_len(b"Q\0\0\0\x05x", tagged, 100).unwrap(),
            Some(6)
        );
        assert_eq!(
            complete_frame_len(b"Q\0\0\0\x09x", tagged, 100).unwrap(),
            None
        );
        assert!(matches!(
            complete_frame_len(b"Q\0\0\0\x03", tagged, 100),
            Err(FrameError::BadLength(3))
        ));
        assert!(matches!(
            complete_frame_len(b"Q\xff\xff\xff\xff", tagged, 100),
            Err(FrameError::BadLength(-1))
        ));
        assert!(matches!(
            complete_frame_len(b"Q\0\x01\0\0", tagged, 10_000),
            Err(FrameError::TooLarge {
                len: 65536,
                limit: 10_000
            })
        ));
        assert!(matches!(
            complete_frame_len(b"\0\0\0\x07", FrameKind::Untagged, 100),
            Err(FrameError::BadLength(7))
        ));
    }

    #[tokio::test]
    async fn frames_split_across_reads_are_reassembled() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(reader);
        let sender = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in [&b"Q\0\0"[..], b"\0\x0bSELE", b"CT\0S\0\0\0\x04"] {
                writer.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let first = frames.next(FrameKind::Tagged, 100).await.unwrap().unwrap();
        assert_eq!(&first[..], b"Q\0\0\0\x0bSELECT\0");
        let second = frames.next(FrameKind::Tagged, 100).await.unwrap().unwrap();
        assert_eq!(&second[..], b"S\0\0\0\x04");
        sender.await.unwrap();
        assert!(frames.next(FrameKind::Tagged, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_limit_in_force_when_a_frame_arrives_applies() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(reader);
        let limit = AtomicUsize::new(8);
        let read = frames.next_with_limit(FrameKind::Tagged, || limit.load(Ordering::Relaxed));
        let write = async {
            tokio::task::yield_now().await;
            // The read is already waiting when the limit is raised (authentication done).
            limit.store(100, Ordering::Relaxed);
            writer.write_all(b"Q\0\0\0\x0bSELECT\0").await.unwrap();
        };
        let (frame, ()) = tokio::join!(read, write);
        assert_eq!(&frame.unwrap().unwrap()[..], b"Q\0\0\0\x0bSELECT\0");
    }

    #[tokio::test]
    async fn a_stream_ending_mid_frame_is_an_error() {
        let (mut writer, reader) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        writer.write_all(b"Q\0\0\0\x0aSEL").await.unwrap();
        drop(writer);
        let mut frames = FrameReader::new(reader);
        assert!(matches!(
            frames.next(FrameKind::Tagged, 100).await,
            Err(FrameError::Truncated)
        ));
    }
}
