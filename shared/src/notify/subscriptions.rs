//! `notifications.email`: which email subscriptions of the pipeline's SNS topic to create and remove
//! (pure: [`plan_subscriptions`]), and carrying the plan out through a [`Notifier`]
//! ([`sync_email_subscriptions`]).
//!
//! Rules:
//! - An address of the config with no `email` subscription on the topic (confirmed or pending) is
//!   subscribed; one that has any is left alone, so running twice subscribes nobody twice (SNS sends a
//!   new confirmation mail for every `Subscribe` of a pending address).
//! - Only subscriptions **this tool made** are ever removed: the ones listed in the owned-state record
//!   (`owned`, kept by the caller between runs). A subscription made by hand or by the infra
//!   (`notificationEmails`) is never touched.
//! - An owned address removed from the config is unsubscribed when its subscription is confirmed. A
//!   pending one cannot be: SNS's `Unsubscribe` takes a subscription ARN, and a pending subscription has
//!   none (`ListSubscriptionsByTopic` shows `PendingConfirmation`). It stays owned, so the first run after
//!   the address confirms removes it; until then (or until SNS expires it) it gets nothing, since an
//!   unconfirmed subscription receives no messages (SNS developer guide, "Subscribing to a topic").
//! - Addresses compare without case and surrounding space (mail providers treat them so).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::deliver::{DeliveryError, Notifier};

/// `SubscriptionArn` SNS lists for a subscription waiting for its confirmation.
pub const PENDING_CONFIRMATION: &str = "PendingConfirmation";

/// One subscription as `ListSubscriptionsByTopic` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSubscription {
    /// `email`, `sqs`, `https`, ...
    pub protocol: String,
    /// The address, queue ARN, URL, ...
    pub endpoint: String,
    /// The subscription's ARN, or [`PENDING_CONFIRMATION`] (also `Deleted` while SNS removes it).
    pub arn: String,
}

impl TopicSubscription {
    /// Whether the subscription is confirmed: only then is its `arn` an ARN that `Unsubscribe` takes.
    pub fn is_confirmed(&self) -> bool {
        self.arn.starts_with("arn:")
    }
}

/// What [`plan_subscriptions`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionPlan {
    /// Addresses to `Subscribe` (protocol `email`), in config order.
    pub subscribe: Vec<String>,
    /// Confirmed subscriptions this tool made whose address left the config: `Unsubscribe` them.
    pub unsubscribe: Vec<TopicSubscription>,
    /// Owned addresses that left the config but are still pending: they cannot be removed yet.
    pub pending_removal: Vec<String>,
    /// The owned-state record after the plan is carried out (normalized addresses, sorted).
    pub owned: Vec<String>,
}

/// Normalizes an address for comparison: trimmed, lower case.
pub fn normalize_address(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

/// Decides the subscription changes. `wanted`: `notifications.email`; `existing`: every subscription of
/// the topic; `owned`: the addresses this tool subscribed in earlier runs.
pub fn plan_subscriptions(
    wanted: &[String],
    existing: &[TopicSubscription],
    owned: &[String],
) -> SubscriptionPlan {
    let emails: Vec<(&TopicSubscription, String)> = existing
        .iter()
        .filter(|s| s.protocol.eq_ignore_ascii_case("email") || s.protocol.eq_ignore_ascii_case("email-json"))
        .filter(|s| s.arn != "Deleted")
        .map(|s| (s, normalize_address(&s.endpoint)))
        .collect();
    let owned: BTreeSet<String> = owned.iter().map(|a| normalize_address(a)).collect();
    let mut wanted_set = BTreeSet::new();
    let mut plan = SubscriptionPlan::default();
    let mut next_owned = BTreeSet::new();
    for address in wanted {
        let key = normalize_address(address);
        if key.is_empty() || !wanted_set.insert(key.clone()) {
            continue;
        }
        if !emails.iter().any(|(_, e)| *e == key) {
            plan.subscribe.push(address.trim().to_owned());
            next_owned.insert(key);
        } else if owned.contains(&key) {
            next_owned.insert(key);
        }
    }
    for key in owned.iter().filter(|k| !wanted_set.contains(*k)) {
        let on_topic: Vec<&TopicSubscription> =
            emails.iter().filter(|(_, e)| e == key).map(|(s, _)| *s).collect();
        for sub in &on_topic {
            if sub.is_confirmed() {
                plan.unsubscribe.push((*sub).clone());
            }
        }
        if on_topic.iter().any(|s| !s.is_confirmed()) {
            plan.pending_removal.push(key.clone());
            next_owned.insert(key.clone());
        }
    }
    plan.owned = next_owned.into_iter().collect();
    plan
}

/// The owned-state record: the addresses this tool subscribed to `topic_arn`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedSubscriptions {
    /// The topic they belong to (a record of another topic owns nothing on this one).
    pub topic_arn: String,
    /// Normalized addresses.
    pub addresses: Vec<String>,
}

