"""ESRF data policy: one file per dataset, master files linking every scan."""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np

from conftest import read_file
from nexus_writer_service.simulation.recording import esrf_policy
from nexus_writer_service.simulation.replay import ScanPublisher
from nxvalidation import nexus_errors

PROPOSAL, BEAMLINE, SESSION_DATE = "hg123", "id00", "20261124"


def test_two_datasets_three_scans_each_concurrently(harness):
    root = harness.base / "visitor"
    scans = []
    for d, dataset in enumerate(("0001", "0002")):
        for i, fixture in enumerate(("03_ascan", "07_amesh", "13_timescan")):
            rec = harness.recording(fixture, number=i + 1)  # numbers restart in each dataset
            scans.append(esrf_policy(rec, root, PROPOSAL, BEAMLINE, SESSION_DATE, "sample", dataset))
    pubs = [ScanPublisher(harness.ds, rec, batch_size=2, interval=0.02) for rec in scans]
    threads = [threading.Thread(target=p.run) for p in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = harness.states([p.key for p in pubs], 60)
    for pub in pubs:
        assert states[pub.key].status == "SUCCEEDED", states[pub.key]

    raw = root / PROPOSAL / BEAMLINE / SESSION_DATE / "RAW_DATA"
    collection_file = raw / "sample" / f"{PROPOSAL}_sample.h5"
    proposal_file = raw / f"{PROPOSAL}_{BEAMLINE}.h5"
    with read_file(collection_file) as coll, read_file(proposal_file) as prop:
        assert coll.attrs["NX_class"] == "NXroot"
        assert len(coll) == len(prop) == 6
        for rec in scans:
            dataset = rec.identity["dataset"]
            entry = f"{rec.number}.1"
            for master, name in ((coll, f"{dataset}_{rec.number}_1"),
                                 (prop, f"sample_{dataset}_{rec.number}_1")):
                link = master.get(name, getlink=True)
                assert isinstance(link, h5py.ExternalLink)
                assert not os.path.isabs(link.filename)
                assert link.path == f"/{entry}"
                linked = master[name]
                assert linked["title"][()].decode() == rec.info_final["title"]
                assert os.path.samefile(linked.file.filename, rec.identity["path"])
                assert np.array_equal(linked["measurement/elapsed_time"][()],
                                      rec.stream("timer:elapsed_time").data)
                del linked  # it keeps the dataset file open otherwise
    for rec in scans[::3]:
        assert nexus_errors(rec.identity["path"]) == []
