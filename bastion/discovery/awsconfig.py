"""AWS Config: the configuration recorder and the Config rules.

The recorder (type cloud_control, service config, mapped through CTID `aws_config`) is healthy
when it records and at least one rule evaluates what it records; stopped, it is disabled and
broken; its last delivery failing degrades it. A Config rule (type cloud_control, service
config, its own kind kept in the configuration: `config_rule`) is healthy when it is active and
a recorder of its region records (a rule evaluates recorded configuration only).
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.discovery import reference as ref
from bastion.discovery.aws import Clients, Collected, detection, guarded, pages, without
from bastion.discovery.chain import Chain

SERVICE = "config"
STATUS_VOLATILE = ("lastStartTime", "lastStopTime", "lastStatusChangeTime", "lastErrorCode",
                   "lastErrorMessage")


def collect(clients: Clients, region: str, collected: Collected) -> None:
    def run():
        client = clients.client("config", region)
        recorders = client.describe_configuration_recorders().get("ConfigurationRecorders") or []
        status = {s["name"]: s for s in
                  client.describe_configuration_recorder_status().get("ConfigurationRecordersStatus") or ()}
        collected.recorders[region] = [{**r, "Status": status.get(r["name"], {})} for r in recorders]
        collected.config_rules[region] = list(pages(client, "describe_config_rules", "ConfigRules"))

    guarded(collected, SERVICE, region, run)


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    mappings = ref.mapped(reference, "aws_config", "aws")
    account = collected.account_id
    for region in collected.regions:
        recorders = collected.recorders.get(region) or []
        rules = collected.config_rules.get(region) or []
        recording = [r for r in recorders if r["Status"].get("recording")]
        for rec in recorders:
            chain = Chain()
            on = bool(rec["Status"].get("recording"))
            if not on:
                chain.broken("recorder", f"configuration recorder {rec['name']} is not recording")
            elif str(rec["Status"].get("lastStatus") or "").upper() == "FAILURE":
                chain.degraded("recorder", f"last recording failed ({rec['Status'].get('lastErrorCode')})")
            if not rules:
                chain.degraded("rules", "no Config rule evaluates the recorded configuration")
            config = {**without(rec, "Status"), "Status": without(rec["Status"], *STATUS_VOLATILE, "lastStatus")}
            yield SERVICE, region, detection(
                region=region, rule_id=f"arn:aws:config:{region}:{account}:configuration-recorder/{rec['name']}",
                name=f"Config recorder {rec['name']} ({region})", type="cloud_control", service=SERVICE,
                config=config, chain=chain, mappings=mappings, status="enabled" if on else "disabled")
        for rule in rules:
            chain = Chain()
            state = rule.get("ConfigRuleState") or "ACTIVE"
            if state not in ("ACTIVE", "EVALUATING"):
                chain.broken("rule", f"rule is {state.lower()}")
            if not recorders:
                chain.broken("recorder", f"no configuration recorder in {region}")
            elif not recording:
                chain.broken("recorder", f"configuration recorder {recorders[0]['name']} is not recording")
            yield SERVICE, region, detection(
                region=region, rule_id=rule["ConfigRuleArn"], name=rule["ConfigRuleName"],
                type="cloud_control", service=SERVICE,
                config={"kind": "config_rule", **without(rule, "ConfigRuleState")}, chain=chain,
                status="enabled" if state in ("ACTIVE", "EVALUATING") else "disabled")
