#!/usr/bin/env python3
"""The detections: SIEM content generated from the rules, and the tests of the rules.

    detections/run generate   # rewrite everything generated from rules/, native/, fixtures/
    detections/run check      # regenerate in memory and compare with what is committed,
                              # evaluate every rule on its fixtures, check every field a
                              # query reads, validate every KQL query, break a rule on purpose

(`detections/run` installs the pinned tools into detections/.venv and detections/node_modules
and calls this file.)

How it fits: `rules/` holds Sigma rules, one file per piece of content; the last rule of a
file is the content, the rules before it its building blocks (a correlation's base rules).
`native/` holds the two rules Sigma cannot express. `content.yml` says what each becomes in
the SIEMs (a detection or a hunting query, how often it runs). pySigma converts the rules
with its CrowdStrike LogScale and Kusto backends and the processing pipelines in
`pipelines/`; neither backend converts correlation rules (both raise NotImplementedError),
so `correlation_*` below appends the aggregation that a correlation's type, group-by,
timespan and condition define. The fixtures are webhook bodies built from the samples,
shipped through the relay's own encoders by `cargo test --test detections_shipped`, and the
rules are evaluated on those shipped events by pySigma's SQLite backend.
"""

from __future__ import annotations

import copy
import functools
import datetime as dt
import io
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml
from sigma.backends.crowdstrike import LogScaleBackend
from sigma.backends.kusto import KustoBackend
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule
from sigma.processing.pipeline import ProcessingPipeline

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLES = HERE / "fixtures/webhook-bodies.ndjson"  # ../shared/reference/samples, copied
TEMPLATE = REPO / "deploy/sentinel/azuredeploy.json"
ZOOMLOGS_KQL = REPO / "deploy/sentinel/ZoomLogs.kql"
# Fixture cases start here; `at` in a fixture is minutes after it.
CASE_START_MS = int(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)

LOGSCALE_PREFIX = '#Vendor="zoom" #event.module="webhook"\n| '
KUSTO_PREFIX = "ZoomLogs\n| where "
PACKAGE = "qss-relay/zoom-webhooks"
PACKAGE_DIR = "generated/logscale/package"
PACKAGE_ZIP = "generated/logscale/qss-relay-zoom-webhooks.zip"

OPS = {
    SigmaCorrelationConditionOperator.GT: ">",
    SigmaCorrelationConditionOperator.GTE: ">=",
    SigmaCorrelationConditionOperator.LT: "<",
    SigmaCorrelationConditionOperator.LTE: "<=",
    SigmaCorrelationConditionOperator.EQ: "==",
}
TACTICS = {
    "initial-access": "InitialAccess",
    "persistence": "Persistence",
    "credential-access": "CredentialAccess",
    "defense-evasion": "DefenseEvasion",
    "discovery": "Discovery",
    "collection": "Collection",
    "impact": "Impact",
}
SEVERITY = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High"}


class ZoomKusto(KustoBackend):
    """The Kusto backend, with Payload paths rendered as typed dynamic accesses.

    The stock backend quotes every field name that is not a plain word, so
    `Payload.object.id` would become the string literal 'Payload.object.id' and every
    comparison with it silently false (the Kusto language service accepts that). Payload
    paths become `tostring(Payload...)` (and `toreal(...)` against numbers), and Sigma's
    booleans the strings "true"/"false" that `tostring` gives for JSON booleans.
    """

    field_quote_pattern = re.compile(r"^(\w+\()?[\w.]+\)?$")
    bool_values = {True: '"true"', False: '"false"'}

    def escape_and_quote_field(self, field_name):
        if field_name.startswith("Payload."):
            return f"tostring({field_name})"
        return super().escape_and_quote_field(field_name)

    def convert_condition_field_eq_val_num(self, cond, state):
        field = cond.field
        expr = f"toreal({field})" if field.startswith("Payload.") else self.escape_and_quote_field(field)
        return expr + self.num_eq_token + str(cond.value)


# ---------------------------------------------------------------------------------------
# Loading


def pipeline(name: str) -> ProcessingPipeline:
    return ProcessingPipeline.from_yaml((HERE / "pipelines" / f"{name}.yml").read_text())


@functools.lru_cache(maxsize=None)
def sentinel_transformations() -> tuple:
    return tuple(yaml.safe_load((HERE / "pipelines/sentinel.yml").read_text())["transformations"])


