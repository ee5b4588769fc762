"""generations.jsonl: one line per published generation; a torn or foreign line is skipped, never fatal."""

from ais.cache import manifest as manifests
from ais.cache.store import Store


def published(generation: int, sizes: list[int]) -> dict:
    images = {f"{i:064x}": {"stored_bytes": s} for i, s in enumerate(sizes)}
    return {"generation": generation, "published_at": "2026-12-02T00:00:00+00:00", "images": images,
            "configurations": {"a": {}}, "plan": {"budget_bytes": 100, "objective": 9.5}}


def test_each_publish_appends_one_line(tmp_path):
    store = Store(tmp_path)
    manifests.log_generation(store, published(1, [10, 20]))
    manifests.log_generation(store, published(2, [5]))
    gens = manifests.read_generations(tmp_path)
    assert [(g["generation"], g["images"], g["stored_bytes"], g["budget_bytes"]) for g in gens] == \
        [(1, 2, 30, 100), (2, 1, 5, 100)]


def test_a_torn_last_line_and_junk_are_skipped(tmp_path):
    store = Store(tmp_path)
    manifests.log_generation(store, published(1, [10]))
    with open(tmp_path / manifests.GENERATIONS, "a") as f:
        f.write('[1, 2]\n{"generation": "x"}\n\x00\xff garbage\n{"generation": 2, "ima')  # a crash mid-append
    assert [g["generation"] for g in manifests.read_generations(tmp_path)] == [1]
    manifests.log_generation(store, published(3, [1]))  # starts a line of its own after the torn one
    assert [g["generation"] for g in manifests.read_generations(tmp_path)] == [1, 3]


def test_no_log_is_no_generations(tmp_path):
    assert manifests.read_generations(tmp_path / "missing") == []


def test_an_unwritable_log_does_not_fail_the_publish(tmp_path, caplog):
    (tmp_path / manifests.GENERATIONS).mkdir()  # cannot be opened for append
    manifests.log_generation(Store(tmp_path), published(1, [1]))
    assert "cannot append" in caplog.text
