//! Delivers execution notifications from the outbox (`OutboxStore`).
//!
//! The controller writes a message in the same transaction as the phase it reports; this
//! worker claims due messages, sends each on its channel and records the outcome. Delivery
//! is at least once: a message is marked sent only after its channel accepted it, and a
//! worker that dies mid-send leaves a claim that lapses. A failure is retried with backoff
//! (1 s doubling to 5 minutes) and never touches the execution.
//!
//! Channels (`[notifications]` in the config file):
//! - `email`: SMTP through lettre (`smtp_url`), or else a POST of JSON to
//!   `email_webhook_url`;
//! - `slack`: a Slack incoming webhook (`slack_webhook_url`, body `{"text": ...}`);
//! - `pagerduty`: a PagerDuty Events API v2 `trigger` (`pagerduty_url`,
//!   `pagerduty_routing_key`).
//!
//! A channel that is not configured drops its messages with a warning (recorded as the
//! message's last error), as flyteadmin does with notifications it has no processor for.

pub mod message;

use contrail_idl::admin;
use contrail_store::{NotificationRecord, Store};
use message::Report;
use prost::Message as _;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `[notifications]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The From address of emails.
    pub sender: Option<String>,
    /// `smtp://host:port` (plain, or `?tls=required` for STARTTLS), `smtps://host:port`;
    /// credentials as `smtp://user:password@host`.
    pub smtp_url: Option<String>,
    /// Where email notifications are POSTed as JSON when there is no SMTP server.
    pub email_webhook_url: Option<String>,
    pub slack_webhook_url: Option<String>,
    /// Default: PagerDuty's Events API v2 endpoint.
    pub pagerduty_url: Option<String>,
    pub pagerduty_routing_key: Option<String>,
    /// Base of the console links in messages. Default: the server's public URL + `/console`.
    pub console_url: Option<String>,
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The channel has no configuration: the message is dropped, not retried.
    #[error("no {0} channel is configured")]
    NotConfigured(&'static str),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error("http: {0}")]
    Http(String),
    #[error("the store: {0}")]
    Store(#[from] contrail_store::Error),
}

/// Sends messages on their channels.
pub struct Deliverer {
    cfg: NotifyConfig,
    console: String,
    http: reqwest::Client,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
}

const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

impl Deliverer {
    /// `public_url` is the server's, for console links when `console_url` is not set.
    pub fn new(cfg: NotifyConfig, public_url: &str) -> Result<Self, String> {
        let smtp = match &cfg.smtp_url {
            Some(url) => Some(
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("notifications.smtp_url: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => None,
        };
        if let Some(sender) = &cfg.sender {
            sender
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("notifications.sender '{sender}': {e}"))?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("notifications: http client: {e}"))?;
        let console = cfg
            .console_url
            .clone()
            .unwrap_or_else(|| format!("{}/console", public_url.trim_end_matches('/')));
        Ok(Deliverer {
            cfg,
            console,
            http,
            smtp,
        })
    }

    /// Sends one message.
    pub async fn deliver(
        &self,
        m: &NotificationRecord,
        exec: Option<&admin::Execution>,
    ) -> Result<(), DeliveryError> {
        let report = Report::new(m, exec, &self.console);
        match m.channel.as_str() {
            "email" => {
                if let Some(smtp) = &self.smtp {
                    self.send_email(smtp, m, &report).await
                } else if let Some(url) = &self.cfg.email_webhook_url {
                    self.post(url, &report.webhook(&m.id, &m.channel, &m.recipients))
                        .await
                } else {
                    Err(DeliveryError::NotConfigured("email"))
                }
            }
            "slack" => match &self.cfg.slack_webhook_url {
                Some(url) => self.post(url, &report.slack()).await,
                None => Err(DeliveryError::NotConfigured("slack")),
            },
            "pagerduty" => match &self.cfg.pagerduty_routing_key {
                Some(key) => {
                    let url = self
                        .cfg
                        .pagerduty_url
                        .as_deref()
                        .unwrap_or(PAGERDUTY_EVENTS);
                    self.post(url, &report.pagerduty(key, &m.id)).await
                }
                None => Err(DeliveryError::NotConfigured("pagerduty")),
            },
            _ => Err(DeliveryError::NotConfigured("unknown")),
        }
    }

    async fn send_email(
        &self,
        smtp: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        m: &NotificationRecord,
        report: &Report,
    ) -> Result<(), DeliveryError> {
        use lettre::AsyncTransport;
        let sender = self.cfg.sender.as_deref().unwrap_or("contrail@localhost");
        let mut email = lettre::Message::builder()
            .from(
                sender
                    .parse()
                    .map_err(|e| DeliveryError::Smtp(format!("sender: {e}")))?,
            )
            .subject(report.subject())
            // The message's id: a receiver can drop a second delivery of the same one.
            .message_id(Some(format!("<{}@contrail>", m.id.replace('/', "."))));
        for to in &m.recipients {
            let to = to
                .parse()
                .map_err(|e| DeliveryError::Smtp(format!("recipient '{to}': {e}")))?;
            email = email.to(to);
        }
        let email = email
            .body(report.body())
            .map_err(|e| DeliveryError::Smtp(e.to_string()))?;
        smtp.send(email)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Smtp(e.to_string()))
    }

    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<(), DeliveryError> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Http(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Http(format!(
                "{url} answered {}",
                response.status()
            )))
        }
    }
}