def sentinel_field(name: str) -> str:
    """A Sigma field as the Sentinel pipeline maps it (the same mapping, read from its YAML)."""
    for t in sentinel_transformations():
        if t["type"] == "field_name_mapping" and name in t["mapping"]:
            return t["mapping"][name]
    for t in sentinel_transformations():
        if t["type"] == "field_name_prefix_mapping":
            for old, new in t["mapping"].items():
                if name.startswith(old):
                    return new + name[len(old):]
    return name


def kusto_expr(name: str) -> str:
    f = sentinel_field(name)
    return f"tostring({f})" if f.startswith("Payload.") else f


def column_name(name: str) -> str:
    """A result column for a group-by field: its last segment in CamelCase (`room_name` -> RoomName)."""
    f = sentinel_field(name)
    if not f.startswith("Payload."):
        return f
    return "".join(p[:1].upper() + p[1:] for p in f.rsplit(".", 1)[-1].split("_"))


def load_content() -> list[dict]:
    """Every piece of content: Sigma (rules/) and native (native/), with content.yml's settings."""
    settings = yaml.safe_load((HERE / "content.yml").read_text())
    items = []
    for path in sorted((HERE / "rules").glob("*.yml")):
        coll = SigmaCollection.from_yaml(path.read_text())
        items.append({"name": path.stem, "sigma": coll, "top": coll.rules[-1], "source": path})
    for folder in sorted(p for p in (HERE / "native").iterdir() if p.is_dir()):
        meta = yaml.safe_load((folder / "rule.yml").read_text())
        items.append(
            {
                "name": folder.name,
                "native": meta,
                "logscale": (folder / "logscale.query").read_text(),
                "kql": (folder / "sentinel.kql").read_text(),
                "sql": (folder / "sqlite.sql").read_text(),
                "source": folder,
            }
        )
    names = {i["name"] for i in items}
    if names != set(settings):
        sys.exit(
            "every rule in rules/ and native/ needs an entry in content.yml, and every entry a "
            f"rule; fix these names: {sorted(names ^ set(settings))}"
        )
    for i in items:
        i.update(settings[i["name"]])
        meta = i.get("native") or sigma_meta(i["top"])
        i["meta"] = meta
    return items


def sigma_meta(rule) -> dict:
    return {
        "title": rule.title,
        "id": str(rule.id),
        "description": rule.description,
        "tags": [f"{t.namespace}.{t.name}" for t in rule.tags],
        "level": rule.level.name.lower() if rule.level else "medium",
        "falsepositives": list(rule.falsepositives or []),
    }


# ---------------------------------------------------------------------------------------
# Conversion


def strip(query: str, prefix: str) -> str:
    """A rule's filter without the pipeline's prefix (pySigma applies the pipeline's
    postprocessing in `convert`, not always in `convert_rule`)."""
    return query[len(prefix):] if query.startswith(prefix) else query


def converted(item: dict, backend) -> dict:
    """Each rule of the item's file, by name (or id), converted: {name: query}."""
    coll = copy.deepcopy(item["sigma"])
    out = {}
    for r in coll.rules:
        if not isinstance(r, SigmaCorrelationRule):
            # A correlation's base rules are marked for no output of their own; here their
            # query is what the correlation's aggregation is built on.
            r._output = True
            (q,) = backend.convert_rule(r)
            out[r.name or str(r.id)] = q
    return coll, out


def siem_query(item: dict, native: str, backend, prefix: str, correlation) -> str:
    """The item's query for one SIEM: the native text, the converted rule, or the converted
    base rules with the correlation's aggregation (`correlation`) on top."""
    if "native" in item:
        return item[native]
    coll, base = converted(item, backend)
    filters = {k: strip(v, prefix) for k, v in base.items()}
    top = coll.rules[-1]
    if not isinstance(top, SigmaCorrelationRule):
        return prefix + filters[top.name or str(top.id)] + "\n"
    return correlation(top, filters) + "\n"


def logscale_query(item: dict) -> str:
    backend = LogScaleBackend(processing_pipeline=pipeline("logscale"))
    return siem_query(item, "logscale", backend, LOGSCALE_PREFIX, correlation_logscale)


