"""The state machine as a diagram: Mermaid (for Markdown) or Graphviz DOT.

States show their doses; edges show the rule, its priority and its guard. Pure text out;
rendering DOT to an image is the CLI's business (it needs Graphviz's `dot`).
"""

from __future__ import annotations

from dosing.core.units import format_number
from dosing.protocol.model import DoseSpec, Protocol, State


def _dose(protocol: Protocol, spec: DoseSpec) -> str:
    if spec.amount is not None:
        return f"{spec.drug} {format_number(spec.amount)} mg {spec.frequency}"
    if spec.per_m2 is not None:
        return f"{spec.drug} {format_number(spec.per_m2)} mg/m² {spec.frequency}"
    slot = protocol.memory[spec.level_from or ""]
    if slot.ladder is not None:
        levels = protocol.ladders[slot.ladder].levels
        span = f"{format_number(levels[0])}-{format_number(levels[-1])} mg"
        return f"{spec.drug} {span} {spec.frequency} (by {slot.name})"
    return f"{spec.drug} {slot.name} mg {spec.frequency}"


def _doses(protocol: Protocol, state: State) -> str:
    doses = ", ".join(_dose(protocol, spec) for spec in state.doses)
    return doses or ("stop" if state.final else "no dose")


def mermaid(protocol: Protocol) -> str:
    """A Mermaid stateDiagram-v2."""
    lines = ["stateDiagram-v2", f"    %% {protocol.id} {protocol.version}: {protocol.title}"]
    lines.append(f"    [*] --> {protocol.initial}")
    for name, state in protocol.states.items():
        lines.append(f"    {name} : {name}<br/>{_mermaid_text(_doses(protocol, state))}")
    for name, state in protocol.states.items():
        for transition in sorted(state.transitions, key=lambda t: -t.priority):
            label = f"{transition.rule} [{transition.priority}] {transition.when_text}"
            lines.append(f"    {name} --> {transition.target} : {_mermaid_text(label)}")
        if state.final:
            lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """':' would end a Mermaid label; it is written as an entity."""
    return text.replace(":", "#58;")


def dot(protocol: Protocol) -> str:
    """A Graphviz digraph."""
    lines = [
        f'digraph "{_dot(protocol.id)}" {{',
        f'  label="{_dot(protocol.title)} ({_dot(protocol.version)})"; labelloc=t; fontsize=12;',
        "  rankdir=LR; node [shape=box, style=rounded, fontsize=10]; edge [fontsize=8];",
        "  start [shape=point, width=0.15];",
        f'  start -> "{protocol.initial}";',
    ]
    for name, state in protocol.states.items():
        extra = ", peripheries=2" if state.final else ""
        lines.append(f'  "{name}" [label="{_dot(name)}\\n{_dot(_doses(protocol, state))}"{extra}];')
    for name, state in protocol.states.items():
        for transition in sorted(state.transitions, key=lambda t: -t.priority):
            label = f"{transition.rule} [{transition.priority}]\\n{_dot(transition.when_text)}"
            lines.append(f'  "{name}" -> "{transition.target}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
