"""Numbers read from Flower records: a peer's text, bytes or list is refused, never coerced."""

import pytest
from flwr.app import ConfigRecord, MetricRecord

from privtrain.federated.records import scalar


def test_numbers_come_back_as_stored_and_a_default_only_for_an_absent_entry():
    cfg = ConfigRecord({"server-round": 3, "proximal-mu": 0.25})
    assert scalar(cfg, "server-round") == 3 and isinstance(scalar(cfg, "server-round"), int)
    assert scalar(cfg, "proximal-mu", default=0.0) == 0.25
    assert scalar(ConfigRecord({}), "proximal-mu", default=0.0) == 0.0
    with pytest.raises(KeyError):
        scalar(ConfigRecord({}), "clipping-norm")


@pytest.mark.parametrize("value", ["1.0", b"1", [1.0, 2.0]])
def test_a_non_number_is_refused_by_name(value):
    with pytest.raises(TypeError, match="'clipping-norm' is a"):
        scalar(ConfigRecord({"clipping-norm": value}), "clipping-norm")


def test_metric_records_are_read_too():
    assert scalar(MetricRecord({"n": 10, "accuracy": 0.5}), "accuracy") == 0.5
    with pytest.raises(TypeError):
        scalar(MetricRecord({"n": [1, 2]}), "n")
