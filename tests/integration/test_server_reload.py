"""`ais serve` across rebuilds, without a restart: a new manifest is picked up at the next
request, a stream in flight finishes although the rebuild's gc unlinked its image, a
damaged image makes plans fall back (and say why), and a broken descriptor edit leaves
the last good state serving."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ais.errors import StreamError
from ais.cost import CostModel, save_calibration
from aislab.site import (ServeProcess, get_json, publish_base_cache, rebuild_cache, request,
                            subset_descriptors, wait_for)
from ais.stream.format import ImageHeader
from ais.stream.unicast import UnicastSource

ROOT = Path(__file__).resolve().parents[2]
MAIL = {"Authorization": "Bearer 9d4bf7abd55eb7e7da9043caf50c4203"}  # tokens of the demo HCDs
DB = {"Authorization": "Bearer fb9577bf9257dd86cd19d77acdaf07b7"}


@pytest.fixture()
def lab(tmp_path, repo_dir):
    descriptors = subset_descriptors(ROOT / "descriptors", tmp_path / "descriptors", ["mail", "db"], ["mail01", "db01"])
    cost = tmp_path / "cost.json"
    save_calibration(CostModel(image_fixed_s=0.1, stream_bytes_per_s=300e6), cost)
    return tmp_path, descriptors, cost


def stream_address(plan):
    host, port = plan["image"]["stream"]["tcp"].rsplit(":", 1)
    return host, int(port)


def test_new_manifest_without_restart(lab, repo_dir):
    base, descriptors, cost = lab
    first = publish_base_cache(descriptors, repo_dir, base / "cache")
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "h.sqlite") as server:
        plan = get_json(server, "/v1/hosts/mail01/plan", MAIL)[1]
        assert plan["generation"] == first["generation"] and [p["nevra"][:7] for p in plan["packages"]] == ["postfix", "dovecot"]
        second = rebuild_cache(descriptors, repo_dir, base / "cache", cost=cost)
        assert second["generation"] == first["generation"] + 1
        plan = get_json(server, "/v1/hosts/mail01/plan", MAIL)[1]
        assert plan["generation"] == second["generation"]  # the very next request, no waiting
        assert plan["image"]["id"] == second["configurations"]["mail"]["image"] and plan["packages"] == []
        assert "loaded manifest generation 2" in server.log()


def test_stream_in_flight_survives_gc_of_its_image(lab, repo_dir):
    base, descriptors, cost = lab
    rebuild_cache(descriptors, repo_dir, base / "cache", cost=cost)
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "h.sqlite") as server:
        plan = get_json(server, "/v1/hosts/db01/plan", DB)[1]
        header = ImageHeader.from_json(json.dumps(plan["image"]["header"]))
        image_file = base / "cache" / "images" / f"{header.image_id}.aisimg"
        source = UnicastSource(stream_address(plan), header.image_id, header, retries=0)
        chunks = source.fetch(range(len(header.chunks)))
        got = dict([next(chunks)])  # the transfer has started: the server opened the file

        (descriptors / "scd" / "db.xml").unlink()  # db goes away: the rebuild's gc deletes its image
        (descriptors / "hcd" / "db01.xml").unlink()
        rebuild_cache(descriptors, repo_dir, base / "cache", cost=cost)
        assert not image_file.exists()

        got.update(chunks)  # ... and the transfer in flight still completes
        assert sorted(got) == list(range(len(header.chunks)))
        assert all(hashlib.sha256(got[i]).hexdigest() == header.chunks[i].sha256 for i in got)

        # new requests see the new state: no plan, no header, no new transfer of the old image
        status, err = get_json(server, "/v1/hosts/db01/plan", DB)
        assert status == 404 and "unknown host db01" in err["error"]
        assert request(server, "GET", plan["image"]["header_url"])[0] == 404
        with pytest.raises(StreamError):
            list(UnicastSource(stream_address(plan), header.image_id, header, retries=1, backoff=0.01).fetch([0]))
        status, _ = get_json(server, "/v1/hosts/mail01/plan", MAIL)
        assert status == 200


def test_damaged_image_falls_back_and_says_why(lab, repo_dir):
    base, descriptors, cost = lab
    manifest = publish_base_cache(descriptors, repo_dir, base / "cache")
    base_image = base / "cache" / manifest["images"][manifest["configurations"]["mail"]["image"]]["file"]
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "h.sqlite") as server:
        assert get_json(server, "/v1/hosts/mail01/plan", MAIL)[1]["fallback"] is None
        data = bytearray(base_image.read_bytes())
        data[len(data) // 2] ^= 0x01
        base_image.write_bytes(bytes(data))  # a new file version: checked again
        plan = get_json(server, "/v1/hosts/mail01/plan", MAIL)[1]
        assert plan["image"] is None and "fails its check" in plan["fallback"]["reason"]
        assert sorted(p["nevra"] for p in plan["packages"]) == plan["configuration"]
        base_image.unlink()
        plan = get_json(server, "/v1/hosts/db01/plan", DB)[1]
        assert plan["image"] is None and "unreadable" in plan["fallback"]["reason"]


def test_broken_descriptor_edit_keeps_last_good_state(lab, repo_dir):
    base, descriptors, _ = lab
    publish_base_cache(descriptors, repo_dir, base / "cache")
    with ServeProcess(descriptors, repo_dir, base / "cache", base / "h.sqlite") as server:
        good = get_json(server, "/v1/hosts/mail01/plan", MAIL)[1]
        shutil.copy(descriptors / "hcd" / "mail01.xml", base / "mail01.bak")
        (descriptors / "hcd" / "mail01.xml").write_text("<hcd name='mail01'")  # half-written edit
        assert wait_for(lambda: get_json(server, "/v1/health")[0] == 200 and "reload failed" in server.log(),
                        timeout=10, interval=0.1)
        assert get_json(server, "/v1/hosts/mail01/plan", MAIL)[1] == good
        shutil.copy(base / "mail01.bak", descriptors / "hcd" / "mail01.xml")
        (descriptors / "hcd" / "db01.xml").unlink()  # a valid edit is picked up
        assert wait_for(lambda: get_json(server, "/v1/hosts/db01/plan", DB)[0] == 404, timeout=10, interval=0.1)
