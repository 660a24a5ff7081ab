//! The documentation keeps up with the binary: every setting `--help` lists is in
//! docs/configuration.md.

use std::process::Command;

#[test]
fn every_connector_setting_in_help_is_documented() {
    let help = Command::new(env!("CARGO_BIN_EXE_airlock-connector"))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    let mut checked = 0;
    for part in help.split("[env: ").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/configuration.md does not mention `{name}`"
        );
        checked += 1;
    }
    assert!(
        checked >= 20,
        "expected every setting in --help, found {checked}"
    );
}
