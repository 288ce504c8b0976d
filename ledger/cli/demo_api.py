"""The end of ``ledger demo``: the same story, asked of the query API.

It creates an auditor key for the demo tenant (printed, so the reader can try the API
themselves), waits until the projections have caught up with the story's last event, and
prints the purpose checks and the disclosure log the API answers. Last it prints where the
browser interfaces are: the console (signed in with that key) and a one-time privacy-center
link for the story's first subject, made with an admin key as a tenant's backend would.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg
import typer

from ledger.process.settings import Settings
from projections.api import access


def _post(url: str, token: str, path: str, body: dict[str, str]) -> Any:
    request = urllib.request.Request(  # noqa: S310 (a local http URL from settings)
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def _get(url: str, token: str, path: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 (a local http URL from settings)
        url + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def _key(s: Settings, tenant: str, scope: str = "auditor") -> str:
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        access.create_table(conn, s.database_schema)
        token, _ = access.create_key(conn, s.database_schema, tenant, [scope], "ledger demo")
    return token


def _wait_for(url: str, token: str, ref: str, purpose: str, reason: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    answer: Any = None
    while time.monotonic() < deadline:
        try:
            answer = _post(
                url, token, "/v1/purpose-check", {"subject_ref": ref, "purpose": purpose}
            )
        except (urllib.error.URLError, OSError):
            answer = None
        if answer and answer["reason"] == reason:
            break
        time.sleep(0.2)
    return answer


def show(s: Settings, tenant: str, checks: list[tuple[str, str, str, str]], seconds: float) -> bool:
    """Prints the API's answers for ``checks`` — (label, reference, purpose, expected reason)
    — and whether each was as expected. False if the API could not be reached."""
    url = f"http://{s.api_host}:{s.api_port}"
    token = _key(s, tenant)
    typer.echo(f"\nThrough the query API ({url}/docs):")
    ok = True
    for label, ref, purpose, expected in checks:
        answer = _wait_for(url, token, ref, purpose, expected, seconds)
        if answer is None:
            typer.echo(f"!!  query API not reachable at {url} (is `ledger dev` running?)")
            return False
        verdict = "allowed" if answer["allowed"] else "refused"
        mark = "ok " if answer["reason"] == expected else "!! "
        ok &= answer["reason"] == expected
        typer.echo(f"{mark} purpose check: {label} → {verdict} ({answer['reason']})")
    overdue = _get(url, token, "/v1/requests?state=overdue")["requests"]
    kinds = ", ".join(sorted({r["kind"] for r in overdue})) or "none"
    typer.echo(f"    the register: {len(overdue)} request(s) overdue ({kinds})")
    ref = checks[0][1]
    disclosures = _post(url, token, "/v1/subject/disclosures", {"subject_ref": ref})
    recipients = ", ".join(d["recipient"] for d in disclosures["disclosures"]) or "none"
    typer.echo(f"    disclosures of {checks[0][0].split()[0]} in the last 12 months: {recipients}")
    body = json.dumps({"subject_ref": ref, "purpose": checks[0][2]})
    typer.echo(
        "Try it yourself (an auditor key for this tenant was made for this run):\n"
        f"  curl -s {url}/v1/purpose-check -H 'Authorization: Bearer {token}' \\\n"
        f"       -H 'Content-Type: application/json' -d '{body}'"
    )
    _browser(s, url, tenant, ref, token)
    return ok


def _browser(s: Settings, url: str, tenant: str, ref: str, token: str) -> None:
    """The console's address, and a privacy-center link for ``ref`` (good once, for
    ``LEDGER_PRIVACY_LINK_TTL``)."""
    link = _post(url, _key(s, tenant, "admin"), "/v1/privacy-center/links", {"subject_ref": ref})
    minutes = max(1, int(s.privacy_link_ttl.total_seconds() // 60))
    typer.echo(
        "In the browser:\n"
        f"  console         {url}/console/   (sign in with the auditor key above: {token})\n"
        f"  privacy center  {link['url']}\n"
        f"                  (the first subject's own page: this link works once, for "
        f"{minutes} min; `ledger demo` again makes another)"
    )
