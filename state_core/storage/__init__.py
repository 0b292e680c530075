"""Local paths and `gs://` URIs behind one small API (listing, transfer, a download cache)."""

from state_core.storage.cache import default_cache_dir, localize
from state_core.storage.files import download, download_tree, exists, list_files, upload, upload_tree
from state_core.storage.gcs import gcs_client
from state_core.storage.uris import expand_braces, is_gcs, split_gcs_uri

__all__ = [
    "default_cache_dir",
    "download",
    "download_tree",
    "exists",
    "expand_braces",
    "gcs_client",
    "is_gcs",
    "list_files",
    "localize",
    "split_gcs_uri",
    "upload",
    "upload_tree",
]
