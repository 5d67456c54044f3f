"""Every entity and relationship kind Bastion stores, declared once.

Adding a kind is a declaration here plus an Alembic revision (see docs/design.md).
"""

from __future__ import annotations

import re
from typing import Any

from bastion.errors import InvalidValue
from bastion.schema import normalize as norm
from bastion.schema.registry import (
    Classification as C,
    EntityKind,
    Field,
    FieldType as T,
    ImpliedEdge,
    Registry,
    RelationshipKind,
)

SEVERITIES = ("info", "low", "medium", "high", "critical")
RISK_STATES = ("triage", "open", "accepted", "remediated", "deleted")
RISK_REASONS = ("false_positive", "out_of_scope", "duplicate", "not_observed", "other")
ASSET_CLASSES = ("domain", "subdomain", "ipv4", "ipv6", "cidr", "url", "cloud_resource", "repository")
CLOUD_PROVIDERS = ("aws", "azure", "gcp", "m365", "okta", "github", "kubernetes", "other")

_SEEN = "When the item was first/last observed by its source (ISO 8601)."

# ---------------------------------------------------------------------------------------------
# Cross-field preparation: derives the parts of the natural key from what a user or parser gives.


def _prepare_asset(v: dict[str, Any]) -> dict[str, Any]:
    try:
        return _asset_parts(v)
    except InvalidValue as exc:
        raise InvalidValue(str(exc), exc.field or "identifier") from None


def _asset_parts(v: dict[str, Any]) -> dict[str, Any]:
    ident = v.get("identifier")
    if ident is None:
        return v  # "missing required field" is reported by validation
    cls = v.get("class")
    if cls is None:  # infer the class from the identifier's shape
        ver = norm.ip_version(ident)
        if ver:
            cls = f"ipv{ver}"
        elif "/" in str(ident) and "://" not in str(ident) and norm.ip_version(str(ident).split("/")[0]):
            cls = "cidr"
        elif "://" in str(ident):
            cls = "url"
        else:
            cls = "domain"
        v["class"] = cls
    if cls in ("ipv4", "ipv6"):
        ident = norm.ip_address(ident)
        if (":" in ident) != (cls == "ipv6"):
            raise InvalidValue(f"{ident} is not an {cls} address")
        group = ident
    elif cls == "cidr":
        ident = group = norm.cidr(ident)
    elif cls == "url":
        ident = norm.url(ident)
        group = norm.url_host(ident)
    elif cls in ("domain", "subdomain"):
        ident = group = norm.dns_name(ident)
    else:  # cloud resources and repositories: opaque identifiers grouped by account/owner
        ident = norm.text(ident)
        if not ident:
            raise InvalidValue("empty identifier")
        group = norm.lower(v.get("group") or v.get("account") or cls)
    v["identifier"] = ident
    v["group"] = group
    v.setdefault("name", ident)
    return v


def _group_of(key: str) -> str:
    """The asset group a risk on `key` is filed under: the owning asset's group."""
    from bastion.schema.keys import parse_key

    parsed = parse_key(key)
    while parsed.kind != "asset":
        if parsed.kind == "technology":  # a finding on software: grouped by vendor:product
            comps = norm.cpe_components(parsed.parts["cpe"])
            return f"{comps[1]}:{comps[2]}"
        parsed = parsed.ref
    return parsed.parts["group"]


def _on(field: str, fn, *args):
    """Run a normalizer, naming `field` in the error."""
    try:
        return fn(*args)
    except InvalidValue as exc:
        raise InvalidValue(str(exc), field) from None


def _prepare_risk(v: dict[str, Any]) -> dict[str, Any]:
    if v.get("cve"):
        v["cve"] = _on("cve", norm.cve, v["cve"])
    if v.get("name") is None and v.get("cve"):
        v["name"] = v["cve"]
    if v.get("name") is not None:
        v["name"] = _on("name", norm.risk_name, v["name"])
    if v.get("target"):
        v["group"] = _on("target", _group_of, v["target"])
    return v


