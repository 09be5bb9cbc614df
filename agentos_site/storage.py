"""The static files storage: servestatic's compressed manifest storage, lenient until collectstatic ran.

servestatic's `CompressedManifestStaticFilesStorage` (Django's ManifestStaticFilesStorage, plus
gzip copies written at collectstatic) gives every file a content-hashed name, so the server can
let browsers cache it for a year and a deploy still takes effect at once (cache busting). Django's
version fails every page that uses `{% static %}` while STATIC_ROOT has no manifest ("Missing
staticfiles manifest entry"): with DEBUG off and collectstatic not run yet (a first try of the
site, the test suite's server processes), the admin and the chat page would answer 500. Here, as
long as there is no manifest at all, names stay as written, like Django's plain storage (and
`runserver --insecure` serves them from the apps' folders); a warning says so once. A name missing
from a manifest that exists is still an error: that is a real mistake.
"""

from __future__ import annotations

import logging

from django.conf import settings
from servestatic.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    _warned = False

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            if not settings.DEBUG and not StaticFilesStorage._warned:
                StaticFilesStorage._warned = True
                logger.warning(
                    "%s has no staticfiles.json: run `manage.py collectstatic`; until then static URLs are unversioned "
                    "and only `runserver --insecure` serves them.",
                    self.location,
                )
            return name
        return super().stored_name(name)
