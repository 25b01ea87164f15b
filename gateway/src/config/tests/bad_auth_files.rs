//! Bad `auth` settings: each error names the file, the line and the field. Then the JWKS
//! sources a token target accepts, as parsed.

use std::{path::Path, time::Duration};

use super::bad_files::{assert_all_reported, Bad};
use crate::config::{parse, JwksSource, TargetAuth};

/// A valid target, then `$extra` lines inside it (from line 8 on).
macro_rules! in_target {
    ($($extra:tt)*) => {
        concat!(
            "[agents]\nuids = [1000]\n\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n",
            "destinations = [\"127.0.0.1:5432\"]\n",
            $($extra)*
        )
    };
}

/// A token target without its key source (lines 8 to 11), then `$extra` from line 12 on.
macro_rules! token_target {
    ($extra:literal) => {
        in_target!(concat!(
            "auth = \"token\"\ntoken_issuer = \"https://idp.test\"\ntoken_audience = \"db\"\n",
            "upstream_credentials_file = \"/etc/tollgate/db.credentials\"\n",
            $extra
        ))
    };
}

const BAD_AUTH: &[Bad] = &[
    Bad {
        what: "both a JWKS file and a URL",
        text: token_target!(
            "token_jwks_file = \"/etc/tollgate/jwks.json\"\ntoken_jwks_url = \"https://idp.test/jwks\"\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_url",
        fragments: &["give token_jwks_file or token_jwks_url, not both"],
    },
    Bad {
        what: "neither a JWKS file nor a URL",
        text: token_target!(""),
        line: 8,
        field: "targets[0].auth",
        fragments: &["auth = \"token\" needs token_jwks_file or token_jwks_url"],
    },
    Bad {
        what: "plain http to a host name",
        text: token_target!("token_jwks_url = \"http://idp.test/jwks\"\n"),
        line: 12,
        field: "targets[0].token_jwks_url",
        fragments: &[
            "http:// is only allowed to a loopback host (127.0.0.0/8, ::1, localhost)",
            "use https://",
        ],
    },
    Bad {
        what: "plain http to a private address",
        text: token_target!("token_jwks_url = \"http://10.0.0.7:8080/jwks\"\n"),
        line: 12,
        field: "targets[0].token_jwks_url",
        fragments: &["only allowed to a loopback host"],
    },
    Bad {
        what: "another scheme",
        text: token_target!("token_jwks_url = \"ftp://idp.test/jwks\"\n"),
        line: 12,
        field: "targets[0].token_jwks_url",
        fragments: &["must start with https://"],
    },
    Bad {
        what: "credentials in the URL",
        text: token_target!("token_jwks_url = \"https://user:pw@idp.test/jwks\"\n"),
        line: 12,
        field: "targets[0].token_jwks_url",
        fragments: &["must not carry credentials"],
    },
    Bad {
        what: "port out of range",
        text: token_target!("token_jwks_url = \"https://idp.test:70000/jwks\"\n"),
        line: 12,
        field: "targets[0].token_jwks_url",
        fragments: &["`70000` is not a port"],
    },
    Bad {
        what: "relative JWKS file",
        text: token_target!("token_jwks_file = \"jwks.json\"\n"),
        line: 12,
        field: "targets[0].token_jwks_file",
        fragments: &["`jwks.json` must be an absolute path"],
    },
    Bad {
        what: "CA file with an http URL",
        text: token_target!(
            "token_jwks_url = \"http://127.0.0.1:8080/jwks\"\ntoken_jwks_ca_file = \"/etc/tollgate/ca.pem\"\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_ca_file",
        fragments: &["is only used with an https:// token_jwks_url"],
    },
    Bad {
        what: "CA file with a JWKS file",
        text: token_target!(
            "token_jwks_file = \"/etc/tollgate/jwks.json\"\ntoken_jwks_ca_file = \"/etc/tollgate/ca.pem\"\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_ca_file",
        fragments: &["is only used with token_jwks_url"],
    },
    Bad {
        what: "relative CA file",
        text: token_target!(
            "token_jwks_url = \"https://idp.test/jwks\"\ntoken_jwks_ca_file = \"ca.pem\"\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_ca_file",
        fragments: &["must be an absolute path"],
    },
    Bad {
        what: "refetch interval zero",
        text: token_target!(
            "token_jwks_url = \"https://idp.test/jwks\"\ntoken_jwks_min_refetch_s = 0\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_min_refetch_s",
        fragments: &["must be 1 to 3600 seconds"],
    },
    Bad {
        what: "refetch interval with a JWKS file",
        text: token_target!(
            "token_jwks_file = \"/etc/tollgate/jwks.json\"\ntoken_jwks_min_refetch_s = 1\n"
        ),
        line: 13,
        field: "targets[0].token_jwks_min_refetch_s",
        fragments: &["is only used with token_jwks_url"],
    },
    Bad {
        what: "unknown auth mode",
        text: in_target!("auth = \"oidc\"\n"),
        line: 8,
        field: "targets[0].auth",
        fragments: &["`oidc` is not one of: passthrough, token"],
    },
    Bad {
        what: "token URL on a passthrough target",
        text: in_target!("token_jwks_url = \"https://idp.test/jwks\"\n"),
        line: 8,
        field: "targets[0].token_jwks_url",
        fragments: &["is only used with auth = \"token\""],
    },
    Bad {
        what: "token leeway on an explicit passthrough target",
        text: in_target!("auth = \"passthrough\"\ntoken_leeway_s = 10\n"),
        line: 9,
        field: "targets[0].token_leeway_s",
        fragments: &["is only used with auth = \"token\""],
    },
    Bad {
        what: "token auth on an object store",
        text: concat!(
            "[agents]\nuids = [1000]\n\n[[targets]]\nname = \"s3\"\nkind = \"object_store\"\n",
            "destinations = [\"127.0.0.1:9000\"]\n",
            "auth = \"token\"\ntoken_issuer = \"https://idp.test\"\ntoken_audience = \"db\"\n",
            "upstream_credentials_file = \"/etc/tollgate/db.credentials\"\n",
            "token_jwks_url = \"https://idp.test/jwks\"\n",
        ),
        line: 8,
        field: "targets[0].auth",
        fragments: &["token authentication is for postgres targets"],
    },
    Bad {
        what: "no issuer",
        text: in_target!(
            "auth = \"token\"\ntoken_audience = \"db\"\ntoken_jwks_url = \"https://idp.test/jwks\"\nupstream_credentials_file = \"/c\"\n"
        ),
        line: 8,
        field: "targets[0].auth",
        fragments: &["auth = \"token\" needs token_issuer"],
    },
    Bad {
        what: "leeway too big",
        text: token_target!(
            "token_jwks_url = \"https://idp.test/jwks\"\ntoken_leeway_s = 301\n"
        ),
        line: 13,
        field: "targets[0].token_leeway_s",
        fragments: &["at most 300 seconds"],
    },
];

#[test]
fn bad_auth_settings_name_file_line_and_field() {
    assert_all_reported(BAD_AUTH);
}

fn url_of(line: &str) -> crate::config::JwksUrl {
    let text = format!("{}{line}\n", token_target!(""),);
    let config = match parse(Path::new("good.toml"), &text) {
        Ok(config) => config,
        Err(error) => panic!("{line}: {error}"),
    };
    match &config.targets[0].auth {
        TargetAuth::Token(token) => match &token.validation.jwks {
            JwksSource::Url(url) => (**url).clone(),
            other => panic!("{line}: {other:?}"),
        },
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn jwks_urls_are_split_with_their_defaults() {
    let url = url_of("token_jwks_url = \"https://idp.clinic.test/realms/db/protocol/openid-connect/certs?x=1#frag\"");
    assert!(url.endpoint.https);
    assert_eq!(url.endpoint.host, "idp.clinic.test");
    assert_eq!(url.endpoint.port, 443);
    assert_eq!(
        url.endpoint.path,
        "/realms/db/protocol/openid-connect/certs?x=1"
    );
    assert_eq!(
        url.endpoint.ca_file,
        Path::new("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(url.min_refetch, Duration::from_secs(10));

    let url = url_of(
        "token_jwks_url = \"HTTPS://10.1.2.3:8443\"\ntoken_jwks_ca_file = \"/etc/tollgate/idp-ca.pem\"\ntoken_jwks_min_refetch_s = 1",
    );
    assert_eq!(
        (
            url.endpoint.host.as_str(),
            url.endpoint.port,
            url.endpoint.path.as_str()
        ),
        ("10.1.2.3", 8443, "/")
    );
    assert_eq!(url.endpoint.ca_file, Path::new("/etc/tollgate/idp-ca.pem"));
    assert_eq!(url.min_refetch, Duration::from_secs(1));

    // Plain HTTP to loopback hosts only.
    for (line, host, port) in [
        (
            "token_jwks_url = \"http://127.0.0.1:8080/jwks.json\"",
            "127.0.0.1",
            8080,
        ),
        (
            "token_jwks_url = \"http://127.9.8.7/jwks.json\"",
            "127.9.8.7",
            80,
        ),
        (
            "token_jwks_url = \"http://localhost:9/jwks.json\"",
            "localhost",
            9,
        ),
        ("token_jwks_url = \"http://[::1]:9/jwks.json\"", "::1", 9),
    ] {
        let url = url_of(line);
        assert!(!url.endpoint.https, "{line}");
        assert_eq!(
            (
                url.endpoint.host.as_str(),
                url.endpoint.port,
                url.endpoint.path.as_str()
            ),
            (host, port, "/jwks.json"),
            "{line}"
        );
    }
}

#[test]
fn a_jwks_file_stays_a_file() {
    let text = format!(
        "{}token_jwks_file = \"/etc/tollgate/jwks.json\"\n",
        token_target!("")
    );
    let config = parse(Path::new("good.toml"), &text).expect("valid");
    let TargetAuth::Token(token) = &config.targets[0].auth else {
        panic!("token target");
    };
    assert_eq!(
        token.validation.jwks,
        JwksSource::File("/etc/tollgate/jwks.json".into())
    );
}
