"""``GET /docs``: Swagger UI over ``/openapi.json``, its files served from the
``swagger-ui-bundle`` package, so the page works behind a firewall with no CDN in reach.
"""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory, url_for

from scoring.api.openapi import operation

bp = Blueprint("docs", __name__)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dropscore API</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{spec}",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true
}});
</script>
</body>
</html>
"""


@bp.get("/docs")
@operation(
    "Interactive API docs (Swagger UI)",
    responses={200: {"description": "HTML page", "content": {"text/html": {"schema": {}}}}},
)
def docs() -> Response:
    """Serve the page; it loads only files this server sends."""

    def asset(name: str) -> str:
        return url_for("docs.asset", filename=name)

    html = PAGE.format(
        css=asset("swagger-ui.css"),
        bundle=asset("swagger-ui-bundle.js"),
        spec=url_for("openapi.openapi_json"),
    )
    return Response(html, mimetype="text/html")


@bp.get("/docs/assets/<path:filename>")
def asset(filename: str) -> Response:
    """Send one Swagger UI file from the installed package (safe_join refuses ``..``)."""
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, filename, max_age=3600)
