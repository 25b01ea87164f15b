//! COPY through the driver: text and binary COPY FROM STDIN (sent in several chunks), text and
//! binary COPY TO STDOUT checked row by row, a COPY that fails on bad data and one the client
//! aborts (CopyFail), each leaving the session usable.

use std::fmt::Write as _;

use anyhow::{ensure, Context};
use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::{
    binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream},
    error::SqlState,
    types::Type,
    Client,
};

use super::{connect, expect_code};

const ROWS: i32 = 1000;

pub async fn copy(port: u16) -> anyhow::Result<()> {
    let client = connect(port).await?;
    client
        .batch_execute("CREATE TEMP TABLE pc_copy (id int4, name text, payload bytea)")
        .await?;
    copy_in_text(&client)
        .await
        .context("text COPY FROM STDIN")?;
    copy_in_binary(&client)
        .await
        .context("binary COPY FROM STDIN")?;
    let row = client
        .query_one(
            "SELECT count(*), sum(id), sum(length(payload)) FROM pc_copy",
            &[],
        )
        .await?;
    let (count, ids, payload): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let expected_ids = i64::from(2 * ROWS - 1) * i64::from(2 * ROWS) / 2;
    ensure!(
        count == i64::from(2 * ROWS) && ids == expected_ids && payload == 3 * i64::from(ROWS),
        "after COPY FROM: count {count}, sum(id) {ids}, payload bytes {payload}"
    );
    copy_out_text(&client)
        .await
        .context("text COPY TO STDOUT")?;
    copy_out_binary(&client)
        .await
        .context("binary COPY TO STDOUT")?;
    copy_errors(&client).await
}

fn name(id: i32) -> String {
    format!("name {id} é")
}

/// Rows 0..ROWS as COPY text, 100 rows per CopyData message.
async fn copy_in_text(client: &Client) -> anyhow::Result<()> {
    let sink = client
        .copy_in("COPY pc_copy (id, name, payload) FROM STDIN")
        .await?;
    pin_mut!(sink);
    for chunk in 0..ROWS / 100 {
        let mut data = String::new();
        for id in chunk * 100..(chunk + 1) * 100 {
            // bytea in hex; the backslash is escaped in COPY text.
            let _ = writeln!(data, "{id}\t{}\t\\\\x{:02x}", name(id), id % 256);
        }
        sink.send(Bytes::from(data)).await?;
    }
    let copied = sink.as_mut().finish().await?;
    ensure!(copied == ROWS as u64, "COPY reported {copied} rows");
    Ok(())
}

/// Rows ROWS..2*ROWS in binary COPY format, each with a 2-byte payload.
async fn copy_in_binary(client: &Client) -> anyhow::Result<()> {
    let sink = client
        .copy_in("COPY pc_copy (id, name, payload) FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT, Type::BYTEA]);
    pin_mut!(writer);
    for id in ROWS..2 * ROWS {
        let payload = [(id % 256) as u8, 0xff];
        writer
            .as_mut()
            .write(&[&id, &name(id), &&payload[..]])
            .await?;
    }
    let copied = writer.as_mut().finish().await?;
    ensure!(copied == ROWS as u64, "COPY reported {copied} rows");
    Ok(())
}

async fn copy_out_text(client: &Client) -> anyhow::Result<()> {
    let stream = client
        .copy_out(
            "COPY (SELECT id, name, payload FROM pc_copy WHERE id < 1000 ORDER BY id) TO STDOUT",
        )
        .await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    let text = String::from_utf8(chunks.concat()).context("COPY text output is not UTF-8")?;
    let mut expected = String::new();
    for id in 0..ROWS {
        let _ = writeln!(expected, "{id}\t{}\t\\\\x{:02x}", name(id), id % 256);
    }
    ensure!(
        text == expected,
        "COPY text differs: {} bytes, expected {}; first line {:?}",
        text.len(),
        expected.len(),
        text.lines().next()
    );
    Ok(())
}

async fn copy_out_binary(client: &Client) -> anyhow::Result<()> {
    let stream = client
        .copy_out("COPY (SELECT id, name, payload FROM pc_copy WHERE id >= 1000 ORDER BY id) TO STDOUT (FORMAT binary)")
        .await?;
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::TEXT, Type::BYTEA]);
    pin_mut!(rows);
    let mut id = ROWS;
    while let Some(row) = rows.try_next().await? {
        let (got_id, got_name, payload): (i32, String, Vec<u8>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        ensure!(
            got_id == id && got_name == name(id) && payload == [(id % 256) as u8, 0xff],
            "binary COPY row {id}: got ({got_id}, {got_name:?}, {payload:?})"
        );
        id += 1;
    }
    ensure!(id == 2 * ROWS, "binary COPY ended at row {id}");
    Ok(())
}

/// Bad data fails the COPY (22P02); a COPY the client abandons is aborted with CopyFail
/// (57014). Neither adds rows, and the session answers afterwards.
async fn copy_errors(client: &Client) -> anyhow::Result<()> {
    let sink = client.copy_in("COPY pc_copy (id, name) FROM STDIN").await?;
    pin_mut!(sink);
    let sent = sink
        .send(Bytes::from_static(b"1\tok\nnot-a-number\tbad\n"))
        .await;
    let result = match sent {
        Ok(()) => sink.as_mut().finish().await,
        Err(error) => Err(error),
    };
    expect_code(
        result,
        &SqlState::INVALID_TEXT_REPRESENTATION,
        "COPY of bad data",
    )?;

    {
        let sink = client.copy_in("COPY pc_copy (id, name) FROM STDIN").await?;
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"7\tabandoned\n")).await?;
        // Dropped without finish: the driver sends CopyFail.
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM pc_copy", &[])
        .await
        .context("the session after failed COPYs")?
        .get(0);
    ensure!(
        count == i64::from(2 * ROWS),
        "failed COPYs changed the table: {count} rows"
    );
    Ok(())
}
