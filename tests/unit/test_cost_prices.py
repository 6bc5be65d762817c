"""The cost benchmark's price table (benchmarks/prices.json) and its pricing arithmetic: no local cloud."""

from __future__ import annotations

import math
import re
from datetime import date

import pytest

from benchmarks import cost


@pytest.fixture(scope="module")
def prices() -> dict[str, object]:
    return cost.load_prices()


def test_the_price_table_is_dated_and_every_entry_names_its_source(prices: dict[str, object]) -> None:
    assert date.fromisoformat(str(prices["date"])) == date(2026, 12, 2)
    assert prices["region"] == "us-east-1"
    assert "list prices" in str(prices["status"])
    entries = prices["prices"]
    assert isinstance(entries, dict)
    assert entries
    for key, entry in entries.items():
        assert re.fullmatch(r"https://aws\.amazon\.com/[\w/.-]+", entry["source"]), key
        assert isinstance(entry["usd"], int | float), key
        assert entry["usd"] >= 0, key
        assert entry["published"], key
        assert isinstance(entry["sure"], bool), key
        if not entry["sure"]:
            assert entry.get("note"), f"{key} is marked unsure without saying why"


def test_the_published_headline_prices(prices: dict[str, object]) -> None:
    assert cost.price(prices, "stepfunctions.standard.state_transition") * 1000 == pytest.approx(0.025)
    assert cost.price(prices, "stepfunctions.express.request") * 1e6 == pytest.approx(1.00)
    assert cost.price(prices, "lambda.request") * 1e6 == pytest.approx(0.20)
    assert cost.price(prices, "lambda.duration.x86_64") == pytest.approx(0.0000166667)
    assert cost.price(prices, "apigateway.rest.request") * 1e6 == pytest.approx(3.50)
    assert cost.price(prices, "kms.request") * 1e4 == pytest.approx(0.03)
    assert cost.rekognition_per_1000(prices) == pytest.approx((1.00, 0.40))


def test_standard_workflows_cost_per_state_transition(prices: dict[str, object]) -> None:
    assert cost.standard_cost(13, prices) == pytest.approx(13 * 0.025 / 1000)


def test_express_duration_is_rounded_up_to_100_ms_and_64_mb(prices: dict[str, object]) -> None:
    # 1.2 s at 64 MB: one request plus 1.2 s x 0.0625 GB at $0.06 per GB-hour ($0.0000166667 per GB-second).
    expected = 1e-6 + 1.2 * (64 / 1024) * 0.06 / 3600
    assert cost.express_cost(1.2, 64, prices) == pytest.approx(expected, rel=1e-5)
    # 1.21 s is billed as 1.3 s; 65 MB as 128 MB.
    expected = 1e-6 + 1.3 * (128 / 1024) * 0.06 / 3600
    assert cost.express_cost(1.21, 65, prices) == pytest.approx(expected, rel=1e-5)
    assert cost.express_billed_seconds(0.001, prices) == pytest.approx(0.1)
    assert cost.express_billed_memory_mb(50.2, prices) == 64
    # The published estimate: 50 MB + a 12 KB definition + a 4 KB payload over one Map step.
    assert cost.express_memory_estimate_mb(12_288, 4096, 1, prices) == pytest.approx(50 + 16_384 / 2**20)


def test_lambda_bills_each_millisecond_at_the_configured_memory(prices: dict[str, object]) -> None:
    assert cost.lambda_cost(1024, 100.2, prices) == pytest.approx(0.2e-6 + 0.101 * 1.0 * 0.0000166667)
    assert cost.lambda_cost(2048, 50, prices) == pytest.approx(0.2e-6 + 0.050 * 2.0 * 0.0000166667)


def test_dynamodb_request_units_follow_the_item_sizes() -> None:
    item = {"pk": {"S": "hmp#residents"}, "n": {"N": "12345"}, "emb": {"B": "AAAA"}, "ok": {"BOOL": True}}
    # names 2+1+3+2; values 13, ceil(5/2)+1, 3 bytes, 1
    assert cost.item_size(item) == 8 + 13 + 4 + 3 + 1
    assert cost.item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert cost.read_units(4096, consistent=True) == 1
    assert cost.read_units(4097, consistent=True) == 2
    assert cost.read_units(100, consistent=False) == 0.5
    assert cost.read_units(0, consistent=False) == 0.5  # a miss still reads
    assert cost.read_units(5000, consistent=True, transactional=True) == 4
    assert cost.write_units(1024) == 1
    assert cost.write_units(1025) == 2
    assert cost.write_units(300, transactional=True) == 2
    assert cost.dynamodb_cost(8, 4, cost.load_prices()) == pytest.approx(8 * 0.125e-6 + 4 * 0.625e-6)


def test_a_recognitions_costs_add_up(prices: dict[str, object]) -> None:
    usage = cost.Usage(
        transitions=13,
        express_requests=1,
        express_s=0.25,
        lambda_cost=cost.lambda_cost(1024, 20, prices),
        rru=6.5,
        wru=21,
        s3_put=1,
        s3_get=4,
        custom_events=1,
        s3_events=2,
        api_requests=1,
    )
    c = cost.costs_of(usage, prices)
    assert c.standard == pytest.approx(13 * 0.000025)
    assert c.express == pytest.approx(1e-6 + 0.3 * (64 / 1024) * 0.0000166667)
    assert c.s3 == pytest.approx(0.000005 + 4 * 0.0000004)
    assert c.eventbridge == pytest.approx(3e-6)
    assert c.total_express - c.total_standard == pytest.approx(c.express - c.standard)
    assert math.isclose(c.common, c.total_express - c.express)
