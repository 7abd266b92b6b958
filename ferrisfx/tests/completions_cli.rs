//! `ferrisfx completions` as a user runs it: the built binary prints a completion script on
//! standard output (nothing else there: the script is redirected straight into a file).

// Test helpers fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn the_binary_prints_a_bash_completion_script() {
    let output = Command::new(env!("CARGO_BIN_EXE_ferrisfx"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("_ferrisfx()"), "{text:.300}");
    assert!(text.contains("complete -F _ferrisfx"), "{text:.300}");
    for command in ["handler", "executions", "emit", "completions", "man"] {
        assert!(text.contains(command), "no {command} in the script");
    }
}
