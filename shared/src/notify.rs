//! Notifications: pipeline status events to Slack and SNS messages.