def _prepare_technology(v: dict[str, Any]) -> dict[str, Any]:
    if v.get("cpe"):
        v["cpe"] = _on("cpe", norm.cpe, v["cpe"])
    elif v.get("name"):
        v["cpe"] = _on("name", norm.cpe_from_name, v["name"], v.get("version"), v.get("vendor"))
    if v.get("cpe") and not v.get("name"):
        comps = norm.cpe_components(v["cpe"])
        v["name"] = comps[2]
        if comps[3] not in ("*", "-"):
            v.setdefault("version", comps[3])
    return v


def _prepare_seed(v: dict[str, Any]) -> dict[str, Any]:
    try:
        return _seed_parts(v)
    except InvalidValue as exc:
        raise InvalidValue(str(exc), exc.field or "identifier") from None


def _seed_parts(v: dict[str, Any]) -> dict[str, Any]:
    ident, cls = v.get("identifier"), v.get("class")
    if ident is None:
        return v
    if cls is None:
        cls = v["class"] = ("ip" if norm.ip_version(ident) else
                            "cidr" if "/" in str(ident) else "domain")
    if cls == "domain":
        v["identifier"] = norm.dns_name(ident)
    elif cls == "cidr":
        v["identifier"] = norm.cidr(ident)
    elif cls == "ip":
        v["identifier"] = norm.ip_address(ident)
    else:
        v["identifier"] = norm.text(ident)
    return v


# ---------------------------------------------------------------------------------------------

TENANT = EntityKind(
    name="tenant",
    description="A customer or business unit; every other row belongs to exactly one tenant.",
    node=False,
    key=("name",),
    fields=(
        Field("name", required=True, max_length=63, normalize=norm.lower, classification=C.INTERNAL,
              description="Short unique name used on the command line (`--tenant`)."),
        Field("display_name", max_length=200, classification=C.INTERNAL),
    ),
)

ASSET = EntityKind(
    name="asset",
    description="Something that can be reached or attacked: a DNS name, an address, a network, "
                "a web application (URL), a cloud resource or a code repository.",
    key=("group", "identifier"),
    prepare=_prepare_asset,
    fields=(
        Field("identifier", required=True, max_length=2000, classification=C.INTERNAL,
              description="The normalized DNS name, IP, CIDR, URL or cloud resource id."),
        Field("class", domain=ASSET_CLASSES, required=True, indexed=True, classification=C.PUBLIC,
              description="Inferred from the identifier when not given."),
        Field("group", required=True, max_length=300, indexed=True, classification=C.INTERNAL,
              description="DNS name or address that groups related assets and risks."),
        Field("name", max_length=2000, classification=C.INTERNAL, description="Display name."),
        Field("status", domain=("active", "inactive", "frozen"), default="active", indexed=True,
              classification=C.PUBLIC),
        Field("exposure", domain=("external", "internal", "unknown"), default="unknown",
              classification=C.INTERNAL, description="Whether it is reachable from the internet."),
        Field("criticality", domain=("low", "medium", "high", "critical"), classification=C.INTERNAL,
              description="Business criticality; `critical` marks a crown jewel."),
        Field("provider", domain=CLOUD_PROVIDERS, classification=C.INTERNAL),
        Field("account", max_length=200, classification=C.CONFIDENTIAL,
              description="Cloud account/subscription/project of a cloud resource."),
        Field("region", max_length=100, classification=C.INTERNAL),
    ),
)

PORT = EntityKind(
    name="port",
    description="A transport port on an asset.",
    key=("protocol", "number", "asset"),
    implies=ImpliedEdge("asset", "HAS_PORT"),
    fields=(
        Field("asset", T.KEY, required=True, ref_kinds=("asset",), classification=C.INTERNAL),
        Field("protocol", domain=("tcp", "udp", "sctp"), default="tcp", normalize=norm.lower,
              classification=C.PUBLIC),
        Field("number", T.INT, required=True, ge=0, le=65535, classification=C.PUBLIC),
        Field("state", domain=("open", "closed", "filtered"), default="open", indexed=True,
              classification=C.PUBLIC),
        Field("service", max_length=100, normalize=norm.lower, classification=C.PUBLIC,
              description="Service name as reported by the scanner (http, ssh …)."),
    ),
)

