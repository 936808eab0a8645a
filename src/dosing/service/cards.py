"""CDS Hooks 2.0 from dosing's side, pure: the services it offers (with prefetch templates for
the Observations each protocol reads, by LOINC code) and the card a decision becomes.

A card's summary is the action and the dose in one line; its indicator is info for a dose
that stays, warning for a change or a referral, critical when no dose is to be given; its
detail gives the reasons with their margins; its source names the protocol, its version and
its citation; its suggestion (when there is a dose) is the MedicationRequest to create.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import quote

import attrs

from dosing.core.vocabulary import VOCABULARY
from dosing.engine.decision import Decision
from dosing.fhir.codes import LOINC, VOCABULARY_SYSTEM
from dosing.fhir.resources import NO_DOSE, medication_requests
from dosing.protocol.model import Protocol

Hook = Literal["order-select", "patient-view"]
WORKLIST = "dosing-worklist"
"""The patient-view service: it reads the patient's protocol from the store."""
PATIENT_KEY = "patient"
SUMMARY_LIMIT = 140
"""CDS Hooks: 'One-sentence, <140-character summary'."""

INDICATORS: dict[str, str] = {
    "start": "info",
    "continue": "info",
    "resume": "info",
    "increase": "warning",
    "decrease": "warning",
    "refer": "warning",
    "hold": "critical",
    "discontinue": "critical",
    "ineligible": "critical",
}


@attrs.frozen
class Service:
    """One CDS service as discovery lists it."""

    id: str
    hook: Hook
    title: str
    description: str
    protocol: str | None
    """The protocol decided by (None: the patient's protocol in the store)."""
    prefetch: dict[str, str]

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": self.prefetch,
        }


def inputs(protocol: Protocol) -> list[str]:
    """What a protocol reads that a FHIR server holds as Observations (age and sex come from
    the Patient)."""
    names = [*protocol.labs, *protocol.facts, *protocol.assessments]
    return [name for name in dict.fromkeys(names) if name not in ("age", "sex")]


def observation_query(name: str) -> str:
    """The FHIR search for a patient's latest result of `name`: its LOINC codes, or its code
    in dosing's vocabulary system where LOINC has none."""
    entry = VOCABULARY[name]
    codes = [f"{LOINC}|{code}" for code in entry.loinc] or [f"{VOCABULARY_SYSTEM}|{name}"]
    return (
        f"Observation?patient={{{{context.patientId}}}}&code={','.join(codes)}&_sort=-date&_count=1"
    )


def prefetch_templates(names: Iterable[str]) -> dict[str, str]:
    templates = {PATIENT_KEY: "Patient/{{context.patientId}}"}
    templates.update((name, observation_query(name)) for name in names)
    return templates


def services(protocols: list[Protocol]) -> list[Service]:
    """One order-select service per protocol, and the worklist (patient-view) service."""
    found = [
        Service(
            id=protocol.id,
            hook="order-select",
            title=f"dosing: {protocol.title}",
            description=(
                f"Dose advice by {protocol.id} {protocol.version} from the patient's labs and "
                "course in the dosing store, when an order is being written. dosing "
                "recommends; a person decides."
            ),
            protocol=protocol.id,
            prefetch=prefetch_templates(inputs(protocol)),
        )
        for protocol in protocols
    ]
    everything = dict.fromkeys(name for protocol in protocols for name in inputs(protocol))
    found.append(
        Service(
            id=WORKLIST,
            hook="patient-view",
            title="dosing: where the patient stands",
            description=(
                "For a patient whose course is in the dosing store: the decision their protocol "
                "gives today from the latest labs. dosing recommends; a person decides."
            ),
            protocol=None,
            prefetch=prefetch_templates(everything),
        )
    )
    return found


def fill(template: str, patient_id: str) -> str:
    """A prefetch template with the patient's id in it (URL-encoded)."""
    return template.replace("{{context.patientId}}", quote(patient_id, safe=""))


def citation(protocol: Protocol) -> str:
    """The protocol's principal source: its first trial or paper, else its first source."""
    sources = list(protocol.sources.values())
    primary = next((s for s in sources if s.kind in ("trial", "paper")), sources[0])
    return primary.ref


def summary(decision: Decision) -> str:
    """The action and the dose, one line under 140 characters."""
    action = decision.action.capitalize()
    drug_doses = ", ".join(str(dose) for dose in decision.doses)
    if decision.action == "refer":
        first = decision.reasons[0] if decision.reasons else "the protocol cannot decide"
        text = f"Refer, no dose: {first}"
    elif decision.action in NO_DOSE:
        text = f"{action}: no dose"
    else:
        text = f"{action}: {drug_doses}"
    if decision.next_check and decision.action != "refer":
        text += f"; next check {decision.next_check}"
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2] + "…"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|!])")


def _escaped(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def detail(decision: Decision, protocol: Protocol) -> str:
    """The reasons with their margins, the warnings and the rules, in (GitHub) Markdown."""
    doses = ", ".join(str(dose) for dose in decision.doses) or "no dose"
    lines = [f"**{decision.action.upper()}** {_escaped(doses)} (state `{decision.state}`)"]
    if decision.next_check:
        lines[0] += f"; next check {decision.next_check}"
    lines += ["", "Why:"]
    lines += [f"- {_escaped(reason)}" for reason in decision.reasons]
    if decision.warnings:
        lines += ["", "Warnings:"]
        lines += [f"- {_escaped(warning)}" for warning in decision.warnings]
    lines += ["", "Rules:"]
    lines += [f"- `{rule.id}`: {_escaped(rule.source)}" for rule in decision.rules]
    lines += [
        "",
        f"Protocol {_escaped(protocol.id)} {protocol.version} "
        f"(sha256 {protocol.sha256[:12]}). *dosing recommends; a person decides.*",
    ]
    return "\n".join(lines)


def card(
    decision: Decision, protocol: Protocol, card_uuid: str, suggestion_uuid: str
) -> dict[str, Any]:
    """The card for a decision; with a suggestion to create the proposal when a dose is
    advised (not for a hold, a stop or a referral)."""
    found: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": summary(decision),
        "indicator": INDICATORS[decision.action],
        "detail": detail(decision, protocol),
        "source": {
            "label": f"dosing {protocol.id} {protocol.version} · {citation(protocol)}",
        },
    }
    if decision.doses and decision.action not in NO_DOSE and decision.action != "refer":
        requests = medication_requests(decision, protocol.drug)
        doses = ", ".join(str(dose) for dose in decision.doses)
        found["suggestions"] = [
            {
                "label": f"Propose {doses}",
                "uuid": suggestion_uuid,
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": _described(request),
                        "resource": request,
                    }
                    for request in requests
                ],
            }
        ]
        found["selectionBehavior"] = "at-most-one"
    return found


def _described(request: dict[str, Any]) -> str:
    drug = request["medicationCodeableConcept"]["text"]
    doses = ", ".join(dosage["text"] for dosage in request.get("dosageInstruction", []))
    return f"Create a proposal: {drug} {doses}"


def note_card(text: str, source: str, card_uuid: str) -> dict[str, Any]:
    """A card that is not a decision: why none is given (never a dose)."""
    return {
        "uuid": card_uuid,
        "summary": text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2] + "…",
        "indicator": "warning",
        "detail": _escaped(text),
        "source": {"label": source},
    }
