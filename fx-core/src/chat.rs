//! Chat commands: Slack slash commands and app mentions that run functions and answer with
//! their output.
//!
//! A [`Bundle`] groups commands: each names the handler that runs it, its argument syntax
//! (`<service> [version] [flags...]`) and its help text, and who may run it (Slack user ids in
//! `allow`, on the bundle and per command). A command becomes the CloudEvent [`COMMAND_TYPE`]
//! from `/chat/slack/<bundle>` with subject `<bundle>/<command>` and the parsed arguments as
//! data ([`CommandData`]); the handler filters on that subject. The function's output becomes
//! the reply ([`reply_of`]): a Slack message (`text`, `blocks`) as it returned it, text as
//! text, any other JSON in a code block.
//!
//! This module is pure: the management server verifies, answers Slack and posts replies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::validate::validate_name;

/// The type of a chat command's event.
pub const COMMAND_TYPE: &str = "com.ferrisfx.chat.command";

/// The most commands in a bundle.
const MAX_COMMANDS: usize = 100;

/// The most entries of an allow-list.
const MAX_ALLOW: usize = 1000;

/// The longest text of a command (Slack's own limit on a message is 40,000 characters).
pub const MAX_TEXT: usize = 4000;

/// The default prefix a `response_url` must have: Slack's.
pub const SLACK_RESPONSE_PREFIX: &str = "https://hooks.slack.com/";

/// The default base URL of Slack's Web API.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// A command bundle, as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Unique name; Slack posts to `/chat/slack/<name>`.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The Slack app the commands come from.
    pub slack: SlackApp,
    /// Slack user ids (`U024BE7LH`) who may run the bundle's commands; `*` for anyone in the
    /// workspace. Empty: nobody.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The commands.
    pub commands: Vec<Command>,
}

/// Where a bundle's Slack app is and how it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackApp {
    /// The platform secret holding the app's signing secret.
    pub signing_secret: String,
    /// The platform secret holding the app's bot token (`xoxb-…`), needed to answer app
    /// mentions (`chat.postMessage`); slash commands answer on their `response_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<String>,
    /// The base URL of Slack's Web API.
    #[serde(default = "slack_api_url", skip_serializing_if = "is_slack_api_url")]
    pub api_url: String,
    /// A `response_url` must start with this: the server posts replies nowhere else.
    #[serde(
        default = "slack_response_prefix",
        skip_serializing_if = "is_slack_response_prefix"
    )]
    pub response_url_prefix: String,
    /// How far the signed timestamp may be from now, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
}

fn slack_api_url() -> String {
    SLACK_API_URL.into()
}
fn is_slack_api_url(url: &str) -> bool {
    url == SLACK_API_URL
}
fn slack_response_prefix() -> String {
    SLACK_RESPONSE_PREFIX.into()
}
fn is_slack_response_prefix(prefix: &str) -> bool {
    prefix == SLACK_RESPONSE_PREFIX
}
fn default_tolerance() -> u64 {
    crate::hook::DEFAULT_TOLERANCE_SECONDS
}

/// One command of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The command's name: the slash command without `/` (`/deploy`), or the first word of
    /// the text (`/ops deploy api`, `@bot deploy api`).
    pub name: String,
    /// The handler that runs it: it filters on type [`COMMAND_TYPE`] and subject
    /// `<bundle>/<command>`.
    pub handler: String,
    /// The arguments: `<name>` required, `[name]` optional, `<name...>` or `[name...]` the
    /// rest of the words; empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub syntax: String,
    /// One line of help.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub help: String,
    /// Who may run this command, besides the bundle's `allow` (both must let them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// One argument of a syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg {
    name: String,
    required: bool,
    rest: bool,
}

/// What a command's event carries as `data` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandData {
    /// The bundle.
    pub bundle: String,
    /// The command's name.
    pub command: String,
    /// The arguments by name (a rest argument's words joined by one space).
    pub args: BTreeMap<String, String>,
    /// The command's text after its name, as typed.
    pub text: String,
    /// Who ran it.
    pub user: ChatUser,
    /// The channel's id.
    pub channel: String,
    /// The workspace's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub team: String,
    /// `slash_command` or `app_mention`.
    pub via: String,
}

/// A chat user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUser {
    /// Slack's user id.
    pub id: String,
    /// The user's name, when Slack sends it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Why a command was not run: told to the user, in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// `help`, or no command: the bundle's help.
    Help(String),
    /// No such command.
    Unknown(String),
    /// The user may not run it.
    Denied(String),
    /// The arguments do not fit the syntax.
    Usage(String),
}

impl NotRun {
    /// The text told to the user.
    pub fn text(&self) -> &str {
        match self {
            NotRun::Help(t) | NotRun::Unknown(t) | NotRun::Denied(t) | NotRun::Usage(t) => t,
        }
    }
}

