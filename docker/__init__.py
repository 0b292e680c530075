"""Not a Python package: this folder holds Dockerfiles.

It exists so that `import docker` from the repository root (where `python -m pytest` puts the current folder
on sys.path) fails cleanly instead of finding this folder as a namespace package; kfp.local treats an
ImportError of `docker` as "Docker SDK not installed" but crashes on a namespace package without it.
"""

raise ImportError("docker/ in this repository holds Dockerfiles, not the Docker SDK (pip install docker)")