TECHNOLOGY = EntityKind(
    name="technology",
    description="Software or hardware identified by CPE 2.3 (or by name and version).",
    key=("cpe",),
    prepare=_prepare_technology,
    fields=(
        Field("cpe", required=True, max_length=500, classification=C.PUBLIC,
              description="CPE 2.3 formatted string; built from name/version when not given."),
        Field("name", max_length=200, classification=C.PUBLIC),
        Field("version", max_length=100, classification=C.PUBLIC),
        Field("vendor", max_length=200, classification=C.PUBLIC),
    ),
)

# An attribute whose name says it holds a secret keeps its value restricted (masked below admin).
SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|api[-_]?key|private[-_]?key|credential"
                         r"|auth(orization)?|cookie|session", re.I)


def _classify_attribute(values: dict[str, Any]) -> dict[str, C]:
    return {"value": C.RESTRICTED} if SECRET_NAME.search(str(values.get("name") or "")) else {}


ATTRIBUTE = EntityKind(
    name="attribute",
    classify=_classify_attribute,
    description="A name/value fact about any entity (a tag, a banner, a cloud label …).",
    key=("name", "value", "parent"),
    implies=ImpliedEdge("parent", "HAS_ATTRIBUTE"),
    fields=(
        Field("name", required=True, max_length=200, normalize=norm.lower, classification=C.INTERNAL),
        Field("value", required=True, max_length=1000, normalize=norm.text, classification=C.INTERNAL),
        Field("parent", T.KEY, required=True,
              ref_kinds=("asset", "port", "technology", "risk", "seed", "capability", "job",
                         "integration"), classification=C.INTERNAL),
    ),
)

RISK = EntityKind(
    name="risk",
    # A scanner's extra output: template metadata is internal; what it matched or sent is not.
    property_classes=(("meta", C.RESTRICTED), ("request", C.RESTRICTED), ("response", C.RESTRICTED),
                      ("curl-command", C.RESTRICTED), ("extracted-results", C.CONFIDENTIAL)),
    description="A finding on an entity: a vulnerability, misconfiguration or exposure.",
    key=("group", "name"),
    prepare=_prepare_risk,
    implies=ImpliedEdge("target", "HAS_VULNERABILITY"),
    fields=(
        Field("target", T.KEY, required=True, ref_kinds=("asset", "port", "technology"),
              classification=C.INTERNAL, description="The entity the finding sits on."),
        Field("group", required=True, max_length=300, indexed=True, classification=C.INTERNAL,
              description="The target's asset group (derived)."),
        Field("name", required=True, max_length=300, classification=C.INTERNAL,
              description="Finding name (template id, rule id) or CVE, lower-case, '-' for spaces."),
        Field("title", max_length=1000, classification=C.INTERNAL),
        Field("cve", max_length=30, indexed=True, classification=C.PUBLIC),
        Field("severity", domain=SEVERITIES, required=True, default="info", normalize=norm.lower,
              indexed=True, classification=C.INTERNAL),
        Field("cvss", T.FLOAT, ge=0, le=10, classification=C.PUBLIC),
        Field("status", domain=RISK_STATES, default="triage", normalize=norm.lower, indexed=True,
              classification=C.INTERNAL),
        Field("reason", domain=RISK_REASONS, classification=C.INTERNAL,
              description="Why a risk was closed (deleted or remediated)."),
        Field("comment", max_length=4000, classification=C.CONFIDENTIAL),
        Field("source", max_length=200, indexed=True, classification=C.INTERNAL,
              description="The tool (and `--source` name) that last reported it, e.g. `nuclei:weekly`; "
                          "`--close-missing` closes only risks of the importing source."),
        Field("evidence", T.JSON, classification=C.CONFIDENTIAL,
              description="Where it was observed (matched URLs, file:line …): distinct items, "
                          "accumulated across imports, at most 20."),
        Field("kev", T.BOOL, classification=C.PUBLIC,
              description="Its CVE is in CISA's Known Exploited Vulnerabilities catalog."),
        Field("kev_due", T.DATETIME, classification=C.PUBLIC,
              description="CISA's remediation due date for the KEV entry."),
        Field("kev_ransomware", T.BOOL, classification=C.PUBLIC,
              description="KEV says the CVE is known to be used in ransomware campaigns."),
        Field("epss", T.FLOAT, ge=0, le=1, classification=C.PUBLIC,
              description="FIRST EPSS probability of exploitation in the next 30 days."),
        Field("epss_percentile", T.FLOAT, ge=0, le=1, classification=C.PUBLIC),
        Field("priority", T.FLOAT, ge=0, le=100, indexed=True, classification=C.INTERNAL,
              description="0-100 from severity, CVSS, KEV, EPSS and the asset's exposure "
                          "(docs/formats.md#priority); kept current by imports and enrichment."),
    ),
)

