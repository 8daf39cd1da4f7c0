"""``POST /score-file``: spool the upload to disk, score it to a temporary file, send that.

The output is complete before the first byte goes out, so a failure half-way is a clean JSON
error rather than a truncated 200. The uploaded name only picks the format from a fixed list of
extensions; files on disk are always named by us.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from flask import Blueprint, Response, request, send_file

from ingest.base.errors import (
    FileTooLargeError,
    FormatMismatchError,
    IngestError,
    UnsupportedFormatError,
)
from ingest.base.formats import FORMATS, OUTPUT_FORMATS, output_spec
from scoring.api.context import services
from scoring.api.limits import spool_dir
from scoring.api.openapi import INTEGER, STRING, obj, operation, query_param
from scoring.api.uploads import receive_upload
from scoring.api.versioning import VERSION_QUERY, requested_version
from scoring.bulk.batch import default_format_words, score_path
from scoring.bulk.engines import engine_for
from scoring.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from scoring.inference.core import model_for
from scoring.ingest_options import read_options
from scoring.value_kinds import kind_of

bp = Blueprint("score", __name__)

UPLOAD_PREFIX = ".upload-"

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
    model = model_for(s.model().versions, requested_version(version))  # one for the whole file
    fmt = request.args.get("format")
    sheet = request.args.get("sheet")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise ValidationFailed(
            f"format must be one of {', '.join(OUTPUT_FORMATS)}; got {kind_of(fmt)}",
            [{"field": "format", "problem": "unknown output format"}],
        )
    # On the data folder's disk, whose free space the upload was checked against (/tmp may be
    # memory). Removed below whatever happens; only a killed process leaves a .upload-* folder.
    work = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=spool_dir(s.settings)))
    try:
        src = receive_upload(request, work)
        out = work / "scored"
        read = read_options(s.settings)
        if sheet is not None:
            read = replace(read, excel_sheet=sheet)
        try:
            summary = score_path(
                src,
                out,
                model,
                read=read,
                fmt=fmt,
                max_rows=s.settings.server.max_rows_per_request,
                engine=engine_for(s.settings),
            )
        except (UnsupportedFormatError, FormatMismatchError) as exc:
            raise UnsupportedMediaType(exc.message, [exc.to_dict()]) from None
        except FileTooLargeError as exc:  # a compressed upload unpacking past max_file_mb
            raise PayloadTooLarge(exc.message, [exc.to_dict()]) from None
        except IngestError as exc:
            raise ValidationFailed(exc.message, [exc.to_dict()]) from None
        s.monitoring.rows_scored.labels("score_file", s.model().name).inc(summary.rows)
        # Open the finished file, then remove the folder: the open handle keeps the bytes
        # until they are sent, and nothing is left on disk even if the client goes away.
        # (send_file's response skips call_on_close callbacks, so they cannot clean up.)
        body = open(out, "rb")  # noqa: SIM115 - closed by the WSGI server after sending
    finally:
        shutil.rmtree(work, ignore_errors=True)
    answer = output_spec(summary.format)
    response = send_file(
        body,
        mimetype=answer.content_types[0],
        as_attachment=True,
        download_name=f"scored{answer.suffixes[0]}",
        max_age=0,
        etag=False,
    )
    response.content_length = os.fstat(body.fileno()).st_size
    response.headers["X-Model-Version"] = summary.model_version
    response.headers["X-Rows-Scored"] = str(summary.rows_scored)
    response.headers["X-Rows-Failed"] = str(summary.rows_failed)
    return response
