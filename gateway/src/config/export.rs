//! `[[audit.export]]`: where the log's events go as OCSF, any number of sinks at once. Each
//! sink reads the log itself and keeps its own cursor under `state_dir/export/`.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use toml::Spanned;

use super::{
    auth::{https_ca_file, is_loopback, parse_url},
    raw::RawExport,
    validate::{absolute, bounded, issue, Issue},
};

#[derive(Debug, Clone)]
pub struct ExportSink {
    /// Names the sink in status and its cursor file.
    pub name: String,
    /// The index of the next record to deliver, kept across restarts.
    pub cursor_file: PathBuf,
    pub kind: ExportKind,
}

#[derive(Debug, Clone)]
pub enum ExportKind {
    File(FileExport),
    Syslog(SyslogExport),
    SplunkHec(HecExport),
}

impl ExportKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Syslog(_) => "syslog",
            Self::SplunkHec(_) => "splunk_hec",
        }
    }

    /// Where the events go, for status.
    pub fn destination(&self) -> String {
        match self {
            Self::File(file) => file.path.display().to_string(),
            Self::Syslog(syslog) => format!("{}:{}", syslog.host, syslog.port),
            Self::SplunkHec(hec) => hec.text.clone(),
        }
    }
}

/// NDJSON, one OCSF event per line; `path` is renamed to `path.1` (and older ones up) once
/// it holds `max_bytes`.
#[derive(Debug, Clone)]
pub struct FileExport {
    pub path: PathBuf,
    pub max_bytes: u64,
    /// Rotated files kept beside the current one.
    pub keep: u32,
}

/// RFC 5424 messages over TLS (RFC 5425, octet-counting framing).
#[derive(Debug, Clone)]
pub struct SyslogExport {
    pub host: String,
    pub port: u16,
    /// The name the receiver's certificate must carry.
    pub server_name: String,
    pub ca_file: PathBuf,
    pub app_name: String,
    /// Syslog has no acknowledgement: events count as delivered once the connection has
    /// stayed up this long after they were written (a receiver that stops sooner gets them
    /// again, with the same ids).
    pub confirm: Duration,
}

/// Splunk HTTP Event Collector with indexer acknowledgement.
#[derive(Debug, Clone)]
pub struct HecExport {
    pub text: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub index: Option<String>,
    pub sourcetype: String,
    /// A batch not acknowledged within this is sent again.
    pub ack_timeout: Duration,
}

const DEFAULT_FILE_BYTES: u64 = 100 * 1024 * 1024;
const MIN_FILE_BYTES: u64 = 64 * 1024;
const DEFAULT_KEEP: u32 = 5;
const MAX_KEEP: u32 = 1000;
const SYSLOG_TLS_PORT: u16 = 6514;
const DEFAULT_CONFIRM_MS: u64 = 2000;
const DEFAULT_ACK_TIMEOUT_S: u64 = 120;
const DEFAULT_SOURCETYPE: &str = "ocsf:tollgate";

pub fn sinks(
    raw: &[Spanned<RawExport>],
    state_dir: &std::path::Path,
) -> Result<Vec<ExportSink>, Issue> {
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(n, entry)| {
            let sink = sink(entry, n, state_dir)?;
            if !names.insert(sink.name.clone()) {
                let at = entry
                    .get_ref()
                    .name
                    .as_ref()
                    .map_or(entry.span(), Spanned::span);
                return Err(issue_at(
                    format!("audit.export[{n}].name"),
                    at.start,
                    format!("`{}` names another sink too", sink.name),
                ));
            }
            Ok(sink)
        })
        .collect()
}

fn issue_at(field: String, offset: usize, message: String) -> Issue {
    Issue {
        field,
        offset,
        message,
    }
}