/// The wait before the next try of a message that failed `attempts` times.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9)).min(Duration::from_secs(300))
}

const CLAIM: Duration = Duration::from_secs(60);
const BATCH: u32 = 16;

/// Claims due messages and delivers them until `stop` resolves; `now` reads the clock
/// (unix nanoseconds).
pub async fn run(
    store: Arc<dyn Store>,
    deliverer: Arc<Deliverer>,
    now: impl Fn() -> i64 + Send + Sync + 'static,
    poll: Duration,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    loop {
        let worked = match pass(&store, &deliverer, &now).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "notification pass failed; retrying");
                false
            }
        };
        if worked {
            continue;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One pass: claims a batch and delivers it; how many messages it handled.
pub async fn pass(
    store: &Arc<dyn Store>,
    deliverer: &Deliverer,
    now: &(impl Fn() -> i64 + Sync),
) -> Result<usize, DeliveryError> {
    let at = now();
    let claim_until = at.saturating_add(CLAIM.as_nanos() as i64);
    let claimed = blocking(store, move |s| {
        s.claim_notifications(at, claim_until, BATCH)
    })
    .await?;
    for m in &claimed {
        let key = m.exec.clone();
        let exec = blocking(store, move |s| s.get_execution(&key))
            .await?
            .and_then(|rec| admin::Execution::decode(rec.record.as_slice()).ok());
        let outcome = deliverer.deliver(m, exec.as_ref()).await;
        let (id, done) = (m.id.clone(), now());
        match outcome {
            Ok(()) => {
                tracing::info!(id = %m.id, channel = %m.channel, "notification sent");
                blocking(store, move |s| s.notification_sent(&id, done)).await?;
            }
            Err(DeliveryError::NotConfigured(channel)) => {
                tracing::warn!(id = %m.id, channel, "notification dropped: channel not configured");
                let error = format!("dropped: no {channel} channel is configured");
                blocking(store, move |s| {
                    s.notification_failed(&id, done, &error)?;
                    s.notification_sent(&id, done)
                })
                .await?;
            }
            Err(e) => {
                let retry_at = done.saturating_add(backoff(m.attempts).as_nanos() as i64);
                tracing::warn!(id = %m.id, channel = %m.channel, attempts = m.attempts + 1, error = %e, "notification not delivered; will retry");
                let error = e.to_string();
                blocking(store, move |s| s.notification_failed(&id, retry_at, &error)).await?;
            }
        }
    }
    Ok(claimed.len())
}

async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> contrail_store::Result<T> + Send + 'static,
) -> Result<T, DeliveryError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| DeliveryError::Store(contrail_store::Error::Backend(e.to_string())))?
        .map_err(DeliveryError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(1_000), Duration::from_secs(300));
    }
}
