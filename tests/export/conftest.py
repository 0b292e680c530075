import logging

import pytest

# The ONNX optimizer logs every rewrite at INFO; keep test output readable.
for name in ("onnxscript", "onnx_ir"):
    logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def tmp_module_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")