def kusto_query(item: dict) -> str:
    backend = ZoomKusto(processing_pipeline=pipeline("sentinel"))
    return siem_query(item, "kql", backend, KUSTO_PREFIX, correlation_kusto)


def ordered_steps(corr: SigmaCorrelationRule):
    """A temporal_ordered correlation's steps, in the one shape converted here: a
    value_count over one rule (grouped like the correlation), then a rule. Returns the
    value_count, its rule's name and the second rule's name."""
    first, then = (ref.rule for ref in corr.rules)
    if not (isinstance(first, SigmaCorrelationRule) and first.type.name.lower() == "value_count"):
        raise NotImplementedError("temporal_ordered is converted for a value_count followed by a rule")
    if first.group_by != corr.group_by:
        raise NotImplementedError("both steps of a temporal_ordered correlation must group by the same fields")
    (inner,) = first.rules
    return first, inner.rule.name, then.name


def correlation_logscale(corr: SigmaCorrelationRule, filters: dict) -> str:
    group = ", ".join(corr.group_by)
    if corr.type.name.lower() in ("event_count", "value_count"):
        (ref,) = corr.rules
        q = LOGSCALE_PREFIX + f"({filters[ref.rule.name]})\n"
        if corr.type.name.lower() == "event_count":
            metric, fn = "events", "count(as=events)"
        else:
            field = corr.condition.fieldref
            metric = "distinct_" + field.rsplit(".", 1)[-1]
            fn = f"count({field}, distinct=true, as={metric})"
        q += f"| groupBy([{group}], function=[{fn}, min(@timestamp, as=first_seen), max(@timestamp, as=last_seen)])\n"
        return q + f"| {metric} {OPS[corr.condition.op].replace('==', '=')} {corr.condition.count}"
    if corr.type.name.lower() == "temporal_ordered":
        first, a, b = ordered_steps(corr)
        field = first.condition.fieldref
        return (
            LOGSCALE_PREFIX
            + "case {\n"
            + f"    {filters[a]} | step_item := {field} | first_at := @timestamp ;\n"
            + f"    {filters[b]} | then_at := @timestamp ;\n"
            + "  }\n"
            + f"| groupBy([{group}], function=[count(step_item, distinct=true, as=items), max(first_at, as=last_first), max(then_at, as=last_then)])\n"
            + f"| items {OPS[first.condition.op]} {first.condition.count}\n"
            + "| test(last_then > last_first)"
        )
    raise NotImplementedError(f"correlation type {corr.type.name.lower()}")


def correlation_kusto(corr: SigmaCorrelationRule, filters: dict) -> str:
    by = ", ".join(
        c if c == kusto_expr(g) else f"{c} = {kusto_expr(g)}"
        for g, c in ((g, column_name(g)) for g in corr.group_by)
    )
    if corr.type.name.lower() in ("event_count", "value_count"):
        (ref,) = corr.rules
        q = KUSTO_PREFIX + f"{filters[ref.rule.name]}\n"
        if corr.type.name.lower() == "event_count":
            metric, fn = "Events", "count()"
        else:
            field = corr.condition.fieldref
            metric = "Distinct" + column_name(field)
            fn = f"dcount({kusto_expr(field)})"
        q += f"| summarize {metric} = {fn}, FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated) by {by}\n"
        return q + f"| where {metric} {OPS[corr.condition.op]} {corr.condition.count}"
    if corr.type.name.lower() == "temporal_ordered":
        first, a, b = ordered_steps(corr)
        a, b = filters[a], filters[b]
        return (
            KUSTO_PREFIX
            + f"({a}) or ({b})\n"
            + f"| extend IsFirst = ({a})\n"
            + f"| summarize Items = dcountif({kusto_expr(first.condition.fieldref)}, IsFirst), "
            + "LastFirst = maxif(TimeGenerated, IsFirst), LastThen = maxif(TimeGenerated, not(IsFirst)) "
            + f"by {by}\n"
            + f"| where Items {OPS[first.condition.op]} {first.condition.count} and LastThen > LastFirst"
        )
    raise NotImplementedError(f"correlation type {corr.type.name.lower()}")


# ---------------------------------------------------------------------------------------
# Fixtures


@functools.lru_cache(maxsize=None)
def samples() -> dict[str, list[dict]]:
    by_name: dict[str, list[dict]] = {}
    for line in SAMPLES.read_text().splitlines():
        if line.strip():
            body = json.loads(line)
            by_name.setdefault(body["event"], []).append(body)
    return by_name


