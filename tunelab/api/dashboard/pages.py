"""Serving the dashboard: one HTML page at /dashboard/..., its scripts at /dashboard/static/.

The dashboard is a single-page app: every /dashboard/... path answers the same
index.html and the script picks the page from the URL, so a page's address can be
bookmarked or linked (an eval run's `report_url` is /dashboard/evals/{eval_id}?run_id=...).
Nothing is fetched from anywhere else: the libraries it uses are copied from npm
into static/vendor/ by `make install` (pinned by package-lock.json).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"
# The files index.html imports from vendor/; without them the page cannot run.
VENDORED = ("preact.mjs", "hooks.mjs", "htm.mjs", "echarts.esm.min.mjs")

router = APIRouter(include_in_schema=False)

MISSING_ASSETS = """<!doctype html><meta charset="utf-8"><title>tunelab dashboard</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The dashboard's libraries are not installed</h1>
<p>Missing from {vendor}: {missing}.</p>
<p>Run <code>make install</code> in the tunelab checkout (it copies them from npm with
<code>npm ci</code>, pinned by <code>tunelab/api/dashboard/package-lock.json</code>),
then reload this page. The API under <code>/v1</code> works without them.</p>
"""


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/dashboard/"


def _index(request: Request) -> HTMLResponse:
    missing = [name for name in VENDORED if not (VENDOR / name).is_file()]
    if missing:
        return HTMLResponse(
            MISSING_ASSETS.format(vendor=VENDOR, missing=", ".join(missing)), status_code=503
        )
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    # <base href> makes every relative URL in the page (scripts, links, API calls)
    # work under whatever prefix the server is mounted at.
    return HTMLResponse(
        html.replace("{{base}}", _base(request)), headers={"cache-control": "no-cache"}
    )


@router.get("/")
def root(request: Request) -> RedirectResponse:
    return RedirectResponse(_base(request))


@router.get("/dashboard")
def dashboard_root(request: Request) -> RedirectResponse:
    return RedirectResponse(_base(request))


@router.get("/dashboard/{path:path}")
def dashboard(request: Request, path: str) -> HTMLResponse:
    return _index(request)


def install(app: FastAPI) -> None:
    """Serve the dashboard from `app`: static files first, then the page routes."""
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(router)
