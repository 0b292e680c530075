from state_core.cli.main import main
from state_core.eval.synthetic_pairs import write_pair


def test_run_score_baseline_report(tiny_spec, tmp_path, capsys):
    real, pred = str(tmp_path / "real.h5ad"), str(tmp_path / "pred.h5ad")
    write_pair(tiny_spec, real, pred)
    common = ["--pert-col", tiny_spec.pert_col, "--control-pert", tiny_spec.control_pert]
    assert main(["eval", "run", "-ap", pred, "-ar", real, "-o", str(tmp_path / "m"), "--profile", "vcc", *common]) == 0
    assert (tmp_path / "m" / "report.html").is_file()
    base = str(tmp_path / "b.h5ad")
    assert main(["eval", "baseline", "-a", real, "-o", base, "-O", str(tmp_path / "b_de.csv"), *common]) == 0
    assert main(["eval", "run", "-ap", base, "-ar", real, "-dp", str(tmp_path / "b_de.csv"), "-o", str(tmp_path / "b"),
                 "--profile", "vcc", "--no-report", *common]) == 0  # fmt: skip
    out = str(tmp_path / "score.csv")
    assert (
        main(
            [
                "eval",
                "score",
                "-i",
                str(tmp_path / "m/agg_results.csv"),
                "-I",
                str(tmp_path / "b/agg_results.csv"),
                "-o",
                out,
            ]
        )
        == 0
    )
    assert "avg_score" in open(out).read()


def test_user_error_exits_2_without_traceback(tmp_path, capsys):
    assert main(["eval", "run", "-ap", str(tmp_path / "nope.h5ad"), "-ar", str(tmp_path / "x.h5ad")]) == 2
    assert "not found" in capsys.readouterr().err
