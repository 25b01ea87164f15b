//! The server side of the catalog: one long-lived side connection per database, two prepared
//! queries. A read takes the names (and OIDs) a statement needs; a probe takes the names
//! already cached and returns each relation's fingerprint, so a change made by anyone shows
//! without reading anything else. Behind [`CatalogServer`] so the cache is tested with fakes.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio_postgres::{Client, NoTls, Statement};

use super::{CatalogAccess, CatalogError};
use crate::net as upstream;
use crate::{
    policy::{Relation, RelationKind},
    postgres::tls::UpstreamConnector,
};

/// What one read asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Names written without a schema: their relations in every schema.
    pub everywhere: Vec<String>,
    /// (schema, name) written qualified.
    pub qualified: Vec<(String, String)>,
    /// Relations a result named by OID.
    pub oids: Vec<u32>,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.everywhere.is_empty() && self.qualified.is_empty() && self.oids.is_empty()
    }
}

/// One relation as read.
#[derive(Debug)]
pub struct Found {
    pub relation: Relation,
    /// Changes whenever anything cached about the relation may have changed.
    pub fingerprint: String,
    /// Another transaction holds it (or a relation its view reads) exclusively: it is being
    /// changed, and that transaction may be an agent's that sees the change already.
    pub in_flux: bool,
}

/// One relation's current fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub fingerprint: String,
}

pub trait CatalogServer: Send + Sync + 'static {
    /// Every relation (table, partitioned or foreign table, view, materialized view) that a
    /// wanted name or OID means.
    fn read(
        &self,
        wanted: &Wanted,
    ) -> impl Future<Output = Result<Vec<Found>, CatalogError>> + Send;

    /// The fingerprint of every relation with one of these names, in any schema.
    fn probe(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<Probed>, CatalogError>> + Send;

    /// The schema and name of the function with this OID, if there is one.
    fn function(
        &self,
        oid: u32,
    ) -> impl Future<Output = Result<Option<(String, String)>, CatalogError>> + Send;
}

/// The row versions (xmin) of everything cached about a relation: its pg_class row (name,
/// kind, schema), its schema's name, every attribute (dropped ones included) and its rewrite
/// rule (a view's definition). Any DDL that changes one writes a new row version.
const FINGERPRINT: &str = "\
concat_ws('/', c.xmin::text, n.xmin::text,
    (SELECT string_agg(a2.attnum::text || ':' || a2.xmin::text, ',' ORDER BY a2.attnum)
     FROM pg_catalog.pg_attribute a2 WHERE a2.attrelid = c.oid AND a2.attnum > 0),
    (SELECT string_agg(r.xmin::text, ',' ORDER BY r.oid)
     FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid))";

const RELKINDS: &str = "c.relkind IN ('r', 'p', 'f', 'v', 'm')";

fn read_query() -> String {
    format!(
        "\
WITH wanted AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = ANY ($1::text[]::name[])
  UNION
    SELECT c.oid FROM unnest($2::text[], $3::text[]) AS q(nsp, rel)
    JOIN pg_catalog.pg_namespace n ON n.nspname = q.nsp::name
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = q.rel::name
  UNION
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = ANY ($4::int8[]::oid[])
), locked AS MATERIALIZED (
    SELECT l.relation FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                        WHERE d.datname = pg_catalog.current_database())
), flux AS (
    SELECT w.oid, w.oid IN (SELECT relation FROM locked) OR EXISTS (
        SELECT 1 FROM pg_catalog.pg_rewrite r
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
             AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
        WHERE r.ev_class = w.oid AND d.refobjid IN (SELECT relation FROM locked)) AS held
    FROM wanted w
)
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text,
       coalesce(array_agg(a.attnum::int4 ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{{}}'),
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{{}}'),
       CASE WHEN c.relkind IN ('v', 'm') AND NOT f.held THEN pg_catalog.pg_get_viewdef(c.oid) END,
       {FINGERPRINT},
       f.held
FROM flux f
JOIN pg_catalog.pg_class c ON c.oid = f.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE {RELKINDS}
GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.xmin::text, n.xmin::text, f.held"
    )
}

fn probe_query() -> String {
    format!(
        "\
SELECT c.oid::int8, n.nspname::text, c.relname::text, {FINGERPRINT}
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = ANY ($1::text[]::name[]) AND {RELKINDS}"
    )
}

/// How the side connection logs in (a copy of the target's catalog access).
pub(super) struct Login {
    target: String,
    user: String,
    password: String,
    connector: UpstreamConnector,
    bypass_mark: u32,
    connect_timeout: Duration,
}

/// A connected side connection with its prepared queries.
struct Side {
    client: Client,
    read: Statement,
    probe: Statement,
}

/// The real server: one side connection, opened on first use and again after it broke.
pub struct PgServer {
    login: Login,
    server: SocketAddr,
    database: String,
    side: tokio::sync::Mutex<Option<Arc<Side>>>,
}

impl Login {
    pub(super) fn of(access: &CatalogAccess) -> Self {
        Self {
            target: access.target.clone(),
            user: access.credentials.user.clone(),
            password: access.credentials.password().to_owned(),
            connector: access.connector.clone(),
            bypass_mark: access.bypass_mark,
            connect_timeout: access.connect_timeout,
        }
    }

