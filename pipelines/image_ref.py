"""Container image references pinned by digest at compile time.

A tag can be moved to other bits after the YAML is uploaded; a digest cannot. So compile writes
`name:tag@sha256:...` (the digest decides which image runs; the tag stays for the reader). The digest comes
from `--image-digest`, or is looked up in the image's registry (Docker Registry HTTP API v2, anonymous
token when the registry asks for one). A registry that needs credentials or cannot be reached leaves the tag
alone, with a warning that says how to pin it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from state_core.errors import ConfigError, Problem

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
DOCKER_HUB = "registry-1.docker.io"
# manifest kinds a registry may hold for one tag; the index (multi-arch) digest is the one to pin
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


@dataclass(frozen=True)
class ImageRef:
    name: str  # registry/repository, as written
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, _, digest = ref.partition("@")
        last = name.rsplit("/", 1)[-1]
        tag = None
        if ":" in last:  # a colon before the last slash is a registry port, not a tag
            name, tag = name.rsplit(":", 1)
        return cls(name=name, tag=tag, digest=digest or None)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def registry_and_repository(self) -> tuple[str, str]:
        first, _, rest = self.name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first, rest
        return DOCKER_HUB, self.name if rest else f"library/{self.name}"


def pin(ref: str, digest: str) -> str:
    """`ref` with `digest` attached; a malformed digest or a ref pinned to another digest is a ConfigError."""
    image = ImageRef.parse(ref)
    if not DIGEST.fullmatch(digest):
        raise ConfigError(
            "--image-digest",
            Problem(digest, "is not an image digest", "give sha256: and 64 hex digits, as `podman inspect` prints"),
        )
    if image.digest and image.digest != digest:
        raise ConfigError(
            "--image",
            Problem(
                ref,
                f"is pinned to {image.digest}, not {digest}",
                "give the digest once, in --image or in --image-digest",
            ),
        )
    return str(ImageRef(image.name, image.tag, digest))


def registry_digest(ref: str, timeout_s: float = 10.0) -> str:
    """The digest the registry serves for `ref`'s tag; RuntimeError with the reason when it cannot say."""
    import requests

    image = ImageRef.parse(ref)
    registry, repository = image.registry_and_repository()
    # like docker, a registry on this machine is spoken to over plain HTTP
    scheme = "http" if registry.split(":")[0] in ("localhost", "127.0.0.1") else "https"
    url = f"{scheme}://{registry}/v2/{repository}/manifests/{image.tag or 'latest'}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    try:
        answer = requests.head(url, headers=headers, timeout=timeout_s)
        if answer.status_code == 401:
            headers["Authorization"] = "Bearer " + _anonymous_token(answer.headers, timeout_s)
            answer = requests.head(url, headers=headers, timeout=timeout_s)
    except requests.RequestException as err:
        raise RuntimeError(f"{registry} cannot be reached ({type(err).__name__})") from err
    digest = answer.headers.get("Docker-Content-Digest", "")
    if answer.status_code != 200 or not DIGEST.fullmatch(digest):
        raise RuntimeError(f"{url} answered {answer.status_code} without a digest")
    return digest


def _anonymous_token(headers, timeout_s: float) -> str:  # noqa: ANN001 - requests' header mapping
    import requests

    challenge = headers.get("WWW-Authenticate", "")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in fields:
        raise RuntimeError("the registry wants credentials")
    answer = requests.get(
        fields["realm"], timeout=timeout_s, params={k: v for k, v in fields.items() if k in ("service", "scope")}
    )
    body = answer.json() if answer.ok else {}
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RuntimeError("the registry gave no anonymous token (a private image needs --image-digest)")
    return token


def pinned_image(ref: str, digest: str | None = None, resolve: bool = True) -> tuple[str, str | None]:
    """(image reference to compile, warning or None): pinned by `digest`, else by the registry's answer."""
    if digest:
        return pin(ref, digest), None
    if ImageRef.parse(ref).digest:
        return ref, None
    if not resolve:
        return ref, f"{ref} is not pinned by digest (--no-resolve); a moved tag changes what runs"
    try:
        return pin(ref, registry_digest(ref)), None
    except RuntimeError as err:
        return ref, (
            f"{ref} is not pinned by digest: {err}. The YAML names the tag; "
            "pass --image-digest sha256:... (podman/docker inspect) to pin it"
        )
