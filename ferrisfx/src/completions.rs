//! `ferrisfx completions SHELL` and `ferrisfx man`: shell completion scripts (clap_complete)
//! and man pages (clap_mangen), generated from the live command definitions of [`Cli`], so
//! they name every command and flag of this binary and never go stale.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

use crate::Cli;

/// The name the scripts complete and the pages are named after.
const BIN: &str = "ferrisfx";

/// Flags of `ferrisfx completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `ferrisfx man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `ferrisfx.1` and one page per subcommand (`ferrisfx-handler-list.1`, …) into
    /// this folder, created when missing; without it, print the top page to standard output.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` to standard output.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write_completions(args.shell, &mut out)?;
    out.flush().context("writing the completion script")
}

/// Writes the completion script for `shell` into `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut buf);
    out.write_all(&buf).context("writing the completion script")
}

/// Writes the man pages into `args.dir`, or prints the top page to standard output.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    match args.dir {
        Some(dir) => {
            let pages = write_man_pages(&dir)?;
            println!("wrote {} man pages into {}", pages.len(), dir.display());
            Ok(())
        }
        None => {
            let mut out = std::io::stdout().lock();
            let mut page = Vec::new();
            page_of(command())
                .render(&mut page)
                .context("rendering the ferrisfx man page")?;
            out.write_all(&page)
                .and_then(|()| out.flush())
                .context("writing the man page")
        }
    }
}

/// Writes `ferrisfx.1` and one page per visible subcommand, nested ones included
/// (`ferrisfx-handler-list.1`), into `dir`; returns the files written.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(command(), dir, &mut written)?;
    Ok(written)
}

fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let page = page_of(cmd);
    let path = page
        .generate_to(dir)
        .with_context(|| format!("writing {}", dir.join(page.get_filename()).display()))?;
    written.push(path);
    Ok(())
}

/// The man page of `cmd`, in the FerrisFX manual.
fn page_of(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).manual("FerrisFX Manual")
}

/// The whole command tree, built so that every subcommand carries its full display name
/// (`ferrisfx-handler-list`), without the `help` subcommand, which has no page of its own.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    fn script(shell: Shell) -> String {
        let mut buf = Vec::new();
        write_completions(shell, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn the_command_tree_has_no_conflicting_definitions() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bash_zsh_and_fish_scripts_name_top_level_and_nested_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            for word in ["handler", "executions", "emit", "package", "completions"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
            // Nested: `handler create`, `executions show`, `package upload`.
            for nested in ["create", "show", "upload"] {
                assert!(text.contains(nested), "{shell}: no nested {nested}");
            }
        }
        assert!(script(Shell::Bash).contains("ferrisfx__subcmd__handler,create)"));
        assert!(script(Shell::Fish).contains("__fish_seen_subcommand_from handler"));
    }

    #[test]
    fn the_bash_script_parses() {
        check_syntax("bash", &script(Shell::Bash));
    }

    #[test]
    fn the_zsh_and_fish_scripts_parse_where_those_shells_are_installed() {
        check_syntax("zsh", &script(Shell::Zsh));
        check_syntax("fish", &script(Shell::Fish));
    }

    /// Runs `shell -n` on `text`; skips, saying so, when `shell` is not installed (bash always
    /// is on the machines this project builds on, so a missing bash fails).
    fn check_syntax(shell: &str, text: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join(format!("ferrisfx.{shell}"));
        std::fs::write(&file, text).unwrap();
        let output = match std::process::Command::new(shell)
            .arg("-n")
            .arg(&file)
            .output()
        {
            Ok(output) => output,
            // The test command installs zsh and fish; elsewhere they may be missing.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && shell != "bash"
                    && std::env::var("CI").as_deref() != Ok("true") =>
            {
                eprintln!("skipped: {shell} is not installed, its completion script is unchecked");
                return;
            }
            Err(e) => panic!("running {shell}: {e}"),
        };
        assert!(
            output.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn every_visible_subcommand_has_a_man_page() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("man1");
        let written = write_man_pages(&dir).unwrap();

        let mut expected = Vec::new();
        page_names(&command(), &mut expected);
        for name in [
            "ferrisfx",
            "ferrisfx-handler",
            "ferrisfx-handler-list",
            "ferrisfx-completions",
            "ferrisfx-man",
        ] {
            assert!(expected.iter().any(|e| e == name), "no command {name}");
        }
        assert!(!expected.iter().any(|e| e.contains("config-reference")));
        assert_eq!(written.len(), expected.len());
        for name in expected {
            let page = dir.join(format!("{name}.1"));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            // roff pages open with the title macro, after clap_mangen's two-line definition
            // of the quote character (`.ie \n(.g .ds Aq …` / `.el .ds Aq '`).
            let first = text
                .lines()
                .find(|line| !line.starts_with(".ie ") && !line.starts_with(".el "));
            assert!(
                first.is_some_and(|line| line.starts_with(&format!(".TH {name} 1 "))),
                "{name}: {text:.120}"
            );
        }
        let list = std::fs::read_to_string(dir.join("ferrisfx-handler-list.1")).unwrap();
        assert!(list.contains("List handlers"), "{list}");
    }

    fn page_names(cmd: &clap::Command, names: &mut Vec<String>) {
        names.push(cmd.get_display_name().unwrap_or(cmd.get_name()).to_string());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            page_names(sub, names);
        }
    }
}
