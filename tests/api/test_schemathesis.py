"""The whole API fuzzed from its own OpenAPI document: schemathesis generates valid and invalid requests for every
operation (boundary values included: ids of 2^63, NaN, deep JSON, wrong types) and none may be a server error.

It runs the app in-process over ASGI on a real migrated SQLite database, with real keys and the Pitt taxonomy and
a few creatives stored, so ids that exist are found as well as ids that do not.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance

from ctax.config import Settings
from ctax.store.keys import create_key
from ctax.store.migrate import upgrade
from ctax.store.session import Database
from tests.conftest import headers, make_settings, png_bytes
from tests.support import PG_ADMIN_URL, drop_pg_database

# Bounded: a few dozen generated requests per operation (plus schemathesis' boundary-value cases) keep the run
# to about a minute on two cores while still reaching every parameter's limits.
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Both databases: PostgreSQL refuses what SQLite stores (NUL in text, lone surrogates in JSON)."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "var"
    if request.param == "sqlite":
        yield make_settings(data_dir)
        return
    import psycopg

    name = f"ctax_fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_settings(data_dir, database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    drop_pg_database(name)


@pytest.fixture(scope="module")
def fuzz_db(fuzz_settings: Settings) -> Iterator[Database]:
    fuzz_settings.ensure_dirs()
    upgrade(fuzz_settings.sqlalchemy_url)
    database = Database(fuzz_settings.sqlalchemy_url)
    yield database
    database.dispose()


def _schema() -> Any:
    """The document is read once, at collection, from an app that is never started (its settings are unused)."""
    from ctax.api.app import create_app

    unused = make_settings(Path(tempfile.gettempdir()) / "ctax-openapi-only")
    return schemathesis.openapi.from_dict(create_app(unused, start_dispatcher=False).openapi())


schema = _schema()


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings: Settings, fuzz_db: Database, shared_data: Path) -> Iterator[Any]:
    """The app the requests go to, over ASGI in-process, its lifespan started by schemathesis' client."""
    from fastapi.testclient import TestClient
    from schemathesis.python.asgi import shutdown_lifespans

    from ctax.api.app import create_app

    with fuzz_db.write() as session:
        _, admin = create_key(session, "seed admin", "admin")
    with TestClient(create_app(fuzz_settings, start_dispatcher=False)) as seed:
        h = headers(admin)
        taxonomy = (shared_data / "pitt_ads_taxonomy.txt").read_bytes()
        assert seed.post("/v1/labels/import", headers=h, files={"file": ("t.txt", taxonomy)}).status_code == 200
        assert seed.post("/v1/creatives", headers=h, json={"ocr_text": "Fresh pizza delivered hot"}).status_code == 202
        assert seed.post("/v1/creatives", headers=h, files={"image": ("a.png", png_bytes("SALE"), "image/png")},
                         data={"ocr_text": "Big sale"}).status_code == 202
    yield create_app(fuzz_settings, start_dispatcher=False)
    shutdown_lifespans()


@schemathesis.check
def errors_are_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every refusal, and any server error that remains, is JSON in the API's one error format."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and {"error", "message"} <= set(body), body
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case: Any, fuzz_app: Any, fuzz_db: Database) -> None:
    # A fresh admin key per request: DELETE /v1/api-keys/{id} is fuzzed too and may revoke earlier ones.
    with fuzz_db.write() as session:
        _, key = create_key(session, "fuzz", "admin")
    if case.operation.path in ("/readyz", "/v1/search"):
        # The readiness probe and search answer 503 by design here (no worker runs); any other 5xx is a server
        # error.
        response = case.call(app=fuzz_app, headers=headers(key))
        assert response.status_code < 500 or response.status_code == 503, response.status_code
        assert isinstance(response.json(), dict)
        return
    case.call_and_validate(app=fuzz_app, headers=headers(key),
                           checks=[not_a_server_error, content_type_conformance, errors_are_json])
