"""GET /health: liveness and readiness (the database answers)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

import tunelab
from tunelab.api.deps import RuntimeDep
from tunelab.api.jsonbody import ApiRoute

router = APIRouter(route_class=ApiRoute)


@router.get("/health")
def health(rt: RuntimeDep) -> JSONResponse:
    try:
        with rt.db() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # readiness: report, don't raise
        return JSONResponse({"status": "unavailable", "database": str(e)}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "version": tunelab.__version__})
