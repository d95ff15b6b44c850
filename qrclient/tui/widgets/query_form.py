"""The query form: level, model and the keys people search by; Enter runs it."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Select

from qrclient.present.browse import QueryForm as FormValues
from qrclient.vocabulary import Level, Model

_FIELDS = (
    # id, placeholder, tooltip, row
    ("patient_name", "Patient name", "PatientName: wildcards * and ?, e.g. DOE*", 0),
    ("patient_id", "Patient ID", "PatientID", 0),
    ("accession_number", "Accession", "AccessionNumber", 0),
    ("date_from", "Date from", "StudyDate from: YYYYMMDD or YYYY-MM-DD", 1),
    ("date_to", "Date to", "StudyDate to: YYYYMMDD or YYYY-MM-DD", 1),
    ("modalities", "Modality", "ModalitiesInStudy (Modality below study level), e.g. CT", 1),
    ("description", "Description", "StudyDescription (SeriesDescription at series level)", 1),
    ("extra", "KEY=VALUE …", "more keys: KEY=VALUE or KEY, separated by spaces", 1),
)


class FormInput(Input):
    """A field of the form: a paste with tabs (cells copied from a spreadsheet, a date
    range) fills this field and the ones after it, one cell each."""

    class PastedCells(Message):
        def __init__(self, field: FormInput, cells: list[str]) -> None:
            super().__init__()
            self.field = field
            self.cells = cells

    def _on_paste(self, event: events.Paste) -> None:
        lines = event.text.splitlines()
        if lines and "\t" in lines[0]:
            event.prevent_default()  # not Input's paste, which would join the cells
            event.stop()
            self.post_message(self.PastedCells(self, lines[0].split("\t")))
        # else Input's own _on_paste runs next (handlers run up the class hierarchy)


class QueryForm(Vertical):
    class Submitted(Message):
        def __init__(self, level: Level, model: Model, values: FormValues) -> None:
            super().__init__()
            self.level = level
            self.model = model
            self.values = values

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Select(
                [(level.value.capitalize(), level) for level in Level],
                value=Level.STUDY,
                allow_blank=False,
                id="level",
                compact=True,
                tooltip="query level",
            )
            yield Select(
                [("Study root", Model.STUDY), ("Patient root", Model.PATIENT)],
                value=Model.STUDY,
                allow_blank=False,
                id="model",
                compact=True,
                tooltip="query model (PATIENT level needs patient root)",
            )
            for name, placeholder, tooltip, row in _FIELDS:
                if row == 0:
                    yield FormInput(placeholder=placeholder, id=name, compact=True, tooltip=tooltip)
        with Horizontal():
            for name, placeholder, tooltip, row in _FIELDS:
                if row == 1:
                    yield FormInput(placeholder=placeholder, id=name, compact=True, tooltip=tooltip)

    def on_select_changed(self, event: Select.Changed) -> None:
        # PATIENT level exists only in the patient root model: follow the user's intent.
        if event.select.id == "level" and event.value is Level.PATIENT:
            self.query_one("#model", Select).value = Model.PATIENT

    def on_form_input_pasted_cells(self, event: FormInput.PastedCells) -> None:
        names = [name for name, *_ in _FIELDS]
        first = names.index(event.field.id or "")
        fields = [self.query_one(f"#{name}", Input) for name in names[first:]]
        for field, cell in zip(fields, event.cells, strict=False):
            if field is event.field:
                field.insert_text_at_cursor(cell.strip())
            else:
                field.value = cell.strip()
        fields[min(len(event.cells), len(fields)) - 1].focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        level = self.query_one("#level", Select).value
        model = self.query_one("#model", Select).value
        assert isinstance(level, Level)
        assert isinstance(model, Model)
        self.post_message(self.Submitted(level, model, self.values()))

    def values(self) -> FormValues:
        texts = {name: self.query_one(f"#{name}", Input).value for name, *_ in _FIELDS}
        return FormValues(**texts)

    def fill(self, level: Level, model: Model, values: FormValues) -> None:
        """The form as it was for a past query."""
        self.query_one("#level", Select).value = level
        self.query_one("#model", Select).value = model
        for name, *_ in _FIELDS:
            self.query_one(f"#{name}", Input).value = getattr(values, name)

    def focus_first(self) -> None:
        self.query_one("#patient_name", Input).focus()