fn sink(
    entry: &Spanned<RawExport>,
    n: usize,
    state_dir: &std::path::Path,
) -> Result<ExportSink, Issue> {
    let raw = entry.get_ref();
    let field = |name: &str| format!("audit.export[{n}].{name}");
    let missing = |name: &str, why: &str| {
        issue_at(
            field(name),
            entry.span().start,
            format!("is required {why}"),
        )
    };
    let name = raw
        .name
        .as_ref()
        .ok_or_else(|| missing("name", "(it names the sink's cursor)"))?;
    if name.get_ref().is_empty()
        || !name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(issue(
            field("name"),
            name,
            "must be letters, digits, `-` or `_`",
        ));
    }
    let kind = raw
        .kind
        .as_ref()
        .ok_or_else(|| missing("kind", "(file, syslog or splunk_hec)"))?;
    let used: &[&str] = match kind.get_ref().as_str() {
        "file" => &["path", "max_bytes", "keep"],
        "syslog" => &[
            "address",
            "server_name",
            "app_name",
            "confirm_ms",
            "ca_file",
        ],
        "splunk_hec" => &[
            "url",
            "token_file",
            "index",
            "sourcetype",
            "ack_timeout_s",
            "ca_file",
        ],
        other => {
            return Err(issue(
                field("kind"),
                kind,
                format!("`{other}` is not one of: file, syslog, splunk_hec"),
            ))
        }
    };
    if let Some((unused, offset)) = set_fields(raw).into_iter().find(|(f, _)| !used.contains(f)) {
        return Err(issue_at(
            field(unused),
            offset,
            format!("is not used with kind = \"{}\"", kind.get_ref()),
        ));
    }
    let kind = match kind.get_ref().as_str() {
        "file" => ExportKind::File(file(raw, &field, &missing)?),
        "syslog" => ExportKind::Syslog(syslog(raw, &field, &missing)?),
        _ => ExportKind::SplunkHec(hec(raw, &field, &missing)?),
    };
    Ok(ExportSink {
        name: name.get_ref().clone(),
        cursor_file: state_dir
            .join("export")
            .join(format!("{}.cursor", name.get_ref())),
        kind,
    })
}

