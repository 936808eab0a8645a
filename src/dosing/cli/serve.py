"""`dosing serve`: the CDS Hooks service, over the patient store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dosing.cli.options import DbOption, open_store
from dosing.core.errors import DosingError


def serve(
    trust: Annotated[
        Path,
        typer.Option(
            help="The CDS clients trusted: a JSON file {issuer: JWK Set} of their public keys. "
            "Every request must carry a JWT signed by one of them (CDS Hooks).",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="The address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8080,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="The URL clients call (a token's aud must name it); default "
            "http://HOST:PORT. Behind a TLS proxy, give the https URL."
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, help="The largest request body accepted, in bytes.")
    ] = 1_000_000,
    access_log: Annotated[
        bool, typer.Option(help="Log each request's method, path and status (never its body).")
    ] = True,
    db: DbOption = None,
) -> None:
    """Run a CDS Hooks 2.0 service: dose advice as cards when an order is written, the
    clinician's feedback kept in the patient store. Needs the service extra.

    Example: [cyan]dosing serve --trust ehr-keys.json --port 8080 --db clinic.sqlite[/]
    """
    try:
        from dosing.service.app import ServiceConfig, run
        from dosing.service.auth import load_trust
    except ImportError:
        raise DosingError(
            "dosing serve needs the service extra: pip install 'dosing[service]' "
            "(or '.[service]' in a checkout)"
        ) from None
    from dosing.clinic.store import default_path

    config = ServiceConfig(
        db=db or default_path(),
        trust=load_trust(trust),
        base_url=(base_url or f"http://{host}:{port}").rstrip("/"),
        max_body=max_body,
    )
    with open_store(config.db):  # a store that cannot be used fails before listening
        pass
    run(config, host, port, access_log)
