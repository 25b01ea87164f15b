//! Byte relay for this stage (message-level PostgreSQL comes next), counting bytes as they pass
//! so the close record is right even when the relay ends in an error.

use std::io;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

const BUFFER_SIZE: usize = 16 * 1024;

/// Copies both ways until both sides have finished; the first error ends both directions.
pub async fn relay(
    agent: &mut TcpStream,
    upstream: &mut TcpStream,
    from_agent: &mut u64,
    to_agent: &mut u64,
) -> io::Result<()> {
    let (mut agent_read, mut agent_write) = agent.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    tokio::try_join!(
        copy_counted(&mut agent_read, &mut upstream_write, from_agent),
        copy_counted(&mut upstream_read, &mut agent_write, to_agent),
    )?;
    Ok(())
}

async fn copy_counted<R, W>(reader: &mut R, writer: &mut W, counter: &mut u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; BUFFER_SIZE];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            // Pass the half-close on, as PostgreSQL clients expect after Terminate.
            return writer.shutdown().await;
        }
        writer.write_all(&buffer[..n]).await?;
        *counter += n as u64;
    }
}
