//! SNS delivery and topic subscriptions (aws-sdk-sns) and the classification of AWS SDK errors as transient or permanent.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::deliver::DeliveryError;
use super::message::SnsMessage;
use super::subscriptions::TopicSubscription;

/// Publishes subject + body messages to SNS topics.
#[derive(Debug, Clone)]
pub struct SnsTopicPublisher {
    client: aws_sdk_sns::Client,
}

impl SnsTopicPublisher {
    /// Publishes through `client`.
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }

    /// Publishes `message` to `topic_arn`; returns the message id.
    pub async fn publish(&self, topic_arn: &str, message: &SnsMessage) -> Result<String, DeliveryError> {
        let output = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(&message.subject)
            .message(&message.body)
            .send()
            .await
            .map_err(|e| aws_error("SNS", "Publish", e))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }

    /// Every subscription of `topic_arn`, following `NextToken` (SNS returns 100 per page).
    pub async fn list_subscriptions(&self, topic_arn: &str) -> Result<Vec<TopicSubscription>, DeliveryError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("SNS", "ListSubscriptionsByTopic", e))?;
            out.extend(page.subscriptions().iter().map(|s| TopicSubscription {
                protocol: s.protocol().unwrap_or_default().to_owned(),
                endpoint: s.endpoint().unwrap_or_default().to_owned(),
                arn: s.subscription_arn().unwrap_or_default().to_owned(),
            }));
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Subscribes `address` (protocol `email`); returns the subscription ARN or `pending confirmation`.
    pub async fn subscribe_email(&self, topic_arn: &str, address: &str) -> Result<String, DeliveryError> {
        let output = self
            .client
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("email")
            .endpoint(address)
            .send()
            .await
            .map_err(|e| aws_error("SNS", "Subscribe", e))?;
        Ok(output.subscription_arn().unwrap_or_default().to_owned())
    }

    /// Removes the subscription `subscription_arn`.
    pub async fn unsubscribe(&self, subscription_arn: &str) -> Result<(), DeliveryError> {
        self.client
            .unsubscribe()
            .subscription_arn(subscription_arn)
            .send()
            .await
            .map_err(|e| aws_error("SNS", "Unsubscribe", e))?;
        Ok(())
    }
}

/// Error codes AWS services use for throttling and their own failures: worth another attempt.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "InternalServiceErrorException",
    "ServiceUnavailable",
    "KMSThrottlingException",
];

/// Turns an SDK error into a [`DeliveryError::Aws`], deciding whether it is transient: timeouts,
/// connection problems, HTTP 5xx and throttling codes are; anything the service rejected otherwise
/// (not found, access denied, invalid parameter) is not.
pub(super) fn aws_error<E>(
    service: &'static str,
    operation: &'static str,
    error: SdkError<E, HttpResponse>,
) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message, transient) = match &error {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().map(str::to_owned);
            let message = ctx.err().message().unwrap_or("no message").to_owned();
            let transient = code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c));
            (code, message, transient)
        }
        SdkError::TimeoutError(_) => (None, "timed out".to_owned(), true),
        SdkError::DispatchFailure(f) => (None, format!("could not send the request: {f:?}"), true),
        SdkError::ResponseError(_) => (None, "unreadable response".to_owned(), true),
        SdkError::ConstructionFailure(_) => (None, "could not build the request".to_owned(), false),
        _ => (None, "unknown SDK error".to_owned(), false),
    };
    let server_error = error.raw_response().is_some_and(|r| r.status().is_server_error());
    DeliveryError::Aws {
        service,
        operation,
        code,
        message,
        transient: transient || server_error,
        source: Box::new(error),
    }
}