    /// A connection of the gateway's own to `database` on `server`, with these `-c` options.
    pub(super) async fn connect(
        &self,
        server: SocketAddr,
        database: &str,
        application: &str,
        options: &str,
    ) -> Result<Client, CatalogError> {
        let connect = |e: &dyn std::fmt::Display| CatalogError::Connect(e.to_string());
        let tcp = upstream::connect_within(server, self.bypass_mark, self.connect_timeout)
            .await
            .map_err(|e| connect(&e))?;
        let _ = tcp.set_nodelay(true);
        let (stream, _) = self
            .connector
            .negotiate(tcp, server.ip())
            .await
            .map_err(|e| connect(&e))?;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.user)
            .password(&self.password)
            .dbname(database)
            .application_name(application)
            .options(options)
            // TLS, when used, was negotiated above.
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, config.connect_raw(stream, NoTls))
                .await
                .map_err(|_| CatalogError::Connect("login timed out".into()))?
                .map_err(|e| connect(&e))?;
        // Ends by itself when the client is dropped or the server goes away.
        tokio::spawn(connection);
        Ok(client)
    }
}

impl PgServer {
    pub fn new(access: &CatalogAccess, server: SocketAddr, database: &str) -> Self {
        Self {
            login: Login::of(access),
            server,
            database: database.to_owned(),
            side: tokio::sync::Mutex::new(None),
        }
    }

    pub fn target(&self) -> &str {
        &self.login.target
    }

    async fn side(&self) -> Result<Arc<Side>, CatalogError> {
        let mut side = self.side.lock().await;
        if let Some(open) = side.as_ref().filter(|s| !s.client.is_closed()) {
            return Ok(open.clone());
        }
        *side = None;
        let opened = Arc::new(self.connect().await?);
        *side = Some(opened.clone());
        Ok(opened)
    }

    async fn connect(&self) -> Result<Side, CatalogError> {
        // Every name in a view definition comes out schema-qualified (except pg_catalog's),
        // so it names one relation; a read never waits long behind another's lock; the two
        // queries are planned once (a custom plan costs more than running them) and never
        // JIT-compiled (with Debian's default jit=on, compiling them cost the server more
        // than the rest of the policy: the regression suite 1.75x -> 1.50x direct).
        let options = "-c search_path=pg_catalog -c lock_timeout=1s -c statement_timeout=10s \
                       -c plan_cache_mode=force_generic_plan -c jit=off";
        let client = (self.login)
            .connect(self.server, &self.database, "tollgate-catalog", options)
            .await?;
        let query = |e: tokio_postgres::Error| CatalogError::Query(e.to_string());
        let read = client.prepare(&read_query()).await.map_err(query)?;
        let probe = client.prepare(&probe_query()).await.map_err(query)?;
        Ok(Side {
            client,
            read,
            probe,
        })
    }
}

impl CatalogServer for PgServer {
    async fn read(&self, wanted: &Wanted) -> Result<Vec<Found>, CatalogError> {
        let side = self.side().await?;
        let (schemas, names): (Vec<&str>, Vec<&str>) = wanted
            .qualified
            .iter()
            .map(|(s, n)| (s.as_str(), n.as_str()))
            .unzip();
        let oids: Vec<i64> = wanted.oids.iter().map(|&oid| i64::from(oid)).collect();
        let rows = side
            .client
            .query(&side.read, &[&wanted.everywhere, &schemas, &names, &oids])
            .await
            .map_err(|e| CatalogError::Query(e.to_string()))?;
        rows.iter()
            .map(|row| found(row).map_err(|e| CatalogError::Query(e.to_string())))
            .collect()
    }

    async fn probe(&self, names: &[String]) -> Result<Vec<Probed>, CatalogError> {
        let side = self.side().await?;
        let rows = side
            .client
            .query(&side.probe, &[&names])
            .await
            .map_err(|e| CatalogError::Query(e.to_string()))?;
        rows.iter()
            .map(|row| {
                let oid: i64 = row.try_get(0)?;
                Ok(Probed {
                    oid: oid as u32,
                    schema: row.try_get(1)?,
                    name: row.try_get(2)?,
                    fingerprint: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| CatalogError::Query(e.to_string()))
    }

    async fn function(&self, oid: u32) -> Result<Option<(String, String)>, CatalogError> {
        let side = self.side().await?;
        let query = |e: tokio_postgres::Error| CatalogError::Query(e.to_string());
        let row = side
            .client
            .query_opt(FUNCTION_QUERY, &[&i64::from(oid)])
            .await
            .map_err(query)?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
            .map_err(query)
    }
}

/// A function by OID (FunctionCall names functions so); rare enough to go unprepared.
const FUNCTION_QUERY: &str = "SELECT n.nspname::text, p.proname::text \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE p.oid = $1::int8::oid";

fn found(row: &tokio_postgres::Row) -> Result<Found, tokio_postgres::Error> {
    let oid: i64 = row.try_get(0)?;
    let kind: String = row.try_get(3)?;
    let numbers: Vec<i32> = row.try_get(4)?;
    let names: Vec<String> = row.try_get(5)?;
    let relation = Relation::new(
        oid as u32,
        row.try_get(1)?,
        row.try_get(2)?,
        if kind == "v" || kind == "m" {
            RelationKind::View
        } else {
            RelationKind::Table
        },
        numbers.into_iter().map(|n| n as i16).zip(names).collect(),
        row.try_get(6)?,
    );
    Ok(Found {
        relation,
        fingerprint: row.try_get(7)?,
        in_flux: row.try_get(8)?,
    })
}
