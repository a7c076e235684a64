"""The web dashboard: a single-page app served by `tunelab serve` itself.

`pages` serves the page and its scripts (static/, no build step; libraries copied
from npm into static/vendor/ by `make install`); `api` holds the two endpoints
under /v1/dashboard that the OpenAI API has no shape for. The page talks to the
same /v1 API as any client, with the key the user signs in with.
"""

from tunelab.api.dashboard.api import router as api_router
from tunelab.api.dashboard.pages import install

__all__ = ["api_router", "install"]
