//! Outgoing mail: verification links, password resets and invitations to organisations.
//!
//! Through SMTP (lettre over rustls) when `KEYFRAME_SMTP_URL` is set; otherwise, for
//! development, each mail is written as an `.eml` file under the data directory and the log
//! says where. Mails go out on a task of their own, retried a few times, so a slow or failing
//! mail server never holds up or fails the request that caused the mail; the user can always
//! ask for another.

use anyhow::Context as _;
use keyframe_domain::values::EmailAddress;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where mail goes.
#[derive(Clone)]
pub struct MailSettings {
    /// `smtp://user:password@host:port?tls=required` or `smtps://...`; `None` writes `.eml`
    /// files into `dir` instead (development).
    pub smtp_url: Option<String>,
    /// The sender, `Name <address>` or a bare address.
    pub from: String,
    /// Where mails go as files when there is no SMTP server.
    pub dir: PathBuf,
    /// The address users reach Keyframe's front end at, for the links in mails.
    pub public_url: String,
}

/// What an invitation's mail says.
pub struct InvitationMail<'a> {
    /// The organisation's name.
    pub organization: &'a str,
    /// The role offered.
    pub role: &'a str,
    /// Who invited (their name, else their address).
    pub invited_by: &'a str,
    /// The token.
    pub token: &'a str,
    /// How long it works.
    pub valid_for: Duration,
}

/// How often a mail is tried before it is given up (and logged).
const ATTEMPTS: u32 = 3;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

/// Sends Keyframe's mails.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    public_url: String,
}

