"""What both deployment paths make for alerting: the example verdict alarm and the email route.

infra/template.json makes them for CloudFormation; `make deploy` (infra/alerting.py, here
against moto) makes the same from the stage's ``mlops_alerts``, and a second run changes
nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import alerting, stage_config
from infra.alerting import AlertingClients, AlertingNames, ensure_alerting
from infra.stage_config import AlertSettings
from shared.alerts.decisions import SOURCE
from shared.alerts.metrics import NAMESPACE, VERDICT_LEVELS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE: dict[str, Any] = json.loads((ROOT / "infra" / "template.json").read_text())
NAMES = AlertingNames.of("serverless-mlops", "dev")


def test_one_alarm_watches_every_models_verdict() -> None:
    alarm = TEMPLATE["Resources"]["VerdictAlarm"]["Properties"]
    (query,) = alarm["Metrics"]
    # A Metrics Insights query grouped by model: each model a contributor of its own, in
    # ALARM or OK apart from the others, a model trained after deploy included.
    assert query["Expression"] == (
        f'SELECT MAX(Verdict) FROM SCHEMA("{NAMESPACE}", Model) GROUP BY Model'
    )
    assert (query["Period"], query["ReturnData"]) == (3600, True)  # the check's hour
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    firing = {v for v, level in VERDICT_LEVELS.items() if level >= alarm["Threshold"]}
    assert firing == {"drift", "decay", "data_problem"}
    assert alarm["TreatMissingData"] == "notBreaching"  # an hour with no traffic is no alarm
    assert TEMPLATE["Resources"]["VerdictAlarm"]["Condition"] == "HasVerdictAlarm"


def test_the_route_to_email_is_publishable_by_the_rule_and_the_alarm_only() -> None:
    resources = TEMPLATE["Resources"]
    assert resources["DecisionsRoute"]["Properties"]["EventPattern"] == {"source": [SOURCE]}
    # Neither EventBridge nor an alarm may use the AWS-managed SNS key: the topic has none.
    assert "KmsMasterKeyId" not in resources["DecisionsTopic"]["Properties"]
    statements = resources["DecisionsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    route, (condition, alarm, absent) = statements[0], statements[1]["Fn::If"]
    assert (condition, absent) == ("HasVerdictAlarm", {"Ref": "AWS::NoValue"})
    for statement, service, source in (
        (route, "events.amazonaws.com", "DecisionsRoute"),
        (alarm, "cloudwatch.amazonaws.com", "VerdictAlarm"),
    ):
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == "sns:Publish"
        arn = {"Fn::GetAtt": [source, "Arn"]}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": arn}}


@pytest.fixture
def clients(aws_env: None) -> Iterator[AlertingClients]:
    with mock_aws():
        yield AlertingClients.of(boto3.session.Session())


def made(clients: AlertingClients) -> dict[str, Any]:
    """What exists of the stage's alerting, as plainly as the test compares it."""
    topic = alerting._find_topic(clients.sns, NAMES.topic)
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=[NAMES.alarm])["MetricAlarms"]
    rules = clients.events.list_rules(NamePrefix=NAMES.rule)["Rules"]
    kept = ("AlarmArn", "AlarmActions", *alerting.ALARM_FIELDS)  # not its update times
    found: dict[str, Any] = {
        "alarm": {k: alarms[0].get(k) for k in kept} if alarms else None,
        "rules": [r["Name"] for r in rules],
        "topic": topic,
    }
    if topic is not None:
        subscriptions = alerting._subscriptions(clients.sns, topic)
        found["emails"] = sorted(s["Endpoint"] for s in subscriptions)
        policy = clients.sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]
        found["publishers"] = {
            s["Principal"]["Service"]: s["Condition"]["ArnEquals"]["aws:SourceArn"]
            for s in json.loads(policy)["Statement"]
        }
    if rules:
        targets = clients.events.list_targets_by_rule(Rule=NAMES.rule)["Targets"]
        found["targets"] = [t["Arn"] for t in targets]
    return found


def test_make_deploy_makes_the_templates_alarm_and_route_once(clients: AlertingClients) -> None:
    settings = AlertSettings(verdict_alarm=True, email="ops@example.com")
    first = ensure_alerting(clients, NAMES, settings, TEMPLATE)
    before = made(clients)
    again = ensure_alerting(clients, NAMES, settings, TEMPLATE)
    assert made(clients) == before  # idempotent: one topic, subscription, rule, alarm
    assert any("confirm the mail" in line for line in first)
    assert not any("subscribed" in line for line in again)

    alarm, topic = before["alarm"], before["topic"]
    template = TEMPLATE["Resources"]["VerdictAlarm"]["Properties"]
    for field in ("Metrics", "EvaluationPeriods", "ComparisonOperator", "TreatMissingData"):
        assert alarm[field] == template[field], field
    assert alarm["Threshold"] == template["Threshold"]
    assert alarm["AlarmActions"] == [topic]
    assert before["emails"] == ["ops@example.com"]
    assert before["targets"] == [topic]
    rule = clients.events.describe_rule(Name=NAMES.rule)
    assert json.loads(rule["EventPattern"]) == {"source": [SOURCE]}
    assert before["publishers"] == {
        "events.amazonaws.com": rule["Arn"],
        "cloudwatch.amazonaws.com": alarm["AlarmArn"],
    }


def test_the_settings_decide_what_stays(clients: AlertingClients) -> None:
    ensure_alerting(clients, NAMES, AlertSettings(email="ops@example.com"), TEMPLATE)
    ensure_alerting(clients, NAMES, AlertSettings(email="oncall@example.com"), TEMPLATE)
    assert made(clients)["emails"] == ["oncall@example.com"]  # the old address unsubscribed

    ensure_alerting(clients, NAMES, AlertSettings(), TEMPLATE)  # no email: no route
    now = made(clients)
    assert (now["topic"], now["rules"]) == (None, [])
    assert now["alarm"]["AlarmActions"] == []  # the alarm stays, notifying nobody

    ensure_alerting(clients, NAMES, AlertSettings(verdict_alarm=False), TEMPLATE)
    assert made(clients) == {"alarm": None, "rules": [], "topic": None}


def test_the_stage_settings_are_read_and_checked() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert stage_config.alert_settings(config, "dev") == AlertSettings(verdict_alarm=True)
    assert stage_config.alert_settings(config, "local") == AlertSettings()  # the defaults
    for wrong in ({"email": "nobody"}, {"verdict_alarm": "yes"}, {"emails": ""}, "on"):
        bad = copy.deepcopy(config)
        bad["stages"]["dev"]["mlops_alerts"] = wrong
        with pytest.raises(KeyError, match="mlops_alerts"):
            stage_config.alert_settings(bad, "dev")


def test_removing_the_email_keeps_a_topic_people_subscribed_to(clients: AlertingClients) -> None:
    ensure_alerting(clients, NAMES, AlertSettings(email="ops@example.com"), TEMPLATE)
    topic = made(clients)["topic"]
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="their-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    clients.sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"]
    )

    log = ensure_alerting(clients, NAMES, AlertSettings(), TEMPLATE)

    now = made(clients)
    assert now["topic"] == topic  # theirs: kept, with only their subscription on it
    assert now["rules"] == []
    protocols = [s["Protocol"] for s in alerting._subscriptions(clients.sns, topic)]
    assert protocols == ["sqs"]
    assert any("kept the topic" in line for line in log)