/// The kind-specific fields written, with where.
fn set_fields(raw: &RawExport) -> Vec<(&'static str, usize)> {
    fn at<T>(name: &'static str, value: &Option<Spanned<T>>) -> Option<(&'static str, usize)> {
        value.as_ref().map(|v| (name, v.span().start))
    }
    [
        at("path", &raw.path),
        at("max_bytes", &raw.max_bytes),
        at("keep", &raw.keep),
        at("address", &raw.address),
        at("server_name", &raw.server_name),
        at("app_name", &raw.app_name),
        at("confirm_ms", &raw.confirm_ms),
        at("url", &raw.url),
        at("token_file", &raw.token_file),
        at("index", &raw.index),
        at("sourcetype", &raw.sourcetype),
        at("ack_timeout_s", &raw.ack_timeout_s),
        at("ca_file", &raw.ca_file),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn file(
    raw: &RawExport,
    field: &dyn Fn(&str) -> String,
    missing: &dyn Fn(&str, &str) -> Issue,
) -> Result<FileExport, Issue> {
    let path = raw
        .path
        .as_ref()
        .ok_or_else(|| missing("path", "for a file sink"))?;
    let max_bytes = match &raw.max_bytes {
        None => DEFAULT_FILE_BYTES,
        Some(bytes) if *bytes.get_ref() >= MIN_FILE_BYTES => *bytes.get_ref(),
        Some(bytes) => {
            return Err(issue(
                field("max_bytes"),
                bytes,
                format!("must be at least {MIN_FILE_BYTES}"),
            ))
        }
    };
    let keep = match &raw.keep {
        None => DEFAULT_KEEP,
        Some(keep) if *keep.get_ref() <= MAX_KEEP => *keep.get_ref(),
        Some(keep) => {
            return Err(issue(
                field("keep"),
                keep,
                format!("must be at most {MAX_KEEP}"),
            ))
        }
    };
    Ok(FileExport {
        path: absolute(field("path"), path)?,
        max_bytes,
        keep,
    })
}

fn syslog(
    raw: &RawExport,
    field: &dyn Fn(&str) -> String,
    missing: &dyn Fn(&str, &str) -> Issue,
) -> Result<SyslogExport, Issue> {
    let address = raw
        .address
        .as_ref()
        .ok_or_else(|| missing("address", "for a syslog sink (host:port)"))?;
    let (host, port) = host_port(address.get_ref(), SYSLOG_TLS_PORT)
        .map_err(|why| issue(field("address"), address, why))?;
    let ca_file = raw
        .ca_file
        .as_ref()
        .ok_or_else(|| missing("ca_file", "for a syslog sink (the receiver's CA, PEM)"))?;
    let server_name = match &raw.server_name {
        Some(name) => name.get_ref().clone(),
        None => host.clone(),
    };
    let app_name = match &raw.app_name {
        // RFC 5424 APP-NAME: 1 to 48 printable characters.
        Some(name)
            if (1..=48).contains(&name.get_ref().len())
                && name.get_ref().chars().all(|c| c.is_ascii_graphic()) =>
        {
            name.get_ref().clone()
        }
        Some(name) => {
            return Err(issue(
                field("app_name"),
                name,
                "must be 1 to 48 printable ASCII characters without spaces",
            ))
        }
        None => "tollgate".to_owned(),
    };
    let confirm_ms = bounded(
        field("confirm_ms"),
        raw.confirm_ms.as_ref(),
        DEFAULT_CONFIRM_MS,
        100..=600_000,
    )?;
    Ok(SyslogExport {
        host,
        port,
        server_name,
        ca_file: absolute(field("ca_file"), ca_file)?,
        app_name,
        confirm: Duration::from_millis(confirm_ms),
    })
}

fn hec(
    raw: &RawExport,
    field: &dyn Fn(&str) -> String,
    missing: &dyn Fn(&str, &str) -> Issue,
) -> Result<HecExport, Issue> {
    let url = raw
        .url
        .as_ref()
        .ok_or_else(|| missing("url", "for a splunk_hec sink (https://host:8088)"))?;
    let parsed = parse_url(url.get_ref()).map_err(|m| issue(field("url"), url, m))?;
    if !parsed.https && !is_loopback(&parsed.host) {
        return Err(issue(
            field("url"),
            url,
            "http:// is only allowed to a loopback host; use https:// so the token and the \
             events are not sent in the clear",
        ));
    }
    if parsed.path != "/" {
        return Err(issue(
            field("url"),
            url,
            "must name the collector only (https://host:port); the paths are Splunk's",
        ));
    }
    let token_file = raw.token_file.as_ref().ok_or_else(|| {
        missing(
            "token_file",
            "for a splunk_hec sink (a file holding the HEC token)",
        )
    })?;
    let ca_file = https_ca_file(field("ca_file"), raw.ca_file.as_ref(), parsed.https, "url")?;
    let ack_timeout_s = bounded(
        field("ack_timeout_s"),
        raw.ack_timeout_s.as_ref(),
        DEFAULT_ACK_TIMEOUT_S,
        1..=3600,
    )?;
    Ok(HecExport {
        text: url.get_ref().clone(),
        https: parsed.https,
        host: parsed.host,
        port: parsed.port,
        token_file: absolute(field("token_file"), token_file)?,
        ca_file,
        index: raw.index.as_ref().map(|i| i.get_ref().clone()),
        sourcetype: raw
            .sourcetype
            .as_ref()
            .map_or_else(|| DEFAULT_SOURCETYPE.to_owned(), |s| s.get_ref().clone()),
        ack_timeout: Duration::from_secs(ack_timeout_s),
    })
}

/// `host:port`, `[v6]:port`, or a host alone (the default port).
fn host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port (1 to 65535)"))
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("has an unclosed `[`")?;
        match after.strip_prefix(':') {
            Some(p) => (host, port(p)?),
            None if after.is_empty() => (host, default_port),
            None => return Err("has text after `]`".to_owned()),
        }
    } else if text.matches(':').count() == 1 {
        let (host, p) = text.split_once(':').unwrap_or((text, ""));
        (host, port(p)?)
    } else {
        (text, default_port)
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    {
        return Err(format!("`{text}` is not host:port"));
    }
    Ok((host.to_owned(), port))
}