def set_path(obj: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        obj = obj.setdefault(p, {})
    obj[last] = value


def unset_path(obj: dict, path: str) -> None:
    *parents, last = path.split(".")
    for p in parents:
        obj = obj[p]
    del obj[last]


def bodies(name: str) -> str:
    """The fixture's cases expanded into webhook bodies: one JSON line per event."""
    spec = yaml.safe_load((HERE / "fixtures" / f"{name}.yml").read_text())
    by_name = samples()
    lines = []
    for case in spec["cases"]:
        assert case["expect"] in ("match", "no_match"), case
        for ev in case["events"]:
            sample, _, index = ev["from"].partition("#")
            body = copy.deepcopy(by_name[sample][int(index or 0)])
            for path, value in (ev.get("set") or {}).items():
                set_path(body, path, value)
            for path in ev.get("unset") or []:
                unset_path(body, path)
            body["event_ts"] = CASE_START_MS + int(ev.get("at", 0)) * 60_000
            lines.append(json.dumps({"case": case["name"], "expect": case["expect"], "body": body}))
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def shipped(name: str) -> list[dict]:
    path = HERE / "fixtures/shipped" / f"{name}.ndjson"
    if not path.exists():
        sys.exit(f"{path} is missing: run `UPDATE_GOLDEN=1 cargo test --test detections_shipped`")
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def flatten(obj, prefix="") -> dict:
    """A JSON object's leaves by dotted path, as LogScale's parseJson names them (arrays as [i])."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def paths(obj, prefix="") -> set[str]:
    """Every dotted path of a JSON object, objects included (dynamic access in KQL)."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= paths(v, p)
    return out


# ---------------------------------------------------------------------------------------
# Generation


class Literal(str):
    pass


yaml.SafeDumper.add_representer(
    Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|")
)


def dump(doc) -> str:
    def lit(v):
        if isinstance(v, str) and "\n" in v:
            return Literal(v if v.endswith("\n") else v + "\n")
        if isinstance(v, dict):
            return {k: lit(x) for k, x in v.items()}
        if isinstance(v, list):
            return [lit(x) for x in v]
        return v

    return yaml.safe_dump(lit(doc), sort_keys=False, allow_unicode=True, width=100)


def attack(meta: dict):
    tactics = [TACTICS[t.split(".", 1)[1]] for t in meta["tags"] if t.split(".", 1)[1] in TACTICS]
    techniques = [t.split(".", 1)[1].upper() for t in meta["tags"] if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t)]
    return tactics, techniques


def parser_yaml(items: list[dict]) -> str:
    tests = []
    for item in items:
        for ev in shipped(item["name"]):
            if ev["expect"] == "match":
                tests.append(json.dumps(ev["hec"]["event"], separators=(",", ":")))
    tests = sorted(set(tests))
    return dump(
        {
            "$schema": "https://schemas.humio.com/parser/v0.3.0",
            "name": "zoom_webhook",
            "script": (
                "// Zoom webhook events as qss-relay ships them: the HEC line's `event` is the body of\n"
                "// Zoom's POST (one JSON object), @timestamp the HEC `time` (the event's event_ts).\n"
                "// Fields keep the body's JSON paths: event, payload.operator, payload.object.id, ...\n"
                "parseJson()\n"
                '| Vendor := "zoom"\n'
                '| event.module := "webhook"\n'
            ),
            "tagFields": ["Vendor", "event.module"],
            "fieldsToBeRemovedBeforeParsing": [],
            "testCases": [{"event": {"rawString": t}, "assertions": None} for t in tests],
        }
    )


