"""JSON Schemas (draft 2020-12) of every message cxstream reads or writes, and the AsyncAPI 3.0 document.

The models in :mod:`streams.schemas.records` *describe* records; they are not used to build them
(``streams.sinks.records``, ``streams.pipeline.envelope`` and ``streams.model.Event.to_dict`` do
that, for speed). Tests validate real records against the generated files, so a builder that
drifts from its schema fails.

Regenerate after changing a record (``tests/test_schemas.py`` fails until you do)::

    python -m streams.schemas            # writes schemas/*.json
    python -m streams.schemas --check    # exit 1 if a checked-in file differs
"""

from streams.schemas.generate import SCHEMAS, asyncapi, json_schema, main, render
from streams.schemas.records import ROOT

__all__ = ["ROOT", "SCHEMAS", "asyncapi", "json_schema", "main", "render"]