SEED = EntityKind(
    name="seed",
    description="A scope root supplied by a person: a domain, a CIDR, an IP or a cloud account. "
                "Assets found from a seed carry a DISCOVERED edge from it.",
    key=("class", "identifier"),
    prepare=_prepare_seed,
    fields=(
        Field("class", domain=("domain", "cidr", "ip", "cloud_account"), required=True,
              classification=C.PUBLIC),
        Field("identifier", required=True, max_length=300, classification=C.INTERNAL),
        Field("status", domain=("active", "paused", "removed"), default="active",
              classification=C.PUBLIC),
        Field("provider", domain=CLOUD_PROVIDERS, classification=C.INTERNAL),
    ),
)

CAPABILITY = EntityKind(
    name="capability",
    description="A tool or module that discovers or scans (nuclei, nmap, httpx …).",
    key=("name",),
    fields=(
        Field("name", required=True, max_length=100, normalize=norm.lower, classification=C.PUBLIC),
        Field("version", max_length=50, classification=C.PUBLIC),
        Field("category", domain=("discovery", "scanner", "enrichment", "import", "manual"),
              default="scanner", classification=C.PUBLIC),
    ),
)

JOB = EntityKind(
    name="job",
    description="One run of a capability against a target.",
    key=("target", "capability"),
    fields=(
        Field("target", T.KEY, required=True, ref_kinds=("asset", "port", "seed"),
              classification=C.INTERNAL),
        Field("capability", required=True, max_length=100, normalize=norm.lower,
              classification=C.PUBLIC),
        Field("status", domain=("queued", "running", "passed", "failed"), default="queued",
              indexed=True, classification=C.PUBLIC),
        Field("started_at", T.DATETIME, classification=C.INTERNAL),
        Field("finished_at", T.DATETIME, classification=C.INTERNAL),
    ),
)

INTEGRATION = EntityKind(
    name="integration",
    properties_classification=C.RESTRICTED,  # an integration's configuration
    description="A connection to an external system (cloud account, ticketing, SIEM …).",
    key=("type", "name"),
    fields=(
        Field("type", required=True, max_length=50, normalize=norm.lower, classification=C.PUBLIC),
        Field("name", required=True, max_length=200, normalize=norm.lower, classification=C.INTERNAL),
        Field("status", domain=("enabled", "disabled", "failing"), default="enabled",
              classification=C.PUBLIC),
        Field("endpoint", max_length=500, classification=C.CONFIDENTIAL),
        Field("credential_ref", max_length=500, classification=C.RESTRICTED,
              description="Name of the secret holding credentials; never the secret itself."),
    ),
)

# -- detection coverage (docs/coverage.md) ----------------------------------------------------

DETECTION_TYPES = ("sigma_rule", "cloud_control", "log_query", "event_pattern", "metric_alarm", "other")
MAPPING_METHODS = ("tag", "vendor", "pattern", "analyst", "derived")
HEALTH_STATES = ("healthy", "degraded", "broken", "unknown")
GAP_STATES = ("open", "acknowledged", "remediated", "accepted_risk")
_ATTACK_ID = "ATT&CK technique id (T1078, T1078.004), upper-case."


def _prepare_technique_ref(v: dict[str, Any]) -> dict[str, Any]:
    if v.get("technique") is not None:
        v["technique"] = _on("technique", norm.attack_technique, v["technique"])
    return v


