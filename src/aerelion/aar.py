"""The after-action report of AG-07 (THE ENVOY), built deterministically from the telemetry
`aar_telemetry()` returns: the original's sections, as Markdown and as a one-page HTML with
a small chart of errors per hour. The same telemetry always gives the same report (the
reference id comes from the window's end), so a report can be checked against the data.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

FOOTER = "AERELION // SYS.OPS.V3.00 // GHOST_OPERATOR"
SPARSE_BELOW = 5  # fewer heartbeats and log rows than this: INSUFFICIENT_TELEMETRY
HIGH_ERROR_RATE = 5.0  # percent of log rows at level error


def _base36(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _stamp(value: Any) -> str:
    return _moment(value).strftime("%Y-%m-%d %H:%M UTC")


def reference_id(telemetry: dict[str, Any]) -> str:
    return "AAR-" + _base36(int(_moment(telemetry["until"]).timestamp()))


def _error_rate(logs: dict[str, Any]) -> float:
    return round(100 * logs["errors"] / logs["total"], 1) if logs["total"] else 0.0


def assessment(telemetry: dict[str, Any]) -> dict[str, Any]:
    """The judgements the report states, from the numbers alone."""
    agents = telemetry["agents"]
    logs = telemetry["logs"]
    offline = [a["agent_id"] for a in agents if a["state"] == "OFFLINE"]
    erring = [a["agent_id"] for a in agents if a["error"] or a["state"] == "ERROR"]
    drifting = [a["agent_id"] for a in agents if a["drift"] or a["state"] == "DRIFT"]
    heartbeats = sum(a["heartbeats"] for a in agents)
    rate = _error_rate(logs)
    if heartbeats + logs["total"] < SPARSE_BELOW:
        risk = "INSUFFICIENT_TELEMETRY"
    elif erring or rate >= HIGH_ERROR_RATE or len(offline) >= 3:
        risk = "HIGH"
    elif drifting or offline or logs["errors"]:
        risk = "ELEVATED"
    else:
        risk = "LOW"
    return {
        "risk": risk,
        "offline": offline,
        "erring": erring,
        "drifting": drifting,
        "heartbeats": heartbeats,
        "error_rate": rate,
    }


def _recommendations(verdict: dict[str, Any], telemetry: dict[str, Any]) -> list[str]:
    out = []
    if verdict["risk"] == "INSUFFICIENT_TELEMETRY":
        out.append("Deploy the agents' heartbeat workflows (deploy-agent-workflows) and wait "
                   "for a full cycle before relying on this report.")  # fmt: skip
    for agent in verdict["offline"]:
        out.append(f"{agent}: no heartbeat within twice its interval — check its workflow "
                   "on its n8n node and run agent-auto-heal.")  # fmt: skip
    for agent in verdict["erring"]:
        out.append(f"{agent}: errors reported — inspect its last message and auto-heal it.")
    for agent in verdict["drifting"]:
        if agent not in verdict["erring"]:
            out.append(f"{agent}: drift reported — review its target and thresholds.")
    worst = [f for f in telemetry["functions"] if f["errors"]]
    if worst:
        top = max(worst, key=lambda f: f["errors"])
        out.append(f"{top['function_name']}: {top['errors']} errors in the window — read its "
                   "log rows (aerelion logs --function NAME --level error).")  # fmt: skip
    return out or ["No action required: every agent nominal, no errors logged."]


def render_markdown(telemetry: dict[str, Any]) -> str:
    verdict = assessment(telemetry)
    logs = telemetry["logs"]
    agents = telemetry["agents"]
    lines = [
        "# AFTER-ACTION REPORT // AG-07 THE ENVOY",
        "",
        f"- REF-ID: {reference_id(telemetry)}",
        f"- WINDOW: {telemetry['window_hours']} h ({_stamp(telemetry['since'])} → "
        f"{_stamp(telemetry['until'])})",
        f"- GENERATED: {_stamp(telemetry['until'])}",
        "",
        "## EXECUTIVE SUMMARY",
        "",
    ]
    if verdict["risk"] == "INSUFFICIENT_TELEMETRY":
        lines.append(
            "INSUFFICIENT_TELEMETRY: "
            f"{verdict['heartbeats']} heartbeats and {logs['total']} log rows in the window."
        )
    else:
        nominal = sum(1 for a in agents if a["state"] == "NOMINAL")
        lines.append(
            f"{nominal} of {len(agents)} agents nominal; {verdict['heartbeats']} heartbeats; "
            f"{logs['total']} log rows with {logs['errors']} errors ({verdict['error_rate']} %) "
            f"and {logs['warnings']} warnings. Risk: {verdict['risk']}."
        )
    lines += [
        "",
        "## AGENT STATUS MATRIX",
        "",
        "| Agent | Codename | State | Heartbeats | Nominal | Drift | Error | Last heartbeat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in agents:
        last = _stamp(a["last_heartbeat_at"]) if a["last_heartbeat_at"] else "never"
        lines.append(
            f"| {a['agent_id']} | {a['codename']} | {a['state']} | {a['heartbeats']} | "
            f"{a['nominal']} | {a['drift']} | {a['error']} | {last} |"
        )
    lines += ["", "## DRIFT & INCIDENT LOG", ""]
    incidents = telemetry["incidents"]
    if not incidents:
        lines.append("NO_INCIDENTS_DETECTED")
    for item in incidents:
        who = item["agent_id"] or item["source"]
        lines.append(f"- {_stamp(item['created_at'])} {item['level'].upper()} {who}: "
                     f"{item['message']}")  # fmt: skip
    lines += [
        "",
        "## EDGE FUNCTION TELEMETRY",
        "",
        f"{logs['total']} events, {logs['errors']} errors, {logs['warnings']} warnings, "
        f"average duration {logs['avg_duration_ms']} ms.",
        "",
        "| Function | Events | Errors | Warnings | Avg ms |",
        "|---|---|---|---|---|",
    ]
    for f in telemetry["functions"]:
        lines.append(f"| {f['function_name']} | {f['total']} | {f['errors']} | {f['warnings']} | "
                     f"{f['avg_duration_ms']} |")  # fmt: skip
    lines += ["", "## RISK ASSESSMENT", "", f"RISK LEVEL: {verdict['risk']}"]
    for label, key in (("Offline", "offline"), ("Errors", "erring"), ("Drift", "drifting")):
        if verdict[key]:
            lines.append(f"- {label}: {', '.join(verdict[key])}")
    lines += ["", "## RECOMMENDATIONS", ""]
    lines += [f"{n}. {text}" for n, text in enumerate(_recommendations(verdict, telemetry), 1)]
    lines += ["", "---", FOOTER, ""]
    return "\n".join(lines)


def _chart(buckets: list[dict[str, Any]]) -> str:
    """An inline SVG bar chart of errors per hour (events as the faint bar behind)."""
    width, height, gap = 600, 120, 1
    if not buckets:
        return ""
    top = max(max(b["events"] for b in buckets), 1)
    bar = width / len(buckets)
    bars = []
    for i, b in enumerate(buckets):
        x = i * bar
        for value, colour in ((b["events"], "#2a3a2a"), (b["errors"], "#e5484d")):
            h = round(height * value / top, 1)
            bars.append(
                f'<rect x="{x:.1f}" y="{height - h}" width="{max(bar - gap, 1):.1f}" '
                f'height="{h}" fill="{colour}"><title>{html.escape(str(b["hour"]))}: '
                f"{b['errors']} errors / {b['events']} events</title></rect>"
            )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="errors per hour">{"".join(bars)}</svg>'
    )


def render_html(telemetry: dict[str, Any]) -> str:
    """One self-contained page: the Markdown's content, escaped, and the chart."""
    body = []
    for line in render_markdown(telemetry).splitlines():
        text = html.escape(line)
        if line.startswith("# "):
            body.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{text[3:]}</h2>")
            if line == "## EDGE FUNCTION TELEMETRY":
                body.append(_chart(telemetry["errors_by_hour"]))
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = "".join(f"<td>{c.strip()}</td>" for c in text.strip("|").split("|"))
            body.append(f"<tr>{cells}</tr>")
        elif line.strip():
            body.append(f"<p>{text}</p>")
    page = _close_tables("\n".join(body))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{reference_id(telemetry)}</title><style>"
        "body{font:14px/1.5 ui-monospace,monospace;background:#0b0f0b;color:#cfe8cf;"
        "max-width:900px;margin:2em auto}td{border:1px solid #2a3a2a;padding:2px 6px}"
        "table{border-collapse:collapse}h1,h2{color:#7ee787}"
        f"</style></head><body>{page}</body></html>"
    )


def _close_tables(page: str) -> str:
    """Wrap runs of table rows in <table> elements."""
    out, inside = [], False
    for line in page.split("\n"):
        row = line.startswith("<tr>")
        if row and not inside:
            out.append("<table>")
            inside = True
        if not row and inside:
            out.append("</table>")
            inside = False
        out.append(line)
    if inside:
        out.append("</table>")
    return "\n".join(out)
