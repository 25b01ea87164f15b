//! Unprivileged CLI tests: the example configurations load, bad files are reported with file,
//! line and field, and `--help` explains each command.

use std::{path::Path, process::Command};

const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

fn tollgate(args: &[&str]) -> std::process::Output {
    Command::new(TOLLGATE)
        .args(args)
        .output()
        .expect("run tollgate")
}

#[test]
fn every_example_configuration_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("policies/examples exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = tollgate(&["check-config", path.to_str().expect("utf-8 path")]);
            assert!(
                output.status.success(),
                "{} should be valid: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            // A gateway configuration is summed up by its targets, a policy by its rules.
            let policy = std::fs::read_to_string(&path)
                .expect("read example")
                .lines()
                .any(|line| line.trim_start().starts_with("version"));
            let summary = if policy { "rule " } else { "target " };
            assert!(
                stdout.contains(summary),
                "check-config describes {}: {stdout}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no example configurations found in {}",
        examples.display()
    );
}

#[test]
fn bad_configuration_names_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[agents]\ncgroups = [\"/ai-agents\"]\n\n[[targets]]\nname = \"db\"\nkind = \"mysql\"\ndestinations = [\"127.0.0.1:3306\"]\n",
    )
    .expect("write config");
    let output = tollgate(&["check-config", file.to_str().expect("utf-8 path")]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:6: targets[0].kind"), "{stderr}");
    assert!(
        stderr.contains("not one of: postgres, object_store"),
        "{stderr}"
    );
}

#[test]
fn missing_configuration_file_is_a_clear_error() {
    let output = tollgate(&["check-config", "/nonexistent/tollgate.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/tollgate.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn help_explains_every_command() {
    let output = tollgate(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["run", "check-config", "status"] {
        assert!(help.contains(command), "--help lists {command}: {help}");
    }
    let run_help = String::from_utf8_lossy(&tollgate(&["run", "--help"]).stdout).into_owned();
    assert!(run_help.contains("Needs root"), "{run_help}");
    assert!(run_help.contains("--config"), "{run_help}");
}
