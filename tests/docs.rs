//! The documents are checked against the code: the wire-contract page
//! (`subjects/README.md`) against the golden bytes of the codec, and the
//! compose deployments against the CLI and the environment variables.

mod common;

use common::*;

fn python() -> std::path::PathBuf {
    require(&data().join("pyenv/bin/python"), "the python environment")
}

fn run_check(script: &str) {
    let out = std::process::Command::new(python())
        .arg(root().join(script))
        .current_dir(root())
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
}

#[test]
fn wire_contract_page_matches_the_golden_bytes() {
    run_check("subjects/python/check_contract.py");
}

#[test]
fn compose_files_use_only_real_commands_and_variables() {
    run_check("compose/validate.py");
}
