"""A stage's alerting for `make deploy`: the example verdict alarm and the optional email
route, as infra/template.json makes them for CloudFormation.

`chalice deploy` makes functions, their roles, the API and the triggers, nothing else. The
stage's ``mlops_alerts`` in .chalice/config.json says what else it gets (stage_config.py):
the alarm (``verdict_alarm``, on unless false) and, with ``email`` set, an SNS topic with
that address subscribed and a rule sending every ``serverless-mlops`` event to it. Each run
makes what the settings ask for and removes what they no longer do, so running it again
changes nothing. The alarm's definition is read from the template: one definition, two
deployment paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.stage_config import AlertSettings

SOURCE = "serverless-mlops"  # shared/alerts/decisions.py: the events' source
# The alarm's settings that the API takes as the template writes them.
ALARM_FIELDS = (
    "AlarmDescription",
    "Metrics",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)


@dataclass(frozen=True)
class AlertingNames:
    """What a stage's alerting resources are called: `<app>-<stage>-...`."""

    alarm: str
    topic: str
    rule: str

    @classmethod
    def of(cls, app: str, stage: str) -> AlertingNames:
        return cls(
            alarm=f"{app}-{stage}-verdict",
            topic=f"{app}-{stage}-decisions",
            rule=f"{app}-{stage}-decisions",
        )


def alarm_request(template: Mapping[str, Any], name: str, actions: list[str]) -> dict[str, Any]:
    """PutMetricAlarm's arguments for the template's VerdictAlarm, named `name`."""
    properties = template["Resources"]["VerdictAlarm"]["Properties"]
    request = {field: properties[field] for field in ALARM_FIELDS}
    return {"AlarmName": name, **request, "AlarmActions": actions}


def topic_policy(topic_arn: str, rule_arn: str, alarm_arn: str | None) -> dict[str, Any]:
    """The template's DecisionsTopicPolicy: the route and the alarm publish, nothing else."""

    def publisher(sid: str, service: str, source: str) -> dict[str, Any]:
        return {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": source}},
        }

    statements = [publisher("EventBridgePublishesDecisions", "events.amazonaws.com", rule_arn)]
    if alarm_arn is not None:
        statements.append(
            publisher("TheVerdictAlarmNotifies", "cloudwatch.amazonaws.com", alarm_arn)
        )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class AlertingClients:
    """The boto3 clients the alerting resources are made with."""

    cloudwatch: Any
    sns: Any
    events: Any

    @classmethod
    def of(cls, session: Any) -> AlertingClients:
        return cls(session.client("cloudwatch"), session.client("sns"), session.client("events"))


def _find_topic(sns: Any, name: str) -> str | None:
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
    return None


def _subscriptions(sns: Any, topic_arn: str) -> list[dict[str, Any]]:
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    return [s for page in pages for s in page["Subscriptions"]]


def _rule_exists(events: Any, name: str) -> bool:
    rules = events.list_rules(NamePrefix=name, EventBusName="default")["Rules"]
    return any(rule["Name"] == name for rule in rules)


def _ensure_route(
    clients: AlertingClients, names: AlertingNames, email: str, log: list[str]
) -> tuple[str, str]:
    """The topic with `email` subscribed (and no other address), and the rule to it."""
    topic_arn = str(clients.sns.create_topic(Name=names.topic)["TopicArn"])
    subscribed = False
    for subscription in _subscriptions(clients.sns, topic_arn):
        if subscription["Protocol"] != "email":
            continue  # someone's own subscription (a queue, a chat tool): theirs to keep
        if subscription["Endpoint"] == email:
            subscribed = True
        elif subscription["SubscriptionArn"].startswith("arn:"):  # confirmed: ours to end
            clients.sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
            log.append(f"unsubscribed {subscription['Endpoint']} from {names.topic}")
    if not subscribed:
        clients.sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=email)
        log.append(f"subscribed {email} to {names.topic}: confirm the mail AWS sends")
    rule_arn = clients.events.put_rule(
        Name=names.rule,
        EventBusName="default",
        EventPattern=json.dumps({"source": [SOURCE]}),
        State="ENABLED",
        Description="Every decision of serverless-mlops to the stage's email topic",
    )["RuleArn"]
    clients.events.put_targets(
        Rule=names.rule, EventBusName="default", Targets=[{"Id": "email", "Arn": topic_arn}]
    )
    return topic_arn, str(rule_arn)


def _remove_route(clients: AlertingClients, names: AlertingNames) -> list[str]:
    log = []
    if _rule_exists(clients.events, names.rule):
        clients.events.remove_targets(Rule=names.rule, EventBusName="default", Ids=["email"])
        clients.events.delete_rule(Name=names.rule, EventBusName="default")
        log.append(f"deleted the rule {names.rule}")
    topic_arn = _find_topic(clients.sns, names.topic)
    if topic_arn is None:
        return log
    theirs = 0
    for subscription in _subscriptions(clients.sns, topic_arn):
        if subscription["Protocol"] != "email":
            theirs += 1  # someone's own subscription (a queue, a chat tool): theirs to keep
        elif subscription["SubscriptionArn"].startswith("arn:"):
            clients.sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    if theirs:
        log.append(f"kept the topic {names.topic}: {theirs} subscription(s) of your own")
    else:
        clients.sns.delete_topic(TopicArn=topic_arn)
        log.append(f"deleted the topic {names.topic}")
    return log


def ensure_alerting(
    clients: AlertingClients,
    names: AlertingNames,
    settings: AlertSettings,
    template: Mapping[str, Any],
) -> list[str]:
    """Make (or remove) the stage's alarm and email route as `settings` say; what changed."""
    log: list[str] = []
    topic_arn = rule_arn = None
    if settings.email:
        topic_arn, rule_arn = _ensure_route(clients, names, settings.email, log)
        log.append(f"every decision goes to {settings.email} through {names.rule}")
    else:
        log.extend(_remove_route(clients, names))
    alarm_arn = None
    if settings.verdict_alarm:
        actions = [topic_arn] if topic_arn else []
        clients.cloudwatch.put_metric_alarm(**alarm_request(template, names.alarm, actions))
        (alarm,) = clients.cloudwatch.describe_alarms(AlarmNames=[names.alarm])["MetricAlarms"]
        alarm_arn = str(alarm["AlarmArn"])
        log.append(f"the alarm {names.alarm} watches every model's verdict")
    elif clients.cloudwatch.describe_alarms(AlarmNames=[names.alarm])["MetricAlarms"]:
        clients.cloudwatch.delete_alarms(AlarmNames=[names.alarm])
        log.append(f"deleted the alarm {names.alarm}")
    if topic_arn is not None and rule_arn is not None:
        policy = topic_policy(topic_arn, rule_arn, alarm_arn)
        clients.sns.set_topic_attributes(
            TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
        )
    return log
