"""``POST /score-file``: the upload in, the scored file out, through ``scoring.bulk.upload``.

The core spools, scores and translates errors; this view reads the request and sends the file.
The uploaded name only picks the format from a fixed list of extensions; files on disk are
always named by us.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from ingest.base.formats import FORMATS, OUTPUT_FORMATS, output_spec
from scoring.api.context import services
from scoring.api.limits import spool_dir
from scoring.api.openapi import INTEGER, STRING, obj, operation, query_param
from scoring.api.uploads import receive_upload
from scoring.api.versioning import VERSION_QUERY, requested_version
from scoring.bulk.batch import default_format_words
from scoring.bulk.upload import ScoredUpload, score_upload
from scoring.monitoring.bulk import BulkDrift

bp = Blueprint("score", __name__)

BINARY = {"type": "string", "format": "binary"}
# Two rows of the bundled sample (data/sample/diabetes.csv), the second with a gap.
SAMPLE_CSV = (
    "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n"
    "0.038,0.051,0.062,0.022,-0.044,-0.035,-0.043,-0.003,0.02,-0.018\n"
    "-0.002,-0.045,-0.051,-0.026,-0.008,-0.019,0.074,-0.039,,-0.092\n"
)
SCORE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": obj(file=BINARY)},
        **{ct: {"schema": BINARY} for spec in FORMATS for ct in spec.content_types},
        "text/csv": {"schema": BINARY, "example": SAMPLE_CSV},
    },
}
# A JSON array of row objects is JSON to any client; every other output is a file's bytes.
SCORED_ROWS = {"type": "array", "items": {"type": "object"}}
SCORED = {
    "description": "The scored file: input columns, prediction, model_version (and error)",
    "content": {
        output_spec(name).content_types[0]: {
            "schema": SCORED_ROWS
            if output_spec(name).content_types[0] == "application/json"
            else BINARY
        }
        for name in OUTPUT_FORMATS
    },
    "headers": {
        "X-Model-Version": {"required": True, "schema": STRING},
        "X-Rows-Scored": {"required": True, "schema": INTEGER},
        "X-Rows-Failed": {"required": True, "schema": INTEGER},
        # with [monitoring] drift_on_scoring: the verdict, and the record GET .../drift/<id> shows
        "X-Drift": {"schema": {"type": "string", "enum": ["drifted", "stable", "not_compared"]}},
        "X-Drift-Record": {"schema": INTEGER},
    },
}


@bp.post("/score-file")
@bp.post("/versions/<id:version>/score-file")
@operation(
    "Score a whole file (multipart field 'file', or a raw body with its content type); the"
    " champion scores it, or the version the path or ?version= names",
    query=[
        VERSION_QUERY,
        query_param(
            "format",
            {"type": "string", "enum": list(OUTPUT_FORMATS)},
            f"output format; default: {default_format_words()}",
        ),
        query_param(
            "sheet",
            STRING,
            "Excel input only: the sheet to score, by name or 0-based index; default [ingest]"
            " excel_sheet (the first sheet). A sheet the workbook lacks is a 422 listing its"
            " sheets",
        ),
    ],
    body=SCORE_BODY,
    responses={200: SCORED},
    errors=(400, 404, 415, 422, 503, 507),  # 404: a version the model lacks
)
def score_file(version: int | None = None) -> Response:
    """Score an uploaded file with one model version and send the scored file back."""
    s = services()
    m = s.model()
    scored = score_upload(
        lambda work: receive_upload(request, work),
        settings=m.settings,
        spool=spool_dir(m.settings),
        model=s.dataplane.model(m.versions, requested_version(version)),  # one for the file
        dataplane=s.dataplane,
        fmt=request.args.get("format"),
        sheet=request.args.get("sheet"),
        drift=BulkDrift(m),
        registry=m.registry,
    )
    return _send(scored)


def _send(scored: ScoredUpload) -> Response:
    """Send the finished file as an attachment, with its version and row counts in headers."""
    response = send_file(
        scored.body,
        mimetype=scored.content_type,
        as_attachment=True,
        download_name=scored.download_name,
        max_age=0,
        etag=False,
    )
    response.content_length = scored.size
    response.headers["X-Model-Version"] = scored.summary.model_version
    response.headers["X-Rows-Scored"] = str(scored.summary.rows_scored)
    response.headers["X-Rows-Failed"] = str(scored.summary.rows_failed)
    if scored.drift is not None:
        response.headers["X-Drift"] = scored.drift.verdict
        response.headers["X-Drift-Record"] = str(scored.drift.id)
    return response
