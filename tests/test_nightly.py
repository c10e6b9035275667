"""The nightly flow's handling of models it cannot measure, in-process on the test engine."""

from flows.nightly import nightly_rebenchmark
from qaccelx.history import history_path, read_records


def test_missing_weights_are_skipped_and_a_broken_model_fails_the_night(small_dataset, cache_dir):
    state = nightly_rebenchmark(
        models=[
            # No such repository in the offline cache: skipped, as on a machine without it.
            {"model_name": "hf-hub:timm/no-such-model.in1k", "if_available": True},
            {"model_name": "no_such_architecture", "random_weights": True},
        ],
        dataset_path=str(small_dataset),
        cache_dir=str(cache_dir),
        night="2026-01-01",
        return_state=True,
    )

    assert state.is_failed()
    assert state.message.startswith("Night 2026-01-01: no_such_architecture: failed: ")
    assert "'no_such_architecture' is not a timm model" in state.message
    assert read_records(history_path(cache_dir)) == []


def test_a_night_that_is_not_a_date_is_refused(small_dataset, cache_dir):
    state = nightly_rebenchmark(
        models=[], dataset_path=str(small_dataset), cache_dir=str(cache_dir), night="tonight",
        return_state=True,
    )

    assert state.is_failed()
    assert "night 'tonight' is not a date: give it as YYYY-MM-DD" in state.message
