//! Bad TLS settings: each error names the file, the line and the field.

use super::bad_files::{assert_all_reported, Bad};

/// A valid target, then `$extra` lines inside it (from line 8 on).
macro_rules! in_target {
    ($extra:literal) => {
        concat!(
            "[agents]\nuids = [1000]\n\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n",
            "destinations = [\"127.0.0.1:5432\"]\n",
            $extra
        )
    };
}

const BAD_TLS: &[Bad] = &[
    Bad {
        what: "certificate without key",
        text: "[gateway]\ntls_cert_file = \"/etc/tollgate/cert.pem\"\n",
        line: 2,
        field: "gateway.tls_cert_file",
        fragments: &["needs gateway.tls_key_file too"],
    },
    Bad {
        what: "key without certificate",
        text: "[gateway]\ntls_key_file = \"/etc/tollgate/key.pem\"\n",
        line: 2,
        field: "gateway.tls_key_file",
        fragments: &["needs gateway.tls_cert_file too"],
    },
    Bad {
        what: "relative certificate path",
        text: "[gateway]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"/k.pem\"\n",
        line: 2,
        field: "gateway.tls_cert_file",
        fragments: &["must be an absolute path"],
    },
    Bad {
        what: "relative state dir",
        text: "[gateway]\nstate_dir = \"var/lib/tollgate\"\n",
        line: 2,
        field: "gateway.state_dir",
        fragments: &["must be an absolute path"],
    },
    Bad {
        what: "unknown upstream TLS mode",
        text: in_target!("upstream_tls = \"verify-ca\"\n"),
        line: 8,
        field: "targets[0].upstream_tls",
        fragments: &["`verify-ca` is not one of: auto, disable, prefer, require, verify-full"],
    },
    Bad {
        what: "verify-full without a CA file",
        text: in_target!("upstream_tls = \"verify-full\"\n"),
        line: 8,
        field: "targets[0].upstream_tls",
        fragments: &["verify-full needs upstream_ca_file"],
    },
    Bad {
        what: "CA file without verify-full",
        text: in_target!("upstream_tls = \"require\"\nupstream_ca_file = \"/ca.pem\"\n"),
        line: 9,
        field: "targets[0].upstream_ca_file",
        fragments: &["only used with upstream_tls = \"verify-full\""],
    },
    Bad {
        what: "server name that is no name",
        text: in_target!("upstream_tls = \"verify-full\"\nupstream_ca_file = \"/ca.pem\"\nupstream_server_name = \"db host\"\n"),
        line: 10,
        field: "targets[0].upstream_server_name",
        fragments: &["is not a DNS name or IP address"],
    },
];

#[test]
fn bad_tls_settings_name_file_line_and_field() {
    assert_all_reported(BAD_TLS);
}
