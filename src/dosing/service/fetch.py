"""Fetching what the CDS client did not prefetch, from its FHIR server, with the access token
it passed (`fhirServer`, `fhirAuthorization`), all queries at once.

Bounded: each answer is read up to a size limit, within a time limit; redirects are not
followed. A failure names the prefetch key and the HTTP status, never the data.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from dosing.core.strict_json import JsonError, read_json

MAX_ANSWER_BYTES = 5_000_000
"""The largest FHIR server answer read for one query (a search for one latest result)."""


class FetchFailed(Exception):
    """A query the FHIR server did not answer usably; the message says which and how."""


async def _one(
    client: httpx.AsyncClient, server: str, token: str | None, key: str, query: str
) -> tuple[str, Any]:
    url = f"{server.rstrip('/')}/{query}"
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with client.stream("GET", url, headers=headers) as answer:
            if answer.status_code != 200:
                raise FetchFailed(
                    f"{key}: the FHIR server answered HTTP {answer.status_code} to {query}"
                )
            data = bytearray()
            async for chunk in answer.aiter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise FetchFailed(
                        f"{key}: the FHIR server's answer is over {MAX_ANSWER_BYTES} bytes"
                    )
    except httpx.HTTPError as error:
        raise FetchFailed(
            f"{key}: the FHIR server could not be read ({type(error).__name__})"
        ) from None
    try:
        return key, read_json(bytes(data), f"the FHIR server's answer for {key}")
    except JsonError as error:
        raise FetchFailed(str(error)) from None


async def fetch(
    client: httpx.AsyncClient, server: str, token: str | None, queries: dict[str, str]
) -> dict[str, Any]:
    """Each query's JSON answer, by key; FetchFailed at the first that fails."""
    answers = await asyncio.gather(
        *(_one(client, server, token, key, query) for key, query in queries.items())
    )
    return dict(answers)
