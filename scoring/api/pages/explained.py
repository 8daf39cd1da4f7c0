"""One row explained on the dashboard: the form's values in, the bar chart and its sum out.

The row goes through the same steps as ``POST /explain`` (the request checks of
``predict_rows``, then the dataplane, which tells the observers), so the chart shows exactly
what the API would answer for that row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scoring.api.context import Services
from scoring.api.pages import svg
from scoring.errors import ValidationFailed
from scoring.inference.payloads import predict_rows

# A feature's form field is its name after this prefix, so no feature name can shadow the
# page's own parameters (?v=, ?model=).
FIELD = "f."
SEND = "explain"  # the submit button's name: present once the person asked for an explanation


def explanation(
    s: Services, version: int | None, args: Mapping[str, str], request_id: str | None
) -> dict[str, Any]:
    """Gather the form (one field per feature, as sent) and, once sent, the row's explanation.

    A row the API would refuse is shown with the API's own message, on the page, not as an
    error page: the person fixes the field and sends it again.
    """
    m = s.model()
    model = s.dataplane.model(m.versions, version)
    fields: list[dict[str, Any]] = [
        {
            "name": f.name,
            "field": FIELD + f.name,
            "kind": f.kind,
            "categories": list(f.categories),
            "value": args.get(FIELD + f.name, ""),
        }
        for f in model.schema.features
    ]
    out: dict[str, Any] = {"version": model.version, "fields": fields, "sent": SEND in args}
    if not out["sent"]:
        return out
    record = {f["name"]: (str(f["value"]).strip() or None) for f in fields}
    try:
        X, _ = predict_rows({"features": record}, model.schema, 1)
        answer = s.dataplane.explain(m.name, model, X, "explain", request_id)
    except ValidationFailed as exc:
        out["error"] = exc.message
        return out
    row = answer["explanations"][0]
    explained = answer["space"] + (f" of class {row['class']!r}" if "class" in row else "")
    out.update(
        answer=answer,
        row=row,
        chart=svg.contributions(
            list(row["contributions"]),
            list(row["contributions"].values()),
            base=row["base_value"],
            prediction=row["prediction"],
            title=f"version {model.version}: what moved the {explained}",
        ),
    )
    return out