CLOUD_ACCOUNT = EntityKind(
    name="cloud_account",
    description="An account, subscription, project, tenant or cluster whose detections are "
                "measured against ATT&CK. Detections imported without --account belong to the "
                "tenant's `other/default` account.",
    key=("provider", "identifier"),
    fields=(
        Field("provider", domain=CLOUD_PROVIDERS, required=True, normalize=norm.lower,
              classification=C.INTERNAL),
        Field("identifier", required=True, max_length=200, normalize=norm.text,
              classification=C.CONFIDENTIAL,
              description="Account id, subscription id, project id, org or cluster name."),
        Field("name", max_length=200, classification=C.INTERNAL),
        Field("environment", domain=("prod", "staging", "dev"), normalize=norm.lower,
              classification=C.INTERNAL),
        Field("criticality", domain=("low", "medium", "high", "critical"), default="medium",
              normalize=norm.lower, classification=C.INTERNAL,
              description="Weighs the risk score of its coverage gaps."),
        Field("regions", T.JSON, classification=C.INTERNAL, description="Regions in use (a list)."),
        Field("platforms", T.JSON, classification=C.PUBLIC,
              description="ATT&CK platforms that apply (IaaS, SaaS, Office Suite, Identity "
                          "Provider, Containers, Windows …): the techniques coverage counts."),
    ),
)

DETECTION = EntityKind(
    name="detection",
    description="A detection in an account: a Sigma rule, a native cloud control, a log query, "
                "an event pattern or a metric alarm. A change of its content is a new revision; "
                "its history lists every revision.",
    key=("account", "rule_id"),
    implies=ImpliedEdge("account", "HAS_DETECTION"),
    fields=(
        Field("account", T.KEY, required=True, ref_kinds=("cloud_account",), classification=C.INTERNAL),
        Field("rule_id", required=True, max_length=300, normalize=norm.text, classification=C.INTERNAL,
              description="The rule's own id (Sigma `id`, a control id, a file path when none)."),
        Field("name", max_length=500, classification=C.INTERNAL),
        Field("type", domain=DETECTION_TYPES, required=True, default="other", classification=C.PUBLIC),
        Field("service", max_length=100, normalize=norm.lower, indexed=True, classification=C.PUBLIC,
              description="Cloud service or log source product (cloudtrail, guardduty, azure …)."),
        Field("status", domain=("enabled", "disabled", "deprecated"), default="enabled",
              normalize=norm.lower, indexed=True, classification=C.PUBLIC),
        Field("owner", max_length=200, classification=C.INTERNAL),
        Field("level", domain=("informational", "low", "medium", "high", "critical"),
              normalize=norm.lower, classification=C.PUBLIC,
              description="The rule's own severity (Sigma `level`)."),
        Field("rule_tags", T.JSON, classification=C.PUBLIC, description="The rule's own tags, verbatim (Sigma `tags`)."),
        Field("logsource", T.JSON, classification=C.PUBLIC, description="Sigma `logsource` (product, service, category)."),
        Field("raw", classification=C.CONFIDENTIAL,
              description="The rule or control configuration, verbatim as imported."),
        Field("content_hash", max_length=64, classification=C.PUBLIC,
              description="SHA-256 of `raw`: what tells a changed rule from the same one."),
        Field("revision", T.INT, ge=1, default=1, classification=C.PUBLIC,
              description="1 for the first content, +1 for each changed content."),
        Field("source_path", max_length=1000, classification=C.INTERNAL),
        Field("health", domain=HEALTH_STATES, default="unknown", indexed=True, classification=C.INTERNAL,
              description="Whether it works: broken detections never count as coverage."),
        Field("last_validated", T.DATETIME, classification=C.INTERNAL),
        Field("health_issues", T.JSON, classification=C.INTERNAL,
              description="What was found wrong (a list of strings)."),
    ),
)

