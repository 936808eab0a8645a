"""Building a protocol's inputs: the labs it reads (units, freshness, steady state), the
facts it knows, and which assessments carry forward.
"""

from __future__ import annotations

from collections.abc import Mapping

from dosing.core.errors import DosingError, UnitError
from dosing.core.units import conversion
from dosing.core.vocabulary import VOCABULARY, Quantitative, observable
from dosing.protocol.build_context import BuildContext
from dosing.protocol.entries import (
    LabEntry,
)
from dosing.protocol.model import (
    CarriedForward,
    LabInput,
    Source,
)


class InputsBuilder(BuildContext):
    """The `inputs:` section: each lab's unit, how old it may be, and what carries forward."""

    def labs(self) -> dict[str, LabInput]:
        labs = {}
        for key, lab in self.entry.inputs.labs.items():
            path = f"inputs.labs.{key}"
            name = self.known(key, "lab", path)
            measure = VOCABULARY[name].measure
            assert isinstance(measure, Quantitative)
            unit = lab.unit or measure.canonical
            try:
                to_unit = conversion(measure.canonical, unit, name, measure.molar_mass)
            except UnitError as error:
                raise self.fail(f"{path}.unit", str(error)) from None
            age = self.quantity(lab.max_age, "days", f"{path}.max_age")
            if age.denominator != 1 or age < 0:
                raise self.fail(f"{path}.max_age", "a maximum age is a whole number of days")
            uln = None
            if lab.uln is not None:
                uln = self._lab_quantity(lab.uln, unit, name, measure.molar_mass, f"{path}.uln")
            labs[name] = LabInput(
                name=name,
                label=VOCABULARY[name].label,
                unit=unit,
                low=to_unit.apply(measure.low),
                high=to_unit.apply(measure.high),
                max_age_days=int(age),
                molar_mass=measure.molar_mass,
                uln_default=uln,
                after_dose_change=lab.after_dose_change,
                steady_after_days=self.steady_after(lab, path),
            )
        return labs

    def known(self, name: str, role: str, path: str) -> str:
        try:
            found = observable(name)
        except DosingError as error:
            raise self.fail(path, str(error)) from None
        if found.role != role:
            raise self.fail(path, f"{name} is a {found.role}, not a {role}")
        return found.name

    def steady_after(self, lab: LabEntry, path: str) -> int:
        if lab.steady_after is None:
            return 0
        if not lab.after_dose_change:
            raise self.fail(f"{path}.steady_after", "steady_after needs after_dose_change: true")
        days = self.quantity(lab.steady_after, "days", f"{path}.steady_after")
        if days.denominator != 1 or days < 0:
            raise self.fail(f"{path}.steady_after", "a wait is a whole number of days")
        return int(days)

    def carry_forward(
        self,
        assessments: tuple[str, ...],
        if_not_recorded: Mapping[str, str],
        sources: Mapping[str, Source],
    ) -> dict[str, CarriedForward]:
        """Assessments that rarely change, used at later visits within a maximum age."""
        carried = {}
        for name, entry in self.entry.inputs.carry_forward.items():
            path = f"inputs.carry_forward.{name}"
            if name not in assessments:
                raise self.fail(path, f"{name} is not among this protocol's assessments")
            if name in if_not_recorded:
                raise self.fail(
                    path,
                    f"{name} is taken as a stated value when not recorded (if_not_recorded); "
                    "it cannot also be carried forward",
                )
            age = self.quantity(entry.max_age, "days", f"{path}.max_age")
            if age <= 0:
                raise self.fail(f"{path}.max_age", "a maximum age is a positive duration")
            source = self.cite(entry.source, sources, f"{path}.source")
            carried[name] = CarriedForward(name, age, source)
        return carried
