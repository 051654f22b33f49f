"""The command line: bad input gets a clear one-line error and a non-zero exit, and writes nothing."""

import pytest

from recrepro.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fetch", "no-such-dataset"], "no dataset card for 'no-such-dataset'"),
        (["fetch", "movie", "--text"], "movie has no text source to fetch"),
        (["train", "--method", "nope", "--dataset", "ml-100k"], "unknown method 'nope'"),
        (["train", "--method", "lightgcn", "--dataset", "ml-100k", "--set", "layers=3"], "must look like model.<name>"),
        (
            ["train", "--method", "lightgcn", "--dataset", "ml-100k", "--set", "model.layres=3"],
            "unknown lightgcn model key",
        ),
        (["train", "--method", "lightgcn", "--dataset", "ml-100k", "--preset", "paper"], "has no preset 'paper'"),
        (["prepare", "amazon", "--raw", "/nonexistent", "--out", "/nonexistent/out"], "missing or not verified"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, caplog, tmp_path):
    assert main([*argv]) == 1
    assert message in caplog.text
    assert not list(tmp_path.iterdir())


def test_training_on_an_unprepared_dataset_names_the_missing_step(caplog, tmp_path):
    out = tmp_path / "run.json"
    assert (
        main(
            ["train", "--method", "lightgcn", "--dataset", "yelp", "--data", str(tmp_path / "none"), "--out", str(out)]
        )
        == 1
    )
    assert "run the prepare step first" in caplog.text and not out.exists()
