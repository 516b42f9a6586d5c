//! The production `Notifier`: Slack deliveries to the Slack webhook sender, SNS deliveries and topic
//! subscriptions to the SNS adapter.

use async_trait::async_trait;

use super::deliver::{DeliveryError, Notifier};
use super::plan::Delivery;
use super::slack::SlackWebhook;
use super::sns::SnsTopicPublisher;
use super::subscriptions::TopicSubscription;

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

    async fn list_subscriptions(&self, topic_arn: &str) -> Result<Vec<TopicSubscription>, DeliveryError> {
        self.sns.list_subscriptions(topic_arn).await
    }

    async fn subscribe_email(&self, topic_arn: &str, address: &str) -> Result<String, DeliveryError> {
        self.sns.subscribe_email(topic_arn, address).await
    }

    async fn unsubscribe(&self, subscription_arn: &str) -> Result<(), DeliveryError> {
        self.sns.unsubscribe(subscription_arn).await
    }
}
