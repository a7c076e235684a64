"""Reports on a project's fine-tuning files, read with a base model's own tokenizer.

The dashboard asks for one before a job is created: the validator's verdict, token
statistics (epochs, billed tokens, estimated training time) and the loss mask of
the first examples, all computed by tunelab.data exactly as the job will compute
them. Files never change once uploaded, so a report is kept for the next request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from tunelab.data.report import FileReport, file_report
from tunelab.errors import InvalidRequest
from tunelab.files import FileStore
from tunelab.models.catalog import Catalog
from tunelab.models.loading import chat_tokenizer_loader

# Tokenizer objects are untyped (transformers); named so the seam says what it holds.
Tokenizer = object

KEPT_REPORTS = 64


class FileReports:
    def __init__(self, files: FileStore, catalog: Catalog, cache_dir: Path) -> None:
        self.files = files
        self.catalog = catalog
        self.cache_dir = cache_dir
        self._tokenizers: dict[str, tuple[Tokenizer, int]] = {}
        self._reports: OrderedDict[tuple[str, str, int], FileReport] = OrderedDict()
        # One report at a time: a fast tokenizer must not be called from two
        # threads at once, and a report is a click, not a throughput path.
        self._lock = threading.Lock()

    def report(self, project: str, file_id: str, model: str, *, preview: int = 3) -> FileReport:
        """The report of `file_id` as fine-tuning `model` (a base or a fine-tune of
        this project) would see it."""
        row = self.files.get(project, file_id)
        if row.purpose != "fine-tune":
            raise InvalidRequest(
                f"File {file_id} has purpose '{row.purpose}'; reports are for files uploaded "
                "with purpose 'fine-tune'.",
                param="file_id",
                code="invalid_file_purpose",
            )
        base = self.catalog.resolve(project, model).base
        if base.kind != "chat":
            raise InvalidRequest(
                f"The model '{model}' is an {base.kind} model; pick a chat model to fine-tune.",
                param="model",
                code="model_not_supported",
            )
        key = (file_id, base.id, preview)
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
                return self._reports[key]
            tokenizer, context = self._tokenizer(base.id)
            report = file_report(self.files.path(row), tokenizer, context, preview=preview)
            self._reports[key] = report
            if len(self._reports) > KEPT_REPORTS:
                self._reports.popitem(last=False)
            return report

    def _tokenizer(self, base_id: str) -> tuple[Tokenizer, int]:
        if base_id not in self._tokenizers:
            load = chat_tokenizer_loader(self.catalog.registry, self.cache_dir, base_id)
            self._tokenizers[base_id] = load(base_id)
        return self._tokenizers[base_id]
