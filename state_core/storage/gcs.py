"""The Google Cloud Storage client, pointed at an emulator when `STORAGE_EMULATOR_HOST` is set."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from state_core.errors import DataError
from state_core.extras import require

if TYPE_CHECKING:
    from google.cloud import storage


def gcs_client(project: str | None = None) -> storage.Client:
    """A storage client. With `STORAGE_EMULATOR_HOST` set (tests, local pipelines) it uses anonymous
    credentials, because the emulator accepts no others; otherwise application-default credentials."""
    storage = require("google.cloud.storage", "gcs", "gs:// access")  # noqa: F811 - the optional module
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials()
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return storage.Client(project=project)
    except DefaultCredentialsError as err:
        raise DataError(
            "gs:// access needs Google credentials: run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or set STORAGE_EMULATOR_HOST for a local emulator"
        ) from err
