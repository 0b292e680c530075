"""Pipeline-only helpers: publish records, cron normalisation, data fingerprints."""

from __future__ import annotations

import pytest

from state_core.errors import ArtifactError, ConfigError
from state_core.pipeline_ops.publish_record import (
    PublishRecord,
    serving_record,
    serving_version,
    write_record,
)
from state_core.pipeline_ops.schedule import to_kfp_cron


def test_without_a_pinned_version_the_highest_numeric_version_serves(tmp_path):
    for version in ("1", "2", "10", "notes"):
        (tmp_path / "m" / version).mkdir(parents=True)
    write_record(str(tmp_path), PublishRecord("m", 10, {"r": 0.5}, run_uri="runs/x"))
    assert serving_version(str(tmp_path), "m") == 10
    record = serving_record(str(tmp_path), "m")
    assert record is not None and record.metrics == {"r": 0.5} and record.run_uri == "runs/x"


def test_the_version_pinned_in_config_pbtxt_serves_after_a_rollback(tmp_path):
    for version in ("1", "2"):
        (tmp_path / "m" / version).mkdir(parents=True)
        write_record(str(tmp_path), PublishRecord("m", int(version), {"r": float(version)}))
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\nversion_policy: { specific: { versions: [ 1 ] } }\n')
    assert serving_record(str(tmp_path), "m").metrics == {"r": 1.0}


def test_record_needs_its_version_folder(tmp_path):
    with pytest.raises(ArtifactError, match="publish the model before its record"):
        write_record(str(tmp_path), PublishRecord("m", 1, {}))


def test_no_published_model_means_no_record(tmp_path):
    assert serving_record(str(tmp_path), "m") is None


def test_corrupt_record_names_the_file(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "publish_record.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="publish_record.json"):
        serving_record(str(tmp_path), "m")


@pytest.mark.parametrize(
    "given, expected",
    [
        ("0 2 * * *", "0 0 2 * * *"),
        ("30 0 2 * * 1", "30 0 2 * * 1"),
        ("@daily", "@daily"),
        ("  */15  * * * * ", "0 */15 * * * *"),
    ],
)
def test_cron_becomes_six_fields(given, expected):
    assert to_kfp_cron(given) == expected


@pytest.mark.parametrize("bad", ["", "0 2 * *", "0 2 * * * * *", "0 2 * * ; rm"])
def test_bad_cron_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--cron"):
        to_kfp_cron(bad)


def _experiment(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.h5ad").write_bytes(b"cells v1")
    toml = tmp_path / "exp.toml"
    toml.write_text('[datasets]\nds = "ds"\n\n[training]\nds = "train"\n')
    return toml


def test_retraining_skips_unchanged_data_and_runs_on_changed_data(tmp_path):
    from state_core.pipeline_ops.fingerprint import (
        data_changed_since_serving,
        experiment_fingerprint,
    )

    toml = _experiment(tmp_path)
    repository = tmp_path / "repo"
    assert data_changed_since_serving(str(toml), str(repository), "m")  # nothing serving yet
    (repository / "m" / "1").mkdir(parents=True)
    write_record(
        str(repository),
        PublishRecord("m", 1, {"r": 1.0}, data_fingerprint=experiment_fingerprint(toml)),
    )
    assert not data_changed_since_serving(str(toml), str(repository), "m")
    (tmp_path / "ds" / "b.h5ad").write_bytes(b"new cells")
    assert data_changed_since_serving(str(toml), str(repository), "m")


def test_fingerprint_sees_a_same_size_rewrite_with_the_old_mtime(tmp_path):
    import os

    from state_core.pipeline_ops.fingerprint import experiment_fingerprint

    toml = _experiment(tmp_path)
    data = tmp_path / "ds" / "a.h5ad"
    before = experiment_fingerprint(toml)
    stat = data.stat()
    data.write_bytes(b"cells v2")  # same size
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert experiment_fingerprint(toml) != before


def test_a_step_refuses_data_that_changed_after_the_run_started(tmp_path):
    from state_core.errors import DataError
    from state_core.pipeline_ops.fingerprint import experiment_fingerprint, require_fingerprint

    toml = _experiment(tmp_path)
    at_start = experiment_fingerprint(toml)
    require_fingerprint(toml, at_start)
    (tmp_path / "ds" / "b.h5ad").write_bytes(b"late upload")
    with pytest.raises(DataError, match="changed while this run was going"):
        require_fingerprint(toml, at_start)
