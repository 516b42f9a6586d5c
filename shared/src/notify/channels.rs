//! The production `Notifier`: Slack deliveries to the Slack webhook sender, SNS deliveries to the SNS
//! publisher.

use async_trait::async_trait;

use super::deliver::{DeliveryError, Notifier};
use super::plan::Delivery;
use super::slack::SlackWebhook;
use super::sns::SnsTopicPublisher;

/// Routes each delivery to its channel's sender.
#[derive(Debug)]
pub struct Channels {
    /// Sends Slack deliveries.
    pub slack: SlackWebhook,
    /// Sends SNS deliveries.
    pub sns: SnsTopicPublisher,
}

#[async_trait]
impl Notifier for Channels {
    async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        match delivery {
            Delivery::Slack { webhook_secret, payload } => self.slack.post(webhook_secret, payload).await,
            Delivery::Sns { topic_arn, message } => {
                let id = self.sns.publish(topic_arn, message).await?;
                tracing::debug!(topic = %topic_arn, message_id = %id, "published to SNS");
                Ok(())
            }
        }
    }
}