MAPPING = EntityKind(
    name="mapping",
    description="A detection covers an ATT&CK technique, with a confidence, the method that "
                "found it, who made it, why, and its validation.",
    key=("technique", "detection"),
    prepare=_prepare_technique_ref,
    implies=ImpliedEdge("detection", "MAPS_TO"),
    fields=(
        Field("detection", T.KEY, required=True, ref_kinds=("detection",), classification=C.INTERNAL),
        Field("technique", required=True, max_length=20, indexed=True, classification=C.PUBLIC,
              description=_ATTACK_ID),
        Field("confidence", T.FLOAT, required=True, default=1.0, ge=0, le=1, classification=C.INTERNAL),
        Field("method", domain=MAPPING_METHODS, required=True, default="analyst", classification=C.INTERNAL),
        Field("mapped_by", max_length=200, classification=C.INTERNAL),
        Field("rationale", max_length=2000, classification=C.INTERNAL),
        Field("validation", domain=("pending", "validated", "disputed"), default="pending",
              normalize=norm.lower, classification=C.INTERNAL),
        Field("attack_version", max_length=20, classification=C.PUBLIC,
              description="The ATT&CK version the mapping was made against."),
    ),
)

GAP = EntityKind(
    name="gap",
    description="An analyst's decision about a technique an account does not cover (acknowledged, "
                "accepted risk …); kept across recomputations. Gaps without one are open.",
    key=("technique", "account"),
    prepare=_prepare_technique_ref,
    implies=ImpliedEdge("account", "HAS_GAP"),
    fields=(
        Field("account", T.KEY, required=True, ref_kinds=("cloud_account",), classification=C.INTERNAL),
        Field("technique", required=True, max_length=20, classification=C.PUBLIC, description=_ATTACK_ID),
        Field("status", domain=GAP_STATES, default="open", normalize=norm.lower, classification=C.INTERNAL),
        Field("comment", max_length=4000, classification=C.CONFIDENTIAL),
    ),
)

# ---------------------------------------------------------------------------------------------

_between = RelationshipKind.between
_FINDABLE = ("asset", "port", "technology", "risk", "attribute", "seed")

RELATIONSHIPS = (
    RelationshipKind("DISCOVERED", "Provenance: the source found the target.",
                     _between(("seed", "asset", "port", "capability", "job", "integration"), _FINDABLE)),
    RelationshipKind("HAS_PORT", "An asset exposes a port.", _between(("asset",), ("port",))),
    RelationshipKind("HAS_TECHNOLOGY", "Software runs on an asset or behind a port.",
                     _between(("asset", "port"), ("technology",))),
    RelationshipKind("HAS_ATTRIBUTE", "A fact about an entity.",
                     _between(ATTRIBUTE.field("parent").ref_kinds, ("attribute",))),
    RelationshipKind("HAS_VULNERABILITY", "A finding sits on an entity.",
                     _between(RISK.field("target").ref_kinds, ("risk",))),
    RelationshipKind("RESOLVES_TO", "A DNS name or URL resolves to an address or name.",
                     _between(("asset",), ("asset",))),
    RelationshipKind("SUBDOMAIN_OF", "A DNS name sits below another.", _between(("asset",), ("asset",))),
    RelationshipKind("DEPENDS_ON", "An asset needs another asset or a technology to work.",
                     _between(("asset",), ("asset", "technology"))),
    RelationshipKind("CONNECTS_TO", "Network reachability from one asset or port to another.",
                     _between(("asset", "port"), ("asset", "port"))),
    RelationshipKind("ACCESSIBLE_BY", "An asset can be reached or used by an identity/system.",
                     _between(("asset", "port"), ("asset", "integration"))),
    RelationshipKind("SCANNED_BY", "An entity was scanned by a capability or job.",
                     _between(("asset", "port", "seed"), ("capability", "job"))),
    RelationshipKind("INTEGRATES_WITH", "An integration connects to an asset, seed or capability.",
                     _between(("integration",), ("asset", "seed", "capability"))),
    RelationshipKind("HAS_DETECTION", "A cloud account runs a detection.",
                     _between(("cloud_account",), ("detection",))),
    RelationshipKind("MAPS_TO", "A detection's mapping to an ATT&CK technique.",
                     _between(("detection",), ("mapping",))),
    RelationshipKind("HAS_GAP", "An analyst's decision on a coverage gap of an account.",
                     _between(("cloud_account",), ("gap",))),
)

REGISTRY = Registry()
REGISTRY.add(TENANT, ASSET, PORT, TECHNOLOGY, ATTRIBUTE, RISK, SEED, CAPABILITY, JOB, INTEGRATION,
             CLOUD_ACCOUNT, DETECTION, MAPPING, GAP, *RELATIONSHIPS)
