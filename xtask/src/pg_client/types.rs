//! Values round-tripped in binary format (tokio-postgres sends parameters and asks for results
//! in binary): integers, floats, bool, text, bytea (also 1 MiB), numeric as text, timestamp,
//! arrays, and NULL in every column.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use tokio_postgres::types::Type;

use super::connect;

/// Numeric has no binary mapping without extra crates: it travels as text.
const NUMERIC: &str = "12345678901234567890.000123";
const TEXT: &str = "héllo ✓ 'single' \"double\" \\ tab\tend";

pub async fn binary_types(port: u16) -> anyhow::Result<()> {
    let client = connect(port).await?;
    client
        .batch_execute(
            "CREATE TEMP TABLE pc_types (i2 int2, i4 int4, i8 int8, f8 float8, b bool, t text, \
             by bytea, n numeric, ts timestamp, ia int4[], ta text[])",
        )
        .await?;
    let insert = client
        .prepare(
            "INSERT INTO pc_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::numeric, $9, \
             $10, $11)",
        )
        .await?;
    let bytes: Vec<u8> = (0..=255_u8).cycle().take(4096).collect();
    // Whole microseconds: PostgreSQL's timestamp resolution.
    let timestamp = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let ints = vec![1_i32, -2, i32::MIN];
    let texts = vec![Some("a".to_owned()), None, Some("c,d {}".to_owned())];
    client
        .execute(
            &insert,
            &[
                &i16::MIN,
                &i32::MAX,
                &i64::MIN,
                &std::f64::consts::PI,
                &true,
                &TEXT,
                &bytes,
                &NUMERIC,
                &timestamp,
                &ints,
                &texts,
            ],
        )
        .await
        .context("inserting values")?;
    client
        .execute(
            &insert,
            &[
                &None::<i16>,
                &None::<i32>,
                &None::<i64>,
                &None::<f64>,
                &None::<bool>,
                &None::<String>,
                &None::<Vec<u8>>,
                &None::<String>,
                &None::<SystemTime>,
                &None::<Vec<i32>>,
                &None::<Vec<String>>,
            ],
        )
        .await
        .context("inserting NULLs")?;

    let rows = client
        .query(
            "SELECT i2, i4, i8, f8, b, t, by, n::text, ts, ia, ta FROM pc_types \
             ORDER BY i4 NULLS LAST",
            &[],
        )
        .await?;
    ensure!(rows.len() == 2, "{} rows back, expected 2", rows.len());
    let row = &rows[0];
    ensure!(row.get::<_, i16>(0) == i16::MIN, "int2");
    ensure!(row.get::<_, i32>(1) == i32::MAX, "int4");
    ensure!(row.get::<_, i64>(2) == i64::MIN, "int8");
    ensure!(
        row.get::<_, f64>(3).to_bits() == std::f64::consts::PI.to_bits(),
        "float8"
    );
    ensure!(row.get::<_, bool>(4), "bool");
    ensure!(row.get::<_, String>(5) == TEXT, "text");
    ensure!(row.get::<_, Vec<u8>>(6) == bytes, "bytea");
    ensure!(row.get::<_, String>(7) == NUMERIC, "numeric (as text)");
    ensure!(row.get::<_, SystemTime>(8) == timestamp, "timestamp");
    ensure!(row.get::<_, Vec<i32>>(9) == ints, "int4[]");
    ensure!(row.get::<_, Vec<Option<String>>>(10) == texts, "text[]");

    let row = &rows[1];
    ensure!(row.get::<_, Option<i16>>(0).is_none(), "NULL int2");
    ensure!(row.get::<_, Option<i32>>(1).is_none(), "NULL int4");
    ensure!(row.get::<_, Option<i64>>(2).is_none(), "NULL int8");
    ensure!(row.get::<_, Option<f64>>(3).is_none(), "NULL float8");
    ensure!(row.get::<_, Option<bool>>(4).is_none(), "NULL bool");
    ensure!(row.get::<_, Option<String>>(5).is_none(), "NULL text");
    ensure!(row.get::<_, Option<Vec<u8>>>(6).is_none(), "NULL bytea");
    ensure!(row.get::<_, Option<String>>(7).is_none(), "NULL numeric");
    ensure!(
        row.get::<_, Option<SystemTime>>(8).is_none(),
        "NULL timestamp"
    );
    ensure!(row.get::<_, Option<Vec<i32>>>(9).is_none(), "NULL int4[]");
    ensure!(
        row.get::<_, Option<Vec<String>>>(10).is_none(),
        "NULL text[]"
    );

    // Special floats and a 1 MiB value, as a parameter and back as a result column.
    let specials = client
        .prepare_typed("SELECT $1, $1 = 'Infinity'::float8", &[Type::FLOAT8])
        .await?;
    let row = client.query_one(&specials, &[&f64::INFINITY]).await?;
    ensure!(
        row.get::<_, f64>(0) == f64::INFINITY && row.get::<_, bool>(1),
        "Infinity"
    );
    let row = client.query_one(&specials, &[&f64::NAN]).await?;
    ensure!(row.get::<_, f64>(0).is_nan(), "NaN");
    let large: Vec<u8> = (0..1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let row = client
        .query_one("SELECT $1::bytea, length($1::bytea)", &[&large])
        .await
        .context("a 1 MiB bytea")?;
    ensure!(
        row.get::<_, i32>(1) == 1024 * 1024,
        "1 MiB bytea length on the server"
    );
    ensure!(row.get::<_, Vec<u8>>(0) == large, "1 MiB bytea content");
    Ok(())
}
