"""`bastion webhook …` and `bastion relay --once` through the CLI, on both engines."""

from __future__ import annotations

from bastion.feed.signing import verify
from cli_harness import cli, one_error_line, runner  # noqa: F401  (fixtures)

from .conftest import signature_header

SECRET = "cli-secret-cli-secret"


def test_webhook_commands_and_relay_once(cli, receiver):
    added = cli.json("webhook", "add", receiver.url, "--events", "asset.*", "--secret", SECRET)
    assert (added["id"], added["events"], added["state"]) == (1, "asset.*", "active")
    assert "secret" not in added  # given, so not echoed
    cli("add", "asset", "--identifier", "www.acme.example")
    result = cli("relay", "--once")
    assert "delivered 1 event(s) to webhooks in 1 request(s), 0 failed" in result.stderr
    (r,) = receiver.requests
    assert r.json["events"][0]["type"] == "asset.created"
    assert verify(SECRET, signature_header(r), r.body)
    listed = cli.json("webhook", "list")
    assert [(s["id"], s["cursor"] > 0, s["failures"]) for s in listed] == [(1, True, 0)]
    assert cli.json("webhook", "deliveries", "1")[0]["ok"] is True

    # test: a failure exits 1 with the reason; redeliver; remove.
    receiver.always = 500
    failed = cli("webhook", "test", "1", code=1)
    assert "not delivered: HTTP 500" in failed.stderr
    receiver.always = None
    seq = r.json["events"][0]["seq"]
    assert "rewound webhook 1" in cli("webhook", "redeliver", "1", "--from", str(seq)).stdout
    cli("relay", "--once")
    assert receiver.delivered_seqs() == [seq, seq]
    assert "removed webhook 1" in cli("webhook", "remove", "1").stdout
    assert cli.json("webhook", "list") == []


def test_generated_secret_is_printed_once(cli):
    out = cli("webhook", "add", "https://hooks.example/x", "--events", "risk.*").stdout
    assert "its signing secret (shown only now):" in out
    assert out.strip().splitlines()[-1].startswith("whsec_")
    assert "whsec_" not in cli("webhook", "list").stdout


def test_mistakes_are_one_line_errors(cli):
    assert one_error_line(cli("webhook", "add", "ftp://x", "--events", "risk.*", code=1)) == \
        "error: webhook URL 'ftp://x': give an http:// or https:// URL with a host"
    assert "'bad pattern'" in one_error_line(
        cli("webhook", "add", "http://x.example", "--events", "bad pattern", code=1))
    assert one_error_line(cli("webhook", "remove", "7", code=4)) == \
        "error: no webhook subscription with id 7 (see `bastion webhook list`)"
    assert "cannot connect to NATS at nats://127.0.0.1:1" in one_error_line(
        cli("relay", "--once", "--nats", "nats://127.0.0.1:1", code=1))