def generate(items: list[dict]) -> dict[str, bytes]:
    """Every generated file, by path relative to detections/."""
    out: dict[str, bytes] = {}
    for item in items:
        out[f"fixtures/bodies/{item['name']}.ndjson"] = bodies(item["name"]).encode()

    pkg: dict[str, str] = {}
    pkg["manifest.yaml"] = dump(
        {
            "$schema": "https://schemas.humio.com/manifest/v2.0.0",
            "name": PACKAGE,
            "author": {"name": "qss-relay"},
            "description": "Parser, detections and hunting queries for the Zoom webhook events that qss-relay ships to LogScale.",
            "version": "0.1.0",
            "minHumioVersion": "1.142.0",
            "type": "application",
            "licenseUrl": "https://www.apache.org/licenses/LICENSE-2.0",
        }
    )
    pkg["README.md"] = package_readme(items)
    pkg["parsers/zoom_webhook.yaml"] = parser_yaml(items)
    for item in items:
        meta, q = item["meta"], logscale_query(item)
        description = meta["description"].strip() + "\n"
        if item["kind"] == "detection":
            pkg[f"scheduled-searches/{item['name']}.yaml"] = dump(
                {
                    "$schema": "https://schemas.humio.com/scheduledsearch/v0.1.0",
                    "name": meta["title"],
                    "description": description,
                    "queryString": q,
                    "queryStart": item["logscale_window"],
                    "queryEnd": "now",
                    "schedule": item["schedule"],
                    "timeZone": "UTC",
                    "backfillLimit": 0,
                    "enabled": True,
                    "actionNames": [],
                    "labels": [f"severity:{meta['level']}", f"sigma:{meta['id']}"],
                }
            )
        else:
            pkg[f"queries/{item['name']}.yaml"] = dump(
                {
                    "$schema": "https://schemas.humio.com/query/v0.1.0",
                    "name": meta["title"],
                    "queryString": q,
                    "timeInterval": {"isLive": False, "start": item["logscale_window"]},
                    "visualization": {"type": "table-view", "options": {}},
                }
            )
    for path, text in pkg.items():
        out[f"{PACKAGE_DIR}/{path}"] = text.encode()
    out[PACKAGE_ZIP] = zipped(pkg)

    for item in items:
        meta = item["meta"]
        tactics, techniques = attack(meta)
        entity = [
            {"entityType": e["type"], "fieldMappings": [{"identifier": e["identifier"], "columnName": e["column"]}]}
            for e in item.get("entities", [])
        ]
        doc = {
            "id": meta["id"],
            "name": meta["title"],
            "description": meta["description"].strip() + "\n",
            "requiredDataConnectors": [],
        }
        if item["kind"] == "detection":
            doc.update(
                {
                    "severity": SEVERITY[meta["level"]],
                    "queryFrequency": item["frequency"],
                    "queryPeriod": item["period"],
                    "triggerOperator": "gt",
                    "triggerThreshold": 0,
                }
            )
        doc.update({"tactics": tactics, "relevantTechniques": techniques, "query": kusto_query(item)})
        if entity:
            doc["entityMappings"] = entity
        doc["version"] = "1.0.0"
        if item["kind"] == "detection":
            doc["kind"] = "Scheduled"
            folder = "AnalyticsRules"
        else:
            folder = "HuntingQueries"
        out[f"generated/sentinel/{folder}/{item['name']}.yaml"] = dump(doc).encode()
    out["generated/sentinel/azuredeploy.json"] = (json.dumps(arm_template(items), indent=2) + "\n").encode()
    return out


def iso_duration(spec: str) -> str:
    """1h -> PT1H, 1d -> P1D, 30m -> PT30M (ARM's durations)."""
    n, unit = int(spec[:-1]), spec[-1]
    return {"m": f"PT{n}M", "h": f"PT{n}H", "d": f"P{n}D"}[unit]


