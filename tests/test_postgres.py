"""The same service on PostgreSQL: migrations, files, pagination, isolation."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import text

from tests.support import run_server, sdk

pytestmark = pytest.mark.api


def test_core_api_on_postgres(settings, postgres_url) -> None:
    settings.database_url = postgres_url
    settings.api_keys = "ka:alpha,kb:beta"
    with run_server(settings) as url:
        alpha, beta = sdk(url, "ka"), sdk(url, "kb")
        ids = [
            alpha.files.create(file=(f"{i}.txt", "数据".encode()), purpose="assistants").id
            for i in range(4)
        ]
        assert [f.id for f in alpha.files.list(limit=3)] == ids[::-1]
        assert alpha.files.content(ids[0]).content == "数据".encode()
        with pytest.raises(openai.NotFoundError):
            beta.files.retrieve(ids[0])
        assert beta.files.list().data == []
    from tunelab.db.base import make_engine

    with make_engine(postgres_url).connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar()
