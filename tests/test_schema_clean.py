"""Both OpenAPI documents, `/api/schema/` and the agno-compatible `/os/openapi.json`, are generated
without a drf-spectacular warning or error and are valid OpenAPI 3: a warning means a name
drf-spectacular had to invent (such as `StatusC17Enum` for two choice sets behind one field name) or
a field it could only guess at, and it is printed on every schema load. CI also runs
`manage.py spectacular --validate --fail-on-warn` for the first."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/schema/", "/os/openapi.json"])
def test_the_openapi_document_is_generated_without_warnings(client, url, capsys):
    GENERATOR_STATS.reset()
    response = client.get(url, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert not GENERATOR_STATS, capsys.readouterr().err
    validate_schema(response.json())