impl Bundle {
    /// Checks every rule a stored bundle must satisfy; the message names the offending field.
    pub fn validate(&self) -> Result<()> {
        validate_name("bundle name", &self.name)?;
        crate::secrets::validate_secret_name(&self.slack.signing_secret)
            .map_err(|e| Error::invalid(format!("slack.signing_secret: {}", e.message())))?;
        if let Some(token) = &self.slack.bot_token {
            crate::secrets::validate_secret_name(token)
                .map_err(|e| Error::invalid(format!("slack.bot_token: {}", e.message())))?;
        }
        for (field, url) in [
            ("slack.api_url", &self.slack.api_url),
            ("slack.response_url_prefix", &self.slack.response_url_prefix),
        ] {
            let parsed = url::Url::parse(url)
                .map_err(|e| Error::invalid(format!("{field} {url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(Error::invalid(format!(
                    "{field} {url:?} is not an http or https URL"
                )));
            }
        }
        if self.slack.tolerance_seconds == 0 || self.slack.tolerance_seconds > 24 * 3600 {
            return Err(Error::invalid(format!(
                "slack.tolerance_seconds must be 1 to 86400, got {}",
                self.slack.tolerance_seconds
            )));
        }
        validate_allow("allow", &self.allow)?;
        if self.commands.is_empty() || self.commands.len() > MAX_COMMANDS {
            return Err(Error::invalid(format!(
                "commands: a bundle has 1 to {MAX_COMMANDS} commands, got {}",
                self.commands.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for command in &self.commands {
            validate_name("commands.name", &command.name)?;
            if command.name == "help" {
                return Err(Error::invalid(
                    "commands.name: help is the bundle's own help; name the command otherwise",
                ));
            }
            if !seen.insert(&command.name) {
                return Err(Error::invalid(format!(
                    "commands.name: {} appears twice",
                    command.name
                )));
            }
            validate_name("commands.handler", &command.handler)?;
            parse_syntax(&command.syntax).map_err(|e| {
                Error::invalid(format!(
                    "commands.syntax of {}: {}",
                    command.name,
                    e.message()
                ))
            })?;
            if command.help.len() > 500 {
                return Err(Error::invalid(format!(
                    "commands.help of {} is over 500 bytes",
                    command.name
                )));
            }
            if let Some(allow) = &command.allow {
                validate_allow("commands.allow", allow)?;
            }
        }
        Ok(())
    }

    /// The events' source.
    pub fn source(&self) -> String {
        format!("/chat/slack/{}", self.name)
    }

    /// The subject of command `command`'s events (what its handler filters on).
    pub fn subject(&self, command: &str) -> String {
        format!("{}/{command}", self.name)
    }

    /// The bundle's help: every command with its syntax and help.
    pub fn help(&self, invoked_as: &str) -> String {
        let mut text = format!("*{}*", self.name);
        if !self.description.is_empty() {
            text.push_str(&format!(": {}", self.description));
        }
        for c in &self.commands {
            text.push_str(&format!("\n• `{invoked_as} {}", c.name));
            if !c.syntax.is_empty() {
                text.push_str(&format!(" {}", c.syntax));
            }
            text.push('`');
            if !c.help.is_empty() {
                text.push_str(&format!(" — {}", c.help));
            }
        }
        text
    }

    /// Resolves a command: `slash` is the slash command as typed (`/deploy`; empty for a
    /// mention), `text` what follows it. Answers the command and its data, or why it does not
    /// run.
    pub fn resolve(
        &self,
        slash: &str,
        text: &str,
        user: &ChatUser,
    ) -> std::result::Result<(&Command, BTreeMap<String, String>, String), NotRun> {
        let text = text.trim();
        let slash_name = slash.trim_start_matches('/');
        let invoked_as = if slash.is_empty() {
            "@bot".to_string()
        } else {
            slash.to_string()
        };
        let (name, rest) = match self.commands.iter().find(|c| c.name == slash_name) {
            Some(c) => (c.name.as_str(), text),
            None => {
                let mut words = text.splitn(2, char::is_whitespace);
                let first = words.next().unwrap_or("");
                (first, words.next().unwrap_or("").trim())
            }
        };
        if name.is_empty() || name == "help" {
            return Err(NotRun::Help(self.help(&invoked_as)));
        }
        let Some(command) = self.commands.iter().find(|c| c.name == name) else {
            return Err(NotRun::Unknown(format!(
                "no command `{}` in bundle {}.\n{}",
                name.chars().take(64).collect::<String>(),
                self.name,
                self.help(&invoked_as)
            )));
        };
        let allowed = allows(&self.allow, &user.id)
            && command.allow.as_ref().is_none_or(|a| allows(a, &user.id));
        if !allowed {
            return Err(NotRun::Denied(format!(
                "you may not run `{}` of bundle {}: ask an admin to add your Slack user id ({}) to its allow-list",
                command.name, self.name, user.id
            )));
        }
        if rest == "help" {
            return Err(NotRun::Help(self.help(&invoked_as)));
        }
        let args = bind(&command.syntax, rest).map_err(|e| {
            NotRun::Usage(format!(
                "{e}. Usage: `{invoked_as} {}{}{}`",
                command.name,
                if command.syntax.is_empty() { "" } else { " " },
                command.syntax
            ))
        })?;
        Ok((command, args, rest.to_string()))
    }
}

fn allows(list: &[String], user: &str) -> bool {
    list.iter().any(|a| a == "*" || a == user)
}

fn validate_allow(field: &str, list: &[String]) -> Result<()> {
    if list.len() > MAX_ALLOW {
        return Err(Error::invalid(format!(
            "{field} has {} entries; at most {MAX_ALLOW}",
            list.len()
        )));
    }
    for entry in list {
        let fine = entry == "*"
            || (!entry.is_empty()
                && entry.len() <= 32
                && entry.chars().all(|c| c.is_ascii_alphanumeric()));
        if !fine {
            return Err(Error::invalid(format!(
                "{field}: {entry:?} is not a Slack user id (U024BE7LH) or *"
            )));
        }
    }
    Ok(())
}

fn parse_syntax(syntax: &str) -> Result<Vec<Arg>> {
    let mut args: Vec<Arg> = Vec::new();
    for word in syntax.split_whitespace() {
        let (required, inner) =
            if let Some(i) = word.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
                (true, i)
            } else if let Some(i) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                (false, i)
            } else {
                return Err(Error::invalid(format!(
                    "{word:?} is neither <required> nor [optional]"
                )));
            };
        let (name, rest) = match inner.strip_suffix("...") {
            Some(n) => (n, true),
            None => (inner, false),
        };
        validate_name("argument name", name)?;
        if let Some(last) = args.last() {
            if last.rest {
                return Err(Error::invalid("a rest argument (name...) comes last"));
            }
            if !last.required && required {
                return Err(Error::invalid(format!(
                    "required <{name}> after an optional argument"
                )));
            }
        }
        if args.iter().any(|a| a.name == name) {
            return Err(Error::invalid(format!("argument {name} appears twice")));
        }
        args.push(Arg {
            name: name.to_string(),
            required,
            rest,
        });
    }
    Ok(args)
}

/// Binds the words of `text` to the arguments of `syntax`.
fn bind(syntax: &str, text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let args = parse_syntax(syntax).map_err(|e| e.message().to_string())?;
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut bound = BTreeMap::new();
    for arg in &args {
        if words.is_empty() {
            if arg.required {
                return Err(format!("missing <{}>", arg.name));
            }
            break;
        }
        if arg.rest {
            bound.insert(arg.name.clone(), words.join(" "));
            words.clear();
        } else {
            bound.insert(arg.name.clone(), words.remove(0).to_string());
        }
    }
    if !words.is_empty() {
        return Err(format!(
            "unexpected {:?}",
            words.join(" ").chars().take(80).collect::<String>()
        ));
    }
    Ok(bound)
}

/// Strips the leading bot mention (`<@U0LAN0Z89> deploy api` → `deploy api`).
pub fn strip_mention(text: &str) -> &str {
    let text = text.trim_start();
    match text.strip_prefix("<@").and_then(|t| t.split_once('>')) {
        Some((_, rest)) => rest.trim_start(),
        None => text,
    }
}

/// The Slack message a finished execution answers with: from its output (the first event
/// with data), or its failure.
pub fn reply_of(output: &[Event], failure: Option<&str>) -> serde_json::Value {
    if let Some(reason) = failure {
        return serde_json::json!({"text": format!(":x: failed: {reason}")});
    }
    let Some(event) = output.iter().find(|e| e.data().is_some()) else {
        return serde_json::json!({"text": ":white_check_mark: done"});
    };
    match crate::event::data_json(event) {
        Some(serde_json::Value::Object(message))
            if message.contains_key("text") || message.contains_key("blocks") =>
        {
            // A Slack message as the function made it; only the fields Slack reads.
            let keep = ["text", "blocks", "attachments", "response_type", "mrkdwn"];
            serde_json::Value::Object(
                message
                    .into_iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .collect(),
            )
        }
        Some(serde_json::Value::String(text)) => serde_json::json!({ "text": text }),
        Some(other) => {
            let pretty = serde_json::to_string_pretty(&other).unwrap_or_default();
            serde_json::json!({ "text": format!("```{}```", clip(&pretty)) })
        }
        None => {
            let bytes = crate::event::data_bytes(event).unwrap_or_default();
            serde_json::json!({ "text": clip(&String::from_utf8_lossy(&bytes)) })
        }
    }
}

/// Text within a Slack message's size.
fn clip(text: &str) -> String {
    const MAX: usize = 3000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests;