/// What [`sync_email_subscriptions`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Addresses subscribed now (each gets SNS's confirmation mail).
    pub subscribed: Vec<String>,
    /// Addresses unsubscribed now.
    pub unsubscribed: Vec<String>,
    /// Addresses that left the config but are pending and cannot be unsubscribed yet.
    pub pending_removal: Vec<String>,
    /// The owned-state record to keep for the next run.
    pub owned: OwnedSubscriptions,
}

impl SyncReport {
    /// One line for the step's log.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
        let mut line = format!(
            "email subscriptions of {}: subscribed {}; unsubscribed {}",
            self.owned.topic_arn,
            list(&self.subscribed),
            list(&self.unsubscribed)
        );
        if !self.pending_removal.is_empty() {
            line.push_str(&format!(
                "; removed from the config but still pending confirmation (SNS cannot unsubscribe a pending \
                 subscription; a later run removes it once confirmed): {}",
                self.pending_removal.join(", ")
            ));
        }
        line
    }
}

/// Lists the topic's subscriptions, plans against `wanted` and `owned` (ignored when it is about another
/// topic), then subscribes and unsubscribes. Errors are SNS's, with the operation named.
pub async fn sync_email_subscriptions(
    notifier: &dyn Notifier,
    topic_arn: &str,
    wanted: &[String],
    owned: &OwnedSubscriptions,
) -> Result<SyncReport, DeliveryError> {
    let existing = notifier.list_subscriptions(topic_arn).await?;
    let owned_here: &[String] = if owned.topic_arn == topic_arn { &owned.addresses } else { &[] };
    let plan = plan_subscriptions(wanted, &existing, owned_here);
    let mut report = SyncReport {
        pending_removal: plan.pending_removal.clone(),
        owned: OwnedSubscriptions { topic_arn: topic_arn.to_owned(), addresses: plan.owned.clone() },
        ..SyncReport::default()
    };
    for address in &plan.subscribe {
        notifier.subscribe_email(topic_arn, address).await?;
        report.subscribed.push(address.clone());
    }
    for sub in &plan.unsubscribe {
        notifier.unsubscribe(&sub.arn).await?;
        report.unsubscribed.push(sub.endpoint.clone());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(endpoint: &str, arn: &str) -> TopicSubscription {
        TopicSubscription { protocol: "email".into(), endpoint: endpoint.into(), arn: arn.into() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// `expect`: (subscribe, unsubscribe endpoints, pending removal, owned after).
    fn check(
        wanted: &[&str],
        existing: &[TopicSubscription],
        owned: &[&str],
        expect: (&[&str], &[&str], &[&str], &[&str]),
    ) {
        let plan = plan_subscriptions(&strings(wanted), existing, &strings(owned));
        let unsubscribed: Vec<&str> = plan.unsubscribe.iter().map(|s| s.endpoint.as_str()).collect();
        assert_eq!(plan.subscribe, strings(expect.0), "subscribe, for {wanted:?}");
        assert_eq!(unsubscribed, expect.1, "unsubscribe, for {wanted:?}");
        assert_eq!(plan.pending_removal, strings(expect.2), "pending removal, for {wanted:?}");
        assert_eq!(plan.owned, strings(expect.3), "owned, for {wanted:?}");
    }

    const ARN_A: &str = "arn:aws:sns:us-east-1:111111111111:t:aaaa";
    const ARN_B: &str = "arn:aws:sns:us-east-1:111111111111:t:bbbb";

    #[test]
    fn subscription_plans() {
        // First run: everything is new.
        check(&["a@x.io", "b@x.io"], &[], &[], (&["a@x.io", "b@x.io"], &[], &[], &["a@x.io", "b@x.io"]));
        // Second run: pending and confirmed ones are both there; nothing to do.
        check(
            &["a@x.io", "b@x.io"],
            &[sub("a@x.io", PENDING_CONFIRMATION), sub("b@x.io", ARN_B)],
            &["a@x.io", "b@x.io"],
            (&[], &[], &[], &["a@x.io", "b@x.io"]),
        );
        // Case and space do not make a second subscription; duplicates in the config neither.
        check(&[" A@X.io ", "a@x.io"], &[sub("a@x.io", ARN_A)], &[], (&[], &[], &[], &[]));
        check(&["a@x.io", "A@x.io"], &[], &[], (&["a@x.io"], &[], &[], &["a@x.io"]));
        // Removed from the config, made by us, confirmed: unsubscribed and forgotten.
        check(&[], &[sub("a@x.io", ARN_A)], &["a@x.io"], (&[], &["a@x.io"], &[], &[]));
        // Removed, made by us, pending: cannot be removed; stays owned for a later run.
        check(&[], &[sub("a@x.io", PENDING_CONFIRMATION)], &["a@x.io"], (&[], &[], &["a@x.io"], &["a@x.io"]));
        // Removed, not made by us (infra, by hand): never touched.
        check(&[], &[sub("ops@x.io", ARN_A)], &[], (&[], &[], &[], &[]));
        // In the config and already subscribed by someone else: not ours, so never removed later.
        check(&["ops@x.io"], &[sub("ops@x.io", ARN_A)], &[], (&[], &[], &[], &[]));
        // Owned but gone from the topic (the recipient unsubscribed): re-subscribed while wanted...
        check(&["a@x.io"], &[], &["a@x.io"], (&["a@x.io"], &[], &[], &["a@x.io"]));
        // ...and forgotten when not.
        check(&[], &[], &["a@x.io"], (&[], &[], &[], &[]));
        // Other protocols with the same endpoint text do not count as email subscriptions.
        let https =
            TopicSubscription { protocol: "https".into(), endpoint: "a@x.io".into(), arn: ARN_A.into() };
        check(&["a@x.io"], &[https], &[], (&["a@x.io"], &[], &[], &["a@x.io"]));
    }

    #[tokio::test]
    async fn sync_through_the_fake_is_idempotent() {
        let notifier = crate::notify::RecordingNotifier::new();
        let topic = "arn:aws:sns:us-east-1:111111111111:t";
        let wanted = strings(&["a@x.io", "b@x.io"]);
        let first = sync_email_subscriptions(&notifier, topic, &wanted, &OwnedSubscriptions::default())
            .await
            .unwrap();
        assert_eq!(first.subscribed, wanted);
        let second = sync_email_subscriptions(&notifier, topic, &wanted, &first.owned).await.unwrap();
        assert!(second.subscribed.is_empty(), "{second:?}");
        assert_eq!(notifier.list_subscriptions(topic).await.unwrap().len(), 2);
        // The fake confirms nothing: a removal leaves a pending subscription owned.
        let third =
            sync_email_subscriptions(&notifier, topic, &strings(&["a@x.io"]), &second.owned).await.unwrap();
        assert_eq!(third.pending_removal, strings(&["b@x.io"]));
        assert!(third.summary().contains("pending confirmation"), "{}", third.summary());
    }
}
