//! A small SMTP server on loopback that keeps what it receives, so tests read the mails Keyframe
//! sends (and the tokens in them) the way a user would. It speaks the part of RFC 5321 a
//! client needs for plain delivery: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A mail as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The `Subject` header.
    pub subject: String,
    /// The body, with quoted-printable undone.
    pub body: String,
}

impl ReceivedMail {
    /// The value after `token: ` in the body.
    pub fn token(&self) -> String {
        self.body
            .lines()
            .find_map(|line| line.trim().strip_prefix("token: "))
            .unwrap_or_else(|| panic!("no token in the mail: {}", self.body))
            .trim()
            .to_owned()
    }
}

/// The running server and everything it has received.
pub struct SmtpInbox {
    /// Where it listens.
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpInbox {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let addr = listener.local_addr().expect("addr");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&mails);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let _ = serve(stream, store).await;
                });
            }
        });
        Self { addr, mails, task }
    }

    /// The URL to give Keyframe.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every mail received so far.
    pub fn all(&self) -> Vec<ReceivedMail> {
        self.mails.lock().expect("lock").clone()
    }

    /// Mails to `address` so far.
    pub fn to(&self, address: &str) -> Vec<ReceivedMail> {
        self.all()
            .into_iter()
            .filter(|mail| mail.to.iter().any(|to| to.eq_ignore_ascii_case(address)))
            .collect()
    }

    /// Waits (at most 10 s) until `address` has received `count` mails whose subject contains
    /// `subject`, and answers the newest.
    pub async fn wait_for(&self, address: &str, subject: &str, count: usize) -> ReceivedMail {
        let matching = || -> Vec<ReceivedMail> {
            self.to(address)
                .into_iter()
                .filter(|mail| mail.subject.contains(subject))
                .collect()
        };
        crate::wait_for(
            &format!("mail #{count} '{subject}' to {address}"),
            Duration::from_secs(10),
            || {
                let found = matching().len() >= count;
                async move { found }
            },
        )
        .await;
        matching().swap_remove(count - 1)
    }
}

impl Drop for SmtpInbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, store: Arc<Mutex<Vec<ReceivedMail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 keyframe-test-smtp ready\r\n").await?;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-keyframe-test-smtp\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO") || command.starts_with("MAIL FROM") || command == "NOOP" {
            b"250 OK\r\n"
        } else if command.starts_with("RSET") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            let address = line.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            recipients.push(address);
            b"250 OK\r\n"
        } else if command == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                // Dot-stuffing (RFC 5321 4.5.2).
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let mail = parse(std::mem::take(&mut recipients), &data);
            store.lock().expect("lock").push(mail);
            b"250 OK queued\r\n"
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn parse(to: Vec<String>, data: &str) -> ReceivedMail {
    let (headers, body) = data.split_once("\r\n\r\n").unwrap_or((data, ""));
    let header = |name: &str| {
        headers
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let body = match header("Content-Transfer-Encoding").to_ascii_lowercase().as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_owned(),
    };
    ReceivedMail {
        to,
        subject: header("Subject"),
        body,
    }
}

/// Undoes quoted-printable (RFC 2045 6.7): soft line breaks and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(byte) = joined
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