/// A mail to send.
pub struct Mail {
    /// Recipient.
    pub to: EmailAddress,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Mailer {
    /// A mailer as configured: SMTP when a URL is given, else `.eml` files in `settings.dir`.
    pub fn new(settings: &MailSettings) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .with_context(|| format!("the sender address {:?} is not a mailbox", settings.from))?;
        let transport = match &settings.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("the SMTP URL (smtp://user:password@host:port?tls=required, or smtps://...)")?
                    .timeout(Some(Duration::from_secs(10)))
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&settings.dir)
                    .with_context(|| format!("creating the mail directory {}", settings.dir.display()))?;
                Transport::Files {
                    transport: AsyncFileTransport::<Tokio1Executor>::new(&settings.dir),
                    dir: settings.dir.clone(),
                }
            }
        };
        Ok(Self {
            transport,
            from,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The mail that proves an address.
    pub fn verification(&self, to: &EmailAddress, token: &str, valid_for: Duration) -> Mail {
        Mail {
            to: to.clone(),
            subject: "Confirm your e-mail address for Keyframe".to_owned(),
            body: format!(
                "Welcome to Keyframe.\r\n\r\nConfirm your address by opening this link:\r\n\r\n{}/verify-email?token={token}\r\n\r\n\
                 or by sending this token to POST /api/v1/auth/verify-email:\r\n\r\ntoken: {token}\r\n\r\n\
                 It works once, for {}. If you did not sign up, ignore this mail.\r\n",
                self.public_url,
                describe(valid_for)
            ),
        }
    }

    /// The mail that lets the owner of an address set a new password.
    pub fn password_reset(&self, to: &EmailAddress, token: &str, valid_for: Duration) -> Mail {
        Mail {
            to: to.clone(),
            subject: "Reset your Keyframe password".to_owned(),
            body: format!(
                "Someone asked to reset the password of this Keyframe account.\r\n\r\nSet a new one here:\r\n\r\n\
                 {}/reset-password?token={token}\r\n\r\nor send this token with the new password to \
                 POST /api/v1/auth/password-reset/confirm:\r\n\r\ntoken: {token}\r\n\r\n\
                 It works once, for {}. Using it ends every session of the account. If you did not ask, \
                 ignore this mail: your password stays as it is.\r\n",
                self.public_url,
                describe(valid_for)
            ),
        }
    }

    /// The mail that invites an address into an organisation.
    pub fn invitation(&self, to: &EmailAddress, invitation: &InvitationMail<'_>) -> Mail {
        let InvitationMail {
            organization,
            role,
            invited_by,
            token,
            valid_for,
        } = invitation;
        // Names may hold line breaks, which have no place in a header line.
        let (organization, invited_by) = (one_line(organization), one_line(invited_by));
        Mail {
            to: to.clone(),
            subject: format!("{invited_by} invited you to {organization} on Keyframe"),
            body: format!(
                "{invited_by} invited you to join the organisation \"{organization}\" on Keyframe as {role}.\r\n\r\n\
                 See the invitation and how to accept it here:\r\n\r\n{}/invitations?token={token}\r\n\r\n\
                 or, logged in with this address, send this token to POST /api/v1/invitations/accept:\r\n\r\n\
                 token: {token}\r\n\r\nIt works once, for {}. If you do not know {invited_by}, ignore this mail.\r\n",
                self.public_url,
                describe(*valid_for)
            ),
        }
    }

    /// Sends `mail` now.
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let to: Mailbox = mail
            .to
            .as_str()
            .parse()
            .with_context(|| format!("{} is not a mailbox lettre accepts", mail.to))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .context("building the mail")?;
        match &self.transport {
            Transport::Smtp(transport) => {
                transport.send(message).await.context("sending through SMTP")?;
            }
            Transport::Files { transport, dir } => {
                let id = transport.send(message).await.context("writing the mail file")?;
                let path = dir.join(format!("{id}.eml"));
                tracing::info!(to = %mail.to, subject = %mail.subject, path = %path.display(), "mail written to a file (no SMTP configured)");
            }
        }
        Ok(())
    }

    /// Sends `mail` on a task of its own, retrying with backoff; a mail that cannot be sent is
    /// logged, never surfaced to the request that caused it.
    pub fn send_in_background(self: &Arc<Self>, mail: Mail) {
        let mailer = Arc::clone(self);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match mailer.send(&mail).await {
                    Ok(()) => return,
                    Err(error) if attempt < ATTEMPTS => {
                        tracing::warn!(to = %mail.to, attempt, error = format!("{error:#}"), "mail not sent; retrying");
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                    }
                    Err(error) => {
                        tracing::error!(to = %mail.to, subject = %mail.subject, error = format!("{error:#}"), "mail given up");
                    }
                }
            }
        });
    }
}

/// `text` with every control character (line breaks, tabs) as a space.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// "24 hours", "60 minutes": how long a token works, for the mail's reader.
fn describe(duration: Duration) -> String {
    let minutes = duration.as_secs() / 60;
    if minutes >= 120 && minutes.is_multiple_of(60) {
        format!("{} hours", minutes / 60)
    } else {
        format!("{minutes} minutes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitations_subject_is_one_line_whatever_the_names_hold() {
        let mailer = Mailer::new(&MailSettings {
            smtp_url: None,
            from: "Keyframe <keyframe@example.com>".to_owned(),
            dir: std::env::temp_dir().join("keyframe-mail-unit"),
            public_url: "https://keyframe.example".to_owned(),
        })
        .expect("a mailer");
        let to = EmailAddress::parse("email", "bob@example.com").expect("valid");
        let mail = mailer.invitation(
            &to,
            &InvitationMail {
                organization: "Studio\r\nBcc: everyone@example.com",
                role: "member",
                invited_by: "Ada\nLovelace",
                token: "org.secret",
                valid_for: Duration::from_secs(3600),
            },
        );
        assert!(!mail.subject.contains(['\r', '\n']), "{:?}", mail.subject);
        assert_eq!(
            mail.subject,
            "Ada Lovelace invited you to Studio  Bcc: everyone@example.com on Keyframe"
        );
        assert!(
            mail.body
                .contains("https://keyframe.example/invitations?token=org.secret")
        );
    }
}