def arm_template(items: list[dict]) -> dict:
    """The Sentinel content as one ARM template: analytics rules and hunting queries.

    The YAML files are the Azure-Sentinel repository's format; this is what the portal,
    `az deployment group create` and Sentinel's repositories deploy.
    """
    resources = []
    for item in items:
        meta = item["meta"]
        tactics, techniques = attack(meta)
        if item["kind"] == "detection":
            resources.append(
                {
                    "type": "Microsoft.OperationalInsights/workspaces/providers/alertRules",
                    "apiVersion": "2023-12-01-preview",
                    "name": f"[concat(parameters('workspace'), '/Microsoft.SecurityInsights/{meta['id']}')]",
                    "kind": "Scheduled",
                    "properties": {
                        "displayName": meta["title"],
                        "description": meta["description"].strip(),
                        "severity": SEVERITY[meta["level"]],
                        "enabled": True,
                        "query": kusto_query(item),
                        "queryFrequency": iso_duration(item["frequency"]),
                        "queryPeriod": iso_duration(item["period"]),
                        "triggerOperator": "GreaterThan",
                        "triggerThreshold": 0,
                        "suppressionEnabled": False,
                        "suppressionDuration": "PT5H",
                        "tactics": tactics,
                        "techniques": sorted({t.split(".")[0] for t in techniques}),
                        "subTechniques": [t for t in techniques if "." in t],
                        "entityMappings": [
                            {"entityType": e["type"], "fieldMappings": [{"identifier": e["identifier"], "columnName": e["column"]}]}
                            for e in item.get("entities", [])
                        ],
                        "incidentConfiguration": {"createIncident": True},
                    },
                }
            )
        else:
            resources.append(
                {
                    "type": "Microsoft.OperationalInsights/workspaces/savedSearches",
                    "apiVersion": "2020-08-01",
                    "name": f"[concat(parameters('workspace'), '/{meta['id']}')]",
                    "properties": {
                        "category": "Hunting Queries",
                        "displayName": meta["title"],
                        "query": kusto_query(item),
                        "version": 2,
                        "tags": [
                            {"name": "description", "value": meta["description"].strip()},
                            {"name": "tactics", "value": ",".join(tactics)},
                            {"name": "techniques", "value": ",".join(techniques)},
                        ],
                    },
                }
            )
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": "qss-relay's Zoom webhook detections and hunting queries for Microsoft Sentinel, over the ZoomLogs function (deploy/sentinel first). Generated by detections/run generate. Deploy with: az deployment group create -g <resource group> --template-file azuredeploy.json --parameters workspace=<workspace>"
        },
        "parameters": {"workspace": {"type": "string", "metadata": {"description": "The Log Analytics workspace with Microsoft Sentinel on it"}}},
        "resources": resources,
    }


def zipped(files: dict[str, str]) -> bytes:
    """The package as LogScale installs it, byte-identical from run to run (fixed dates, sorted)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[path])
    return buf.getvalue()


def package_readme(items: list[dict]) -> str:
    lines = [
        "# qss-relay: Zoom webhooks",
        "",
        "Parser, detections (scheduled searches) and hunting queries (saved searches) for the Zoom",
        "webhook events that qss-relay ships to LogScale. Generated from Sigma rules by",
        "`detections/run generate` in the qss-relay repository; do not edit by hand.",
        "",
        "Set the relay's `LOGSCALE_WEBHOOK_SOURCETYPE` to `qss-relay/zoom-webhooks:zoom_webhook` so",
        "that LogScale parses its webhook events with this package's parser. The scheduled",
        "searches have no actions: add yours after installing.",
        "",
        "| content | kind | what it finds |",
        "|---|---|---|",
    ]
    for item in items:
        first = item["meta"]["description"].strip().split("\n\n")[0].replace("\n", " ")
        lines.append(f"| {item['meta']['title']} | {item['kind']} | {first.split('. ')[0]}. |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Tests


def table(conn: sqlite3.Connection, events: list[dict]) -> None:
    """The case's shipped HEC events as rows: one column per LogScale field, plus times."""
    rows = []
    for ev in events:
        row = flatten(ev["hec"]["event"])
        row["timestamp"] = dt.datetime.fromtimestamp(ev["hec"]["time"], dt.timezone.utc).isoformat()
        row["ts"] = ev["hec"]["time"]
        rows.append(row)
    cols = sorted({c for r in rows for c in r})
    conn.execute("CREATE TABLE logs (" + ", ".join(f'"{c}"' for c in cols) + ")")
    for r in rows:
        conn.execute(
            "INSERT INTO logs (" + ", ".join(f'"{c}"' for c in r) + ") VALUES (" + ", ".join("?" for _ in r) + ")",
            [json.dumps(v) if isinstance(v, (dict, list)) else v for v in r.values()],
        )


def sqlite_query(item: dict) -> str:
    if "native" in item:
        return item["sql"]
    coll = copy.deepcopy(item["sigma"])
    sqliteBackend().convert(coll)
    (q,) = coll.rules[-1].get_conversion_result()
    return q


def fires(query: str, events: list[dict]) -> bool:
    conn = sqlite3.connect(":memory:")
    table(conn, events)
    # Fields a rule names that no event has are NULL, as in a SIEM.
    wanted = set(re.findall(r"`([^`]+)`", query)) | set(re.findall(r'"((?:payload|event)[^"]*)"', query))
    for col in wanted - {"rowid"}:
        if col not in {r[1] for r in conn.execute("PRAGMA table_info(logs)")}:
            conn.execute(f'ALTER TABLE logs ADD COLUMN "{col}"')
    # The native SQL reads `events`, with the row ids.
    conn.execute("CREATE VIEW events AS SELECT rowid, * FROM logs")
    return bool(conn.execute(query).fetchall())


def cases(name: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for ev in shipped(name):
        out.setdefault(ev["case"], []).append(ev)
    return out


def evaluate(item: dict, query: str | None = None) -> list[str]:
    """Problems: a positive case the rule misses, a negative it fires on."""
    query = query or sqlite_query(item)
    problems = []
    by_case = cases(item["name"])
    if not any(evs[0]["expect"] == "match" for evs in by_case.values()) or not any(
        evs[0]["expect"] == "no_match" for evs in by_case.values()
    ):
        problems.append(f"{item['name']}: needs at least one positive and one negative case")
    for case, evs in by_case.items():
        expected = evs[0]["expect"] == "match"
        if fires(query, evs) != expected:
            problems.append(f"{item['name']}: {'missed' if expected else 'fired on'} case {case!r}")
    return problems


LOGSCALE_FIELD = re.compile(r"(?<![\w.#\"])(payload(?:\.\w+)+)")
KUSTO_PATH = re.compile(r"\bPayload((?:\.\w+)+)")


def field_problems(item: dict) -> list[str]:
    positives = [ev for ev in shipped(item["name"]) if ev["expect"] == "match"]
    logscale_fields = set().union(*(flatten(ev["hec"]["event"]).keys() for ev in positives))
    payload_paths = set().union(*(paths(ev["sentinel"].get("Payload") or {}) for ev in positives))
    problems = []
    for f in sorted(set(LOGSCALE_FIELD.findall(logscale_query(item)))):
        if f not in logscale_fields:
            problems.append(f"{item['name']}: the LogScale query reads {f}, which no positive fixture has as shipped")
    for p in sorted(set(KUSTO_PATH.findall(kusto_query(item)))):
        if p[1:] not in payload_paths:
            problems.append(f"{item['name']}: the KQL reads Payload{p}, which no positive fixture's row has")
    return problems


def kusto_problems(items: list[dict]) -> list[str]:
    template = json.loads(TEMPLATE.read_text())
    (tbl,) = [r for r in template["resources"] if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"]
    types = {"boolean": "bool"}
    schema = ", ".join(
        f"{c['name']}:{types.get(c['type'], c['type'])}" for c in tbl["properties"]["schema"]["columns"]
    )
    function = "\n".join(l for l in ZOOMLOGS_KQL.read_text().splitlines() if not l.strip().startswith("//"))
    queries = [{"name": "deploy/sentinel/ZoomLogs.kql", "text": function, "global": True}]
    queries += [{"name": i["name"], "text": kusto_query(i)} for i in items]
    result = subprocess.run(
        ["node", str(HERE / "kusto-check.js")],
        input=json.dumps({"schema": schema, "function": function, "queries": queries}),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return [f"the Kusto language service did not run: {result.stderr.strip()}"]
    report = json.loads(result.stdout)
    problems = [f"{q}: {d}" for q, ds in report["diagnostics"].items() for d in ds]
    # Sentinel maps entities from result columns: each must be a column of the query's result.
    for i in items:
        columns = report["columns"].get(i["name"], [])
        for e in i.get("entities", []):
            if e["column"] not in columns:
                problems.append(f"{i['name']}: entity column {e['column']} is not in the query's result {columns}")
    return problems


def sigma_problems(items: list[dict]) -> list[str]:
    """pySigma's own rule validators, over all rules at once (ids and titles unique, no
    dangling detections, tag formats, ...). The ATT&CK and D3FEND tag validators download
    MITRE's data at run time, which CI's network does not allow; tags are checked for
    their format here and by hand against ATT&CK."""
    from sigma.validation import SigmaValidator
    from sigma.validators.core import validators

    offline = [v for name, v in validators.items() if name not in ("attacktag", "d3_fendtag")]
    rules = SigmaCollection([r for i in items if "sigma" in i for r in i["sigma"].rules])
    problems = [f"sigma validator: {issue}" for issue in SigmaValidator(offline).validate_rules(rules)]
    ids = [i["meta"]["id"] for i in items]
    if len(set(ids)) != len(ids):
        problems.append(f"rule ids are not unique: {ids}")
    return problems


def selftest(items: list[dict]) -> list[str]:
    """The evaluation can fail: a misspelt field must make the rule miss its positive cases."""
    item = next(i for i in items if i["name"] == "zoom_e2e_encryption_disabled")
    broken = dict(item)
    broken["sigma"] = SigmaCollection.from_yaml(
        item["source"].read_text().replace("in_meeting.e2e_encryption", "in_meeting.e2e_encrypton", 1)
    )
    if not evaluate(broken):
        return ["selftest: a rule with a misspelt field still passed its fixtures"]
    if not field_problems(broken):
        return ["selftest: a misspelt field was not reported by the field check"]
    return []


REQUIRED = {
    "generated/sentinel/AnalyticsRules/": ["id", "name", "description", "severity", "requiredDataConnectors",
        "queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold", "tactics",
        "relevantTechniques", "query", "entityMappings", "version", "kind"],
    "generated/sentinel/HuntingQueries/": ["id", "name", "description", "requiredDataConnectors", "tactics",
        "relevantTechniques", "query"],
    f"{PACKAGE_DIR}/scheduled-searches/": ["$schema", "name", "queryString", "queryStart", "queryEnd", "schedule", "timeZone"],
    f"{PACKAGE_DIR}/queries/": ["$schema", "name", "queryString", "timeInterval"],
    f"{PACKAGE_DIR}/parsers/": ["$schema", "name", "script", "testCases"],
}


def format_problems(files: dict[str, bytes]) -> list[str]:
    """Each generated content file has the keys its format requires."""
    problems = []
    for path, data in files.items():
        for folder, keys in REQUIRED.items():
            if path.startswith(folder):
                doc = yaml.safe_load(data)
                missing = [k for k in keys if k not in doc or doc[k] in (None, "")]
                if missing:
                    problems.append(f"{path}: missing {missing}")
    if not any(p.startswith(f"{PACKAGE_DIR}/parsers/") for p in files):
        problems.append("the LogScale package has no parser")
    return problems


def compare(files: dict[str, bytes]) -> list[str]:
    problems = []
    for path, data in sorted(files.items()):
        p = HERE / path
        if not p.exists():
            problems.append(f"{path}: missing (run `detections/run generate`)")
        elif p.read_bytes() != data:
            problems.append(f"{path}: differs from what `detections/run generate` writes")
    for root in ("generated", "fixtures/bodies"):
        for p in sorted((HERE / root).rglob("*")):
            rel = str(p.relative_to(HERE))
            if p.is_file() and rel not in files:
                problems.append(f"{rel}: not generated by anything (remove it)")
    return problems


def write(files: dict[str, bytes]) -> None:
    """Writes every generated file and removes generated files that are no longer made."""
    for root in ("generated", "fixtures/bodies"):
        for p in (HERE / root).rglob("*"):
            if p.is_file() and str(p.relative_to(HERE)) not in files:
                p.unlink()
    for path, data in files.items():
        p = HERE / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    print(f"wrote {len(files)} files")


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    items = load_content()
    if mode == "generate":
        if not all((HERE / "fixtures/shipped" / f"{i['name']}.ndjson").exists() for i in items):
            # A new rule: its bodies first, then the relay ships them, then the content.
            for i in items:
                p = HERE / f"fixtures/bodies/{i['name']}.ndjson"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(bodies(i["name"]))
            print("wrote the fixture bodies; now `UPDATE_GOLDEN=1 cargo test --test detections_shipped`, then generate again")
            return 0
        write(generate(items))
        return 0
    if mode != "check":
        print(__doc__)
        return 2
    files = generate(items)
    problems = compare(files) + format_problems(files)
    for item in items:
        problems += evaluate(item)
        problems += field_problems(item)
    problems += sigma_problems(items)
    problems += kusto_problems(items)
    problems += selftest(items)
    n_cases = sum(len(cases(i["name"])) for i in items)
    if problems:
        print("\n".join(problems))
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print(
        f"ok: {len(items)} rules, {n_cases} fixture cases evaluated (SQLite), every field a query reads "
        f"is in the shipped fixtures, {len(items) + 1} KQL texts with no diagnostics, generated files up to date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
